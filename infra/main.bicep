// Every stamp of the connector, from one parameter file: one resource group per geography and
// stamp.bicep deployed into each (docs/architecture.md, section 3), plus the admin portal's Static
// Web App (portal.bicep) in a group of its own. Subscription scope, so `azd up` and
// `az deployment sub create` both create the resource groups themselves.

targetScope = 'subscription'

@description('The stamps, one per geography: [{ region, location, label, acsDataLocation, storageSku?, zoneRedundant?, networkIsolation? }]. region is CONNECTOR_STAMP_REGION (lowercase letters), location an Azure region offering Flex Consumption, acsDataLocation where Communication Services keeps data. Optional: storageSku (Standard_GZRS by default; Standard_GRS where the region has no availability zones, Standard_ZRS where its paired region is outside the geography), zoneRedundant (Flex Consumption zone redundancy, false by default), networkIsolation (false by default: the app on a VNet, storage and Key Vault reachable only through private endpoints; off so that a first deployment and the operator\'s own Key Vault secrets work from anywhere, infra/README.md).')
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

@description('Flex Consumption always-ready instances of every stamp\'s HTTP functions (0: scale to zero).')
@minValue(0)
@maxValue(20)
param alwaysReadyInstances int = 0

@description('Route ACS SMS delivery reports and inbound SMS to every stamp\'s /api/events/acs. Event Grid validates the webhook when the subscription is created, so turn this on only once the code runs on every stamp (infra/README.md, "Event Grid").')
param acsEventSubscriptions bool = false

@description('The secret header value Event Grid sends to the events webhook (CONNECTOR_ACS_EVENTS_KEY, kept in each stamp\'s Key Vault). azd generates it once and keeps it in the environment; with the Azure CLI pass the same long random value every time.')
@secure()
@minLength(32)
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param acsEventsKey string

@description('Keys the opt-out list\'s hashes of patients\' numbers (CONNECTOR_OPTOUT_KEY, kept in each stamp\'s Key Vault): a STOP is recorded only with it. Set once and keep it: a new key forgets every STOP. azd generates it once and keeps it in the environment; with the Azure CLI pass the same value every time.')
@secure()
@minLength(32)
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param optoutKey string

@description('Azure region of the admin portal\'s Static Web App (a resource location only: the files are served from Azure\'s edge).')
@allowed([
  'westus2'
  'centralus'
  'eastus2'
  'westeurope'
  'eastasia'
])
param portalLocation string = 'eastus2'

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

// The admin portal (portal.bicep): a Static Web App in a resource group of its own.
resource portalGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${namePrefix}-portal'
  location: portalLocation
  tags: tags
}

module portal 'portal.bicep' = {
  name: 'portal-site'
  scope: portalGroup
  params: {
    name: toLower('swa-${namePrefix}-${uniqueString(subscription().id, namePrefix)}')
    location: portalLocation
    tags: tags
  }
}

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
    // The Static Web App's origin is always allowed: the portal calls every stamp from there.
    portalOrigins: union(portalOrigins, [
      'https://${portal.outputs.defaultHostname}'
    ])
    storageSku: contains(s, 'storageSku') ? s.storageSku : 'Standard_GZRS'
    zoneRedundant: contains(s, 'zoneRedundant') ? s.zoneRedundant : false
    networkIsolation: contains(s, 'networkIsolation') ? s.networkIsolation : false
    alwaysReadyInstances: alwaysReadyInstances
    acsEventsKey: acsEventsKey
    acsEventSubscription: acsEventSubscriptions
    optoutKey: optoutKey
    extraAppSettings: contains(s, 'appSettings') ? s.appSettings : {}
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
  // For the Graph app role and the Teams access policy (docs/deploy.md, sections 5 and 6).
  managedIdentityClientId: stamp[i].outputs.managedIdentityClientId
  managedIdentityPrincipalId: stamp[i].outputs.managedIdentityPrincipalId
  networkIsolated: stamp[i].outputs.networkIsolated
  acsEventSubscription: stamp[i].outputs.acsEventSubscription
}]

@description('The JSON every stamp got as CONNECTOR_PORTAL_STAMPS.')
output CONNECTOR_PORTAL_STAMPS string = portalStampsJson

// azd deploys the `api` service (azure.yaml) to the Function App named here: the first stamp.
// To publish the code to the other stamps, see infra/README.md.
output SERVICE_API_RESOURCE_GROUP string = stampNames[0].resourceGroup
output SERVICE_API_RESOURCE_NAME string = stampNames[0].functionAppName

// The `portal` service (azure.yaml) and what infra/portal_site.py writes into the site: the home
// stamp that answers the portal's api/portal-config and api/health, and the sign-in host.
output SERVICE_PORTAL_RESOURCE_GROUP string = portalGroup.name
output SERVICE_PORTAL_RESOURCE_NAME string = portal.outputs.name
@description('Where the admin portal is served: add it as a redirect URI of the portal\'s SPA app registration.')
output PORTAL_URL string = 'https://${portal.outputs.defaultHostname}/'
output PORTAL_HOME_API_BASE_URL string = stamp[0].outputs.apiBaseUrl
output CONNECTOR_ADMIN_AUTHORITY_HOST string = adminAuthorityHost
