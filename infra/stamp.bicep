// One stamp: everything one geography runs on (docs/architecture.md, section 3). Deployed once per entry
// of main.bicep's `stamps`, each into its own resource group in its own Azure region.
//
//   Function App (Linux, Python 3.11, Flex Consumption)
//   storage account (tables + queues of the connector, blobs of the Functions host + deployment package)
//   user-assigned managed identity with data-plane roles only (no keys anywhere)
//   Key Vault (RBAC mode, purge protection) for the SMART backend-services signing key
//   Azure Communication Services (SMS, phone numbers) with its data in this geography
//   Log Analytics + Application Insights (Entra-only ingestion), diagnostic logs of the vault,
//     the tables and the Event Grid topic
//   Event Grid: ACS's SMS delivery reports and inbound SMS to the app's /api/events/acs webhook
//   optional network isolation (network.bicep): the app on a VNet, storage and Key Vault reached
//     only through private endpoints
//
// Secrets never appear in app settings or outputs: storage, ACS, Key Vault and Application
// Insights are all reached with the managed identity; the generated secrets live in Key Vault
// and the app settings only point at them.

targetScope = 'resourceGroup'

@description('The geography this stamp serves: CONNECTOR_STAMP_REGION (lowercase letters, e.g. us, eu, apac).')
@minLength(2)
@maxLength(12)
param region string

@description('Azure region of the stamp\'s resources. It must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Where Azure Communication Services keeps its data at rest: the stamp\'s geography.')
@allowed([
  'United States'
  'Europe'
  'Asia Pacific'
  'Australia'
  'UK'
  'Canada'
  'Japan'
  'Switzerland'
  'Germany'
  'France'
  'Norway'
  'Korea'
  'India'
  'Africa'
  'Brazil'
  'UAE'
])
param acsDataLocation string

@description('Name of the Function App; main.bicep computes it so that every stamp knows every other stamp\'s URL.')
@minLength(2)
@maxLength(60)
param functionAppName string

@description('Short lowercase string that makes this stamp\'s global names unique (storage, Key Vault).')
@minLength(6)
param resourceToken string

@description('Entra ID authority host of the admin sign-in (CONNECTOR_ADMIN_AUTHORITY_HOST), e.g. https://login.microsoftonline.com.')
@minLength(8)
param adminAuthorityHost string

@description('Application (client) id of the admin API app registration (CONNECTOR_ADMIN_API_CLIENT_ID).')
@minLength(36)
@maxLength(36)
param adminApiClientId string

@description('Scope the portal asks for (CONNECTOR_ADMIN_API_SCOPE), e.g. api://<admin api client id>/Admin.ReadWrite.')
@minLength(1)
param adminApiScope string

@description('App role that grants admin rights besides Global Administrator (CONNECTOR_ADMIN_APP_ROLE).')
param adminAppRole string = 'Connector.Admin'

@description('Application (client) id of the portal SPA app registration (CONNECTOR_PORTAL_CLIENT_ID).')
@minLength(36)
@maxLength(36)
param portalClientId string

@description('Every stamp the portal offers, as JSON (CONNECTOR_PORTAL_STAMPS): [{"region", "label", "api_base_url"}].')
param portalStampsJson string

@description('Origins of the admin portal allowed to call this stamp\'s API from a browser (CORS).')
param portalOrigins array = []

@description('Queue of the phone-number provisioning worker (CONNECTOR_PROVISIONING_QUEUE, and the trigger\'s %setting%).')
param provisioningQueueName string = 'provision-number'

@description('Redundancy of the stamp\'s storage account. Standard_GZRS (three zones, copied to the paired region) where the region has availability zones; Standard_GRS where it has none; Standard_ZRS where the paired region lies outside the stamp\'s geography (data residency).')
@allowed([
  'Standard_GZRS'
  'Standard_GRS'
  'Standard_ZRS'
])
param storageSku string = 'Standard_GZRS'

@description('Flex Consumption zone redundancy. Off by default: a zone-redundant plan keeps at least two always-ready instances per function group, billed whether used or not; the region must offer it, and storageSku should then be zone-redundant too (GZRS or ZRS).')
param zoneRedundant bool = false

@description('Flex Consumption always-ready instances of the HTTP functions (0: scale to zero, the first request after a quiet spell waits for a cold start).')
@minValue(0)
@maxValue(20)
param alwaysReadyInstances int = 0

@description('Network isolation: the app on a VNet (outbound), storage and Key Vault reachable only through private endpoints in it. The app\'s own endpoints stay public (PowerChart, patients\' phones, Graph and Event Grid call them).')
param networkIsolation bool = false

@description('Address space of the stamp\'s VNet (network isolation only). Each stamp has its own, unpeered.')
param vnetAddressPrefix string = '10.90.0.0/16'

@description('Subnet the Function App integrates with (delegated to Microsoft.App/environments).')
param appSubnetPrefix string = '10.90.0.0/24'

@description('Subnet of the private endpoints of storage and Key Vault.')
param privateEndpointSubnetPrefix string = '10.90.1.0/24'

@description('Secret the Event Grid subscription sends as the X-Connector-Events-Key header (CONNECTOR_ACS_EVENTS_KEY). Keep it across deployments: main.bicep gets it from azd, which generates it once.')
@secure()
@minLength(32)
param acsEventsKey string

@description('Keys the opt-out list\'s hashes of patients\' numbers (CONNECTOR_OPTOUT_KEY, as base64 of these characters). Keep it across deployments: a new key forgets every STOP.')
@secure()
@minLength(32)
param optoutKey string

@description('Create the Event Grid subscription of ACS SMS events to the app\'s webhook. Event Grid validates the webhook when the subscription is created, so this needs the code running on the app: false on the first deployment, true once the code is deployed.')
param acsEventSubscription bool = false

@description('Flex Consumption: most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory of one instance (MB).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Key material of the provider page\'s session key (CONNECTOR_SESSION_KEY), kept in Key Vault. A new value each deployment by default: open visit pages then ask for a relaunch.')
@secure()
@minLength(32)
param sessionKeyMaterial string = '${newGuid()}${newGuid()}'

@description('The operator\'s own app settings for this stamp, e.g. CONNECTOR_CLIENT_SECRET_<TENANT>_<NAME> as a Key Vault reference or CONNECTOR_GRAPH_CLIENT_ID. Written with the rest on every provision (a setting added by hand is not); the settings below win over them.')
param extraAppSettings object = {}

@description('Tags for every resource; the stamp adds its region.')
param tags object = {}

// Built-in role definitions (ids are the same in every Azure tenant).
var roleStorageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var roleStorageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var roleStorageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var roleKeyVaultCryptoUser = '12338af0-0e69-4776-bea7-57ae8d297424'
// Read secrets (the session key) through Key Vault references in app settings.
var roleKeyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// ACS authorises Entra callers (SMS send, phone-number search and purchase) by control-plane
// actions on the resource; this is the narrowest built-in role that carries them.
var roleCommunicationServiceOwner = '09976791-48a7-449e-bb21-39d1a415f350'
// Entra-authenticated telemetry ingestion (Application Insights has local auth disabled).
var roleMonitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// The connector's tables (connector/adapters/storage/repositories.py StampTables); the app does
// not create them in Azure, so the stamp does. tests/unit/test_infra.py keeps the two lists equal.
var tableNames = [
  'tenants'
  'endpoints'
  'endpointurls'
  'notifications'
  'usageevents'
  'phonenumbers'
  'numberops'
  'launchstates'
  'visits'
  'joinlinks'
  'meetingsubs'
  'optouts'
]

var stampTags = union(tags, {
  'connector-stamp-region': region
})
var storageAccountName = take('st${region}${resourceToken}', 24)
var keyVaultName = take('kv-${region}-${resourceToken}', 24)
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
// connector/functions/acs_events.py KEY_HEADER: the webhook refuses a delivery without it.
var acsEventsKeyHeader = 'X-Connector-Events-Key'
var publicNetworkAccess = networkIsolation ? 'Disabled' : 'Enabled'
// Public: any network, but Entra ID is the only way in (no shared keys, no anonymous blobs).
// Isolated: only the private endpoints. The deployment's own writes (tables, queues, secrets) go
// through Azure Resource Manager, which these firewalls do not govern.
var networkDefaultAction = networkIsolation ? 'Deny' : 'Allow'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${functionAppName}'
  location: location
  tags: stampTags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: stampTags
  kind: 'StorageV2'
  sku: {
    name: storageSku
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource provisioningQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: provisioningQueueName
}

// Reminders: scan jobs (one per endpoint per timer tick) and due messages (hidden until due).
resource scanQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'reminder-scan'
}

resource sendQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'reminder-send'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

resource storageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleStorageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleStorageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleStorageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleStorageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The Functions host keeps its locks, keys and timer state in blobs; Flex Consumption reads the
// deployment package from the container above with the same identity.
resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleStorageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleStorageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: stampTags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enablePurgeProtection: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
    }
  }
}

// Sign (and verify) with the SMART backend-services key; the private key never leaves the vault.
resource keyVaultCryptoUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roleKeyVaultCryptoUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleKeyVaultCryptoUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The provider page's session key: the app setting is a Key Vault reference, never the value.
resource sessionKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: 'session-key'
  properties: {
    value: base64(sessionKeyMaterial)
    contentType: 'base64 key material'
  }
}

// The secret of the Event Grid delivery header. The same value on every deployment (it is a
// parameter, not newGuid()), so the subscription and the app never disagree.
resource acsEventsKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: 'acs-events-key'
  properties: {
    value: acsEventsKey
    contentType: 'Event Grid delivery header value'
  }
}

// The opt-out list's key (HMAC of patients' numbers): kept, like the events key, or every STOP is
// forgotten. Written on every deployment with the same value.
resource optoutKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: 'optout-key'
  properties: {
    value: base64(optoutKey)
    contentType: 'base64 key material'
  }
}

resource keyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roleKeyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleKeyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource communication 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: 'acs-${functionAppName}'
  location: 'global'
  tags: stampTags
  properties: {
    dataLocation: acsDataLocation
  }
}

resource communicationServiceOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communication.id, identity.id, roleCommunicationServiceOwner)
  scope: communication
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleCommunicationServiceOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${functionAppName}'
  location: location
  tags: stampTags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

// Local (instrumentation-key) auth is off: the connection string below only names the ingestion
// endpoint, and the identity must present an Entra token (Monitoring Metrics Publisher) to write.
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${functionAppName}'
  location: location
  tags: stampTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roleMonitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleMonitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Diagnostic logs to the stamp's workspace: who read or changed a secret, and every write and
// delete of the connector's tables (tenants, endpoints, visits, numbers, opt-outs). Table reads,
// queue polling and the host's blob leases are left out: they are constant and say little.
// The app's own requests and traces go to Application Insights.
resource keyVaultLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: keyVault
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

// Network isolation: VNet, private endpoints and private DNS (network.bicep), only when asked.
module network 'network.bicep' = if (networkIsolation) {
  name: 'stamp-network'
  params: {
    location: location
    namePrefix: functionAppName
    vnetAddressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    storageAccountId: storage.id
    keyVaultId: keyVault.id
    tags: stampTags
  }
}

// Flex Consumption (FC1), not the classic Consumption plan: it is the serverless plan Azure keeps
// developing for Linux (Linux Consumption gets no new features and is being retired), it runs with
// no Azure Files content share and no storage key at all (the deployment package is read from a
// blob container with the managed identity), scales per function to zero, and can add always-ready
// instances or VNet integration later without a plan change. Python 3.11 is supported on it.
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${functionAppName}'
  location: location
  tags: stampTags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(stampTags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references in app settings resolve with the stamp's identity.
    keyVaultReferenceIdentity: identity.id
    clientCertEnabled: false
    // Inbound stays public in both network modes: PowerChart, patients' phones, Microsoft Graph and
    // Event Grid call the app from the internet. Isolation is about what the app reaches.
    publicNetworkAccess: 'Enabled'
    // Outbound through the stamp's VNet (Flex Consumption routes all of it there once integrated).
    virtualNetworkSubnetId: networkIsolation ? network.outputs.appSubnetId : null
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // connector/functions/health.py: answers 200 while the stamp's tables and queues answer.
      healthCheckPath: '/api/health'
      cors: {
        allowedOrigins: portalOrigins
        supportCredentials: false
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        // Flex Consumption's minimum instances: warm instances for the HTTP functions.
        alwaysReady: (alwaysReadyInstances > 0) ? [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ] : []
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
  ]
}

// No publishing with user names and passwords: azd and `az functionapp deploy` use Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// The app's settings, all of them (this resource replaces the whole set, so a setting added by hand
// is gone after the next provision: the operator's go in extraAppSettings). Flex Consumption takes
// the runtime from functionAppConfig, so FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION are
// not set here. Written after the role assignments so the host starts with its data roles in place.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(extraAppSettings, {
    // The host's storage (and the queue trigger's `AzureWebJobsStorage` connection) by identity.
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    // DefaultAzureCredential in the connector picks the user-assigned identity by this id.
    AZURE_CLIENT_ID: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // connector/settings.py, one entry per setting that has no safe default in Azure.
    CONNECTOR_STAMP_REGION: region
    CONNECTOR_LOCAL_MODE: 'false'
    CONNECTOR_PUBLIC_BASE_URL: 'https://${functionApp.properties.defaultHostName}'
    CONNECTOR_STORAGE_ACCOUNT_NAME: storage.name
    CONNECTOR_ADMIN_AUTHORITY_HOST: adminAuthorityHost
    CONNECTOR_ADMIN_API_CLIENT_ID: adminApiClientId
    CONNECTOR_ADMIN_API_SCOPE: adminApiScope
    CONNECTOR_ADMIN_APP_ROLE: adminAppRole
    CONNECTOR_PORTAL_CLIENT_ID: portalClientId
    CONNECTOR_PORTAL_STAMPS: portalStampsJson
    CONNECTOR_ACS_ENDPOINT: 'https://${communication.properties.hostName}'
    CONNECTOR_PROVISIONING_QUEUE: provisioningQueue.name
    CONNECTOR_SUBSCRIPTION_RENEWAL_SCHEDULE: '0 */30 * * * *'
    CONNECTOR_REMINDER_SCAN_SCHEDULE: '0 */5 * * * *'
    // A trigger's %SETTING%: the host resolves it from app settings only. Daily at 03:17 UTC.
    CONNECTOR_RETENTION_SCHEDULE: '0 17 3 * * *'
    CONNECTOR_SCAN_QUEUE: scanQueue.name
    CONNECTOR_SEND_QUEUE: sendQueue.name
    CONNECTOR_SESSION_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${sessionKeySecret.name})'
    CONNECTOR_ACS_EVENTS_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${acsEventsKeySecret.name})'
    CONNECTOR_OPTOUT_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${optoutKeySecret.name})'
    // The operator's optional secrets: references to fixed names in this vault, so putting the
    // secret there (and restarting the app) is all it takes and no provision wipes it. Until then
    // the reference stays unresolved and the connector reads the setting as unset (settings.py).
    CONNECTOR_GRAPH_NOTIFICATION_CERTIFICATE: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=graph-notification-certificate)'
    CONNECTOR_GRAPH_NOTIFICATION_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=graph-notification-key)'
    CONNECTOR_CLIENT_ASSERTION_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=client-assertion-key)'
    CONNECTOR_CLIENT_ASSERTION_PREVIOUS_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=client-assertion-previous-key)'
    CONNECTOR_CLIENT_ASSERTION_NEXT_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=client-assertion-next-key)'
  })
  dependsOn: [
    storageTableDataContributor
    storageQueueDataContributor
    storageBlobDataOwner
    keyVaultCryptoUser
    keyVaultSecretsUser
    communicationServiceOwner
    monitoringMetricsPublisher
    tables
  ]
}

// ACS publishes its SMS events on this system topic; the subscription below delivers two of them
// to the app. The topic needs no running code, the subscription does (see acsEventSubscription).
resource acsEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-${functionAppName}'
  location: 'global'
  tags: stampTags
  properties: {
    source: communication.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

resource acsEventsLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: acsEvents
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'DeliveryFailures'
        enabled: true
      }
    ]
  }
}

// Delivery reports (a notification row's delivered / failed) and inbound SMS (STOP / START) to
// POST /api/events/acs, in the Event Grid schema the webhook reads (connector/adapters/acs/events.py),
// with the events key as a secret delivery header. Event Grid validates the webhook when this is
// created: the app must run the code, and hold the same key (the appsettings above), by then.
resource acsSmsToConnector 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (acsEventSubscription) {
  parent: acsEvents
  name: 'acs-sms-to-connector'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Communication.SMSDeliveryReportReceived'
        'Microsoft.Communication.SMSReceived'
      ]
    }
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/api/events/acs'
        maxEventsPerBatch: 10
        preferredBatchSizeInKilobytes: 64
        deliveryAttributeMappings: [
          {
            name: acsEventsKeyHeader
            type: 'Static'
            properties: {
              value: acsEventsKey
              isSecret: true
            }
          }
        ]
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
  dependsOn: [
    appSettings
  ]
}

output region string = region
output functionAppName string = functionApp.name
@description('The stamp\'s API base URL for the portal\'s stamps list (the portal appends /api/...).')
output apiBaseUrl string = 'https://${functionApp.properties.defaultHostName}'
output storageAccountName string = storage.name
output keyVaultUri string = keyVault.properties.vaultUri
output acsEndpoint string = 'https://${communication.properties.hostName}'
output managedIdentityClientId string = identity.properties.clientId
output managedIdentityPrincipalId string = identity.properties.principalId
output networkIsolated bool = networkIsolation
output acsEventSubscription bool = acsEventSubscription
