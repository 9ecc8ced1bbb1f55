//! Access review campaigns (#19.2): on a schedule (the `access-reviews` job, quarterly by
//! default) or when an admin asks (`admin review start`), every record with authorities in force
//! gets a review. Its OWNERs get a card listing the record's authority rows (owners, custodians,
//! approvers), who held leases in the period, and break-glass uses still awaiting their
//! after-the-fact review; they keep or remove each row, or confirm the rest.
//!
//! Decisions taken here (also in docs/ARCHITECTURE.md and docs/COMPLIANCE.md):
//! - The period runs from the end of the previous campaign's period (90 days back for the first)
//!   to the campaign's start.
//! - One campaign per fire: the fire key (`cron:<fire time>`, `run:<time>`, `manual:<uuid>`) is
//!   unique, so a re-run of the same fire creates nothing. A new campaign supersedes reviews still
//!   open from an earlier one; their undecided rows are in the new reviews.
//! - Who may answer: the people an OWNER row in force names now (a GROUP through its members).
//!   Admins may answer once the review was escalated to them. Nobody decides the OWNER row that
//!   names themselves, nor reviews their own break-glass use (no one confirms their own access):
//!   another owner or an admin does, so a record with one owner reaches the admins that way.
//! - A record with authorities but no owner anyone can reach is escalated to the admins at once.
//! - Remove on an authority row revokes it (append-only: `revoked_*` set once) in the same
//!   transaction as the decision, with `AUTHORITY_REVOKED`. Keep on a break-glass use accepts it,
//!   Remove flags it: `BREAK_GLASS_REVIEWED` with `{"outcome": "accepted" | "flagged", "reviewer"}`,
//!   and a flagged use alerts the admins.
//! - People who held leases are listed for the owners to see; they are not rows to decide (a lease
//!   that ended grants nothing to remove).
//! - A click on a decided row, a closed review, or by someone who may not answer is answered in
//!   words and changes nothing.

use crate::domain::{AuthorityKind, PrincipalType, Role, Timestamp};
use crate::governance::lifecycle::Lifecycle;
use crate::governance::reports::{csv_record, md_cell};
use crate::notify::{ReviewNotice, ReviewNoticeKind};
use crate::policy::decision::Approver;
use crate::store::{
    AccessReview, Authority, DECISION_KEEP, DECISION_REMOVE, ITEM_AUTHORITY, ITEM_BREAK_GLASS,
    NewAccessReview, NewAuditEvent, NewReviewCampaign, NewReviewDecision, REVIEW_OPEN,
    REVIEW_SUPERSEDED, Record, ReviewCampaign, ReviewDecision, Store, StoreError, User,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use time::Duration;

/// The first campaign looks back this far.
pub const FIRST_PERIOD: Duration = Duration::days(90);
/// The default `access-reviews` schedule: 09:00 UTC on the first day of each quarter.
pub const DEFAULT_SCHEDULE: &str = "0 0 9 1 1,4,7,10 *";

/// Why a review answer was refused. Every variant but `Store` is an answer for the person who
/// clicked; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("There is no access review #{0}.")]
    UnknownReview(i64),
    #[error("Access review #{0} is closed: every row was decided.")]
    Closed(i64),
    #[error(
        "Access review #{0} was replaced by a newer campaign; its open rows are in the new review."
    )]
    Superseded(i64),
    #[error("Only the record's owners can answer access review #{0}.")]
    NotOwner(i64),
    #[error("That row is not part of access review #{0}.")]
    UnknownItem(i64),
    #[error("You cannot decide your own OWNER row; another owner or an admin does.")]
    OwnRow,
    #[error("You cannot review your own break-glass use; another owner or an admin does.")]
    OwnUse,
    #[error("That row was already decided: {0}.")]
    AlreadyDecided(String),
    #[error("Nothing is left for you to confirm on access review #{0}.")]
    NothingLeft(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One row the owners decide, as the review's snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// `AUTHORITY` or `BREAK_GLASS`.
    pub kind: String,
    /// The authority row's id, or the break-glass request's.
    pub id: i64,
    pub title: String,
    pub detail: String,
    /// An OWNER row (nobody decides the one naming themselves).
    #[serde(default)]
    pub owner_row: bool,
    /// Who used break-glass (nobody reviews their own use).
    #[serde(default)]
    pub requester_id: Option<i64>,
}

impl ReviewItem {
    /// Whether `user` may not decide this row: their own OWNER row (`own_rows`) or their own
    /// break-glass use.
    pub fn is_own(&self, user_id: i64, own_rows: &[i64]) -> bool {
        match self.kind.as_str() {
            ITEM_AUTHORITY => own_rows.contains(&self.id),
            _ => self.requester_id == Some(user_id),
        }
    }
}

/// Someone who held a lease on the record in the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseHolder {
    pub name: String,
    pub leases: u32,
}

/// A review as its card shows it.
#[derive(Debug, Clone)]
pub struct ReviewView {
    pub review: AccessReview,
    pub campaign: ReviewCampaign,
    pub record: Record,
    pub items: Vec<(ReviewItem, Option<ReviewDecision>)>,
    pub lease_holders: Vec<LeaseHolder>,
}

impl ReviewView {
    pub fn open(&self) -> bool {
        self.review.status == REVIEW_OPEN
    }

    pub fn undecided(&self) -> usize {
        self.items.iter().filter(|(_, d)| d.is_none()).count()
    }
}

/// A campaign that was started.
#[derive(Debug, Clone)]
pub struct Started {
    pub campaign: ReviewCampaign,
    pub reviews: Vec<AccessReview>,
    /// Cards to send: owners, and admins for records nobody owns.
    pub notices: Vec<ReviewNotice>,
}

/// What a review answer did.
#[derive(Debug, Clone)]
pub struct Decided {
    pub view: ReviewView,
    /// Texts for every admin (a flagged break-glass use).
    pub alerts: Vec<String>,
    pub revoked: Vec<i64>,
}

/// What chasing the open reviews did.
#[derive(Debug, Clone, Default)]
pub struct Chased {
    pub reminded: usize,
    pub escalated: usize,
    pub notices: Vec<ReviewNotice>,
}

/// A campaign's progress: for `admin health` and `passkey report reviews`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignSummary {
    pub campaign_id: i64,
    pub started_at: Timestamp,
    pub started_by: String,
    pub period_from: Timestamp,
    pub period_to: Timestamp,
    pub reviews: usize,
    pub reviews_closed: usize,
    pub reviews_open: usize,
    pub reviews_superseded: usize,
    pub reviews_escalated: usize,
    pub rows: usize,
    pub rows_decided: usize,
    /// Decided rows out of all rows, in whole percent (100 for a campaign with no rows).
    pub completion_percent: u32,
    pub kept: usize,
    pub removed: usize,
    pub break_glass_accepted: usize,
    pub break_glass_flagged: usize,
}

impl CampaignSummary {
    /// One line for `admin health`.
    pub fn line(&self) -> String {
        format!(
            "Campaign #{} ({}): {}% decided, {} of {} reviews open, {} removed",
            self.campaign_id,
            self.started_at
                .to_fixed_text()
                .get(..10)
                .unwrap_or_default(),
            self.completion_percent,
            self.reviews_open,
            self.reviews,
            self.removed + self.break_glass_flagged,
        )
    }
}

/// The access review use cases, over the lifecycle's store, clock and people resolution.
#[derive(Clone)]
pub struct Reviews {
    lifecycle: Arc<Lifecycle>,
}

fn actor(user: &User) -> String {
    crate::governance::lifecycle::actor(user)
}

fn short_date(t: Timestamp) -> String {
    t.to_fixed_text().get(..10).unwrap_or_default().to_string()
}

fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().nth(max).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

fn kind_order(kind: AuthorityKind) -> u8 {
    match kind {
        AuthorityKind::Owner => 0,
        AuthorityKind::Custodian => 1,
        AuthorityKind::Approver => 2,
    }
}

impl Reviews {
    pub fn new(lifecycle: Arc<Lifecycle>) -> Self {
        Reviews { lifecycle }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.lifecycle.store()
    }

    fn now(&self) -> Timestamp {
        self.lifecycle.clock().now()
    }

    /// The record's OWNER rows in force now, and the people they reach.
    async fn owners(&self, record_id: i64) -> Result<(Vec<Authority>, Vec<User>), StoreError> {
        let store = self.store();
        let Some(resource) = store.governed_resource_for_record(record_id).await? else {
            return Ok((vec![], vec![]));
        };
        let rows = store.active_authorities(resource.id, self.now()).await?;
        self.owners_among(rows).await
    }

    /// The OWNER rows among `rows`, and the people they reach.
    async fn owners_among(
        &self,
        rows: Vec<Authority>,
    ) -> Result<(Vec<Authority>, Vec<User>), StoreError> {
        let rows: Vec<Authority> = rows
            .into_iter()
            .filter(|a| a.authority == AuthorityKind::Owner)
            .collect();
        let approvers: Vec<Approver> = rows
            .iter()
            .map(|a| Approver {
                authority_id: a.id,
                kind: a.authority,
                principal_type: a.principal_type,
                principal: a.principal.clone(),
            })
            .collect();
        // 0: no user id, so nobody is left out.
        let people = self.lifecycle.resolve_approvers(&approvers, 0).await?;
        Ok((rows, people))
    }

    async fn label(&self, a: &Authority) -> Result<String, StoreError> {
        Ok(match a.principal_type {
            PrincipalType::User => match self.store().user_by_aad_object_id(&a.principal).await? {
                Some(u) => u.display_name,
                None => format!("user {}", a.principal),
            },
            PrincipalType::Email => a.principal.clone(),
            PrincipalType::Group => format!("group {}", a.principal),
            PrincipalType::Role => format!("everyone with role {}", a.principal),
        })
    }

    async fn user_name(
        &self,
        cache: &mut HashMap<i64, String>,
        id: i64,
    ) -> Result<String, StoreError> {
        if let Some(name) = cache.get(&id) {
            return Ok(name.clone());
        }
        let name = self
            .store()
            .user_by_id(id)
            .await?
            .map(|u| u.display_name)
            .unwrap_or_else(|| format!("user #{id}"));
        cache.insert(id, name.clone());
        Ok(name)
    }

    /// Starts a campaign for fire `fire_key`: `None` when that fire already made one.
    pub async fn start_campaign(
        &self,
        fire_key: &str,
        started_by: &str,
    ) -> Result<Option<Started>, StoreError> {
        let store = self.store().clone();
        let now = self.now();
        let period_from = match store.review_campaigns().await?.first() {
            Some(previous) => previous.period_to,
            None => now.minus(FIRST_PERIOD),
        };
        let mut names = HashMap::new();
        let mut break_glass: BTreeMap<i64, Vec<ReviewItem>> = BTreeMap::new();
        for r in store.break_glass_awaiting_review().await? {
            let who = self.user_name(&mut names, r.requester_id).await?;
            break_glass
                .entry(r.record_id)
                .or_default()
                .push(ReviewItem {
                    kind: ITEM_BREAK_GLASS.into(),
                    id: r.id,
                    title: format!("Break-glass #{} · {who}", r.id),
                    detail: format!(
                        "{} · {}",
                        short_date(r.created_at),
                        clip(&r.justification, 120)
                    ),
                    owner_row: false,
                    requester_id: Some(r.requester_id),
                });
        }
        let mut holders: BTreeMap<i64, BTreeMap<String, u32>> = BTreeMap::new();
        for r in store.leases_between(period_from, now).await? {
            let who = self.user_name(&mut names, r.requester_id).await?;
            *holders
                .entry(r.record_id)
                .or_default()
                .entry(who)
                .or_default() += 1;
        }
        let mut planned = Vec::new();
        let mut owners_by_record = Vec::new();
        for resource in store.governed_resources().await? {
            let mut rows = store.active_authorities(resource.id, now).await?;
            let awaiting = break_glass.remove(&resource.record_id).unwrap_or_default();
            if rows.is_empty() && awaiting.is_empty() {
                continue;
            }
            rows.sort_by_key(|a| (kind_order(a.authority), a.id));
            let mut items = Vec::with_capacity(rows.len() + awaiting.len());
            for a in &rows {
                let stage = if a.stage > 1 {
                    format!("stage {}, ", a.stage)
                } else {
                    String::new()
                };
                items.push(ReviewItem {
                    kind: ITEM_AUTHORITY.into(),
                    id: a.id,
                    title: format!("{} · {}", a.authority, self.label(a).await?),
                    detail: format!("{stage}since {}", short_date(a.valid_from)),
                    owner_row: a.authority == AuthorityKind::Owner,
                    requester_id: None,
                });
            }
            items.extend(awaiting);
            let lease_holders: Vec<LeaseHolder> = holders
                .remove(&resource.record_id)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, leases)| LeaseHolder { name, leases })
                .collect();
            let (_, owners) = self.owners_among(rows).await?;
            planned.push(NewAccessReview {
                record_id: resource.record_id,
                items: json!(items),
                lease_holders: json!(lease_holders),
                escalated: owners.is_empty(),
            });
            owners_by_record.push(owners);
        }
        let unowned: Vec<i64> = planned
            .iter()
            .filter(|r| r.escalated)
            .map(|r| r.record_id)
            .collect();
        let audit =
            NewAuditEvent::new(started_by, "ACCESS_REVIEW_CAMPAIGN_STARTED", now).detail(json!({
                "fire_key": fire_key,
                "period_from": period_from.to_fixed_text(),
                "period_to": now.to_fixed_text(),
                "reviews": planned.len(),
                "escalated_unowned_records": unowned,
            }));
        let campaign = NewReviewCampaign {
            fire_key: fire_key.to_string(),
            started_by: started_by.to_string(),
            period_from,
            period_to: now,
            at: now,
        };
        let Some((campaign, reviews)) = store
            .create_review_campaign(&campaign, &planned, &audit)
            .await?
        else {
            return Ok(None);
        };
        let admins = store.users_with_role(Role::Admin).await?;
        let mut notices = Vec::new();
        for (review, owners) in reviews.iter().zip(owners_by_record) {
            let (people, kind) = if review.escalated_at.is_some() {
                (admins.clone(), ReviewNoticeKind::Escalated)
            } else {
                (owners, ReviewNoticeKind::Review)
            };
            notices.extend(people.into_iter().map(|u| ReviewNotice {
                user_id: u.id,
                review_id: review.id,
                kind,
            }));
        }
        Ok(Some(Started {
            campaign,
            reviews,
            notices,
        }))
    }

    /// The review as its card shows it, if it exists.
    pub async fn view(&self, review_id: i64) -> Result<Option<ReviewView>, StoreError> {
        view(self.store().as_ref(), review_id).await
    }

    /// The OWNER rows of the review that name `user` (they get no buttons there).
    pub async fn own_rows(&self, user: &User, view: &ReviewView) -> Result<Vec<i64>, StoreError> {
        let mut rows = Vec::new();
        for (item, _) in &view.items {
            if item.kind == ITEM_AUTHORITY
                && item.owner_row
                && let Some(a) = self.store().authority_by_id(item.id).await?
            {
                rows.push(a);
            }
        }
        self.lifecycle.rows_naming(user, &rows).await
    }

    /// Checks that `user` may answer an open review; returns it with the OWNER rows naming them.
    async fn answerable(
        &self,
        user: &User,
        review_id: i64,
    ) -> Result<(ReviewView, Vec<i64>), ReviewError> {
        let view = self
            .view(review_id)
            .await?
            .ok_or(ReviewError::UnknownReview(review_id))?;
        match view.review.status.as_str() {
            REVIEW_OPEN => {}
            REVIEW_SUPERSEDED => return Err(ReviewError::Superseded(review_id)),
            _ => return Err(ReviewError::Closed(review_id)),
        }
        let (owner_rows, _) = self.owners(view.record.id).await?;
        let mine = self.lifecycle.rows_naming(user, &owner_rows).await?;
        let admin_may = user.role == Role::Admin && view.review.escalated_at.is_some();
        if mine.is_empty() && !admin_may {
            return Err(ReviewError::NotOwner(review_id));
        }
        Ok((view, mine))
    }

    /// The decision row for `item`, with its events (and the revocation for a removed authority).
    async fn decision(
        &self,
        user: &User,
        view: &ReviewView,
        item: &ReviewItem,
        keep: bool,
    ) -> Result<(NewReviewDecision, Option<String>), StoreError> {
        let now = self.now();
        let review = &view.review;
        let record = &view.record;
        let decision = if keep { DECISION_KEEP } else { DECISION_REMOVE };
        let (audit, revoke, alert) = if item.kind == ITEM_BREAK_GLASS {
            let outcome = if keep { "accepted" } else { "flagged" };
            let audit = NewAuditEvent::new(actor(user), "BREAK_GLASS_REVIEWED", now)
                .request(item.id)
                .record(record.id)
                .detail(json!({
                    "outcome": outcome,
                    "reviewer": user.display_name,
                    "review_id": review.id,
                }));
            let alert = (!keep).then(|| {
                format!(
                    "{} flagged break-glass use #{} of {} in access review #{}. Look at what was \
                     done with it (`passkey report access` lists its retrievals) and follow up.",
                    user.display_name, item.id, record.title, review.id
                )
            });
            (audit, None, alert)
        } else {
            let audit = NewAuditEvent::new(actor(user), "ACCESS_REVIEW_DECIDED", now)
                .record(record.id)
                .detail(json!({
                    "review_id": review.id,
                    "campaign_id": review.campaign_id,
                    "authority_id": item.id,
                    "row": item.title,
                    "decision": decision,
                }));
            let revoke = match (keep, self.store().authority_by_id(item.id).await?) {
                (false, Some(a)) => {
                    let reason = format!("removed in access review #{}", review.id);
                    let revoked = NewAuditEvent::new(actor(user), "AUTHORITY_REVOKED", now)
                        .record(record.id)
                        .detail(json!({
                            "authority_id": a.id,
                            "record": record.title,
                            "record_uid": record.vault_uid,
                            "reason": reason,
                            "review_id": review.id,
                            "old": {
                                "authority": a.authority,
                                "principal_type": a.principal_type,
                                "principal": a.principal,
                                "principal_label": item.title,
                                "stage": a.stage,
                            },
                            "new": null,
                        }));
                    Some((a.id, reason, revoked))
                }
                _ => None,
            };
            (audit, revoke, None)
        };
        Ok((
            NewReviewDecision {
                item_kind: item.kind.clone(),
                item_id: item.id,
                decision: decision.into(),
                decided_by: Some(user.id),
                decided_by_name: user.display_name.clone(),
                audit,
                revoke,
            },
            alert,
        ))
    }

    async fn write(
        &self,
        view: &ReviewView,
        decisions: Vec<(NewReviewDecision, Option<String>)>,
    ) -> Result<Decided, ReviewError> {
        let review_id = view.review.id;
        let (rows, alerts): (Vec<NewReviewDecision>, Vec<Option<String>>) =
            decisions.into_iter().unzip();
        let write = match self
            .store()
            .record_review_decisions(review_id, &rows, view.items.len() as i64, self.now())
            .await
        {
            Ok(write) => write,
            // Closed or superseded between our read and our write.
            Err(StoreError::Conflict(_)) => {
                return Err(match self.store().access_review(review_id).await? {
                    Some(r) if r.status == REVIEW_SUPERSEDED => ReviewError::Superseded(review_id),
                    _ => ReviewError::Closed(review_id),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let alerts = rows
            .iter()
            .zip(alerts)
            .filter(|(d, _)| {
                write
                    .recorded
                    .iter()
                    .any(|(k, id)| *k == d.item_kind && *id == d.item_id)
            })
            .filter_map(|(_, a)| a)
            .collect();
        if write.recorded.is_empty() {
            return Err(ReviewError::AlreadyDecided(
                "someone decided it just now".into(),
            ));
        }
        let view = self
            .view(review_id)
            .await?
            .ok_or(ReviewError::UnknownReview(review_id))?;
        Ok(Decided {
            view,
            alerts,
            revoked: write.revoked,
        })
    }

    /// Keep (`keep`) or remove one row of a review.
    pub async fn decide(
        &self,
        user: &User,
        review_id: i64,
        kind: &str,
        item_id: i64,
        keep: bool,
    ) -> Result<Decided, ReviewError> {
        let (view, mine) = self.answerable(user, review_id).await?;
        let Some((item, decided)) = view
            .items
            .iter()
            .find(|(i, _)| i.kind == kind && i.id == item_id)
        else {
            return Err(ReviewError::UnknownItem(review_id));
        };
        if let Some(d) = decided {
            return Err(ReviewError::AlreadyDecided(decided_words(d)));
        }
        if item.is_own(user.id, &mine) {
            return Err(if item.kind == ITEM_AUTHORITY {
                ReviewError::OwnRow
            } else {
                ReviewError::OwnUse
            });
        }
        let decision = self.decision(user, &view, item, keep).await?;
        self.write(&view, vec![decision]).await
    }

    /// Keeps every undecided row among `shown` (the rows the card showed: never one the person
    /// did not see), except their own OWNER row and their own break-glass use.
    pub async fn confirm_rest(
        &self,
        user: &User,
        review_id: i64,
        shown: &[(String, i64)],
    ) -> Result<Decided, ReviewError> {
        let (view, mine) = self.answerable(user, review_id).await?;
        let mut decisions = Vec::new();
        for (item, decided) in &view.items {
            let on_card = shown
                .iter()
                .any(|(k, id)| *k == item.kind && *id == item.id);
            if decided.is_none() && on_card && !item.is_own(user.id, &mine) {
                decisions.push(self.decision(user, &view, item, true).await?);
            }
        }
        if decisions.is_empty() {
            return Err(ReviewError::NothingLeft(review_id));
        }
        self.write(&view, decisions).await
    }

    /// Reminds the owners of reviews open longer than `review_reminder_after_secs` (once), and
    /// escalates those open longer than `review_escalate_after_secs` to the admins (once).
    pub async fn chase(&self) -> Result<Chased, StoreError> {
        let now = self.now();
        let s = self.lifecycle.settings();
        let remind_after = Duration::seconds(s.review_reminder_after_secs as i64);
        let escalate_after = Duration::seconds(s.review_escalate_after_secs as i64);
        let mut chased = Chased::default();
        for review in self.store().open_reviews().await? {
            let age = now.since(review.created_at);
            if review.escalated_at.is_none() && age >= escalate_after {
                let audit =
                    NewAuditEvent::new("system:access-reviews", "ACCESS_REVIEW_ESCALATED", now)
                        .record(review.record_id)
                        .detail(
                            json!({ "review_id": review.id, "waited_secs": age.whole_seconds() }),
                        );
                if self
                    .store()
                    .mark_review_chased(review.id, true, &audit)
                    .await?
                {
                    chased.escalated += 1;
                    let admins = self.store().users_with_role(Role::Admin).await?;
                    chased
                        .notices
                        .extend(admins.into_iter().map(|u| ReviewNotice {
                            user_id: u.id,
                            review_id: review.id,
                            kind: ReviewNoticeKind::Escalated,
                        }));
                }
            } else if review.escalated_at.is_none()
                && review.reminded_at.is_none()
                && age >= remind_after
            {
                let audit =
                    NewAuditEvent::new("system:access-reviews", "ACCESS_REVIEW_REMINDED", now)
                        .record(review.record_id)
                        .detail(
                            json!({ "review_id": review.id, "waited_secs": age.whole_seconds() }),
                        );
                if self
                    .store()
                    .mark_review_chased(review.id, false, &audit)
                    .await?
                {
                    chased.reminded += 1;
                    let (_, owners) = self.owners(review.record_id).await?;
                    chased
                        .notices
                        .extend(owners.into_iter().map(|u| ReviewNotice {
                            user_id: u.id,
                            review_id: review.id,
                            kind: ReviewNoticeKind::Reminder,
                        }));
                }
            }
        }
        Ok(chased)
    }
}

/// "kept by Bob on 2026-11-23".
pub fn decided_words(d: &ReviewDecision) -> String {
    let what = match (d.item_kind.as_str(), d.decision.as_str()) {
        (ITEM_BREAK_GLASS, DECISION_KEEP) => "accepted",
        (ITEM_BREAK_GLASS, _) => "flagged",
        (_, DECISION_KEEP) => "kept",
        _ => "removed",
    };
    format!(
        "{what} by {} on {}",
        d.decided_by_name,
        short_date(d.decided_at)
    )
}

/// The review as its card shows it, if it exists.
pub async fn view(store: &dyn Store, review_id: i64) -> Result<Option<ReviewView>, StoreError> {
    let Some(review) = store.access_review(review_id).await? else {
        return Ok(None);
    };
    let campaign = store
        .review_campaign(review.campaign_id)
        .await?
        .ok_or(StoreError::NotFound("review campaign"))?;
    let record = store
        .record_by_id(review.record_id)
        .await?
        .ok_or(StoreError::NotFound("record"))?;
    let items: Vec<ReviewItem> = serde_json::from_value(review.items.0.clone())
        .map_err(|e| StoreError::Invalid(format!("review {review_id} items: {e}")))?;
    let lease_holders: Vec<LeaseHolder> = serde_json::from_value(review.lease_holders.0.clone())
        .map_err(|e| StoreError::Invalid(format!("review {review_id} lease holders: {e}")))?;
    let decisions = store.review_decisions(review_id).await?;
    let items = items
        .into_iter()
        .map(|i| {
            let d = decisions
                .iter()
                .find(|d| d.item_kind == i.kind && d.item_id == i.id)
                .cloned();
            (i, d)
        })
        .collect();
    Ok(Some(ReviewView {
        review,
        campaign,
        record,
        items,
        lease_holders,
    }))
}

/// The summary of campaign `campaign_id`, or of the latest campaign; `None` when there is none.
pub async fn summary(
    store: &dyn Store,
    campaign_id: Option<i64>,
) -> Result<Option<CampaignSummary>, StoreError> {
    let campaign = match campaign_id {
        Some(id) => store.review_campaign(id).await?,
        None => store.review_campaigns().await?.into_iter().next(),
    };
    let Some(campaign) = campaign else {
        return Ok(None);
    };
    let reviews = store.reviews_in_campaign(campaign.id).await?;
    let decisions = store.decisions_in_campaign(campaign.id).await?;
    let rows: usize = reviews
        .iter()
        .map(|r| r.items.0.as_array().map_or(0, Vec::len))
        .sum();
    let count = |kind: &str, decision: &str| {
        decisions
            .iter()
            .filter(|d| d.item_kind == kind && d.decision == decision)
            .count()
    };
    let status = |s: &str| reviews.iter().filter(|r| r.status == s).count();
    let completion_percent = (decisions.len() * 100)
        .checked_div(rows)
        .map_or(100, |p| p as u32);
    Ok(Some(CampaignSummary {
        campaign_id: campaign.id,
        started_at: campaign.created_at,
        started_by: campaign.started_by.clone(),
        period_from: campaign.period_from,
        period_to: campaign.period_to,
        reviews: reviews.len(),
        reviews_closed: status(crate::store::REVIEW_CLOSED),
        reviews_open: status(REVIEW_OPEN),
        reviews_superseded: status(REVIEW_SUPERSEDED),
        reviews_escalated: reviews.iter().filter(|r| r.escalated_at.is_some()).count(),
        rows,
        rows_decided: decisions.len(),
        completion_percent,
        kept: count(ITEM_AUTHORITY, DECISION_KEEP),
        removed: count(ITEM_AUTHORITY, DECISION_REMOVE),
        break_glass_accepted: count(ITEM_BREAK_GLASS, DECISION_KEEP),
        break_glass_flagged: count(ITEM_BREAK_GLASS, DECISION_REMOVE),
    }))
}

/// Every campaign's summary, newest first (`passkey report reviews`).
pub async fn summaries(store: &dyn Store) -> Result<Vec<CampaignSummary>, StoreError> {
    let mut out = Vec::new();
    for campaign in store.review_campaigns().await? {
        out.extend(summary(store, Some(campaign.id)).await?);
    }
    Ok(out)
}

/// The summary columns, in order, as the CSV and Markdown reports name them.
const SUMMARY_COLUMNS: [&str; 17] = [
    "campaign_id",
    "started_at",
    "started_by",
    "period_from",
    "period_to",
    "reviews",
    "reviews_closed",
    "reviews_open",
    "reviews_superseded",
    "reviews_escalated",
    "rows",
    "rows_decided",
    "completion_percent",
    "kept",
    "removed",
    "break_glass_accepted",
    "break_glass_flagged",
];

impl CampaignSummary {
    fn cells(&self) -> [String; 17] {
        [
            self.campaign_id.to_string(),
            self.started_at.to_fixed_text(),
            self.started_by.clone(),
            self.period_from.to_fixed_text(),
            self.period_to.to_fixed_text(),
            self.reviews.to_string(),
            self.reviews_closed.to_string(),
            self.reviews_open.to_string(),
            self.reviews_superseded.to_string(),
            self.reviews_escalated.to_string(),
            self.rows.to_string(),
            self.rows_decided.to_string(),
            self.completion_percent.to_string(),
            self.kept.to_string(),
            self.removed.to_string(),
            self.break_glass_accepted.to_string(),
            self.break_glass_flagged.to_string(),
        ]
    }
}

/// The summaries as CSV: a header row, then one row per campaign, CRLF line ends.
pub fn summaries_csv(summaries: &[CampaignSummary]) -> String {
    // The access report's writer: one RFC 4180 writer and one formula guard for every report.
    let mut out = csv_record(&SUMMARY_COLUMNS);
    for s in summaries {
        out.push_str(&csv_record(&s.cells()));
    }
    out
}

/// The summaries as a Markdown table.
pub fn summaries_markdown(summaries: &[CampaignSummary]) -> String {
    let mut out = format!("| {} |\n", SUMMARY_COLUMNS.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(SUMMARY_COLUMNS.len())));
    for s in summaries {
        let cells: Vec<String> = s.cells().iter().map(|c| md_cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarterly_default_schedule_parses() {
        let cron = crate::config::CronSchedule::parse(DEFAULT_SCHEDULE).unwrap();
        assert_eq!(
            cron.next_after(time::macros::datetime!(2026-12-06 16:00 UTC)),
            Some(time::macros::datetime!(2027-01-01 09:00 UTC))
        );
        assert_eq!(
            cron.next_after(time::macros::datetime!(2027-01-01 09:00 UTC)),
            Some(time::macros::datetime!(2027-04-01 09:00 UTC))
        );
    }
}
