//! The policy set: the three policy bodies (visibility, access, lease) the engine evaluates with.
//! Bodies live in `GovernancePolicy` rows; `defaults.json` seeds them. The policy version is the
//! hash of the active set's canonical content, so any change to any body is a new version.

use crate::canonical::hash_canonical;
use crate::domain::{AuthorityKind, PolicyKind, Role, Sensitivity};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const VISIBILITY_POLICY: &str = "system.visibility.vault-access";
pub const ACCESS_POLICY: &str = "system.access.default";
pub const LEASE_POLICY: &str = "system.lease.default";

pub const DEFAULTS_JSON: &str = include_str!("defaults.json");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisibilityPolicy {
    /// The requester must hold a folder permission on the record's folder.
    pub require_folder_access: bool,
    pub admins_see_all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DefaultOutcome {
    AutoApprove,
    RouteToAuthority,
    RequiresHumanTriage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Escalation {
    Route,
    Triage,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonPolicy {
    pub justification_required: bool,
    pub min_justification_chars: usize,
    /// A regular expression the ticket id must match, when one is given or required.
    pub ticket_pattern: Option<String>,
    /// From this sensitivity up, a ticket id is required.
    pub ticket_required_from: Option<Sensitivity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassPolicy {
    pub enabled: bool,
    /// Record titles (or vault uids) break-glass may be used for.
    pub records: Vec<String>,
    /// Roles that may use break-glass on any record.
    pub roles: Vec<Role>,
    pub min_reason_chars: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    pub enabled: bool,
    /// The organisation's offset from UTC, in minutes.
    pub utc_offset_minutes: i32,
    /// ISO weekdays (1 = Monday … 7 = Sunday) on which auto-approval is allowed.
    pub weekdays: Vec<u8>,
    /// Minutes after local midnight: auto-approval allowed in [start, end).
    pub start_minute: u16,
    pub end_minute: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// What an all-abstain evaluation collapses to.
    pub default_outcome: DefaultOutcome,
    /// Requests for records up to this sensitivity may be auto-approved.
    pub auto_approve_max_sensitivity: Option<Sensitivity>,
    /// What happens above the auto-approve ceiling, per sensitivity.
    pub escalation: BTreeMap<Sensitivity, Escalation>,
    /// Approvals needed (N of the M resolved approvers), per sensitivity.
    pub approvals_required: BTreeMap<Sensitivity, u32>,
    /// Which authority kinds may approve.
    pub approver_authorities: Vec<AuthorityKind>,
    /// From this sensitivity up, retrieval needs a second factor.
    pub otp_required_from: Option<Sensitivity>,
    /// From this sensitivity up, an approver must also hold OWNER or MANAGER on the record's
    /// vault folder (an EDITOR or VIEWER approver is refused).
    pub approver_folder_permission_from: Option<Sensitivity>,
    pub reason: ReasonPolicy,
    pub break_glass: BreakGlassPolicy,
    pub business_hours: BusinessHours,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasePolicy {
    pub default_lease_secs: i64,
    pub max_lease_secs: BTreeMap<Sensitivity, i64>,
    pub max_issuances: u32,
    pub max_extensions: u32,
    /// Cap on the lease's whole life, original plus extensions.
    pub max_total_lease_secs: BTreeMap<Sensitivity, i64>,
}

/// The three bodies the engine needs, and the version derived from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySet {
    pub visibility: VisibilityPolicy,
    pub access: AccessPolicy,
    pub lease: LeasePolicy,
}

/// A policy body that does not parse, or a missing one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {name}: {problem}")]
pub struct PolicyError {
    pub name: String,
    pub problem: String,
}

impl PolicySet {
    /// The built-in defaults (`src/policy/defaults.json`).
    pub fn defaults() -> PolicySet {
        let bodies = default_bodies();
        PolicySet::from_bodies(&bodies).expect("the built-in policy defaults are valid")
    }

    /// Builds the set from named bodies (the active `GovernancePolicy` rows).
    pub fn from_bodies(bodies: &BTreeMap<String, Value>) -> Result<PolicySet, PolicyError> {
        fn parse<T: serde::de::DeserializeOwned>(
            bodies: &BTreeMap<String, Value>,
            name: &str,
        ) -> Result<T, PolicyError> {
            let body = bodies.get(name).ok_or_else(|| PolicyError {
                name: name.into(),
                problem: "no active body".into(),
            })?;
            serde_json::from_value(body.clone()).map_err(|e| PolicyError {
                name: name.into(),
                problem: e.to_string(),
            })
        }
        let set = PolicySet {
            visibility: parse(bodies, VISIBILITY_POLICY)?,
            access: parse(bodies, ACCESS_POLICY)?,
            lease: parse(bodies, LEASE_POLICY)?,
        };
        if let Some(pattern) = &set.access.reason.ticket_pattern {
            regex::Regex::new(pattern).map_err(|e| PolicyError {
                name: ACCESS_POLICY.into(),
                problem: format!("ticket_pattern: {e}"),
            })?;
        }
        Ok(set)
    }

    /// `pv-` and the first 16 hex digits of the SHA-256 of the set's canonical JSON.
    pub fn version(&self) -> String {
        let value = json!({
            VISIBILITY_POLICY: self.visibility,
            ACCESS_POLICY: self.access,
            LEASE_POLICY: self.lease,
        });
        format!("pv-{}", &hash_canonical(&value)[..16])
    }

    pub fn max_lease_secs(&self, s: Sensitivity) -> i64 {
        self.lease
            .max_lease_secs
            .get(&s)
            .copied()
            .unwrap_or(self.lease.default_lease_secs)
    }

    pub fn approvals_required(&self, s: Sensitivity) -> u32 {
        self.access
            .approvals_required
            .get(&s)
            .copied()
            .unwrap_or(1)
            .max(1)
    }
}

/// The default bodies by name, with their kinds, as stored in `GovernancePolicy` rows.
pub fn default_policies() -> Vec<(String, PolicyKind, Value)> {
    let file: BTreeMap<String, Value> =
        serde_json::from_str(DEFAULTS_JSON).expect("defaults.json is JSON");
    file.into_iter()
        .map(|(name, entry)| {
            let kind = serde_json::from_value(entry["kind"].clone())
                .expect("defaults.json kinds are valid");
            (name, kind, entry["body"].clone())
        })
        .collect()
}

fn default_bodies() -> BTreeMap<String, Value> {
    default_policies()
        .into_iter()
        .map(|(name, _, body)| (name, body))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_have_a_stable_version() {
        let set = PolicySet::defaults();
        assert_eq!(set.version(), PolicySet::defaults().version());
        assert!(set.version().starts_with("pv-") && set.version().len() == 19);
        assert_eq!(set.max_lease_secs(Sensitivity::Critical), 3600);
        assert_eq!(set.approvals_required(Sensitivity::Critical), 2);
    }

    #[test]
    fn any_change_to_a_body_is_a_new_version() {
        let base = PolicySet::defaults();
        let mut changed = base.clone();
        changed.lease.max_issuances = 4;
        assert_ne!(base.version(), changed.version());
    }

    #[test]
    fn a_bad_body_is_named() {
        let mut bodies = default_bodies();
        bodies.get_mut(LEASE_POLICY).unwrap()["max_issuances"] = json!("three");
        let err = PolicySet::from_bodies(&bodies).unwrap_err();
        assert_eq!(err.name, LEASE_POLICY);
        bodies = default_bodies();
        bodies.get_mut(ACCESS_POLICY).unwrap()["reason"]["ticket_pattern"] = json!("(unclosed");
        assert!(
            PolicySet::from_bodies(&bodies)
                .unwrap_err()
                .problem
                .contains("ticket_pattern")
        );
        bodies = default_bodies();
        bodies.remove(VISIBILITY_POLICY);
        assert!(
            PolicySet::from_bodies(&bodies)
                .unwrap_err()
                .problem
                .contains("no active body")
        );
    }
}
