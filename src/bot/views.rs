//! What a person sees in Teams, built from the database as it is now: one function per card.
//! The same functions answer typed commands, card buttons and `refresh` invokes, so a card looks
//! the same however it was asked for.

use super::{BotState, ChannelAuthMode};
use crate::cards::Card;
use crate::cards::{
    self, AdminHealthCard, HealthCheck, HelpCard, MyRequestsCard, PendingApprovalsCard,
    PendingItem, RecordSearchCard, RequestFormCard, RequestStatusCard, TriageItem, TriageQueueCard,
};
use crate::domain::RequestStatus;
use crate::error::ApiError;
use crate::governance::lifecycle::{LifecycleError, Standing};
use crate::store::{Record, Request, Store, User};

/// The kind recorded for approval cards in `sent_cards`.
pub const APPROVAL_CARD: &str = "approval";
/// The kind recorded for the approval card posted in a team channel (#18.7): one copy for
/// everyone there, addressed to nobody in particular.
pub const CHANNEL_APPROVAL_CARD: &str = "approval-channel";

/// How many of a person's requests `my requests` looks at.
const MY_REQUESTS_LIMIT: i64 = 25;
/// How many waiting requests `pending` looks through.
const PENDING_SCAN_LIMIT: i64 = 200;

fn rendered(card: Result<Card, cards::CardError>) -> Result<Card, ApiError> {
    card.map_err(ApiError::internal)
}

pub fn help(user: Option<&User>) -> Result<Card, ApiError> {
    rendered(cards::render_help(&HelpCard::for_user(user)))
}

pub fn welcome(display_name: Option<&str>) -> Result<Card, ApiError> {
    rendered(cards::render_welcome(&cards::WelcomeCard::new(
        display_name,
    )))
}

/// The welcome card for someone the bot knows: an approver's lists what waits for their decision.
pub async fn welcome_for(
    state: &BotState,
    display_name: Option<&str>,
    user: Option<&User>,
) -> Result<Card, ApiError> {
    let waiting = match user {
        Some(user) => pending_items(state, user).await?,
        None => Vec::new(),
    };
    rendered(cards::render_welcome(
        &cards::WelcomeCard::new(display_name).with_waiting(waiting),
    ))
}

/// The card for what waited for an approver the bot could not reach before ("2 requests wait
/// for you", each with Review), from their waiting notices: the requests that still wait for
/// their decision. `None` when nothing does (the notices are closed as no longer applying); the
/// caller sends the card and then closes them with [`close_waiting`].
pub async fn waiting_for(state: &BotState, user: &User) -> Result<Option<Card>, ApiError> {
    let notices = state.store.waiting_notices_for_user(user.id).await?;
    if notices.is_empty() {
        return Ok(None);
    }
    let mut items: Vec<PendingItem> = Vec::new();
    let mut seen = Vec::new();
    for notice in &notices {
        let Some(id) = notice.request_id else {
            continue;
        };
        let Some(r) = state.store.request_by_id(id).await? else {
            continue;
        };
        let waits = matches!(
            r.status,
            RequestStatus::Pending | RequestStatus::RenewalPending
        ) && state.lifecycle.standing(user, &r).await? == Standing::Approver;
        if !waits || seen.contains(&id) {
            continue;
        }
        let Some(record) = state.store.record_by_id(r.record_id).await? else {
            continue;
        };
        seen.push(id);
        let requester = display_name(state.store.as_ref(), r.requester_id).await?;
        items.push(PendingItem::new(&r, &record, &requester));
    }
    if items.is_empty() {
        close_waiting(state, user, false).await?;
        return Ok(None);
    }
    rendered(cards::render_pending_approvals(
        &PendingApprovalsCard::waiting(items),
    ))
    .map(Some)
}

/// Closes every notice waiting for `user`: delivered, or no longer applying.
pub async fn close_waiting(state: &BotState, user: &User, delivered: bool) -> Result<(), ApiError> {
    Ok(state
        .conversations
        .close_waiting_notices(user.id, delivered)
        .await?)
}

/// Records the person may request — in vault folders their effective permissions cover (their own
/// ACL entries, their Entra groups; admins: every folder) — and whether that list may be short
/// because their groups could not be read.
async fn requestable_records(
    state: &BotState,
    user: &User,
    search: Option<&str>,
) -> Result<(Vec<Record>, bool), ApiError> {
    let permissions = state.permissions.effective(user).await?;
    let needle = search.map(str::to_lowercase);
    let records = state
        .store
        .list_records()
        .await?
        .into_iter()
        .filter(|r| r.folder_id.is_some_and(|f| permissions.may_request(f)))
        .filter(|r| {
            needle
                .as_ref()
                .is_none_or(|n| r.title.to_lowercase().contains(n))
        })
        .collect();
    Ok((records, permissions.degraded))
}

const GROUPS_UNREAD: &str = "Your group memberships could not be checked just now, so records shared with your groups may be missing.";

/// `records [SEARCH]`.
pub async fn records(
    state: &BotState,
    user: &User,
    search: Option<&str>,
) -> Result<Card, ApiError> {
    let (records, degraded) = requestable_records(state, user, search).await?;
    let mut view = RecordSearchCard::new(search, &records);
    if degraded {
        view = view.with_note(GROUPS_UNREAD);
    }
    rendered(cards::render_record_search(&view))
}

/// The request form: the records the person may request, durations up to the longest lease the
/// policy allows for any of them (the policy still caps each request by its record's sensitivity).
pub async fn request_form(
    state: &BotState,
    user: &User,
    record: Option<&str>,
    problem: Option<&str>,
) -> Result<Card, ApiError> {
    let (records, degraded) = requestable_records(state, user, None).await?;
    let (mut view, _) = blank_form(state.policy.policy(), &records);
    if let Some(uid) = record {
        view = view.with_record(uid);
    }
    match (problem, degraded) {
        (Some(p), _) => view = view.with_problem(p),
        (None, true) => view = view.with_problem(GROUPS_UNREAD),
        (None, false) => {}
    }
    rendered(cards::render_request_form(&view))
}

/// What was typed for a request that had an input error, to fill the form again with.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// The record as typed (vault uid or title).
    pub record: String,
    pub duration_secs: Option<i64>,
    pub justification: Option<String>,
    pub ticket: Option<String>,
}

/// The request form again after an input error: `problem` on it, and what was typed filled in
/// (a duration over the record's cap becomes the cap).
pub async fn request_form_again(
    state: &BotState,
    user: &User,
    answers: &Answers,
    problem: &str,
) -> Result<Card, ApiError> {
    let (records, _) = requestable_records(state, user, None).await?;
    let policy = state.policy.policy();
    let (view, cap) = blank_form(policy, &records);
    let typed = answers.record.trim();
    let chosen = records
        .iter()
        .find(|r| r.vault_uid == typed)
        .or_else(|| records.iter().find(|r| r.title.eq_ignore_ascii_case(typed)));
    let record_cap = chosen.map_or(cap, |r| policy.max_lease_secs(r.sensitivity));
    // The typed-command hints' backticks go at render time (card text has no inline code).
    let mut view = view
        .with_answers(
            answers.duration_secs,
            record_cap,
            answers.justification.as_deref(),
            answers.ticket.as_deref(),
        )
        .with_problem(problem);
    if let Some(r) = chosen {
        view = view.with_record(&r.vault_uid);
    }
    rendered(cards::render_request_form(&view))
}

/// The request form over `records` with nothing chosen, and the longest lease any of them allows
/// (the form's own cap; each record's cap is named on its durations).
fn blank_form(policy: &crate::policy::PolicySet, records: &[Record]) -> (RequestFormCard, i64) {
    let cap = records
        .iter()
        .map(|r| policy.max_lease_secs(r.sensitivity))
        .max()
        .unwrap_or(policy.lease.default_lease_secs);
    let form = RequestFormCard::new(records, cap, policy.lease.default_lease_secs)
        .with_record_caps(records, |s| policy.max_lease_secs(s))
        .with_min_justification(min_justification(policy));
    (form, cap)
}

/// The justification length the policy asks for (0 when none is required).
fn min_justification(policy: &crate::policy::PolicySet) -> usize {
    let reason = &policy.access.reason;
    if reason.justification_required {
        reason.min_justification_chars
    } else {
        0
    }
}

/// The requester's card for one request as it is now.
pub async fn request_status(
    store: &dyn Store,
    request: &Request,
    record: &Record,
    base_url: &str,
) -> Result<Card, ApiError> {
    let folder = match record.folder_id {
        Some(id) => store.folder_by_id(id).await?.map(|f| f.name),
        None => None,
    };
    let (asked, unreached) = reach(store, request).await?;
    let posted = store
        .sent_cards_for_request(request.id)
        .await?
        .iter()
        .any(|c| c.card_kind == CHANNEL_APPROVAL_CARD);
    let missed = store.channel_misses_for_request(request.id).await? > 0;
    rendered(cards::render_request_status(
        &RequestStatusCard::new(request, record, folder.as_deref(), base_url)
            .with_reach(&asked, &unreached)
            .with_channels(posted, missed),
    ))
}

/// Who was asked to decide a waiting request (their approval card was delivered, or their
/// notice was when they first talked to the bot) and who could not be reached yet (their notice
/// still waits for them), by name.
async fn reach(
    store: &dyn Store,
    request: &Request,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    if !matches!(
        request.status,
        RequestStatus::Pending | RequestStatus::RenewalPending
    ) {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut asked_ids = Vec::new();
    for card in store.sent_cards_for_request(request.id).await? {
        if let Some(id) = card
            .recipient_user_id
            .filter(|_| card.card_kind == APPROVAL_CARD)
            && !asked_ids.contains(&id)
        {
            asked_ids.push(id);
        }
    }
    let notices = store.kept_notices_for_request(request.id).await?;
    // A notice delivered later (when they first talked to the bot) asked them too.
    for notice in notices.iter().filter(|n| n.status == "SENT") {
        if !asked_ids.contains(&notice.user_id) {
            asked_ids.push(notice.user_id);
        }
    }
    let mut unreached_ids = Vec::new();
    for notice in notices.iter().filter(|n| n.status == "PENDING") {
        if !asked_ids.contains(&notice.user_id) && !unreached_ids.contains(&notice.user_id) {
            unreached_ids.push(notice.user_id);
        }
    }
    let mut asked = Vec::with_capacity(asked_ids.len());
    for id in asked_ids {
        asked.push(display_name(store, id).await?);
    }
    let mut unreached = Vec::with_capacity(unreached_ids.len());
    for id in unreached_ids {
        unreached.push(display_name(store, id).await?);
    }
    Ok((asked, unreached))
}

/// A request's status card in a group chat or channel: it refreshes for the requester alone
/// (see [`RequestStatusCard::refresh_for`]).
pub async fn request_status_in_group(
    store: &dyn Store,
    request: &Request,
    record: &Record,
    base_url: &str,
    requester_teams_id: &str,
) -> Result<Card, ApiError> {
    let folder = match record.folder_id {
        Some(id) => store.folder_by_id(id).await?.map(|f| f.name),
        None => None,
    };
    let view = RequestStatusCard::new(request, record, folder.as_deref(), base_url)
        .refresh_for(&[requester_teams_id.to_string()]);
    rendered(cards::render_request_status(&view))
}

/// `my requests`: the latest requests with Release / Extend where they apply.
pub async fn my_requests(state: &BotState, user: &User) -> Result<Card, ApiError> {
    let requests = state
        .store
        .requests_for_requester(user.id, MY_REQUESTS_LIMIT)
        .await?;
    let mut titled = Vec::with_capacity(requests.len());
    for r in &requests {
        let title = state
            .store
            .record_by_id(r.record_id)
            .await?
            .map(|rec| rec.title)
            .unwrap_or_default();
        titled.push((r, title));
    }
    rendered(cards::render_my_requests(
        &MyRequestsCard::new(titled.iter().map(|(r, t)| (*r, t.as_str())))
            .with_retrieve(&requests, &state.settings.public_base_url()),
    ))
}

/// `pending`: requests waiting for a decision that this person approves — by the same rule
/// that decides who may see a request (`Lifecycle::standing`), so the list shows nobody a
/// request they could not open. The policy decides again on the tap.
pub async fn pending(state: &BotState, user: &User) -> Result<Card, ApiError> {
    rendered(cards::render_pending_approvals(&PendingApprovalsCard::new(
        pending_items(state, user).await?,
    )))
}

/// The requests waiting for this person's decision (see [`pending`]).
async fn pending_items(state: &BotState, user: &User) -> Result<Vec<PendingItem>, ApiError> {
    let waiting = state
        .store
        .requests_in_status(
            &[RequestStatus::Pending, RequestStatus::RenewalPending],
            PENDING_SCAN_LIMIT,
        )
        .await?;
    let mut items = Vec::new();
    for r in &waiting {
        if state.lifecycle.standing(user, r).await? != Standing::Approver {
            continue;
        }
        let Some(record) = state.store.record_by_id(r.record_id).await? else {
            continue;
        };
        let requester = display_name(state.store.as_ref(), r.requester_id).await?;
        items.push(PendingItem::new(r, &record, &requester));
    }
    Ok(items)
}

/// What a card calls a person ("Someone" for a user row that is gone).
async fn display_name(store: &dyn Store, user_id: i64) -> Result<String, ApiError> {
    Ok(store
        .user_by_id(user_id)
        .await?
        .map(|u| u.display_name)
        .unwrap_or_else(|| "Someone".into()))
}

/// `admin triage`: requests waiting for an admin, oldest first.
pub async fn triage_queue(state: &BotState) -> Result<Card, ApiError> {
    let queue = state
        .lifecycle
        .triage_queue(25)
        .await
        .map_err(|e| match e {
            LifecycleError::Store(e) => ApiError::from(e),
            other => ApiError::internal(other),
        })?;
    let mut items = Vec::with_capacity(queue.len());
    for r in &queue {
        let Some(record) = state.store.record_by_id(r.record_id).await? else {
            continue;
        };
        let requester = display_name(state.store.as_ref(), r.requester_id).await?;
        items.push(TriageItem::new(r, &record, &requester));
    }
    rendered(cards::render_triage_queue(&TriageQueueCard::new(items)))
}

/// Shares whose removal kept failing ([`crate::jobs::REVOKE_ATTEMPTS_BEFORE_ALERT`] tries or
/// more): their links may still open. A count and the requests (never a share id or URL).
async fn unremovable_shares_check(state: &BotState) -> HealthCheck {
    const LISTED: i64 = 10;
    let name = "Share removal";
    match state
        .store
        .unremovable_shares(crate::jobs::REVOKE_ATTEMPTS_BEFORE_ALERT, LISTED + 1)
        .await
    {
        Ok(stuck) if stuck.is_empty() => HealthCheck::new(name, true, "every ended share removed"),
        Ok(stuck) => {
            let listed: Vec<String> = stuck
                .iter()
                .take(LISTED as usize)
                .map(|s| format!("#{} ({} tries)", s.request_id, s.revoke_attempts))
                .collect();
            let more = if stuck.len() > LISTED as usize {
                ", and more"
            } else {
                ""
            };
            HealthCheck::new(
                name,
                false,
                &format!(
                    "{}{} could not be removed after {}+ tries; links may still open: {}{more}",
                    listed.len(),
                    if more.is_empty() { "" } else { "+" },
                    crate::jobs::REVOKE_ATTEMPTS_BEFORE_ALERT,
                    listed.join(", ")
                ),
            )
        }
        Err(_) => HealthCheck::new(name, false, "unknown: database unreachable"),
    }
}

/// `admin health`: what this instance is configured with (never a secret), whether the database
/// and its migrations are right, and the last run of each scheduled job.
/// The latest access review campaign: how far it got (#19.2).
async fn access_review_check(state: &BotState) -> HealthCheck {
    match crate::governance::reviews::summary(state.store.as_ref(), None).await {
        Ok(Some(summary)) => HealthCheck::new("Access reviews", true, &summary.line()),
        Ok(None) => HealthCheck::new("Access reviews", true, "no campaign yet"),
        Err(_) => HealthCheck::new("Access reviews", false, "unknown: database unreachable"),
    }
}

/// An access review's card for a reader: `own_rows` are the OWNER rows naming them (no buttons
/// there, nor on their own break-glass uses), `note` a line above the facts (why they get it, or what just happened).
pub fn access_review_card(
    view: &crate::governance::reviews::ReviewView,
    reader_id: i64,
    own_rows: &[i64],
    note: Option<&str>,
) -> Result<Card, ApiError> {
    use crate::governance::reviews::decided_words;
    let open = view.open();
    let status = match view.review.status.as_str() {
        crate::store::REVIEW_OPEN => format!(
            "open: {} of {} rows to decide{}",
            view.undecided(),
            view.items.len(),
            if view.review.escalated_at.is_some() {
                ", escalated to admins"
            } else {
                ""
            }
        ),
        crate::store::REVIEW_SUPERSEDED => "replaced by a newer campaign".to_string(),
        _ => "closed: every row decided".to_string(),
    };
    let rows = view
        .items
        .iter()
        .map(|(item, decision)| cards::ReviewRowInput {
            kind: item.kind.clone(),
            id: item.id,
            title: item.title.clone(),
            detail: item.detail.clone(),
            decided: decision.as_ref().map(|d| {
                let words = decided_words(d);
                let mut first = words.chars();
                first
                    .next()
                    .map(|c| c.to_uppercase().chain(first).collect())
                    .unwrap_or_default()
            }),
            decidable: decision.is_none() && !item.is_own(reader_id, own_rows),
        })
        .collect();
    let holders: Vec<(String, u32)> = view
        .lease_holders
        .iter()
        .map(|h| (h.name.clone(), h.leases))
        .collect();
    rendered(cards::render_access_review(&cards::AccessReviewCard::new(
        view.review.id,
        &view.record.title,
        (view.campaign.period_from, view.campaign.period_to),
        open,
        &status,
        note,
        &holders,
        rows,
    )))
}

/// Whether texted codes go out: the SMS provider refusing Passkey's credentials is recorded by
/// the send it refused and cleared by the next one that goes through (#21.6).
async fn sms_check(state: &BotState) -> HealthCheck {
    let provider = crate::config::spelling(&state.settings.otp.sms_provider);
    match state.store.sms_credential_faults().await {
        Ok(faults) => match faults.iter().find(|f| f.provider == provider) {
            Some(fault) => HealthCheck::explained(
                "Text messages",
                false,
                &format!(
                    "NOT WORKING: {provider} has refused Passkey's credentials since {} (last {}; {}). \
                     Check {}",
                    fault.first_seen_at.to_reader_text(),
                    fault.last_seen_at.to_reader_text(),
                    fault.detail,
                    crate::otp::sms::credential_settings(&provider)
                ),
            ),
            None => HealthCheck::new(
                "Text messages",
                true,
                &format!("{provider}: no credential refusal on record"),
            ),
        },
        Err(_) => HealthCheck::new("Text messages", false, "unknown: database unreachable"),
    }
}

pub async fn admin_health(state: &BotState) -> Result<Card, ApiError> {
    let settings = &state.settings;
    let db = state.store.ping().await;
    let migrations = state.store.migration_state().await;
    let mut checks = vec![
        HealthCheck::new(
            "Database",
            db.is_ok(),
            &match &db {
                Ok(()) => format!("{} · reachable", settings.database_label()),
                Err(_) => format!("{} · unreachable", settings.database_label()),
            },
        ),
        match &migrations {
            Ok(m) if m.is_current() => HealthCheck::new("Migrations", true, "current"),
            Ok(_) => HealthCheck::new("Migrations", false, "not current: run `passkey migrate`"),
            Err(_) => HealthCheck::new("Migrations", false, "unknown: database unreachable"),
        },
        HealthCheck::new(
            "Vault backend",
            true,
            &serde_json::to_value(settings.vault.backend)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        ),
        match &state.bot.auth {
            ChannelAuthMode::Dev => {
                HealthCheck::new("Channel auth", true, "dev mode: loopback only, no tokens")
            }
            ChannelAuthMode::Verified(_) => {
                HealthCheck::new("Channel auth", true, "Bot Framework tokens verified")
            }
        },
        HealthCheck::new(
            "Directory",
            true,
            if settings.graph.enabled {
                "Microsoft Graph"
            } else {
                "off: no group memberships"
            },
        ),
        HealthCheck::new(
            "Policy",
            true,
            &format!("version {}", state.policy.version()),
        ),
    ];
    if !settings.lifecycle.scheduler {
        checks.push(HealthCheck::new(
            "Scheduler",
            false,
            "off in this instance: leases expire only where it runs",
        ));
    }
    checks.push(unremovable_shares_check(state).await);
    checks.push(sms_check(state).await);
    checks.push(access_review_check(state).await);
    let crashing = state.jobs.crashing();
    if !crashing.is_empty() {
        let which: Vec<String> = crashing
            .iter()
            .map(|c| format!("{} ({} panics in a row)", c.job, c.panics_in_a_row))
            .collect();
        checks.push(HealthCheck::new(
            "Scheduled jobs",
            false,
            &format!("crashing, restarted with backoff: {}", which.join(", ")),
        ));
    }
    let runs = state.store.last_job_runs().await.unwrap_or_default();
    let schedules = job_schedules(state, &runs);
    rendered(cards::render_admin_health(
        &AdminHealthCard::new(checks, &runs).with_job_schedules(&schedules),
    ))
}

/// Each job's schedule and next run, by job name: `cron "0 0 2 * * *" UTC · next 2026-12-07
/// 02:00 UTC`. On an interval the next run is about one period after the last one started
/// (each instance keeps its own ticks).
fn job_schedules(
    state: &BotState,
    runs: &[crate::store::JobRun],
) -> std::collections::BTreeMap<String, String> {
    use crate::jobs::{Job, Schedule};
    let now = state.clock.now().datetime();
    Job::ALL
        .into_iter()
        .map(|job| {
            let schedule =
                Schedule::of(job, &state.settings.lifecycle, Some(&state.settings.audit));
            let from = match &schedule {
                Schedule::Every(_) => runs
                    .iter()
                    .find(|r| r.job_name == job.name())
                    .map_or(now, |r| r.started_at.datetime()),
                Schedule::Cron(_) => now,
            };
            let next = schedule
                .next_after(from)
                .map(|t| cards::when(crate::domain::Timestamp::from_datetime(t)))
                .unwrap_or_else(|| "never".into());
            (
                job.name().to_string(),
                format!("{} · next {next}", schedule.describe()),
            )
        })
        .collect()
}

/// Here, not in `cards/`: the card layer knows no use case, the edge translates a refusal.
impl From<&LifecycleError> for crate::cards::ErrorCard {
    /// A refusal as the person sees it; a database failure says only that something went wrong.
    fn from(e: &LifecycleError) -> Self {
        match e {
            LifecycleError::Store(_) => crate::cards::ErrorCard::new(
                "Something went wrong",
                "Passkey could not finish that just now. Try again in a minute.",
            ),
            other => crate::cards::ErrorCard::new("That didn't work", &other.to_string()),
        }
    }
}

/// `admin report [7d|30d] [record]`: the card, or why not (an unknown or ambiguous record).
pub async fn access_report(
    state: &BotState,
    days: u32,
    record: Option<&str>,
) -> Result<Result<Card, String>, ApiError> {
    use crate::governance::reports::{ReportError, Reports, TOP_ROWS, date_text};
    let reports = Reports::new(state.store.clone(), state.clock.clone());
    let report = match reports.recent(days, record).await {
        Ok(report) => report,
        Err(ReportError::Store(e)) => return Err(e.into()),
        Err(refusal) => return Ok(Err(refusal.to_string())),
    };
    let counts = |c: &crate::governance::reports::Counts| {
        format!(
            "{} requests · {} leases · {} retrievals{}",
            c.requests,
            c.leases,
            c.retrievals,
            if c.break_glass > 0 {
                format!(" · {} break-glass", c.break_glass)
            } else {
                String::new()
            }
        )
    };
    let t = &report.totals;
    let summary = format!(
        "{} requests, {} leases, {} denied, {} retrievals, {} break-glass.",
        t.requests, t.leases, t.denied, t.retrievals, t.break_glass
    );
    let from = date_text(report.from);
    let last_day = date_text(report.to.minus(time::Duration::days(1)));
    let mut url = format!(
        "{}/reports/access/{from}/{}",
        state.settings.public_base_url().trim_end_matches('/'),
        date_text(report.to)
    );
    if let Some(id) = report.record_id {
        url.push_str(&format!("/{id}"));
    }
    let card = cards::AccessReportCard::new(
        &format!("Last {days} days: {from} to {last_day} (UTC)"),
        report.record.as_deref(),
        &summary,
        report
            .by_record
            .iter()
            .map(|r| cards::ReportLine::new(&r.record, &counts(&r.counts)))
            .collect(),
        report
            .by_person
            .iter()
            .map(|p| cards::ReportLine::new(&p.person, &counts(&p.counts)))
            .collect(),
        &url,
        TOP_ROWS,
    );
    Ok(Ok(rendered(cards::render_access_report(&card))?))
}
