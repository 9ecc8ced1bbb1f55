//! People's addresses (#21.2). A Teams activity names its sender by Entra object id and display
//! name only, while USER entries of folder ACLs (and EMAIL authorities) name people by mail or
//! UPN. So the directory is asked for them: on first contact, again once they are a day old, and
//! after a failed ask, again after a shorter wait — never on every turn.
//!
//! Sources ([`AddressSource`]) are tried in order: Microsoft Graph (`GET /users/{id}`) when it is
//! on and the person is in Graph's tenant, then the Bot Connector's member lookup. An answer
//! counts only when it is about this person — the same object id, in the tenant the activity came
//! from — so no address is ever taken from a guess. Whatever fails, the person keeps what they
//! had: a lookup can narrow or widen access only with the directory's own answer.

use crate::domain::Timestamp;
use crate::governance::directory::UserDirectory;
use crate::governance::permissions::DirectoryError;
use crate::store::{NewAuditEvent, Store, StoreResult, User, UserAddresses};
use async_trait::async_trait;
use serde_json::json;

/// How long a successful lookup stands before the addresses are asked for again.
pub const REFRESH_AFTER: time::Duration = time::Duration::hours(24);
/// How long after a failed lookup (source down, refused, someone else's answer) it is tried again.
pub const RETRY_AFTER: time::Duration = time::Duration::minutes(15);

/// What one source says about a person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryAnswer {
    /// The Entra object id the answer is about.
    pub aad_object_id: String,
    /// The tenant the answer is about.
    pub tenant_id: Option<String>,
    pub email: Option<String>,
    pub upn: Option<String>,
}

/// One place a person's addresses can come from.
#[async_trait]
pub trait AddressSource: Send + Sync {
    /// The source's name in logs and audit events (`graph`, `teams-connector`).
    fn name(&self) -> &'static str;
    /// What the source says about the person with this Entra object id; `None` when it does not
    /// know them.
    async fn lookup(&self, aad_object_id: &str) -> Result<Option<DirectoryAnswer>, DirectoryError>;
}

/// Microsoft Graph as a source: `GET /users/{id}` in Graph's own tenant (the bot's home tenant,
/// `bot.tenant_id`), so it is asked only about people whose activity came from that tenant.
pub struct GraphAddresses {
    pub directory: std::sync::Arc<dyn UserDirectory>,
    /// The tenant Graph's token is for.
    pub tenant_id: String,
}

#[async_trait]
impl AddressSource for GraphAddresses {
    fn name(&self) -> &'static str {
        "graph"
    }

    async fn lookup(&self, aad_object_id: &str) -> Result<Option<DirectoryAnswer>, DirectoryError> {
        Ok(self
            .directory
            .user_by_object_id(aad_object_id)
            .await?
            .map(|u| DirectoryAnswer {
                aad_object_id: u.id,
                tenant_id: Some(self.tenant_id.clone()),
                email: u.mail,
                upn: u.upn,
            }))
    }
}

/// Whether the person's addresses should be asked for now.
pub fn lookup_due(user: &User, now: Timestamp) -> bool {
    match user.directory_checked_at {
        None => true,
        Some(at) => {
            let wait = if user.directory_check_failed {
                RETRY_AFTER
            } else {
                REFRESH_AFTER
            };
            now >= at.plus(wait)
        }
    }
}

/// Asks the sources in order and stores the first answer about this person (object id equal to
/// theirs, tenant equal to `tenant_id`, the tenant the activity came from); when none gives one,
/// the stored addresses stay and the failure is recorded for the retry window. Returns the
/// person as stored afterwards. Only a store failure is an error.
pub async fn refresh_addresses(
    store: &dyn Store,
    user: &User,
    tenant_id: Option<&str>,
    sources: &[&dyn AddressSource],
    now: Timestamp,
) -> StoreResult<User> {
    for source in sources {
        let answer = match source.lookup(&user.aad_object_id).await {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                tracing::info!(
                    user_id = user.id,
                    source = source.name(),
                    "person not found in the directory"
                );
                continue;
            }
            Err(e) => {
                tracing::warn!(user_id = user.id, source = source.name(), error = %e, "addresses not looked up");
                continue;
            }
        };
        if !answer_is_about(&answer, user, tenant_id) {
            // Not a transport problem: a directory that answers about someone else is wrong, and
            // nothing it says is kept.
            tracing::warn!(
                user_id = user.id,
                source = source.name(),
                "directory answer ignored: another person or tenant"
            );
            continue;
        }
        let addresses = UserAddresses {
            email: address(answer.email.as_deref()),
            upn: address(answer.upn.as_deref()),
        };
        let mut changed = Vec::new();
        if addresses.email != user.email {
            changed.push("email");
        }
        if addresses.upn != user.upn {
            changed.push("upn");
        }
        // The event names what changed and where it came from, not the addresses: they are
        // personal data, kept in the users row (which can be corrected or erased), while the
        // audit trail is insert-only.
        let audit = NewAuditEvent::new(
            format!("system:{}", source.name()),
            "USER_PROFILE_UPDATED",
            now,
        )
        .detail(json!({
            "user_id": user.id,
            "source": source.name(),
            "changed": changed,
            "first_lookup": user.directory_checked_at.is_none(),
        }));
        // Someone else of the tenant still holding one of these addresses held it before it
        // moved to this person: it stops naming them (their next turn looks them up again).
        let released = |holder: i64, cleared: Vec<&'static str>| {
            NewAuditEvent::new(
                format!("system:{}", source.name()),
                "USER_PROFILE_UPDATED",
                now,
            )
            .detail(json!({
                "user_id": holder,
                "source": source.name(),
                "changed": cleared,
                "moved_to_user_id": user.id,
            }))
        };
        let stored = store
            .set_user_addresses(user.id, &addresses, &audit, &released, now)
            .await?;
        tracing::info!(user_id = user.id, source = source.name(), changed = ?changed, "addresses looked up");
        return Ok(stored);
    }
    store.mark_directory_check_failed(user.id, now).await
}

/// Same object id (GUIDs, compared case-insensitively) and the same tenant. Without a tenant on
/// both sides nothing is known to match, so nothing is taken.
fn answer_is_about(answer: &DirectoryAnswer, user: &User, tenant_id: Option<&str>) -> bool {
    let same_person = answer
        .aad_object_id
        .trim()
        .eq_ignore_ascii_case(user.aad_object_id.trim());
    let same_tenant = match (answer.tenant_id.as_deref(), tenant_id) {
        (Some(a), Some(b)) => !a.trim().is_empty() && a.trim().eq_ignore_ascii_case(b.trim()),
        _ => false,
    };
    same_person && same_tenant
}

/// An address worth keeping: trimmed, shaped like a mail or UPN; anything else is no address.
fn address(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|a| crate::governance::directory::plausible_address(a))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn user(checked: Option<&str>, failed: bool) -> User {
        let at = Timestamp::parse("2026-11-23T09:00:00Z").unwrap();
        User {
            id: 7,
            aad_object_id: "A11CE000-0000-4000-8000-000000000001".into(),
            tenant_id: None,
            teams_user_id: None,
            upn: None,
            email: None,
            display_name: "Alice".into(),
            role: Role::Requester,
            allow_multiple_leases: false,
            created_at: at,
            updated_at: at,
            directory_checked_at: checked.map(|c| Timestamp::parse(c).unwrap()),
            directory_check_failed: failed,
        }
    }

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn a_lookup_is_due_first_then_a_day_after_success_and_sooner_after_failure() {
        let now = at("2026-11-24T08:59:59Z");
        assert!(lookup_due(&user(None, false), now));
        assert!(!lookup_due(&user(Some("2026-11-23T09:00:00Z"), false), now));
        assert!(lookup_due(
            &user(Some("2026-11-23T09:00:00Z"), false),
            at("2026-11-24T09:00:00Z")
        ));
        assert!(!lookup_due(&user(Some("2026-11-24T08:50:00Z"), true), now));
        assert!(lookup_due(&user(Some("2026-11-24T08:44:59Z"), true), now));
    }

    #[test]
    fn only_answers_about_the_same_person_in_the_same_tenant_count() {
        let alice = user(None, false);
        let answer = |id: &str, tenant: Option<&str>| DirectoryAnswer {
            aad_object_id: id.into(),
            tenant_id: tenant.map(String::from),
            ..Default::default()
        };
        let id = "a11ce000-0000-4000-8000-000000000001";
        assert!(answer_is_about(&answer(id, Some("T1")), &alice, Some("t1")));
        assert!(!answer_is_about(
            &answer(id, Some("T2")),
            &alice,
            Some("t1")
        ));
        assert!(!answer_is_about(&answer(id, None), &alice, Some("t1")));
        assert!(!answer_is_about(&answer(id, Some("t1")), &alice, None));
        assert!(!answer_is_about(&answer(id, Some("")), &alice, Some("")));
        assert!(!answer_is_about(
            &answer("b0b00000-0000-4000-8000-000000000002", Some("t1")),
            &alice,
            Some("t1")
        ));
    }

    #[test]
    fn addresses_are_trimmed_and_anything_not_shaped_like_one_is_dropped() {
        assert_eq!(
            address(Some(" Alice@Contoso.example ")).as_deref(),
            Some("Alice@Contoso.example")
        );
        assert_eq!(address(Some("")), None);
        assert_eq!(address(Some("alice")), None);
        assert_eq!(address(Some("al ice@contoso.example")), None);
        assert_eq!(address(None), None);
    }
}
