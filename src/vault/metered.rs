//! A decorator around the vault ports that counts every call by backend, operation and error
//! class, and times it (see `crate::metrics`). It changes nothing else: results pass through as
//! they are. `app.rs` wraps the backend the settings select.

use super::backend::VaultParts;
use super::{
    ErrorClass, OneTimeSharer, RecordMeta, Removed, RotationChecker, RotationInfo, Share,
    ShareInfo, SharedFolder, VaultError, VaultReader,
};
use crate::config::VaultBackend;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// The backend as a metric label.
pub fn backend_label(backend: VaultBackend) -> &'static str {
    match backend {
        VaultBackend::Local => "local",
        VaultBackend::Stub => "stub",
        VaultBackend::CommanderService => "commander_service",
        VaultBackend::CommanderCli => "commander_cli",
    }
}

/// An error class as a metric label; `none` for a success.
fn class_label<T>(result: &Result<T, VaultError>) -> &'static str {
    match result {
        Ok(_) => "none",
        Err(e) => match e.class {
            ErrorClass::Terminal => "terminal",
            ErrorClass::NeedsOperator => "needs_operator",
            ErrorClass::Transient => "transient",
        },
    }
}

/// One of the vault ports, counted and timed.
pub struct Metered<T: ?Sized> {
    inner: Arc<T>,
    backend: &'static str,
}

impl<T: ?Sized> Metered<T> {
    pub fn new(inner: Arc<T>, backend: &'static str) -> Metered<T> {
        Metered { inner, backend }
    }

    async fn call<R>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<R, VaultError>>,
    ) -> Result<R, VaultError> {
        let started = Instant::now();
        let result = call.await;
        crate::metrics::get().vault_call(
            self.backend,
            operation,
            class_label(&result),
            started.elapsed(),
        );
        result
    }
}

/// The parts with every port wrapped (the local vault's own handle, used by its web pages, stays
/// as it is).
pub fn wrap(parts: VaultParts, backend: VaultBackend) -> VaultParts {
    let label = backend_label(backend);
    VaultParts {
        reader: Arc::new(Metered::new(parts.reader, label)),
        sharer: Arc::new(Metered::new(parts.sharer, label)),
        rotations: Arc::new(Metered::new(parts.rotations, label)),
        local: parts.local,
    }
}

#[async_trait]
impl VaultReader for Metered<dyn VaultReader> {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
        self.call("shared_folders", self.inner.shared_folders())
            .await
    }

    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
        self.call("records", self.inner.records()).await
    }

    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError> {
        self.call("record", self.inner.record(uid)).await
    }
}

#[async_trait]
impl OneTimeSharer for Metered<dyn OneTimeSharer> {
    async fn create(
        &self,
        record_uid: &str,
        ttl: time::Duration,
        name: &str,
    ) -> Result<Share, VaultError> {
        self.call("share_create", self.inner.create(record_uid, ttl, name))
            .await
    }

    async fn remove(
        &self,
        record_uid: &str,
        share_id_or_name: &str,
    ) -> Result<Removed, VaultError> {
        self.call(
            "share_remove",
            self.inner.remove(record_uid, share_id_or_name),
        )
        .await
    }

    async fn list(&self, record_uid: &str) -> Result<Vec<ShareInfo>, VaultError> {
        self.call("share_list", self.inner.list(record_uid)).await
    }

    fn knows_every_share(&self) -> bool {
        self.inner.knows_every_share()
    }
}

#[async_trait]
impl RotationChecker for Metered<dyn RotationChecker> {
    fn has_rotation_info(&self) -> bool {
        self.inner.has_rotation_info()
    }

    async fn rotation_info(&self, record_uid: &str) -> Result<RotationInfo, VaultError> {
        self.call("rotation_info", self.inner.rotation_info(record_uid))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;

    #[async_trait]
    impl VaultReader for Failing {
        async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError> {
            Ok(Vec::new())
        }
        async fn records(&self) -> Result<Vec<RecordMeta>, VaultError> {
            Err(VaultError::new(ErrorClass::Transient, "busy", "HTTP 503"))
        }
        async fn record(&self, _uid: &str) -> Result<Option<RecordMeta>, VaultError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn results_pass_through_unchanged() {
        let inner: Arc<dyn VaultReader> = Arc::new(Failing);
        let metered = Metered::new(inner, "local");
        assert!(metered.shared_folders().await.unwrap().is_empty());
        assert!(metered.record("x").await.unwrap().is_none());
        let err = metered.records().await.unwrap_err();
        assert_eq!(err.class, ErrorClass::Transient);
        assert_eq!(class_label(&Err::<(), _>(err)), "transient");
    }
}
