// Two user-assigned managed identities:
// - `app`: what Passkey runs as. It is the bot's identity (Azure Bot, msaAppType UserAssignedMSI),
//   reads the `kv:` secrets and uses the two Key Vault keys. Nothing else.
// - `pull`: pulls the container image from the registry (AcrPull on it), so the app's own
//   identity holds Key Vault roles only.

param location string
param namePrefix string
@description('An Azure Container Registry in this resource group to pull the image from (empty: none).')
param registryName string = ''

// Built-in role: AcrPull.
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-app-id'
  location: location
}

resource pull 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-pull-id'
  location: location
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (!empty(registryName)) {
  name: registryName
}

resource pullRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(registryName)) {
  name: guid(resourceGroup().id, registryName, pull.id, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPull)
    principalId: pull.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output appIdentityId string = app.id
output appClientId string = app.properties.clientId
output appPrincipalId string = app.properties.principalId
output pullIdentityId string = pull.id
output pullPrincipalId string = pull.properties.principalId
