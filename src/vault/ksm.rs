//! Vault metadata reads over Keeper Secrets Manager, on the official `keeper-secrets-manager-core`
//! crate. The crate is blocking (`&mut self`, blocking reqwest), unwraps server data in places and
//! sleeps for minutes when throttled; so every call runs on the blocking pool under our timeout, a
//! panic is caught and reported, and the crate's throttle sleeps are capped (our retry budget and
//! backoff live in the jobs that call us). Secret field values never leave this file: records are
//! reduced to metadata the moment the crate returns them.
//! KSM sees folders but not their ACLs: [`SharedFolder::acl`] is `None`, which sync reads as
//! "unknown", never as "nobody".

use super::{ErrorClass, RecordMeta, SharedFolder, VaultError, VaultReader};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A folder as KSM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KsmFolder {
    pub uid: String,
    pub name: String,
}

/// A record's metadata, with everything secret already dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KsmRecord {
    pub uid: String,
    pub title: String,
    pub record_type: String,
    pub folder_uid: Option<String>,
    pub revision: i64,
}

/// The two calls Passkey makes of KSM. [`CrateKsm`] is the real one; tests script their own.
pub trait KsmClient: Send {
    fn folders(&mut self) -> Result<Vec<KsmFolder>, String>;
    /// All records the application can see (`uids` empty), or those named.
    fn records(&mut self, uids: Vec<String>) -> Result<Vec<KsmRecord>, String>;
}

/// The official crate behind [`KsmClient`].
pub struct CrateKsm(keeper_secrets_manager_core::SecretsManager);

/// The longest the crate may sleep between its own throttle retries.
const MAX_CRATE_SLEEP: Duration = Duration::from_secs(2);

impl CrateKsm {
    /// From a KSM configuration (base64 or JSON: hostname, clientId, privateKey, appKey, …).
    pub fn from_config(config: &SecretString) -> Result<CrateKsm, VaultError> {
        use keeper_secrets_manager_core::{
            ClientOptions, InMemoryKeyValueStorage, KvStoreType, SecretsManager,
        };
        let storage = InMemoryKeyValueStorage::new(Some(config.expose_secret().to_string()))
            .map_err(|e| config_error(&e.to_string()))?;
        let options = ClientOptions::new_client_options(KvStoreType::InMemory(storage));
        let mut manager = SecretsManager::new(options).map_err(|e| config_error(&e.to_string()))?;
        manager.set_custom_sleep_function(|d| std::thread::sleep(d.min(MAX_CRATE_SLEEP)));
        Ok(CrateKsm(manager))
    }
}

fn config_error(raw: &str) -> VaultError {
    VaultError::new(
        ErrorClass::Terminal,
        "the KSM configuration is invalid; administrators were told",
        raw,
    )
}

impl KsmClient for CrateKsm {
    fn folders(&mut self) -> Result<Vec<KsmFolder>, String> {
        let folders = self.0.get_folders().map_err(|e| e.to_string())?;
        Ok(folders
            .into_iter()
            .map(|f| KsmFolder {
                uid: f.folder_uid,
                name: f.name,
            })
            .collect())
    }

    fn records(&mut self, uids: Vec<String>) -> Result<Vec<KsmRecord>, String> {
        let records = self.0.get_secrets(uids).map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .map(|r| KsmRecord {
                uid: r.uid,
                title: r.title,
                record_type: r.record_type,
                folder_uid: Some(r.folder_uid).filter(|f| !f.is_empty()),
                revision: r.revision.unwrap_or(0),
            })
            .collect())
    }
}

/// [`VaultReader`] over a [`KsmClient`].
pub struct KsmReader {
    client: Arc<Mutex<Box<dyn KsmClient>>>,
    timeout: Duration,
}

impl KsmReader {
    pub fn new(client: Box<dyn KsmClient>, timeout: Duration) -> KsmReader {
        KsmReader {
            client: Arc::new(Mutex::new(client)),
            timeout,
        }
    }

    /// Runs one blocking call on the blocking pool, under the timeout, with panics caught.
    async fn call<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut dyn KsmClient) -> Result<T, String> + Send + 'static,
    ) -> Result<T, VaultError> {
        let client = self.client.clone();
        let task = tokio::task::spawn_blocking(move || {
            // One call at a time: the crate mutates its state on every call.
            let mut guard = client.lock().unwrap_or_else(|e| e.into_inner());
            catch_unwind(AssertUnwindSafe(|| f(guard.as_mut())))
        });
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => Err(VaultError::new(
                ErrorClass::Transient,
                "the vault did not answer in time, try again",
                format!("ksm {what}: no answer within {:?}", self.timeout),
            )),
            Ok(Err(join)) => Err(VaultError::new(
                ErrorClass::Transient,
                "the vault client failed, try again",
                format!("ksm {what}: task failed: {join}"),
            )),
            Ok(Ok(Err(_panic))) => Err(VaultError::new(
                ErrorClass::Transient,
                "the vault client failed, try again",
                format!("ksm {what}: the client panicked"),
            )),
            Ok(Ok(Ok(Err(text)))) => Err(classify(what, &text)),
            Ok(Ok(Ok(Ok(value)))) => Ok(value),
        }
    }
}

/// The crate's error text → a class (keeper.md's list).
pub fn classify(what: &str, text: &str) -> VaultError {
    let lower = text.to_ascii_lowercase();
    let raw = format!("ksm {what}: {text}");
    if lower.contains("throttl") {
        VaultError::new(ErrorClass::Transient, "the vault is busy, try again", raw)
    } else if lower.contains("invalid_client_version") || lower.contains("invalid client version") {
        VaultError::new(
            ErrorClass::Terminal,
            "the vault client is out of date; administrators were told",
            raw,
        )
    } else if lower.contains("access_denied")
        || lower.contains("access denied")
        || lower.contains("invalid_client")
        || lower.contains("signature")
        || lower.contains("decode")
        || lower.contains("config")
    {
        VaultError::new(
            ErrorClass::Terminal,
            "the vault refused Passkey's credentials; administrators were told",
            raw,
        )
    } else {
        VaultError::new(
            ErrorClass::Transient,
            "the vault could not be reached, try again",
            raw,
        )
    }
}

#[async_trait]
impl VaultReader for KsmReader {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        let folders = self.call("folders", |c| c.folders()).await?;
        Ok(folders
            .into_iter()
            .map(|f| SharedFolder {
                uid: f.uid,
                name: f.name,
                acl: None,
            })
            .collect())
    }

    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        let records = self.call("records", |c| c.records(vec![])).await?;
        Ok(records.into_iter().map(meta).collect())
    }

    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        let wanted = uid.to_string();
        let records = self
            .call("record", move |c| c.records(vec![wanted]))
            .await?;
        Ok(records.into_iter().find(|r| r.uid == uid).map(meta))
    }
}

fn meta(r: KsmRecord) -> RecordMeta {
    RecordMeta {
        uid: r.uid,
        title: r.title,
        record_type: r.record_type,
        folder_uid: r.folder_uid,
        revision: Some(r.revision),
        owner: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A KSM that answers from a script.
    struct Scripted {
        records: Vec<KsmRecord>,
        behaviour: &'static str,
    }

    impl KsmClient for Scripted {
        fn folders(&mut self) -> Result<Vec<KsmFolder>, String> {
            Ok(vec![KsmFolder {
                uid: "F1".into(),
                name: "Databases".into(),
            }])
        }

        fn records(&mut self, uids: Vec<String>) -> Result<Vec<KsmRecord>, String> {
            match self.behaviour {
                "throttled" => Err("Error: throttled".into()),
                "denied" => Err("access_denied: Signature is invalid".into()),
                "slow" => {
                    std::thread::sleep(Duration::from_secs(3));
                    Ok(vec![])
                }
                "panics" => panic!("called `Option::unwrap()` on a `None` value"),
                _ => Ok(self
                    .records
                    .iter()
                    .filter(|r| uids.is_empty() || uids.contains(&r.uid))
                    .cloned()
                    .collect()),
            }
        }
    }

    fn reader(behaviour: &'static str) -> KsmReader {
        let records = vec![
            KsmRecord {
                uid: "U1".into(),
                title: "db-prod".into(),
                record_type: "login".into(),
                folder_uid: Some("F1".into()),
                revision: 4,
            },
            KsmRecord {
                uid: "U2".into(),
                title: "db-staging".into(),
                record_type: "login".into(),
                folder_uid: None,
                revision: 1,
            },
        ];
        KsmReader::new(
            Box::new(Scripted { records, behaviour }),
            Duration::from_millis(300),
        )
    }

    #[tokio::test]
    async fn metadata_comes_through_and_folders_carry_no_acl() {
        let r = reader("ok");
        let records = r.records().await.unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(
            (records[0].revision, records[0].folder_uid.as_deref()),
            (Some(4), Some("F1"))
        );
        assert_eq!(r.record("U2").await.unwrap().unwrap().title, "db-staging");
        assert!(r.record("U9").await.unwrap().is_none());
        let folders = r.shared_folders().await.unwrap();
        assert_eq!(
            folders[0].acl, None,
            "KSM cannot see ACLs: unknown, not empty"
        );
    }

    #[tokio::test]
    async fn failures_are_classified_and_nothing_hangs_or_unwinds() {
        assert_eq!(
            reader("throttled").records().await.unwrap_err().class,
            ErrorClass::Transient
        );
        let denied = reader("denied").records().await.unwrap_err();
        assert_eq!(denied.class, ErrorClass::Terminal);
        assert!(denied.raw.contains("access_denied") && !denied.message.contains("access_denied"));
        let started = std::time::Instant::now();
        let slow = reader("slow").records().await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the timeout answers, not the client"
        );
        assert!(slow.message.contains("in time"), "{slow:?}");
        let panicked = reader("panics");
        let e = panicked.records().await.unwrap_err();
        assert_eq!(
            (e.class, e.raw.as_str()),
            (ErrorClass::Transient, "ksm records: the client panicked")
        );
        // The client is still usable after a panic (the lock is not poisoned for good).
        assert!(panicked.shared_folders().await.is_ok());
    }

    #[test]
    fn a_bad_configuration_is_a_terminal_error_without_the_config_in_it() {
        let err = match CrateKsm::from_config(&SecretString::from(
            "bm90IGEga3NtIGNvbmZpZw==".to_string(),
        )) {
            Err(e) => e,
            Ok(_) => panic!("garbage must not make a client"),
        };
        assert_eq!(err.class, ErrorClass::Terminal);
        assert!(!err.message.contains("bm90"), "{err:?}");
    }
}
