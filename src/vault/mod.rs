//! The Keeper bridge. Two traits: [`VaultReader`] (metadata: shared folders with their ACLs,
//! records — never a secret field value) and [`OneTimeSharer`] (one-time share links: create,
//! list, remove). Implementations: the local vault for `cargo run`, Commander (service mode or
//! subprocess) for shares, shared-folder ACLs, rotation information and — without KSM — record
//! metadata ([`CommanderReader`]: `list`), KSM for record reads when configured
//! ([`CommanderAclReader`] joins KSM's records to Commander's ACLs), and a staging stub.
//!
//! Every failure is a [`VaultError`] with a class (Terminal / NeedsOperator / Transient, as
//! shared/keeper.md lists them), a short message safe to show a person, and the raw tool text for
//! the audit detail only.

pub mod acl;
pub mod backend;
pub mod classify;
pub mod commander;
pub mod ksm;
pub mod local;
pub mod metered;
pub mod rotation;
pub mod share_id;
pub mod stub;

use crate::domain::{FolderPermission, Timestamp, VaultPrincipalType};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::fmt;

pub use acl::{
    CommanderAclReader, CommanderReader, CommanderReads, FolderAclSource, FolderListing,
    ListedRecord,
};
pub use commander::{CommanderCli, CommanderService};
pub use rotation::{NoRotationInfo, RotationChecker, RotationInfo};
pub use share_id::share_id_from_url;
pub use stub::StubSharer;

/// What a caller should do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorClass {
    /// The request can never be served (record gone, PAM record, access denied, bad config):
    /// the request becomes UNFULFILLABLE.
    Terminal,
    /// A person must act (Commander's login broke, session expired): alert admins; retry later.
    NeedsOperator,
    /// Try again with backoff (throttled, 429/503/504, network, timeout, exit 0 without a URL).
    Transient,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class:?}: {message}")]
pub struct VaultError {
    pub class: ErrorClass,
    /// Short and safe to show to a person.
    pub message: String,
    /// The tool's own words, for the audit detail (never shown to users, never a share URL).
    pub raw: String,
}

impl VaultError {
    pub fn new(
        class: ErrorClass,
        message: impl Into<String>,
        raw: impl Into<String>,
    ) -> VaultError {
        let raw = crate::telemetry::redact(&raw.into()).into_owned();
        VaultError {
            class,
            message: message.into(),
            raw,
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }
}

/// A vault record's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordMeta {
    pub uid: String,
    pub title: String,
    pub record_type: String,
    pub folder_uid: Option<String>,
    /// The vault's revision of the record; `None` when the backend has none (Commander's `list`):
    /// a sync then keeps the stored revision and never reports a rotation it cannot see.
    pub revision: Option<i64>,
    /// The record's owner, where the backend says (KSM does not).
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FolderAclEntry {
    pub principal_type: VaultPrincipalType,
    pub principal: String,
    pub permission: FolderPermission,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedFolder {
    pub uid: String,
    pub name: String,
    /// `None` when this reader cannot see ACLs (KSM): a sync then leaves the stored ACL alone
    /// rather than reading "unknown" as "nobody".
    pub acl: Option<Vec<FolderAclEntry>>,
}

/// A one-time share URL. It is a secret: no `Display`, a redacted `Debug`, not `Serialize`;
/// read it with [`ShareUrl::expose`] only to hand it to the requester.
#[derive(Clone)]
pub struct ShareUrl(SecretString);

impl ShareUrl {
    pub fn new(url: String) -> ShareUrl {
        ShareUrl(SecretString::from(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// SHA-256 of the URL: what the database keeps (INV-5).
    pub fn hash(&self) -> String {
        crate::canonical::sha256_hex(self.expose())
    }
}

impl fmt::Debug for ShareUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareUrl([REDACTED])")
    }
}

/// A freshly created share.
#[derive(Debug, Clone)]
pub struct Share {
    pub url: ShareUrl,
    /// How to revoke it later (never by URL).
    pub share_id: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// The backend has no live share of that id or name. Read as "already gone" only when the
    /// backend [knows every share](OneTimeSharer::knows_every_share).
    NotFound,
}

/// A share as `list` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareInfo {
    pub share_id: String,
    pub name: Option<String>,
    pub generated: Option<Timestamp>,
    pub opened: Option<Timestamp>,
    pub expires: Option<Timestamp>,
    pub status: String,
}

/// Vault metadata reads.
#[async_trait]
pub trait VaultReader: Send + Sync {
    async fn shared_folders(&self) -> Result<Vec<SharedFolder>, VaultError>;
    async fn records(&self) -> Result<Vec<RecordMeta>, VaultError>;
    /// One record by uid; `None` when the vault says it does not exist.
    async fn record(&self, uid: &str) -> Result<Option<RecordMeta>, VaultError>;
}

/// One-time shares of a record.
#[async_trait]
pub trait OneTimeSharer: Send + Sync {
    /// Creates a share named `name` (the request id) that expires after `ttl`.
    async fn create(
        &self,
        record_uid: &str,
        ttl: time::Duration,
        name: &str,
    ) -> Result<Share, VaultError>;
    /// Removes a share by its id (or, to clean up after an unclear create, by its name).
    async fn remove(&self, record_uid: &str, share_id_or_name: &str)
    -> Result<Removed, VaultError>;
    async fn list(&self, record_uid: &str) -> Result<Vec<ShareInfo>, VaultError>;
    /// Whether [`Removed::NotFound`] from this backend means the share is gone everywhere
    /// (Keeper; the local vault, whose shares are in the database). A backend that knows only
    /// the shares of its own process (the staging stub) says no: its "not found" is then a
    /// failed removal, retried and alerted on, never a revocation.
    fn knows_every_share(&self) -> bool {
        true
    }
}
