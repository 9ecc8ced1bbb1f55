// Two user-assigned managed identities:
// - `app`: what Passkey runs as. It is the bot's identity (Azure Bot, msaAppType UserAssignedMSI),
//   reads the `kv:` secrets and uses the two Key Vault keys. Nothing else.
// - `pull`: pulls the container image from the registry (AcrPull on it, granted in the README's
//   steps), so the app's own identity holds Key Vault roles only.

param location string
param namePrefix string

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-app-id'
  location: location
}

resource pull 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-pull-id'
  location: location
}

output appIdentityId string = app.id
output appClientId string = app.properties.clientId
output appPrincipalId string = app.properties.principalId
output pullIdentityId string = pull.id
output pullPrincipalId string = pull.properties.principalId
