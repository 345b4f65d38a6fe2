// Every stamp of the connector, from one parameter file: one resource group per geography and
// stamp.bicep deployed into each (docs/architecture.md, section 3). Subscription scope, so `azd up` and
// `az deployment sub create` both create the resource groups themselves.

targetScope = 'subscription'

@description('The stamps, one per geography: [{ region, location, label, acsDataLocation }]. region is CONNECTOR_STAMP_REGION (lowercase letters), location an Azure region offering Flex Consumption, acsDataLocation where Communication Services keeps data.')
@minLength(1)
param stamps array

@description('Short lowercase prefix of resource group and resource names.')
@minLength(2)
@maxLength(8)
param namePrefix string = 'vvc'

@description('Application (client) id of the admin API app registration (see infra/README.md).')
@minLength(36)
@maxLength(36)
param adminApiClientId string

@description('Scope the portal requests for the admin API; empty means api://<adminApiClientId>/Admin.ReadWrite.')
param adminApiScope string = ''

@description('Application (client) id of the portal SPA app registration (see infra/README.md).')
@minLength(36)
@maxLength(36)
param portalClientId string

@description('Entra ID authority host for admin sign-in: https://login.microsoftonline.com in the public cloud (the connector drops the trailing slash).')
param adminAuthorityHost string = environment().authentication.loginEndpoint

@description('Origins the admin portal is served from (CORS on every stamp), e.g. https://portal.contoso.com.')
param portalOrigins array = []

@description('The stamps list the portal shows, [{ region, label, api_base_url }]; empty means derived from `stamps`.')
param portalStamps array = []

@description('Tags for every resource group and resource.')
param tags object = {}

var effectiveAdminApiScope = empty(adminApiScope) ? 'api://${adminApiClientId}/Admin.ReadWrite' : adminApiScope

// Names are computed here, not inside the stamps, so that every stamp can be told every other
// stamp's URL (the portal's stamps list) in the same deployment.
var stampNames = [for s in stamps: {
  region: s.region
  resourceGroup: 'rg-${namePrefix}-${s.region}'
  resourceToken: toLower(uniqueString(subscription().id, namePrefix, s.region))
  functionAppName: toLower('func-${namePrefix}-${s.region}-${uniqueString(subscription().id, namePrefix, s.region)}')
}]

// A Function App's default host name is <name>.azurewebsites.net (stamp.bicep does not opt into
// randomised host names), so the URLs are known before the apps exist.
var derivedPortalStamps = [for (s, i) in stamps: {
  region: s.region
  label: s.label
  api_base_url: 'https://${stampNames[i].functionAppName}.azurewebsites.net'
}]
var portalStampsJson = string(empty(portalStamps) ? derivedPortalStamps : portalStamps)

resource stampGroups 'Microsoft.Resources/resourceGroups@2024-03-01' = [for (s, i) in stamps: {
  name: stampNames[i].resourceGroup
  location: s.location
  tags: union(tags, {
    'connector-stamp-region': s.region
  })
}]

module stamp 'stamp.bicep' = [for (s, i) in stamps: {
  name: 'stamp-${s.region}'
  scope: stampGroups[i]
  params: {
    region: s.region
    location: s.location
    acsDataLocation: s.acsDataLocation
    functionAppName: stampNames[i].functionAppName
    resourceToken: stampNames[i].resourceToken
    adminAuthorityHost: adminAuthorityHost
    adminApiClientId: adminApiClientId
    adminApiScope: effectiveAdminApiScope
    portalClientId: portalClientId
    portalStampsJson: portalStampsJson
    portalOrigins: portalOrigins
    tags: tags
  }
}]

@description('Every stamp: region, resource group, Function App and API base URL (the portal\'s api_base_url).')
output STAMPS array = [for (s, i) in stamps: {
  region: s.region
  resourceGroup: stampNames[i].resourceGroup
  functionAppName: stamp[i].outputs.functionAppName
  apiBaseUrl: stamp[i].outputs.apiBaseUrl
  keyVaultUri: stamp[i].outputs.keyVaultUri
}]

@description('The JSON every stamp got as CONNECTOR_PORTAL_STAMPS.')
output CONNECTOR_PORTAL_STAMPS string = portalStampsJson

// azd deploys the `api` service (azure.yaml) to the Function App named here: the first stamp.
// To publish the code to the other stamps, see infra/README.md.
output SERVICE_API_RESOURCE_GROUP string = stampNames[0].resourceGroup
output SERVICE_API_RESOURCE_NAME string = stampNames[0].functionAppName
