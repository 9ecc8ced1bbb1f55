//! The demo data set itself: plain data embedded at build time, no I/O. The local dev vault reads
//! it to write its first vault file; `demo/mod.rs` loads it into the database.

use crate::domain::{FolderPermission, PrincipalType, Role, Sensitivity, VaultPrincipalType};
use serde::Deserialize;

pub const DATASET_JSON: &str = include_str!("dataset.json");

#[derive(Debug, Deserialize)]
pub struct Dataset {
    pub tenant_id: String,
    pub users: Vec<DemoUser>,
    pub folders: Vec<DemoFolder>,
    pub records: Vec<DemoRecord>,
}

#[derive(Debug, Deserialize)]
pub struct DemoUser {
    pub key: String,
    pub aad_object_id: String,
    pub display_name: String,
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Deserialize)]
pub struct DemoFolder {
    pub key: String,
    pub vault_uid: String,
    pub name: String,
    pub acl: Vec<(VaultPrincipalType, String, FolderPermission)>,
}

#[derive(Debug, Deserialize)]
pub struct DemoRecord {
    pub vault_uid: String,
    pub title: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub folder: String,
    pub sensitivity: Sensitivity,
    /// (principal type, principal): USER entries name a demo user's key.
    pub approvers: Vec<(PrincipalType, String)>,
    pub owner: String,
}

pub fn dataset() -> Dataset {
    serde_json::from_str(DATASET_JSON).expect("the embedded demo dataset is valid")
}
