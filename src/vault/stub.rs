//! The staging stub: one-time shares that look real enough to exercise the flow but open nothing.
//! Links point at `stub.invalid` (a name that can never resolve) and their key starts with the
//! bytes `stub-0`, so the fragment reads `c3R1Yi0w…` and share ids compute as for real links.
//! Production refuses this backend (`Settings::check`).

use super::{OneTimeSharer, Removed, Share, ShareInfo, ShareUrl, VaultError, share_id_from_url};
use crate::domain::{Clock, Timestamp};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::{Arc, Mutex};

pub struct StubSharer {
    clock: Arc<dyn Clock>,
    shares: Mutex<Vec<StubShare>>,
}

struct StubShare {
    record_uid: String,
    info: ShareInfo,
}

impl StubSharer {
    pub fn new(clock: Arc<dyn Clock>) -> StubSharer {
        tracing::warn!(
            "vault backend is the STUB: one-time links are fake (https://stub.invalid/…) and open nothing"
        );
        StubSharer {
            clock,
            shares: Mutex::new(Vec::new()),
        }
    }

    fn shares(&self) -> std::sync::MutexGuard<'_, Vec<StubShare>> {
        self.shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl OneTimeSharer for StubSharer {
    async fn create(
        &self,
        record_uid: &str,
        ttl: time::Duration,
        name: &str,
    ) -> Result<Share, VaultError> {
        // 32 key bytes like Keeper's; the fixed `stub-0` prefix makes every fragment read `c3R1Yi0w…`.
        let mut key = b"stub-0".to_vec();
        key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        key.extend_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
        let url = ShareUrl::new(format!(
            "https://stub.invalid/vault/share/#{}",
            URL_SAFE_NO_PAD.encode(&key)
        ));
        let share_id = share_id_from_url(url.expose()).expect("the stub key is base64url");
        let now = self.clock.now();
        let expires_at = now.plus(ttl);
        self.shares().push(StubShare {
            record_uid: record_uid.to_string(),
            info: ShareInfo {
                share_id: share_id.clone(),
                name: Some(name.to_string()),
                generated: Some(now),
                opened: None,
                expires: Some(expires_at),
                status: String::new(),
            },
        });
        tracing::info!(record_uid, name, share_id, "stub one-time share created");
        Ok(Share {
            url,
            share_id,
            expires_at,
        })
    }

    async fn remove(
        &self,
        record_uid: &str,
        share_id_or_name: &str,
    ) -> Result<Removed, VaultError> {
        let mut shares = self.shares();
        let before = shares.len();
        shares.retain(|s| {
            !(s.record_uid == record_uid
                && (s.info.share_id == share_id_or_name
                    || s.info.name.as_deref() == Some(share_id_or_name)))
        });
        Ok(if shares.len() < before {
            Removed::Removed
        } else {
            Removed::NotFound
        })
    }

    /// The stub keeps shares in this process's memory: another instance's shares are unknown
    /// to it.
    fn knows_every_share(&self) -> bool {
        false
    }

    async fn list(&self, record_uid: &str) -> Result<Vec<ShareInfo>, VaultError> {
        let now = self.clock.now();
        Ok(self
            .shares()
            .iter()
            .filter(|s| s.record_uid == record_uid)
            .map(|s| ShareInfo {
                status: status_at(&s.info, now).into(),
                ..s.info.clone()
            })
            .collect())
    }
}

fn status_at(info: &ShareInfo, now: Timestamp) -> &'static str {
    match info.expires {
        Some(expires) if expires <= now => "Expired",
        _ => "Active",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ManualClock;

    #[tokio::test]
    async fn stub_links_are_obviously_fake_and_behave_like_shares() {
        let clock = Arc::new(ManualClock::new(
            Timestamp::parse("2026-11-23T09:00:00Z").unwrap(),
        ));
        let stub = StubSharer::new(clock.clone());
        let uid = "AbCdEfGhIjKlMnOpQrStUv";
        let share = stub
            .create(uid, time::Duration::hours(1), "passkey-req-1")
            .await
            .unwrap();
        assert!(
            share
                .url
                .expose()
                .starts_with("https://stub.invalid/vault/share/#c3R1Yi0w")
        );
        assert_eq!(
            share_id_from_url(share.url.expose()).unwrap(),
            share.share_id
        );
        assert_eq!(
            share.expires_at,
            Timestamp::parse("2026-11-23T10:00:00Z").unwrap()
        );
        let listed = stub.list(uid).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].status, "Active");
        clock.advance(time::Duration::hours(2));
        assert_eq!(stub.list(uid).await.unwrap()[0].status, "Expired");
        assert_eq!(
            stub.remove(uid, "passkey-req-1").await.unwrap(),
            Removed::Removed
        );
        assert_eq!(
            stub.remove(uid, &share.share_id).await.unwrap(),
            Removed::NotFound
        );
        assert!(stub.list(uid).await.unwrap().is_empty());
    }
}
