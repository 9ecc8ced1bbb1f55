//! Everything a decision depends on, as data. A context is serialized into the decision trace, so
//! replay needs nothing else; its canonical JSON is what the inputs hash covers. No I/O and no
//! clock: `now` is a field.

use crate::domain::{
    AuthorityKind, FolderPermission, PrincipalType, RequestStatus, Role, Sensitivity, Timestamp,
};
use serde::{Deserialize, Serialize};

/// Which decision is being taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// A new request: auto-approve, deny, route or triage.
    Submit,
    /// An approver's approve on a routed request: does it decide the request yet?
    Approve,
    /// More time on a live lease.
    Extend,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub user_id: i64,
    pub aad_object_id: String,
    pub email: Option<String>,
    pub role: Role,
    /// Entra group ids (and display names) the person belongs to.
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordFacts {
    pub record_id: i64,
    pub vault_uid: String,
    pub title: String,
    pub sensitivity: Sensitivity,
    pub owner_user_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// None for a submission.
    pub request_id: Option<i64>,
    /// The request's current status (None for a submission).
    pub status: Option<RequestStatus>,
    pub requested_duration_secs: i64,
    pub justification: String,
    pub ticket_id: Option<String>,
    pub break_glass: bool,
    /// Lease time already granted (original plus extensions), for extensions.
    pub granted_lease_secs: i64,
    pub extension_count: u32,
}

/// The requester's standing on the record's vault folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderAccess {
    /// The strongest folder permission the requester holds, directly or through a group.
    pub permission: Option<FolderPermission>,
}

/// An authority row as the engine sees it. Revoked rows and rows outside their validity are
/// passed in too (the trace shows they were considered and ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorityFacts {
    pub authority_id: i64,
    pub kind: AuthorityKind,
    pub principal_type: PrincipalType,
    pub principal: String,
    pub stage: i32,
    pub valid_from: Timestamp,
    pub valid_to: Option<Timestamp>,
    pub revoked: bool,
}

impl AuthorityFacts {
    pub fn in_force(&self, now: Timestamp) -> bool {
        !self.revoked && self.valid_from <= now && self.valid_to.is_none_or(|to| now < to)
    }

    /// Whether `person` is the principal this row names.
    pub fn names(&self, person: &Person) -> bool {
        match self.principal_type {
            PrincipalType::User => self.principal.eq_ignore_ascii_case(&person.aad_object_id),
            PrincipalType::Email => person
                .email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&self.principal)),
            PrincipalType::Role => self
                .principal
                .parse::<Role>()
                .is_ok_and(|r| person.role == r),
            PrincipalType::Group => person
                .groups
                .iter()
                .any(|g| g.eq_ignore_ascii_case(&self.principal)),
        }
    }
}

/// An approval already recorded on the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalFacts {
    pub approver_user_id: i64,
    pub stage: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyContext {
    pub action: Action,
    pub now: Timestamp,
    pub requester: Person,
    /// The approver, for `Approve`.
    pub actor: Option<Person>,
    pub record: RecordFacts,
    pub request: RequestFacts,
    pub folder_access: FolderAccess,
    pub authorities: Vec<AuthorityFacts>,
    /// Approvals recorded before this one (for quorum).
    pub approvals: Vec<ApprovalFacts>,
    /// For `Extend`: the extra time asked for.
    pub extension_secs: Option<i64>,
    /// For `Approve`: the approver's own permission on the record's folder (OWNER/MANAGER may
    /// approve sensitive records; EDITOR/VIEWER may not).
    #[serde(default)]
    pub actor_folder_access: Option<FolderPermission>,
}
