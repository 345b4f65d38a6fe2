// A stamp's network isolation (stamp.bicep deploys this only when networkIsolation is true):
//
//   VNet with two subnets: the Function App's (delegated to Microsoft.App/environments, as Flex
//     Consumption VNet integration requires) and the private endpoints'
//   private endpoints for the storage account's blob, table and queue services and the Key Vault
//   private DNS zones linked to the VNet, so that the usual host names (<account>.table.core...,
//     <vault>.vault.azure.net) resolve to the private endpoints from inside it
//
// stamp.bicep turns the storage account's and the vault's public network access off in the same
// deployment. The app's own endpoints stay public: isolation is about what the app reaches.

targetScope = 'resourceGroup'

@description('Azure region of the VNet and the private endpoints: the stamp\'s.')
param location string

@description('Prefix of the resource names: the stamp\'s Function App name.')
@minLength(2)
param namePrefix string

@description('Address space of the VNet.')
param vnetAddressPrefix string

@description('Subnet the Function App integrates with.')
param appSubnetPrefix string

@description('Subnet of the private endpoints.')
param privateEndpointSubnetPrefix string

@description('Resource id of the stamp\'s storage account.')
param storageAccountId string

@description('Resource id of the stamp\'s Key Vault.')
param keyVaultId string

@description('Tags for every resource (the stamp\'s, with its region).')
param tags object = {}

// One private endpoint per storage service the connector and the Functions host use (tables and
// queues of the connector; blobs of the host and the deployment package), and one for the vault
// (Key Vault references, the signing key). Zone names follow the cloud's own suffixes.
var privateLinks = [
  {
    name: 'blob'
    groupId: 'blob'
    resourceId: storageAccountId
    zone: 'privatelink.blob.${environment().suffixes.storage}'
  }
  {
    name: 'table'
    groupId: 'table'
    resourceId: storageAccountId
    zone: 'privatelink.table.${environment().suffixes.storage}'
  }
  {
    name: 'queue'
    groupId: 'queue'
    resourceId: storageAccountId
    zone: 'privatelink.queue.${environment().suffixes.storage}'
  }
  {
    name: 'vault'
    groupId: 'vault'
    resourceId: keyVaultId
    // .vault.azure.net -> privatelink.vaultcore.azure.net (and the same in the other clouds).
    zone: 'privatelink${replace(environment().suffixes.keyvaultDns, 'vault', 'vaultcore')}'
  }
]

// Both subnets deny what is not allowed; Azure's default rules already allow traffic inside the
// VNet and out to Azure, which is all the app and the private endpoints need.
resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${namePrefix}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: 'vnet-${namePrefix}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        vnetAddressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'snet-private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for link in privateLinks: {
  name: link.zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (link, i) in privateLinks: {
  parent: zones[i]
  name: 'link-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for link in privateLinks: {
  name: 'pe-${namePrefix}-${link.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: vnet.properties.subnets[1].id
    }
    privateLinkServiceConnections: [
      {
        name: link.name
        properties: {
          privateLinkServiceId: link.resourceId
          groupIds: [
            link.groupId
          ]
        }
      }
    ]
  }
}]

// Registers each endpoint's address in its zone (and keeps it there if the address changes).
resource endpointZones 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (link, i) in privateLinks: {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: link.name
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]

@description('The subnet the Function App integrates with (its virtualNetworkSubnetId).')
output appSubnetId string = vnet.properties.subnets[0].id
output vnetId string = vnet.id
