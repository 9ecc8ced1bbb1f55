//! A fake Keeper one-time sharer: records every call, hands out URLs shaped like Keeper's
//! (`https://keepersecurity.com/vault/share/#<b64url key>`, share id computed from the key the way
//! Commander does), keeps the live shares per record, and fails on demand — the next N calls of
//! an operation with a given error class.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use passkey::domain::{Clock, Timestamp};
use passkey::vault::{
    ErrorClass, OneTimeSharer, Removed, Share, ShareInfo, ShareUrl, VaultError, share_id_from_url,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    List,
    Create,
    Remove,
}

/// One call the lifecycle made, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    List {
        uid: String,
    },
    Create {
        uid: String,
        name: String,
        ttl_secs: i64,
    },
    Remove {
        uid: String,
        id_or_name: String,
    },
}

/// A share the fake considers live.
#[derive(Debug, Clone)]
pub struct LiveShare {
    pub share_id: String,
    pub name: String,
    pub url: String,
    pub expires: Timestamp,
}

type Hook = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    live: HashMap<String, Vec<LiveShare>>,
    failures: HashMap<Op, VecDeque<ErrorClass>>,
    /// Successful removals per share id (a second removal of the same share is a bug).
    removed: HashMap<String, u32>,
    /// Every URL ever handed out, to look for in the database afterwards.
    urls: Vec<String>,
}

pub struct FakeSharer {
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// Runs after a share is created and before it is returned (e.g. to break the database).
    after_create: Mutex<Option<Hook>>,
    /// Runs before each removal is looked at (e.g. a slow vault: time passes).
    before_remove: Mutex<Option<Hook>>,
}

impl FakeSharer {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<FakeSharer> {
        Arc::new(FakeSharer {
            clock,
            inner: Mutex::new(Inner::default()),
            after_create: Mutex::new(None),
            before_remove: Mutex::new(None),
        })
    }

    /// The next `n` calls of `op` fail with `class`.
    pub fn fail_next(&self, op: Op, class: ErrorClass, n: usize) {
        let mut inner = self.inner.lock().unwrap();
        let queue = inner.failures.entry(op).or_default();
        for _ in 0..n {
            queue.push_back(class);
        }
    }

    pub fn set_after_create<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        *self.after_create.lock().unwrap() = Some(Arc::new(move || Box::pin(hook())));
    }

    pub fn set_before_remove<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        *self.before_remove.lock().unwrap() = Some(Arc::new(move || Box::pin(hook())));
    }

    /// How many times `remove` was called for each share id (successful or not).
    pub fn remove_calls(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for call in self.calls() {
            if let Call::Remove { id_or_name, .. } = call {
                *out.entry(id_or_name).or_default() += 1;
            }
        }
        out
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    pub fn count(&self, op: Op) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                matches!(
                    (c, op),
                    (Call::List { .. }, Op::List)
                        | (Call::Create { .. }, Op::Create)
                        | (Call::Remove { .. }, Op::Remove)
                )
            })
            .count()
    }

    pub fn live(&self, uid: &str) -> Vec<LiveShare> {
        self.inner
            .lock()
            .unwrap()
            .live
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    pub fn live_total(&self) -> usize {
        self.inner.lock().unwrap().live.values().map(Vec::len).sum()
    }

    /// Successful removals per share id.
    pub fn removals(&self) -> BTreeMap<String, u32> {
        self.inner
            .lock()
            .unwrap()
            .removed
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn urls(&self) -> Vec<String> {
        self.inner.lock().unwrap().urls.clone()
    }

    /// Was `remove(uid, id)` called?
    pub fn saw_remove(&self, uid: &str, id: &str) -> bool {
        self.calls().iter().any(
            |c| matches!(c, Call::Remove { uid: u, id_or_name } if u == uid && id_or_name == id),
        )
    }

    fn programmed_failure(inner: &mut Inner, op: Op) -> Option<VaultError> {
        let class = inner.failures.get_mut(&op)?.pop_front()?;
        let (message, raw) = match class {
            ErrorClass::Transient => ("The vault is busy", "HTTP 503 throttled"),
            ErrorClass::Terminal => ("The record does not exist", "record not found"),
            ErrorClass::NeedsOperator => ("Commander needs a login", "session expired"),
        };
        Some(VaultError::new(class, message, raw))
    }
}

#[async_trait::async_trait]
impl OneTimeSharer for FakeSharer {
    async fn create(
        &self,
        record_uid: &str,
        ttl: time::Duration,
        name: &str,
    ) -> Result<Share, VaultError> {
        let share = {
            let mut inner = self.inner.lock().unwrap();
            inner.calls.push(Call::Create {
                uid: record_uid.to_string(),
                name: name.to_string(),
                ttl_secs: ttl.whole_seconds(),
            });
            if let Some(e) = Self::programmed_failure(&mut inner, Op::Create) {
                return Err(e);
            }
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).unwrap();
            let url = format!(
                "https://keepersecurity.com/vault/share/#{}",
                URL_SAFE_NO_PAD.encode(key)
            );
            let share_id = share_id_from_url(&url).expect("a Keeper-shaped URL has an id");
            let expires = self.clock.now().plus(ttl);
            inner
                .live
                .entry(record_uid.to_string())
                .or_default()
                .push(LiveShare {
                    share_id: share_id.clone(),
                    name: name.to_string(),
                    url: url.clone(),
                    expires,
                });
            inner.urls.push(url.clone());
            Share {
                url: ShareUrl::new(url),
                share_id,
                expires_at: expires,
            }
        };
        let hook = self.after_create.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook().await;
        }
        Ok(share)
    }

    async fn remove(
        &self,
        record_uid: &str,
        share_id_or_name: &str,
    ) -> Result<Removed, VaultError> {
        let hook = self.before_remove.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook().await;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.calls.push(Call::Remove {
            uid: record_uid.to_string(),
            id_or_name: share_id_or_name.to_string(),
        });
        if let Some(e) = Self::programmed_failure(&mut inner, Op::Remove) {
            return Err(e);
        }
        let shares = inner.live.entry(record_uid.to_string()).or_default();
        match shares
            .iter()
            .position(|s| s.share_id == share_id_or_name || s.name == share_id_or_name)
        {
            Some(i) => {
                let gone = shares.remove(i);
                *inner.removed.entry(gone.share_id).or_default() += 1;
                Ok(Removed::Removed)
            }
            None => Ok(Removed::NotFound),
        }
    }

    async fn list(&self, record_uid: &str) -> Result<Vec<ShareInfo>, VaultError> {
        let mut inner = self.inner.lock().unwrap();
        inner.calls.push(Call::List {
            uid: record_uid.to_string(),
        });
        if let Some(e) = Self::programmed_failure(&mut inner, Op::List) {
            return Err(e);
        }
        Ok(inner
            .live
            .get(record_uid)
            .map(|shares| {
                shares
                    .iter()
                    .map(|s| ShareInfo {
                        share_id: s.share_id.clone(),
                        name: Some(s.name.clone()),
                        generated: None,
                        opened: None,
                        expires: Some(s.expires),
                        status: "Generated".into(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
