// The Azure Bot: its identity is the app's user-assigned managed identity (no app registration,
// no client secret), its messaging endpoint is Passkey's /api/messages, and Microsoft Teams is
// its one configured channel. (Passkey itself answers Teams activities only — any other channel
// gets 403 — whatever channels the Bot resource lists by default.)

param namePrefix string
param tenantId string
param appClientId string
param appIdentityId string
param messagingEndpoint string
@allowed([
  'F0'
  'S1'
])
param sku string = 'F0'

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: '${namePrefix}-bot'
  location: 'global'
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: 'Passkey'
    description: 'Just-in-time access to Keeper credentials'
    endpoint: messagingEndpoint
    msaAppType: 'UserAssignedMSI'
    msaAppId: appClientId
    msaAppMSIResourceId: appIdentityId
    msaAppTenantId: tenantId
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
      acceptedTerms: true
      enableCalling: false
    }
  }
}

output botId string = bot.name
output msaAppId string = appClientId
