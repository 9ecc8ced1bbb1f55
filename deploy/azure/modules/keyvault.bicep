// Key Vault (RBAC authorization, soft delete and purge protection) holding:
// - the `kv:` secrets Passkey resolves at start-up. The template writes only DATABASE-URL (built
//   from the generated PostgreSQL password, which is never in a file); the others are set by the
//   operator with `az keyvault secret set` (deploy/README.md, step 5);
// - `audit.key_vault_key`: an EC P-256 key (HSM) that signs audit checkpoints (ES256);
// - `crypto.key_vault_key`: an RSA key (HSM) that wraps the data-encryption key (RSA-OAEP-256).
// The app's identity gets Key Vault Secrets User and Key Vault Crypto User on this vault, nothing
// more. The vault is reachable from the app's subnet and from the operator addresses given.

param location string
param namePrefix string
@description('Key Vault names are global: 3-24 characters.')
param vaultName string
param tenantId string
param appPrincipalId string
param appsSubnetId string
@description('Public addresses (CIDR) allowed to reach the vault: the operator running the README steps.')
param operatorIpRanges array = []
param auditKeyName string
param wrapKeyName string
@secure()
@description('The PostgreSQL connection string, written as the DATABASE-URL secret.')
param databaseUrl string

// Built-in role definitions (Azure RBAC, Key Vault data plane).
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultCryptoUser = '12338af0-0e69-4776-bea7-57ae8d297424'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  properties: {
    tenantId: tenantId
    sku: {
      family: 'A'
      name: 'premium'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: [
        {
          id: appsSubnetId
          ignoreMissingVnetServiceEndpoint: false
        }
      ]
      ipRules: [for cidr in operatorIpRanges: {
        value: cidr
      }]
    }
  }
  tags: {
    app: namePrefix
  }
}

resource auditKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  //checkov:skip=CKV_AZURE_40:an expired key cannot sign, so checkpoints would stop; old checkpoints verify with the public keys the trail stores, and the key is rotated by hand (deploy/README.md, "Rotating keys")
  parent: vault
  name: auditKeyName
  properties: {
    kty: 'EC-HSM'
    curveName: 'P-256'
    keyOps: [
      'sign'
      'verify'
    ]
    attributes: {
      enabled: true
      exportable: false
    }
  }
}

resource wrapKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  //checkov:skip=CKV_AZURE_40:an expired wrapping key cannot unwrap the stored data key, so no instance could start; it is rotated by hand with the data key (deploy/README.md, "Rotating keys")
  parent: vault
  name: wrapKeyName
  properties: {
    kty: 'RSA-HSM'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
      exportable: false
    }
  }
}

resource databaseUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:Passkey reads it at every start; an expired secret cannot be read, so an expiry would stop restarts and scale-outs. It changes with the PostgreSQL password (deploy/README.md, "Rotating secrets")
  parent: vault
  name: 'DATABASE-URL'
  properties: {
    value: databaseUrl
    contentType: 'text/uri'
    attributes: {
      enabled: true
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource cryptoUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultCryptoUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output vaultName string = vault.name
output vaultUri string = vault.properties.vaultUri
