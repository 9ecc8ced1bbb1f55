// Passkey on Azure Container Apps: an environment inside the virtual network (logs to Log
// Analytics), the data share mounted at the data directory, and the app itself — external HTTPS
// ingress only (plain http is refused), at least two replicas, liveness on /healthz and
// readiness on /readyz, running as the app identity. Every setting is a PASSKEY_* variable; the
// secrets are `kv:` references resolved from Key Vault at start-up, so the template holds none.
// (tests/it/deploy.rs loads every PASSKEY_* variable named here: each must be a real setting.)

param location string
param namePrefix string
param appsSubnetId string
param workspaceName string
param image string
@description('The registry the image is pulled from with the pull identity (empty: a public image).')
param registryServer string = ''
param appIdentityId string
param appClientId string
param pullIdentityId string
param tenantId string
param allowedTenants string
param keyVaultUri string
param auditKeyName string
param wrapKeyName string
param storageAccountName string
param shareName string
param webClientId string
@description('Commander service mode; empty: the `{namePrefix}-commander` app in this environment, internal ingress (deploy/README.md, step 7).')
param commanderUrl string = ''
@allowed([
  'twilio'
  'acs'
])
param smsProvider string
param smsFrom string
param twilioAccountSid string = ''
param acsEndpoint string = ''
param graphEnabled bool = true
@description('false: the environment, the data share and the admin job only (first deployment).')
param deployApp bool = true
@minValue(2)
param minReplicas int = 2
@minValue(2)
param maxReplicas int = 4

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource managedEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${namePrefix}-env'
  location: location
  properties: {
    vnetConfiguration: {
      infrastructureSubnetId: appsSubnetId
      internal: false
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
  }
}

resource dataStorage 'Microsoft.App/managedEnvironments/storages@2024-03-01' = {
  parent: managedEnv
  name: 'passkey-data'
  properties: {
    azureFile: {
      accountName: storage.name
      accountKey: storage.listKeys().keys[0].value
      shareName: shareName
      accessMode: 'ReadWrite'
    }
  }
}

var appName = '${namePrefix}-app'
// Container Apps names the app `{name}.{environment's default domain}`; a custom domain can
// replace it (then change PASSKEY_PUBLIC_URL and the bot's endpoint with it).
var publicUrl = 'https://${appName}.${managedEnv.properties.defaultDomain}'
// Internal ingress: reachable from this environment only, over https (the API key rides on it).
var commanderDefault = 'https://${namePrefix}-commander.internal.${managedEnv.properties.defaultDomain}'
var effectiveCommanderUrl = empty(commanderUrl) ? commanderDefault : commanderUrl

var baseEnv = [
  {
    name: 'PASSKEY_PROFILE'
    value: 'production'
  }
  {
    name: 'PASSKEY_BIND'
    value: '0.0.0.0:3978'
  }
  {
    name: 'PASSKEY_PUBLIC_URL'
    value: publicUrl
  }
  {
    name: 'PASSKEY_DATA_DIR'
    value: '/var/lib/passkey'
  }
  {
    name: 'PASSKEY_DEMO_DATA'
    value: 'false'
  }
  {
    name: 'PASSKEY_DATABASE_URL'
    value: 'kv:DATABASE-URL'
  }
  // The bot is the app identity (Azure Bot with msaAppType UserAssignedMSI): no app password.
  {
    name: 'PASSKEY_BOT__APP_ID'
    value: appClientId
  }
  {
    name: 'PASSKEY_BOT__TENANT_ID'
    value: tenantId
  }
  {
    name: 'PASSKEY_BOT__ALLOWED_TENANTS'
    value: allowedTenants
  }
  {
    name: 'PASSKEY_BOT__CONNECTOR_AUTH'
    value: 'managed-identity'
  }
  {
    name: 'PASSKEY_GRAPH__ENABLED'
    value: graphEnabled ? 'true' : 'false'
  }
  {
    name: 'PASSKEY_AZURE__CREDENTIAL'
    value: 'managed-identity'
  }
  {
    name: 'PASSKEY_AZURE__CLIENT_ID'
    value: appClientId
  }
  {
    name: 'PASSKEY_AZURE__KEY_VAULT_URL'
    value: keyVaultUri
  }
  {
    name: 'PASSKEY_CRYPTO__KEY_WRAPPER'
    value: 'key-vault'
  }
  {
    name: 'PASSKEY_CRYPTO__KEY_VAULT_KEY'
    value: wrapKeyName
  }
  {
    name: 'PASSKEY_AUDIT__SIGNER'
    value: 'key-vault'
  }
  {
    name: 'PASSKEY_AUDIT__KEY_VAULT_KEY'
    value: auditKeyName
  }
  {
    name: 'PASSKEY_WEB__SESSION_KEY'
    value: 'kv:WEB-SESSION-KEY'
  }
  {
    name: 'PASSKEY_WEB__OIDC__CLIENT_ID'
    value: webClientId
  }
  {
    name: 'PASSKEY_WEB__OIDC__CLIENT_SECRET'
    value: 'kv:WEB-CLIENT-SECRET'
  }
  {
    name: 'PASSKEY_WEB__OIDC__TENANT_ID'
    value: tenantId
  }
  // Container Apps' ingress (one proxy) appends the client address to X-Forwarded-For, and the
  // app is reachable through it alone.
  {
    name: 'PASSKEY_WEB__TRUST_FORWARDED_FOR'
    value: 'true'
  }
  {
    name: 'PASSKEY_WEB__FORWARDED_FOR_HOPS'
    value: '1'
  }
  {
    name: 'PASSKEY_VAULT__BACKEND'
    value: 'commander-service'
  }
  {
    name: 'PASSKEY_VAULT__COMMANDER_URL'
    value: effectiveCommanderUrl
  }
  {
    name: 'PASSKEY_VAULT__COMMANDER_API_KEY'
    value: 'kv:COMMANDER-API-KEY'
  }
  {
    name: 'PASSKEY_OTP__SMS_PROVIDER'
    value: smsProvider
  }
  {
    name: 'PASSKEY_OTP__SMS_FROM'
    value: smsFrom
  }
]
var twilioEnv = [
  {
    name: 'PASSKEY_OTP__TWILIO_ACCOUNT_SID'
    value: twilioAccountSid
  }
  {
    name: 'PASSKEY_OTP__TWILIO_AUTH_TOKEN'
    value: 'kv:TWILIO-AUTH-TOKEN'
  }
]
var acsEnv = [
  {
    name: 'PASSKEY_OTP__ACS_ENDPOINT'
    value: acsEndpoint
  }
  {
    name: 'PASSKEY_OTP__ACS_ACCESS_KEY'
    value: 'kv:ACS-ACCESS-KEY'
  }
]

resource app 'Microsoft.App/containerApps@2024-03-01' = if (deployApp) {
  name: appName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentityId}': {}
      '${pullIdentityId}': {}
    }
  }
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 3978
        transport: 'http'
        allowInsecure: false
      }
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: pullIdentityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'passkey'
          image: image
          args: [
            'serve'
          ]
          env: concat(baseEnv, smsProvider == 'twilio' ? twilioEnv : acsEnv)
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          volumeMounts: [
            {
              volumeName: 'data'
              mountPath: '/var/lib/passkey'
            }
          ]
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: 3978
              }
              initialDelaySeconds: 2
              periodSeconds: 3
              failureThreshold: 20
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: 3978
              }
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: 3978
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'data'
          storageType: 'AzureFile'
          storageName: dataStorage.name
          // The data-encryption key file must be private to Passkey's user (distroless nonroot).
          mountOptions: 'dir_mode=0700,file_mode=0600,uid=65532,gid=65532,nobrl'
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
      }
    }
  }
}

// The shell, for what an operator runs once or now and then (`passkey migrate`,
// `passkey admin keys init`, `passkey admin role …`, `passkey doctor`): a manual job with the app's
// image, settings, identity and data share. `az containerapp job start --args …` picks the command
// (deploy/README.md, step 8).
resource admin 'Microsoft.App/jobs@2024-03-01' = {
  name: '${namePrefix}-admin'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentityId}': {}
      '${pullIdentityId}': {}
    }
  }
  properties: {
    environmentId: managedEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      triggerType: 'Manual'
      replicaTimeout: 900
      replicaRetryLimit: 0
      manualTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
      }
      registries: empty(registryServer) ? [] : [
        {
          server: registryServer
          identity: pullIdentityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'passkey'
          image: image
          args: [
            'doctor'
          ]
          env: concat(baseEnv, smsProvider == 'twilio' ? twilioEnv : acsEnv)
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          volumeMounts: [
            {
              volumeName: 'data'
              mountPath: '/var/lib/passkey'
            }
          ]
        }
      ]
      volumes: [
        {
          name: 'data'
          storageType: 'AzureFile'
          storageName: dataStorage.name
          mountOptions: 'dir_mode=0700,file_mode=0600,uid=65532,gid=65532,nobrl'
        }
      ]
    }
  }
}

output appName string = appName
output adminJobName string = admin.name
output publicUrl string = publicUrl
output commanderUrl string = effectiveCommanderUrl
output environmentName string = managedEnv.name
output environmentDomain string = managedEnv.properties.defaultDomain
