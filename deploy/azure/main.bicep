// Passkey in one resource group: deploy/README.md walks through it from an empty subscription.
//
//   az deployment group create -g rg-passkey -f deploy/azure/main.bicep \
//     -p @deploy/azure/main.parameters.json -p postgresAdministratorPassword="$PG_PASSWORD"
//
// No secret is in this file or the parameter file: the PostgreSQL password is a secure parameter
// without a default (generated on the operator's machine, written only to Key Vault by the
// template); every other secret is set in Key Vault with `az keyvault secret set` and reaches
// Passkey as a `kv:` reference.

targetScope = 'resourceGroup'

@description('Short lowercase prefix for every resource name, e.g. "passkey".')
@minLength(3)
@maxLength(12)
param namePrefix string = 'passkey'
param location string = resourceGroup().location
@description('The Entra tenant the bot, the identity and the sign-in app live in.')
param tenantId string = subscription().tenantId
@description('Teams tenants served (comma-separated); usually just tenantId.')
param allowedTenants string = subscription().tenantId
@description('The container image, e.g. contoso.azurecr.io/passkey:0.1.0.')
param image string
@description('The Azure Container Registry (in this resource group) holding the image; the pull identity gets AcrPull on it. Empty: a public image.')
param registryName string = ''
@description('false on the first deployment: everything but the app, so secrets and the data key exist before it starts (deploy/README.md, step 3).')
param deployApp bool = true
@description('The web sign-in app registration (client id); its secret goes to Key Vault as WEB-CLIENT-SECRET.')
param webClientId string
@description('Keeper Commander service mode, https off loopback; empty: the `{namePrefix}-commander` app in the environment (deploy/README.md, step 7).')
param commanderUrl string = ''
@allowed([
  'twilio'
  'acs'
])
param smsProvider string = 'twilio'
@description('The sending number (E.164) or sender id for texted codes.')
param smsFrom string
param twilioAccountSid string = ''
param acsEndpoint string = ''
param graphEnabled bool = true
@minValue(2)
param minReplicas int = 2
@minValue(2)
param maxReplicas int = 4
@description('Public addresses (CIDR) that may reach Key Vault: the operator setting the secrets.')
param operatorIpRanges array = []
@allowed([
  'Enabled'
  'Disabled'
])
param postgresGeoRedundantBackup string = 'Enabled'
@minValue(7)
@maxValue(35)
param postgresBackupRetentionDays int = 14
param postgresSkuName string = 'Standard_D2ds_v5'
param postgresSkuTier string = 'GeneralPurpose'
@secure()
@description('Generated at deploy time (openssl rand -hex 32); never stored outside Key Vault.')
param postgresAdministratorPassword string
@description('The Key Vault key names the app is configured with.')
param auditKeyName string = 'passkey-audit-checkpoint'
param wrapKeyName string = 'passkey-data-key-wrap'

var suffix = uniqueString(resourceGroup().id, namePrefix)
var vaultName = take('${namePrefix}-kv-${suffix}', 24)
var storageName = take(toLower(replace('${namePrefix}${suffix}', '-', '')), 24)

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    namePrefix: namePrefix
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    location: location
    namePrefix: namePrefix
    registryName: registryName
  }
}

module network 'modules/network.bicep' = {
  name: 'network'
  params: {
    location: location
    namePrefix: namePrefix
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    namePrefix: namePrefix
    delegatedSubnetId: network.outputs.postgresSubnetId
    privateDnsZoneId: network.outputs.postgresDnsZoneId
    administratorPassword: postgresAdministratorPassword
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    backupRetentionDays: postgresBackupRetentionDays
    geoRedundantBackup: postgresGeoRedundantBackup
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    namePrefix: namePrefix
    vaultName: vaultName
    tenantId: tenantId
    appPrincipalId: identity.outputs.appPrincipalId
    appsSubnetId: network.outputs.appsSubnetId
    operatorIpRanges: operatorIpRanges
    auditKeyName: auditKeyName
    wrapKeyName: wrapKeyName
    // verify-full: TLS with the server's certificate checked against its private DNS name.
    databaseUrl: 'postgres://${postgres.outputs.administratorLogin}:${postgresAdministratorPassword}@${postgres.outputs.fqdn}:5432/${postgres.outputs.databaseName}?sslmode=verify-full'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    namePrefix: namePrefix
    accountName: storageName
    appsSubnetId: network.outputs.appsSubnetId
  }
}

module app 'modules/app.bicep' = {
  name: 'app'
  params: {
    location: location
    namePrefix: namePrefix
    appsSubnetId: network.outputs.appsSubnetId
    workspaceName: monitoring.outputs.workspaceName
    image: image
    registryServer: empty(registryName) ? '' : '${registryName}${environment().suffixes.acrLoginServer}'
    deployApp: deployApp
    appIdentityId: identity.outputs.appIdentityId
    appClientId: identity.outputs.appClientId
    pullIdentityId: identity.outputs.pullIdentityId
    tenantId: tenantId
    allowedTenants: allowedTenants
    keyVaultUri: keyVault.outputs.vaultUri
    auditKeyName: auditKeyName
    wrapKeyName: wrapKeyName
    storageAccountName: storage.outputs.accountName
    shareName: storage.outputs.shareName
    webClientId: webClientId
    commanderUrl: commanderUrl
    smsProvider: smsProvider
    smsFrom: smsFrom
    twilioAccountSid: twilioAccountSid
    acsEndpoint: acsEndpoint
    graphEnabled: graphEnabled
    minReplicas: minReplicas
    maxReplicas: maxReplicas
  }
}

module bot 'modules/bot.bicep' = {
  name: 'bot'
  params: {
    namePrefix: namePrefix
    tenantId: tenantId
    appClientId: identity.outputs.appClientId
    appIdentityId: identity.outputs.appIdentityId
    messagingEndpoint: '${app.outputs.publicUrl}/api/messages'
  }
}

@description('Where people and Teams reach Passkey (PASSKEY_PUBLIC_URL).')
output appUrl string = app.outputs.publicUrl
@description('The Azure Bot resource.')
output botName string = bot.outputs.botId
@description('The bot id (Microsoft App ID): the app identity\'s client id; `passkey manifest pack --app-id`.')
output botId string = identity.outputs.appClientId
output keyVaultName string = keyVault.outputs.vaultName
output keyVaultUri string = keyVault.outputs.vaultUri
output appInsightsId string = monitoring.outputs.appInsightsId
output postgresServer string = postgres.outputs.serverName
output storageAccount string = storage.outputs.accountName
output adminJobName string = app.outputs.adminJobName
output environmentName string = app.outputs.environmentName
output environmentDomain string = app.outputs.environmentDomain
output commanderUrl string = app.outputs.commanderUrl
