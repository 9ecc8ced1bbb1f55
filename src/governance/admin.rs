//! Admin changes to who governs a record (authority rows), to a record's sensitivity and to
//! people's roles. The bot (`admin authority …`, `admin sensitivity …`, `admin role …`) and the
//! CLI (`passkey admin …`) both call these.
//!
//! Every input is checked before anything is written, so a refusal changes nothing. Every change
//! is written with its audit event in one transaction (`AUTHORITY_GRANTED`, `AUTHORITY_REVOKED`,
//! `RECORD_SENSITIVITY_CHANGED`, `ROLE_CHANGED`), naming who did it and what was there before and
//! after. Authority rows are
//! append-only (INV-1): a grant inserts, a revoke sets `revoked_*` once, nothing else is updated.

use crate::domain::{AuthorityKind, Clock, PrincipalType, Role, Sensitivity, Timestamp};
use crate::store::{Authority, NewAuditEvent, NewAuthority, Record, Store, StoreError, User};
use serde_json::json;
use std::sync::Arc;

/// The policies a record gets when an admin grants the first authority over it. The same names
/// the demo data and (later) discovery use.
pub const DEFAULT_VISIBILITY_POLICY: &str = "system.visibility.vault-access";
pub const DEFAULT_ACCESS_POLICY: &str = "system.access.default";
pub const DEFAULT_LEASE_POLICY: &str = "system.lease.default";

/// Highest approval stage an admin may name; more stages than this is a typo, not a policy.
pub const MAX_STAGE: i32 = 9;
const MAX_REASON_CHARS: usize = 500;
/// Ambiguous record names list at most this many candidates.
const MAX_CANDIDATES: usize = 10;

/// Who is making a change, as the audit trail names them.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An admin in Teams (boxed: a whole user row next to a unit variant).
    User(Box<User>),
    /// Someone with shell access to the database's configuration.
    Cli,
}

impl Actor {
    pub fn audit_name(&self) -> String {
        match self {
            Actor::User(u) => format!("user:{}", u.id),
            Actor::Cli => "admin-cli".into(),
        }
    }
}

/// Why an admin change was refused. Every variant but `Store` is the admin's input; its message
/// says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("No record matches `{}` (by vault uid, title or the start of a title).", shown(.0))]
    UnknownRecord(String),
    #[error("`{}` matches several records: {}. Use the full title or the vault uid.", shown(.query), .candidates.join(", "))]
    AmbiguousRecord {
        query: String,
        candidates: Vec<String>,
    },
    #[error("No Passkey user `{}` (by email, UPN or Entra object id). People appear once they have messaged the bot.", shown(.0))]
    UnknownUser(String),
    #[error("Unknown authority kind `{}`: use OWNER, CUSTODIAN or APPROVER.", shown(.0))]
    UnknownKind(String),
    #[error("Unknown role `{}`: use REQUESTER, APPROVER or ADMIN.", shown(.0))]
    UnknownRole(String),
    #[error("Unknown sensitivity `{}`: use LOW, MEDIUM, HIGH or CRITICAL.", shown(.0))]
    UnknownSensitivity(String),
    #[error("Another admin changed the sensitivity of `{0}` just now; look again and retry.")]
    SensitivityChangedMeanwhile(String),
    #[error("{0}")]
    BadPrincipal(String),
    #[error("The stage must be a whole number from 1 to {MAX_STAGE} (got `{}`).", shown(.0))]
    BadStage(String),
    #[error("`{record}` already has that authority in force (#{existing}).")]
    DuplicateAuthority { record: String, existing: i64 },
    #[error("There is no authority #{0}.")]
    UnknownAuthority(i64),
    #[error("Authority #{id} was already revoked at {at} by {by}.")]
    AlreadyRevoked { id: i64, at: Timestamp, by: String },
    #[error(
        "Authority #{0} is not a group's authority in force: only a group's approval cards can go to a team channel."
    )]
    NotGroupAuthority(i64),
    #[error("Passkey knows no team channel `{}`. Add Passkey to the team (or mention it in the channel) first, then name the channel by its id (`19:…@thread.tacv2`, from the channel's link).", shown(.0))]
    UnknownChannel(String),
    #[error("A reason is required (at most {MAX_REASON_CHARS} characters).")]
    BadReason,
    /// A chat command with too few words: how to type it.
    #[error("{0}")]
    Usage(&'static str),
    #[error("You are the last admin: make someone else ADMIN before stepping down.")]
    LastAdmin,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// True when the input was refused (as opposed to the database failing).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, AdminError::Store(_))
    }
}

/// User text echoed back in a message: bounded, and unable to break out of a code span.
fn shown(text: &str) -> String {
    let mut s: String = text
        .chars()
        .take(80)
        .map(|c| if c == '`' { '\'' } else { c })
        .collect();
    if text.chars().nth(80).is_some() {
        s.push('…');
    }
    s
}

/// An authority grant as an admin typed it; [`GovernanceAdmin::grant_authority`] checks it.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Vault uid, exact title or unique title prefix.
    pub record: String,
    /// OWNER, CUSTODIAN or APPROVER, any case.
    pub kind: String,
    /// `user:<email or aad id>`, `group:<id>`, `role:<ROLE>`, `email:<address>` or a bare email.
    pub principal: String,
    /// 1 when not given.
    pub stage: Option<i32>,
}

/// One authority row with how it reads to a person.
#[derive(Debug, Clone)]
pub struct AuthorityLine {
    pub authority: Authority,
    pub principal_label: String,
    pub in_force: bool,
}

impl AuthorityLine {
    fn render(&self, now: Timestamp) -> String {
        let a = &self.authority;
        let stage = if a.stage > 1 {
            format!(", stage {}", a.stage)
        } else {
            String::new()
        };
        let state = match (&a.revoked_at, self.in_force) {
            (Some(at), _) => format!(
                " — revoked {} by {}{}",
                at.to_fixed_text().get(..16).unwrap_or_default(),
                a.revoked_by.as_deref().unwrap_or("?"),
                a.revoked_reason
                    .as_deref()
                    .map(|r| format!(": {}", shown(r)))
                    .unwrap_or_default()
            ),
            (None, true) => String::new(),
            (None, false) if a.valid_from > now => " — not yet in force".into(),
            (None, false) => " — expired".into(),
        };
        format!(
            "- #{} {} — {}{stage}{state}",
            a.id, a.authority, self.principal_label
        )
    }
}

/// Every authority row a record has had: the ones in force, then the rest.
#[derive(Debug, Clone)]
pub struct AuthorityListing {
    pub record: Record,
    pub lines: Vec<AuthorityLine>,
    pub at: Timestamp,
}

impl AuthorityListing {
    pub fn in_force(&self) -> impl Iterator<Item = &AuthorityLine> {
        self.lines.iter().filter(|l| l.in_force)
    }

    pub fn render(&self) -> String {
        let mut out = vec![format!(
            "**Authority over `{}`** ({})",
            self.record.title, self.record.vault_uid
        )];
        let (active, past): (Vec<_>, Vec<_>) = self.lines.iter().partition(|l| l.in_force);
        if active.is_empty() {
            out.push("No authority in force.".into());
        } else {
            out.extend(active.iter().map(|l| l.render(self.at)));
        }
        if !past.is_empty() {
            out.push("Not in force:".into());
            out.extend(past.iter().map(|l| l.render(self.at)));
        }
        out.join("\n")
    }
}

#[derive(Debug, Clone)]
pub struct Granted {
    pub record: Record,
    pub authority: Authority,
    pub principal_label: String,
}

impl Granted {
    pub fn render(&self) -> String {
        format!(
            "Granted {} over `{}` to {} (stage {}) — authority #{}.",
            self.authority.authority,
            self.record.title,
            self.principal_label,
            self.authority.stage,
            self.authority.id
        )
    }
}

#[derive(Debug, Clone)]
pub struct Revoked {
    pub record: Record,
    pub authority: Authority,
    pub principal_label: String,
}

impl Revoked {
    pub fn render(&self) -> String {
        format!(
            "Revoked authority #{} ({} over `{}` for {}).",
            self.authority.id, self.authority.authority, self.record.title, self.principal_label
        )
    }
}

/// What `admin authority channel` did.
#[derive(Debug, Clone)]
pub enum ChannelChange {
    /// The authority's approval cards go to this channel from now on.
    Set { authority_id: i64, channel: String },
    /// The authority's approval cards go to 1:1 chats only from now on.
    Cleared { authority_id: i64 },
    /// That was already so: nothing written.
    Unchanged { authority_id: i64 },
}

impl ChannelChange {
    pub fn render(&self) -> String {
        match self {
            ChannelChange::Set {
                authority_id,
                channel,
            } => format!(
                "Approval cards for authority #{authority_id} are now also posted in the team \
                 channel `{}`; its members may decide there (they are still asked in their 1:1 chats).",
                shown(channel)
            ),
            ChannelChange::Cleared { authority_id } => format!(
                "Approval cards for authority #{authority_id} are no longer posted in a team channel."
            ),
            ChannelChange::Unchanged { authority_id } => {
                format!("Authority #{authority_id} already has that channel; nothing changed.")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum RoleChange {
    Changed {
        user: User,
        old: Role,
    },
    /// The person already had that role: nothing written.
    Unchanged {
        user: User,
    },
}

impl RoleChange {
    pub fn render(&self) -> String {
        match self {
            RoleChange::Changed { user, old } => {
                format!("{} is now {} (was {}).", user_label(user), user.role, old)
            }
            RoleChange::Unchanged { user } => {
                format!(
                    "{} is already {}; nothing changed.",
                    user_label(user),
                    user.role
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum SensitivityChange {
    Changed {
        record: Record,
        old: Sensitivity,
    },
    /// The record already had that level: nothing written.
    Unchanged {
        record: Record,
    },
}

impl SensitivityChange {
    pub fn render(&self) -> String {
        match self {
            SensitivityChange::Changed { record, old } => format!(
                "`{}` is now {} (was {}). Every decision from now on uses {} (approvals, \
                 lease caps, a second factor at retrieval); leases already running are not cut \
                 short (`admin revoke` ends one).",
                record.title, record.sensitivity, old, record.sensitivity
            ),
            SensitivityChange::Unchanged { record } => format!(
                "`{}` is already {}; nothing changed.",
                record.title, record.sensitivity
            ),
        }
    }
}

fn user_label(u: &User) -> String {
    match u.email.as_deref().or(u.upn.as_deref()) {
        Some(mail) => format!("{} <{mail}>", u.display_name),
        None => format!("{} (no email on file)", u.display_name),
    }
}

/// A principal as typed, before users are looked up.
enum PrincipalSpec {
    User(String),
    Group(String),
    Role(Role),
    Email(String),
}

const PRINCIPAL_HELP: &str = "Name a principal as `user:<email or Entra object id>`, \
`group:<Entra group id>`, `role:<REQUESTER|APPROVER|ADMIN>` or `email:<address>`.";

fn parse_principal(text: &str) -> Result<PrincipalSpec, AdminError> {
    let bad = |why: String| AdminError::BadPrincipal(format!("{why} {PRINCIPAL_HELP}"));
    let (prefix, value) = match text.split_once(':') {
        Some((p, v)) => (p.to_ascii_lowercase(), v.trim()),
        None if text.contains('@') => ("email".to_string(), text.trim()),
        None => {
            return Err(bad(format!(
                "I can't tell what kind of principal `{}` is.",
                shown(text)
            )));
        }
    };
    if value.is_empty() || value.chars().any(char::is_whitespace) || value.len() > 256 {
        return Err(bad(format!("`{}` is not a principal.", shown(text))));
    }
    match prefix.as_str() {
        "user" => Ok(PrincipalSpec::User(value.to_string())),
        "group" => Ok(PrincipalSpec::Group(value.to_string())),
        "role" => value
            .to_ascii_uppercase()
            .parse()
            .map(PrincipalSpec::Role)
            .map_err(|_| AdminError::UnknownRole(value.to_string())),
        "email" => match value.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                Ok(PrincipalSpec::Email(value.to_ascii_lowercase()))
            }
            _ => Err(bad(format!("`{}` is not an email address.", shown(value)))),
        },
        _ => Err(bad(format!(
            "`{}:` is not a principal kind.",
            shown(&prefix)
        ))),
    }
}

/// The admin use cases over a store and a clock.
pub struct GovernanceAdmin {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl GovernanceAdmin {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        GovernanceAdmin { store, clock }
    }

    /// A record by vault uid, exact title (any case), or a title prefix only one record has.
    pub async fn find_record(&self, query: &str) -> Result<Record, AdminError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(AdminError::UnknownRecord(String::new()));
        }
        if let Some(record) = self.store.record_by_uid(query).await? {
            return Ok(record);
        }
        let found = self
            .store
            .records_by_title_prefix(query, MAX_CANDIDATES as i64 + 1)
            .await?;
        let exact: Vec<&Record> = found
            .iter()
            .filter(|r| r.title.eq_ignore_ascii_case(query))
            .collect();
        let candidates = if exact.is_empty() {
            found.iter().collect()
        } else {
            exact
        };
        match candidates.as_slice() {
            [] => Err(AdminError::UnknownRecord(query.to_string())),
            [one] => Ok((*one).clone()),
            many => Err(AdminError::AmbiguousRecord {
                query: query.to_string(),
                candidates: many
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(|r| format!("`{}` ({})", r.title, r.vault_uid))
                    .collect(),
            }),
        }
    }

    /// A known person by email, UPN or Entra object id.
    pub async fn find_user(&self, who: &str) -> Result<User, AdminError> {
        let who = who.trim();
        let found = if who.contains('@') {
            self.store.user_by_email(who).await?
        } else {
            self.store.user_by_aad_object_id(who).await?
        };
        found.ok_or_else(|| AdminError::UnknownUser(who.to_string()))
    }

    pub async fn show_authorities(&self, record: &str) -> Result<AuthorityListing, AdminError> {
        let record = self.find_record(record).await?;
        let now = self.clock.now();
        let rows = match self.store.governed_resource_for_record(record.id).await? {
            Some(resource) => self.store.authority_history(resource.id).await?,
            None => Vec::new(),
        };
        let mut lines = Vec::with_capacity(rows.len());
        for authority in rows {
            lines.push(AuthorityLine {
                principal_label: self.principal_label(&authority).await?,
                in_force: in_force(&authority, now),
                authority,
            });
        }
        // In force first, each group oldest first.
        lines.sort_by_key(|l| (!l.in_force, l.authority.id));
        Ok(AuthorityListing {
            record,
            lines,
            at: now,
        })
    }

    pub async fn grant_authority(
        &self,
        actor: &Actor,
        grant: &Grant,
    ) -> Result<Granted, AdminError> {
        let kind: AuthorityKind = grant
            .kind
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| AdminError::UnknownKind(grant.kind.clone()))?;
        let stage = grant.stage.unwrap_or(1);
        if !(1..=MAX_STAGE).contains(&stage) {
            return Err(AdminError::BadStage(stage.to_string()));
        }
        let spec = parse_principal(&grant.principal)?;
        let record = self.find_record(&grant.record).await?;
        let (principal_type, principal, principal_label) = match spec {
            PrincipalSpec::User(who) => {
                let user = self.find_user(&who).await?;
                let label = format!("user {}", user_label(&user));
                (PrincipalType::User, user.aad_object_id, label)
            }
            PrincipalSpec::Group(id) => (PrincipalType::Group, id.clone(), format!("group {id}")),
            PrincipalSpec::Role(role) => (
                PrincipalType::Role,
                role.as_str().to_string(),
                format!("role {role}"),
            ),
            PrincipalSpec::Email(mail) => {
                (PrincipalType::Email, mail.clone(), format!("email {mail}"))
            }
        };
        let now = self.clock.now();
        let resource = self.store.governed_resource_for_record(record.id).await?;
        if let Some(resource) = &resource {
            let duplicate = self
                .store
                .active_authorities(resource.id, now)
                .await?
                .into_iter()
                .find(|a| {
                    a.authority == kind
                        && a.principal_type == principal_type
                        && a.principal.eq_ignore_ascii_case(&principal)
                        && a.stage == stage
                });
            if let Some(existing) = duplicate {
                return Err(AdminError::DuplicateAuthority {
                    record: record.title.clone(),
                    existing: existing.id,
                });
            }
        }
        // Every check has passed. A record nobody governed yet gets the default policies first;
        // that link is idempotent and grants nothing on its own.
        let (resource, newly_governed) = match resource {
            Some(r) => (r, false),
            None => (
                self.store
                    .upsert_governed_resource(
                        record.id,
                        DEFAULT_VISIBILITY_POLICY,
                        DEFAULT_ACCESS_POLICY,
                        DEFAULT_LEASE_POLICY,
                        now,
                    )
                    .await?,
                true,
            ),
        };
        let actor_name = actor.audit_name();
        let audit = NewAuditEvent::new(&actor_name, "AUTHORITY_GRANTED", now)
            .record(record.id)
            .detail(json!({
                "record": record.title,
                "record_uid": record.vault_uid,
                "resource_id": resource.id,
                "newly_governed": newly_governed,
                "old": null,
                "new": {
                    "authority": kind,
                    "principal_type": principal_type,
                    "principal": principal,
                    "principal_label": principal_label,
                    "stage": stage,
                },
            }));
        let authority = self
            .store
            .add_authority(
                &NewAuthority {
                    resource_id: resource.id,
                    authority: kind,
                    principal_type,
                    principal,
                    stage,
                    valid_from: now,
                    valid_to: None,
                    created_by: actor_name,
                },
                &audit,
            )
            .await?;
        Ok(Granted {
            record,
            authority,
            principal_label,
        })
    }

    pub async fn revoke_authority(
        &self,
        actor: &Actor,
        authority_id: i64,
        reason: &str,
    ) -> Result<Revoked, AdminError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(AdminError::BadReason);
        }
        let current = self
            .store
            .authority_by_id(authority_id)
            .await?
            .ok_or(AdminError::UnknownAuthority(authority_id))?;
        if let Some(at) = current.revoked_at {
            return Err(already_revoked(&current, at));
        }
        let resource = self
            .store
            .governed_resource_by_id(current.resource_id)
            .await?
            .ok_or(StoreError::NotFound("governed resource"))?;
        let record = self
            .store
            .record_by_id(resource.record_id)
            .await?
            .ok_or(StoreError::NotFound("record"))?;
        let principal_label = self.principal_label(&current).await?;
        let actor_name = actor.audit_name();
        let now = self.clock.now();
        let audit = NewAuditEvent::new(&actor_name, "AUTHORITY_REVOKED", now)
            .record(record.id)
            .detail(json!({
                "authority_id": current.id,
                "record": record.title,
                "record_uid": record.vault_uid,
                "reason": reason,
                "old": {
                    "authority": current.authority,
                    "principal_type": current.principal_type,
                    "principal": current.principal,
                    "principal_label": principal_label,
                    "stage": current.stage,
                },
                "new": null,
            }));
        let authority = match self
            .store
            .revoke_authority(authority_id, &actor_name, reason, &audit)
            .await
        {
            Ok(a) => a,
            // Someone revoked it between our read and our write.
            Err(StoreError::Conflict(_)) => {
                let now_revoked = self
                    .store
                    .authority_by_id(authority_id)
                    .await?
                    .ok_or(AdminError::UnknownAuthority(authority_id))?;
                let at = now_revoked.revoked_at.unwrap_or(now);
                return Err(already_revoked(&now_revoked, at));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Revoked {
            record,
            authority,
            principal_label,
        })
    }

    pub async fn set_role(
        &self,
        actor: &Actor,
        who: &str,
        role: &str,
    ) -> Result<RoleChange, AdminError> {
        let role: Role = role
            .trim()
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| AdminError::UnknownRole(role.to_string()))?;
        let user = self.find_user(who).await?;
        let old = user.role;
        if old == role {
            return Ok(RoleChange::Unchanged { user });
        }
        let demoting_self = matches!(actor, Actor::User(a) if a.id == user.id);
        if demoting_self
            && old == Role::Admin
            && self.store.users_with_role(Role::Admin).await?.len() <= 1
        {
            return Err(AdminError::LastAdmin);
        }
        let audit = NewAuditEvent::new(actor.audit_name(), "ROLE_CHANGED", self.clock.now())
            .detail(json!({
                "user_id": user.id,
                "user": user_label(&user),
                "old": old,
                "new": role,
            }));
        let user = self.store.set_user_role(user.id, role, &audit).await?;
        Ok(RoleChange::Changed { user, old })
    }

    /// Sets a record's sensitivity, which decides what the access policy asks of new requests
    /// for it (approvals, ticket, second factor, lease caps). A reason is required; the same
    /// level again changes nothing and writes no event.
    pub async fn set_sensitivity(
        &self,
        actor: &Actor,
        record: &str,
        level: &str,
        reason: &str,
    ) -> Result<SensitivityChange, AdminError> {
        let level: Sensitivity = level
            .trim()
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| AdminError::UnknownSensitivity(level.to_string()))?;
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(AdminError::BadReason);
        }
        let record = self.find_record(record).await?;
        let old = record.sensitivity;
        if old == level {
            return Ok(SensitivityChange::Unchanged { record });
        }
        let audit = NewAuditEvent::new(
            actor.audit_name(),
            "RECORD_SENSITIVITY_CHANGED",
            self.clock.now(),
        )
        .record(record.id)
        .detail(json!({
            "record": record.title,
            "record_uid": record.vault_uid,
            "reason": reason,
            "old": old,
            "new": level,
        }));
        match self
            .store
            .set_record_sensitivity(record.id, old, level, &audit)
            .await
        {
            Ok(record) => Ok(SensitivityChange::Changed { record, old }),
            Err(StoreError::Conflict(_)) => Err(AdminError::SensitivityChangedMeanwhile(
                record.title.clone(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// How a row's principal reads: a known user by name and email, the rest as stored.
    /// Names the team channel a GROUP authority's approval cards are posted in (#18.7), or
    /// none (`none`). The channel must be one the bot knows: a stored conversation of type
    /// `channel` (its address came with an activity in that team). Audited as
    /// `APPROVAL_CHANNEL_SET` / `APPROVAL_CHANNEL_CLEARED` with the old and new channel.
    pub async fn name_approval_channel(
        &self,
        actor: &Actor,
        authority_id: i64,
        channel: &str,
    ) -> Result<ChannelChange, AdminError> {
        let authority = self
            .store
            .authority_by_id(authority_id)
            .await?
            .ok_or(AdminError::UnknownAuthority(authority_id))?;
        if authority.revoked_at.is_some() || authority.principal_type != PrincipalType::Group {
            return Err(AdminError::NotGroupAuthority(authority_id));
        }
        let channel = channel.trim();
        let wanted = if channel.eq_ignore_ascii_case("none") {
            None
        } else {
            match self.store.conversation(channel).await? {
                Some(c) if c.conversation_type == "channel" => Some(c),
                _ => return Err(AdminError::UnknownChannel(channel.to_string())),
            }
        };
        let current = self.store.approval_channel(authority_id).await?;
        let old = current.as_ref().map(|c| c.conversation_id.as_str());
        let new = wanted.as_ref().map(|c| c.conversation_id.as_str());
        if old == new {
            return Ok(ChannelChange::Unchanged { authority_id });
        }
        let actor_name = actor.audit_name();
        let action = if new.is_some() {
            "APPROVAL_CHANNEL_SET"
        } else {
            "APPROVAL_CHANNEL_CLEARED"
        };
        let record_id = match self
            .store
            .governed_resource_by_id(authority.resource_id)
            .await?
        {
            Some(resource) => Some(resource.record_id),
            None => None,
        };
        let mut audit = NewAuditEvent::new(&actor_name, action, self.clock.now()).detail(json!({
            "authority_id": authority_id,
            "group": authority.principal,
            "old": old,
            "new": new,
            "team_id": wanted.as_ref().and_then(|c| c.team_id.clone()),
        }));
        if let Some(id) = record_id {
            audit = audit.record(id);
        }
        self.store
            .set_approval_channel(
                authority_id,
                wanted
                    .as_ref()
                    .map(|c| (c.conversation_id.as_str(), c.team_id.as_deref())),
                &actor_name,
                &audit,
            )
            .await?;
        Ok(match wanted {
            Some(c) => ChannelChange::Set {
                authority_id,
                channel: c.conversation_id,
            },
            None => ChannelChange::Cleared { authority_id },
        })
    }

    async fn principal_label(&self, a: &Authority) -> Result<String, AdminError> {
        Ok(match a.principal_type {
            PrincipalType::User => match self.store.user_by_aad_object_id(&a.principal).await? {
                Some(u) => format!("user {}", user_label(&u)),
                None => format!("user {}", a.principal),
            },
            PrincipalType::Group => format!("group {}", a.principal),
            PrincipalType::Role => format!("role {}", a.principal),
            PrincipalType::Email => format!("email {}", a.principal),
        })
    }
}

fn in_force(a: &Authority, at: Timestamp) -> bool {
    a.revoked_at.is_none() && a.valid_from <= at && a.valid_to.is_none_or(|to| to > at)
}

fn already_revoked(a: &Authority, at: Timestamp) -> AdminError {
    AdminError::AlreadyRevoked {
        id: a.id,
        at,
        by: a.revoked_by.clone().unwrap_or_else(|| "?".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_by_prefix_and_bare_emails_are_emails() {
        assert!(
            matches!(parse_principal("user:bob@x.example"), Ok(PrincipalSpec::User(u)) if u == "bob@x.example")
        );
        assert!(
            matches!(parse_principal("GROUP:abc-123"), Ok(PrincipalSpec::Group(g)) if g == "abc-123")
        );
        assert!(matches!(
            parse_principal("role:approver"),
            Ok(PrincipalSpec::Role(Role::Approver))
        ));
        assert!(
            matches!(parse_principal("Ops@X.example"), Ok(PrincipalSpec::Email(e)) if e == "ops@x.example")
        );
        assert!(matches!(
            parse_principal("role:root"),
            Err(AdminError::UnknownRole(_))
        ));
        for bad in ["bob", "team:sre", "user:", "email:nobody", "email:@x"] {
            let err = parse_principal(bad).err().unwrap();
            assert!(
                err.to_string()
                    .contains("`user:<email or Entra object id>`"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn echoed_text_cannot_close_a_code_span_and_is_bounded() {
        assert_eq!(shown("a`b"), "a'b");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 81);
    }
}
