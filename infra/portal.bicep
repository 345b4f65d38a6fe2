// The admin portal's host: a Static Web App serving portal/ (index.html, styles.css and the esbuild
// bundle). `azd deploy` uploads the site that infra/portal_site.py assembles; the site's
// staticwebapp.config.json sends the portal's two same-origin calls (api/portal-config and
// api/health) on to the home stamp, whose CONNECTOR_PORTAL_STAMPS lists every stamp.
//
// Static content only: no managed functions, no linked backend (linking a Function App would put
// the Static Web App's sign-in in front of it, and the stamps' clinical pages must stay open).

targetScope = 'resourceGroup'

@description('Name of the Static Web App.')
@minLength(2)
@maxLength(40)
param name string

@description('Azure region of the resource (the content itself is served from Azure\'s edge).')
@allowed([
  'westus2'
  'centralus'
  'eastus2'
  'westeurope'
  'eastasia'
])
param location string

@description('Free hosts the static portal; Standard adds an SLA and private endpoints.')
@allowed([
  'Free'
  'Standard'
])
param sku string = 'Free'

@description('Tags for the resource.')
param tags object = {}

resource site 'Microsoft.Web/staticSites@2023-12-01' = {
  name: name
  location: location
  // azd finds the `portal` service's target by this tag (and by main.bicep's SERVICE_PORTAL_* outputs).
  tags: union(tags, {
    'azd-service-name': 'portal'
  })
  sku: {
    name: sku
    tier: sku
  }
  properties: {
    // Deployed from azd with the deployment token, not built from a repository.
    allowConfigFileUpdates: true
    stagingEnvironmentPolicy: 'Disabled'
  }
}

output name string = site.name
@description('The portal\'s origin, without scheme (<name>.azurestaticapps.net): CORS on every stamp and the SPA redirect URI.')
output defaultHostname string = site.properties.defaultHostname
