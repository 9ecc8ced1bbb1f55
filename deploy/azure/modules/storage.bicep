// The data directory shared by every instance: an Azure Files share holding the data-encryption
// key file (`passkey admin keys init` writes it once, wrapped by the Key Vault RSA key, so the file
// alone opens nothing). Reachable from the app's subnet only; HTTPS/SMB 3 with TLS 1.2.

param location string
param namePrefix string
@description('Storage account names are global: 3-24 lowercase letters and digits.')
param accountName string
param appsSubnetId string
param shareName string = 'passkey-data'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_59:the public endpoint refuses everyone (networkAcls defaultAction Deny) but the app's subnet, through its service endpoint, which is how Container Apps mounts the share; disabling it would need a private endpoint for SMB
  //checkov:skip=CKV_AZURE_43:the name is computed in main.bicep (lowercase letters and digits, at most 24, via take()); checkov cannot evaluate a parameter
  name: accountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    // Container Apps mounts Azure Files with the account key (SMB); no other client uses it.
    allowSharedKeyAccess: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Deny'
      bypass: 'AzureServices'
      virtualNetworkRules: [
        {
          id: appsSubnetId
          action: 'Allow'
        }
      ]
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        file: {
          enabled: true
          keyType: 'Account'
        }
        blob: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
  tags: {
    app: namePrefix
  }
}

resource files 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
}

resource share 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: files
  name: shareName
  properties: {
    shareQuota: 1
    enabledProtocols: 'SMB'
  }
}

output accountName string = account.name
output shareName string = share.name
