//! The access report (#19): who asked for which record, who decided, when the lease ran, when the
//! credential was retrieved and from what kind of address, how the lease ended, break-glass and
//! its review — one row per request — with totals per record and per person. The CLI (`passkey
//! report access`), the chat (`admin report`) and the signed-in download page read it from here.
//!
//! - **Window**: requests *created* in `[from, to)`, half-open, so consecutive windows (a month,
//!   the next month) never count a request twice. Everything that happened to such a request is
//!   reported, even after `to` (a lease that ended the day after the window).
//! - **Bulk reads**: one query per table for the window ([`crate::store::ReportStore`]), then the
//!   rows are put together here without the database ([`assemble`]), so the totals are a pure
//!   function of what was read.
//! - **Addresses**: Passkey keeps the retrieving client's address (`issuance_events.client_ip`,
//!   the entry the trusted proxies appended, see `web/forwarded.rs`) for investigations, but a
//!   report is passed around: it names only the kind of address ([`AddressClass`]), never the
//!   address itself.
//! - **Sensitivity** is the record's as it is now (Passkey keeps no history of it apart from
//!   the `RECORD_SENSITIVITY_CHANGED` audit events).
//! - **Break-glass review**: the review itself is recorded by the access review campaigns as an
//!   audit event `BREAK_GLASS_REVIEWED` (`detail.outcome` `accepted` or `flagged`,
//!   `detail.reviewer` a display name); the latest one about a request is its review.

use crate::domain::{Clock, RequestStatus, Sensitivity, Timestamp};
use crate::governance::admin::{AdminError, GovernanceAdmin};
use crate::store::{
    Approval, AuditEvent, IssuanceEvent, NewAuditEvent, Record, ReportWindow, Request, Store,
    StoreError, User, VaultFolder,
};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use time::Duration;

/// How many records and people the chat card lists.
pub const TOP_ROWS: usize = 10;
/// The chat's windows: the last 7 or 30 days.
pub const CHAT_WINDOWS_DAYS: [u32; 2] = [7, 30];

/// The audit actions a report reads (decisions made by the policy, lease ends, extensions, the
/// after-the-fact review of break-glass).
const REPORT_ACTIONS: &[&str] = &[
    "REQUEST_AUTO_APPROVED",
    "BREAK_GLASS_APPROVED",
    "REQUEST_EXPIRED_UNDECIDED",
    "LEASE_EXTENDED",
    "LEASE_RELEASED",
    "LEASE_EXPIRED",
    "LEASE_REVOKED",
    "LEASE_REVOKED_PERMISSION_LOST",
    "BREAK_GLASS_REVIEWED",
];

/// Why a report could not be made. Every variant but `Store` is the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "`{0}` is not a date: use YYYY-MM-DD (midnight UTC) or an RFC 3339 instant such as 2026-10-01T09:00:00Z."
    )]
    BadDate(String),
    #[error("The window is empty: `from` ({from}) must be before `to` ({to}).")]
    EmptyWindow { from: String, to: String },
    #[error("Unknown format `{0}`: use csv, json or md.")]
    UnknownFormat(String),
    /// An unknown or ambiguous record or person.
    #[error(transparent)]
    Lookup(AdminError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReportError {
    /// True when the input was refused (as opposed to the database failing).
    pub fn is_refusal(&self) -> bool {
        match self {
            ReportError::Store(_) => false,
            ReportError::Lookup(e) => e.is_refusal(),
            _ => true,
        }
    }
}

impl From<AdminError> for ReportError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Store(e) => ReportError::Store(e),
            other => ReportError::Lookup(other),
        }
    }
}

/// `YYYY-MM-DD` (midnight UTC) or an RFC 3339 instant.
pub fn parse_date(text: &str) -> Result<Timestamp, ReportError> {
    let text = text.trim();
    let bad = || ReportError::BadDate(text.chars().take(40).collect());
    if text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-' {
        let number = |range: std::ops::Range<usize>| {
            text.get(range)
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<i32>().ok())
        };
        let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10))
        else {
            return Err(bad());
        };
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or_else(bad)?;
        let date = time::Date::from_calendar_date(year, month, day as u8).map_err(|_| bad())?;
        return Ok(Timestamp::from_datetime(date.midnight().assume_utc()));
    }
    Timestamp::parse(text).map_err(|_| bad())
}

/// A window of whole UTC days: the last `days` days, today included (`[today - days + 1, today
/// + 1)`). What the chat card shows and its download link asks for, in dates both agree on.
pub fn last_days(days: u32, now: Timestamp) -> (Timestamp, Timestamp) {
    let today = Timestamp::from_datetime(now.datetime().date().midnight().assume_utc());
    let to = today.plus(Duration::days(1));
    (to.minus(Duration::days(i64::from(days))), to)
}

/// A date as `YYYY-MM-DD` (the download link's form).
pub fn date_text(t: Timestamp) -> String {
    t.to_fixed_text()[..10].to_string()
}

/// What a report is asked for, as typed: the window, and optionally one record (vault uid, exact
/// title or unique title prefix) and one requester (email, UPN or Entra object id).
#[derive(Debug, Clone)]
pub struct AccessQuery {
    pub from: Timestamp,
    pub to: Timestamp,
    pub record: Option<String>,
    pub user: Option<String>,
}

/// The output formats of `passkey report access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Json,
    Markdown,
}

impl std::str::FromStr for ReportFormat {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(ReportFormat::Csv),
            "json" => Ok(ReportFormat::Json),
            "md" | "markdown" => Ok(ReportFormat::Markdown),
            _ => Err(ReportError::UnknownFormat(s.chars().take(20).collect())),
        }
    }
}

/// The kind of address a credential was retrieved from. Never the address itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AddressClass {
    /// This machine (dev, or a proxy on the same host that was not trusted to forward).
    #[serde(rename = "loopback")]
    Loopback,
    /// A private range (RFC 1918, RFC 6598 shared space, RFC 4193 unique local, link-local): an
    /// office network or a VPN.
    #[serde(rename = "private network")]
    PrivateNetwork,
    /// Any other address.
    #[serde(rename = "internet")]
    Internet,
    /// None was recorded, or it is not an address.
    #[serde(rename = "unknown")]
    Unknown,
}

impl AddressClass {
    pub fn of(stored: Option<&str>) -> Self {
        match stored.and_then(|s| s.trim().parse::<IpAddr>().ok()) {
            None => AddressClass::Unknown,
            Some(ip) => match ip.to_canonical() {
                ip if ip.is_loopback() => AddressClass::Loopback,
                IpAddr::V4(v4) => {
                    let [a, b, ..] = v4.octets();
                    if v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
                    {
                        AddressClass::PrivateNetwork
                    } else {
                        AddressClass::Internet
                    }
                }
                IpAddr::V6(v6) => {
                    let first = v6.segments()[0];
                    if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80 {
                        AddressClass::PrivateNetwork
                    } else {
                        AddressClass::Internet
                    }
                }
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::PrivateNetwork => "private network",
            AddressClass::Internet => "internet",
            AddressClass::Unknown => "unknown",
        }
    }
}

/// One decision about a request: who (a person's display name, or `policy`), what, when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionEntry {
    pub by: String,
    /// `APPROVE`, `DENY` (a person's say, triage included), `AUTO_APPROVE`, `BREAK_GLASS` (the
    /// policy's), `EXPIRED_UNDECIDED` (nobody decided in time), `EXTEND` (an extension granted).
    pub decision: &'static str,
    pub at: Timestamp,
}

/// How a lease ended, or that it still runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseEnd {
    /// `released`, `expired`, `revoked`, `revoked (permission lost)` or `active`.
    pub kind: &'static str,
    pub by: Option<String>,
    pub at: Option<Timestamp>,
}

/// One retrieval (a share handed out): when, and from what kind of address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retrieval {
    pub at: Timestamp,
    pub address: AddressClass,
}

/// One request in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessRow {
    pub request_id: i64,
    pub requested_at: Timestamp,
    pub requester: String,
    pub requester_email: Option<String>,
    pub record: String,
    pub record_uid: String,
    pub folder: Option<String>,
    pub sensitivity: Sensitivity,
    pub status: RequestStatus,
    pub decisions: Vec<DecisionEntry>,
    pub lease_start: Option<Timestamp>,
    /// When the lease ended, or (still running) when it is due to end.
    pub lease_end: Option<Timestamp>,
    pub ending: Option<LeaseEnd>,
    pub retrievals: Vec<Retrieval>,
    pub break_glass: bool,
    /// For break-glass: `awaiting review`, `accepted by X on DATE`, `flagged by X on DATE`, or
    /// `not required` when the policy asked for none; `None` for other requests.
    pub review: Option<String>,
}

/// What a group of requests adds up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub requests: u64,
    /// Requests whose lease started.
    pub leases: u64,
    pub denied: u64,
    pub retrievals: u64,
    pub break_glass: u64,
}

impl Counts {
    fn add(&mut self, row: &AccessRow) {
        self.requests += 1;
        self.leases += u64::from(row.lease_start.is_some());
        self.denied += u64::from(row.status == RequestStatus::Denied);
        self.retrievals += row.retrievals.len() as u64;
        self.break_glass += u64::from(row.break_glass);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordTotals {
    pub record: String,
    pub record_uid: String,
    pub folder: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonTotals {
    pub person: String,
    pub email: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// The report: its window and filters, one row per request, the totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessReport {
    pub from: Timestamp,
    pub to: Timestamp,
    /// The record filter, by title, when one was given.
    pub record: Option<String>,
    /// The record filter's number (the download link names it).
    #[serde(skip)]
    pub record_id: Option<i64>,
    /// The requester filter, by display name, when one was given.
    pub user: Option<String>,
    pub totals: Counts,
    /// Most requests first.
    pub by_record: Vec<RecordTotals>,
    /// Most requests first.
    pub by_person: Vec<PersonTotals>,
    pub rows: Vec<AccessRow>,
}

/// What [`assemble`] puts together: the window's rows of each table, as read.
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    pub requests: Vec<Request>,
    pub approvals: Vec<Approval>,
    pub issuances: Vec<IssuanceEvent>,
    pub events: Vec<AuditEvent>,
    pub users: Vec<User>,
    pub records: Vec<Record>,
    pub folders: Vec<VaultFolder>,
}

/// Builds the report from what was read. Every issuance row of a request in `requests` is one
/// retrieval of exactly one row; anything else read (a row of another request) is ignored.
pub fn assemble(
    window: &ReportWindow,
    filters: (Option<String>, Option<String>),
    data: &ReportData,
) -> AccessReport {
    let users: HashMap<i64, &User> = data.users.iter().map(|u| (u.id, u)).collect();
    let records: HashMap<i64, &Record> = data.records.iter().map(|r| (r.id, r)).collect();
    let folders: HashMap<i64, &VaultFolder> = data.folders.iter().map(|f| (f.id, f)).collect();
    let name = |id: i64| {
        users
            .get(&id)
            .map_or_else(|| format!("user {id}"), |u| u.display_name.clone())
    };
    let actor_name = |actor: &str| match actor.strip_prefix("user:").map(str::parse::<i64>) {
        Some(Ok(id)) => name(id),
        _ if actor.starts_with("system:policy") => "policy".to_string(),
        _ if actor.starts_with("system:") => "Passkey".to_string(),
        _ => actor.to_string(),
    };
    let mut approvals: HashMap<i64, Vec<&Approval>> = HashMap::new();
    for a in &data.approvals {
        approvals.entry(a.request_id).or_default().push(a);
    }
    let mut issuances: HashMap<i64, Vec<&IssuanceEvent>> = HashMap::new();
    for i in &data.issuances {
        issuances.entry(i.request_id).or_default().push(i);
    }
    let mut events: HashMap<i64, Vec<&AuditEvent>> = HashMap::new();
    for e in &data.events {
        if let Some(id) = e.request_id {
            events.entry(id).or_default().push(e);
        }
    }
    let mut rows = Vec::with_capacity(data.requests.len());
    for r in &data.requests {
        let requester = users.get(&r.requester_id);
        let record = records.get(&r.record_id);
        let folder = record
            .and_then(|rec| rec.folder_id)
            .and_then(|id| folders.get(&id))
            .map(|f| f.name.clone());
        let events = events.get(&r.id).map(Vec::as_slice).unwrap_or_default();
        let said = approvals.get(&r.id).map(Vec::as_slice).unwrap_or_default();
        let mut decisions: Vec<DecisionEntry> = said
            .iter()
            .map(|a| DecisionEntry {
                by: name(a.approver_id),
                decision: a.decision.as_str(),
                at: a.decided_at,
            })
            .collect();
        for e in events {
            let decision = match e.action.as_str() {
                "REQUEST_AUTO_APPROVED" => "AUTO_APPROVE",
                "BREAK_GLASS_APPROVED" => "BREAK_GLASS",
                "REQUEST_EXPIRED_UNDECIDED" => "EXPIRED_UNDECIDED",
                "LEASE_EXTENDED" => "EXTEND",
                _ => continue,
            };
            decisions.push(DecisionEntry {
                by: actor_name(&e.actor),
                decision,
                at: e.created_at,
            });
        }
        if r.status == RequestStatus::Denied && said.is_empty() {
            // Denied by the policy at submission: no approver and no event of its own.
            decisions.push(DecisionEntry {
                by: "policy".into(),
                decision: "DENY",
                at: r.decided_at.unwrap_or(r.created_at),
            });
        }
        decisions.sort_by_key(|d| d.at);
        let ending = lease_end(r, events, &actor_name);
        let lease_end = r.lease_started_at.and(r.ended_at.or(r.lease_expires_at));
        let review = r.break_glass.then(|| review_of(r, events));
        rows.push(AccessRow {
            request_id: r.id,
            requested_at: r.created_at,
            requester: name(r.requester_id),
            requester_email: requester.and_then(|u| u.email.clone().or_else(|| u.upn.clone())),
            record: record.map_or_else(
                || format!("record {}", r.record_id),
                |rec| rec.title.clone(),
            ),
            record_uid: record.map(|rec| rec.vault_uid.clone()).unwrap_or_default(),
            folder,
            sensitivity: record.map_or(Sensitivity::Medium, |rec| rec.sensitivity),
            status: r.status,
            decisions,
            lease_start: r.lease_started_at,
            lease_end,
            ending,
            retrievals: issuances
                .get(&r.id)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|i| Retrieval {
                    at: i.issued_at,
                    address: AddressClass::of(i.client_ip.as_deref()),
                })
                .collect(),
            break_glass: r.break_glass,
            review,
        });
    }
    let mut totals = Counts::default();
    let mut by_record: BTreeMap<i64, RecordTotals> = BTreeMap::new();
    let mut by_person: BTreeMap<i64, PersonTotals> = BTreeMap::new();
    for (r, row) in data.requests.iter().zip(&rows) {
        totals.add(row);
        by_record
            .entry(r.record_id)
            .or_insert_with(|| RecordTotals {
                record: row.record.clone(),
                record_uid: row.record_uid.clone(),
                folder: row.folder.clone(),
                counts: Counts::default(),
            })
            .counts
            .add(row);
        by_person
            .entry(r.requester_id)
            .or_insert_with(|| PersonTotals {
                person: row.requester.clone(),
                email: row.requester_email.clone(),
                counts: Counts::default(),
            })
            .counts
            .add(row);
    }
    let mut by_record: Vec<RecordTotals> = by_record.into_values().collect();
    by_record.sort_by(|a, b| {
        (b.counts.requests, b.counts.retrievals)
            .cmp(&(a.counts.requests, a.counts.retrievals))
            .then_with(|| a.record.cmp(&b.record))
    });
    let mut by_person: Vec<PersonTotals> = by_person.into_values().collect();
    by_person.sort_by(|a, b| {
        (b.counts.requests, b.counts.retrievals)
            .cmp(&(a.counts.requests, a.counts.retrievals))
            .then_with(|| a.person.cmp(&b.person))
    });
    AccessReport {
        from: window.from,
        to: window.to,
        record: filters.0,
        record_id: window.record_id,
        user: filters.1,
        totals,
        by_record,
        by_person,
        rows,
    }
}

/// The latest lease-ending event, else what the row says (a live lease is `active`).
fn lease_end(
    r: &Request,
    events: &[&AuditEvent],
    actor_name: &dyn Fn(&str) -> String,
) -> Option<LeaseEnd> {
    r.lease_started_at?;
    let ended = events.iter().rev().find_map(|e| {
        let kind = match e.action.as_str() {
            "LEASE_RELEASED" => "released",
            "LEASE_EXPIRED" => "expired",
            "LEASE_REVOKED" => "revoked",
            "LEASE_REVOKED_PERMISSION_LOST" => "revoked (permission lost)",
            _ => return None,
        };
        Some(LeaseEnd {
            kind,
            by: Some(actor_name(&e.actor)),
            at: Some(e.created_at),
        })
    });
    Some(ended.unwrap_or_else(|| LeaseEnd {
        kind: match r.status {
            s if s.has_live_lease() => "active",
            RequestStatus::Released => "released",
            _ => "expired",
        },
        by: None,
        at: r.ended_at,
    }))
}

/// A break-glass request's review, from the latest `BREAK_GLASS_REVIEWED` event about it.
fn review_of(r: &Request, events: &[&AuditEvent]) -> String {
    let reviewed = events
        .iter()
        .rev()
        .find(|e| e.action == "BREAK_GLASS_REVIEWED");
    match reviewed {
        Some(e) => {
            let detail = &e.detail.0;
            let reviewer = detail["reviewer"].as_str().unwrap_or("someone");
            let on = date_text(e.created_at);
            match detail["outcome"].as_str() {
                Some("flagged") => format!("flagged by {reviewer} on {on}"),
                _ => format!("accepted by {reviewer} on {on}"),
            }
        }
        None if r.review_required => "awaiting review".into(),
        None => "not required".into(),
    }
}

/// The report use cases over a store and a clock.
pub struct Reports {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Reports {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Reports { store, clock }
    }

    /// The chat's report: the last `days` whole UTC days, today included ([`last_days`]).
    pub async fn recent(
        &self,
        days: u32,
        record: Option<&str>,
    ) -> Result<AccessReport, ReportError> {
        let (from, to) = last_days(days, self.clock.now());
        self.access(&AccessQuery {
            from,
            to,
            record: record.map(str::to_string),
            user: None,
        })
        .await
    }

    /// Resolves the filters (an unknown or ambiguous record or person is refused), reads the
    /// window in bulk and assembles the report. Reads only.
    pub async fn access(&self, query: &AccessQuery) -> Result<AccessReport, ReportError> {
        if query.from >= query.to {
            return Err(ReportError::EmptyWindow {
                from: query.from.to_fixed_text(),
                to: query.to.to_fixed_text(),
            });
        }
        let lookup = GovernanceAdmin::new(self.store.clone(), self.clock.clone());
        let record = match &query.record {
            Some(r) => Some(lookup.find_record(r).await?),
            None => None,
        };
        let user = match &query.user {
            Some(u) => Some(lookup.find_user(u).await?),
            None => None,
        };
        let window = ReportWindow {
            from: query.from,
            to: query.to,
            record_id: record.as_ref().map(|r| r.id),
            requester_id: user.as_ref().map(|u| u.id),
        };
        let store = self.store.as_ref();
        let requests = store.report_requests(&window).await?;
        let approvals = store.report_approvals(&window).await?;
        let issuances = store.report_issuances(&window).await?;
        let events = store.report_audit_events(&window, REPORT_ACTIONS).await?;
        let mut people: Vec<i64> = requests.iter().map(|r| r.requester_id).collect();
        people.extend(approvals.iter().map(|a| a.approver_id));
        people.extend(
            events
                .iter()
                .filter_map(|e| e.actor.strip_prefix("user:")?.parse::<i64>().ok()),
        );
        let users = store.users_by_ids(&people).await?;
        let record_ids: Vec<i64> = requests.iter().map(|r| r.record_id).collect();
        let records = store.records_by_ids(&record_ids).await?;
        let folders = store.list_folders().await?;
        let data = ReportData {
            requests,
            approvals,
            issuances,
            events,
            users,
            records,
            folders,
        };
        Ok(assemble(
            &window,
            (record.map(|r| r.title), user.map(|u| u.display_name)),
            &data,
        ))
    }

    /// An admin downloaded the report's CSV from the signed-in page: recorded with the filters
    /// and the number of rows, never the content.
    pub async fn record_download(
        &self,
        admin: &User,
        report: &AccessReport,
    ) -> Result<(), StoreError> {
        let mut event = NewAuditEvent::new(
            format!("user:{}", admin.id),
            "REPORT_DOWNLOADED",
            self.clock.now(),
        )
        .detail(json!({
            "report": "access",
            "format": "csv",
            "from": report.from,
            "to": report.to,
            "record_id": report.record_id,
            "rows": report.rows.len(),
        }));
        event.record_id = report.record_id;
        self.store.append_audit(&event).await.map(drop)
    }
}

// ---- renderers ----------------------------------------------------------------------------------

/// The CSV columns, in order (the header row).
pub const CSV_COLUMNS: [&str; 17] = [
    "request_id",
    "requested_at",
    "requester",
    "requester_email",
    "record",
    "record_uid",
    "folder",
    "sensitivity",
    "status",
    "decisions",
    "lease_start",
    "lease_end",
    "ending",
    "retrieval_count",
    "retrievals",
    "break_glass",
    "review",
];

/// Characters that make a spreadsheet read a cell as a formula (OWASP's list: `=`, `+`, `-`,
/// `@`, and tab and carriage return, which some spreadsheets skip before looking).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One CSV field: a cell a spreadsheet would read as a formula gets a leading `'` (so it shows
/// as text; the report's own numbers and times never start with one of these), then RFC 4180
/// quoting when it holds `"`, `,`, CR or LF (quotes doubled).
pub fn csv_field(text: &str) -> String {
    let guarded;
    let text = if text.starts_with(FORMULA_STARTS) {
        guarded = format!("'{text}");
        guarded.as_str()
    } else {
        text
    };
    if text.contains(['"', ',', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// One CSV record: fields separated by commas, ended by CRLF (RFC 4180).
pub fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

fn or_empty(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_fixed_text()).unwrap_or_default()
}

fn decisions_text(row: &AccessRow) -> String {
    row.decisions
        .iter()
        .map(|d| format!("{} {} {}", d.decision, d.by, d.at.to_fixed_text()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn ending_text(row: &AccessRow) -> String {
    match &row.ending {
        None => String::new(),
        Some(e) => {
            let mut text = e.kind.to_string();
            if let Some(by) = &e.by {
                let _ = write!(text, " by {by}");
            }
            if let Some(at) = e.at {
                let _ = write!(text, " {}", at.to_fixed_text());
            }
            text
        }
    }
}

fn retrievals_text(row: &AccessRow) -> String {
    row.retrievals
        .iter()
        .map(|r| format!("{} ({})", r.at.to_fixed_text(), r.address.as_str()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cells(row: &AccessRow) -> [String; 17] {
    [
        row.request_id.to_string(),
        row.requested_at.to_fixed_text(),
        row.requester.clone(),
        row.requester_email.clone().unwrap_or_default(),
        row.record.clone(),
        row.record_uid.clone(),
        row.folder.clone().unwrap_or_default(),
        row.sensitivity.to_string(),
        row.status.to_string(),
        decisions_text(row),
        or_empty(row.lease_start),
        or_empty(row.lease_end),
        ending_text(row),
        row.retrievals.len().to_string(),
        retrievals_text(row),
        if row.break_glass { "yes" } else { "no" }.to_string(),
        row.review.clone().unwrap_or_default(),
    ]
}

impl AccessReport {
    /// RFC 4180 CSV: a header row, then one record per request (totals are in the JSON and
    /// Markdown forms; a CSV is one table).
    pub fn to_csv(&self) -> String {
        let mut out = csv_record(&CSV_COLUMNS);
        for row in &self.rows {
            out.push_str(&csv_record(&cells(row)));
        }
        out
    }

    /// The report as JSON: the field names of [`AccessReport`] (documented in README).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Markdown tables people can paste: the window, the totals per record and per person, then
    /// one row per request.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Access report {} – {}\n\n",
            self.from.to_fixed_text(),
            self.to.to_fixed_text()
        );
        if let Some(record) = &self.record {
            let _ = writeln!(out, "Record: {}\n", md_cell(record));
        }
        if let Some(user) = &self.user {
            let _ = writeln!(out, "Requester: {}\n", md_cell(user));
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "{} requests, {} leases, {} denied, {} retrievals, {} break-glass.\n",
            t.requests, t.leases, t.denied, t.retrievals, t.break_glass
        );
        out.push_str("## Per record\n\n| Record | Folder | Requests | Leases | Denied | Retrievals | Break-glass |\n|---|---|---:|---:|---:|---:|---:|\n");
        for r in &self.by_record {
            let c = &r.counts;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md_cell(&r.record),
                md_cell(r.folder.as_deref().unwrap_or("")),
                c.requests,
                c.leases,
                c.denied,
                c.retrievals,
                c.break_glass
            );
        }
        out.push_str("\n## Per person\n\n| Person | Requests | Leases | Denied | Retrievals | Break-glass |\n|---|---:|---:|---:|---:|---:|\n");
        for p in &self.by_person {
            let c = &p.counts;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md_cell(&p.person),
                c.requests,
                c.leases,
                c.denied,
                c.retrievals,
                c.break_glass
            );
        }
        out.push_str("\n## Requests\n\n| # | Requested | Requester | Record | Sensitivity | Status | Decisions | Lease | Ended | Retrievals | Break-glass |\n|---:|---|---|---|---|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let lease = match (row.lease_start, row.lease_end) {
                (Some(s), Some(e)) => format!("{} – {}", s.to_fixed_text(), e.to_fixed_text()),
                (Some(s), None) => s.to_fixed_text(),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.request_id,
                row.requested_at.to_fixed_text(),
                md_cell(&row.requester),
                md_cell(&row.record),
                row.sensitivity,
                row.status,
                md_cell(&decisions_text(row)),
                lease,
                md_cell(&ending_text(row)),
                md_cell(&retrievals_text(row)),
                md_cell(&match (&row.review, row.break_glass) {
                    (Some(review), true) => format!("yes, {review}"),
                    _ => String::new(),
                }),
            );
        }
        out
    }

    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Csv => self.to_csv(),
            ReportFormat::Json => self.to_json(),
            ReportFormat::Markdown => self.to_markdown(),
        }
    }
}

/// Text in a Markdown table cell: a `|` would end the cell and a line break the row.
pub(crate) fn md_cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApprovalDecision, Role};
    use proptest::prelude::*;
    use sqlx::types::Json;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn rfc_4180_fields_are_quoted_only_when_they_must_be() {
        // RFC 4180 §2: fields with commas, quotes or line breaks are enclosed in double quotes,
        // and a double quote inside one is escaped by another.
        assert_eq!(csv_field("aaa"), "aaa");
        assert_eq!(csv_field("b,bb"), "\"b,bb\"");
        assert_eq!(csv_field("b\"bb"), "\"b\"\"bb\"");
        assert_eq!(csv_field("b\r\nbb"), "\"b\r\nbb\"");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(csv_field(""), "");
        assert_eq!(csv_field("ünïcødé 😀"), "ünïcødé 😀");
        // Records end with CRLF, the last one included.
        assert_eq!(
            csv_record(&["aaa", "b\"bb", "ccc"]),
            "aaa,\"b\"\"bb\",ccc\r\n"
        );
        assert_eq!(csv_record(&["zzz", "yyy", "xxx"]), "zzz,yyy,xxx\r\n");
    }

    #[test]
    fn cells_a_spreadsheet_would_run_as_formulas_start_with_a_quote() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_field("+1+1"), "'+1+1");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\t=1"), "'\t=1");
        // A leading CR is guarded, then the field is quoted for holding a CR.
        assert_eq!(csv_field("\r=1"), "\"'\r=1\"");
        // Only the first character counts: a formula sign inside a value is plain text.
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(
            csv_field("2026-10-01T09:00:00.000000Z"),
            "2026-10-01T09:00:00.000000Z"
        );
        assert_eq!(csv_field("bob@x.example"), "bob@x.example");
    }

    #[test]
    fn dates_are_days_at_utc_midnight_or_rfc_3339_and_nothing_else() {
        assert_eq!(
            parse_date("2026-10-01").unwrap(),
            ts("2026-10-01T00:00:00Z")
        );
        assert_eq!(
            parse_date("2026-10-01T09:30:00+02:00").unwrap(),
            ts("2026-10-01T07:30:00Z")
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "01/10/2026",
            "2026-1-01",
            "yesterday",
            "2026-10-01T25:00:00Z",
            "+026-10-01",
        ] {
            assert!(
                matches!(parse_date(bad), Err(ReportError::BadDate(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_last_n_days_are_whole_utc_days_with_today() {
        let (from, to) = last_days(7, ts("2026-11-23T15:04:05Z"));
        assert_eq!(from, ts("2026-11-17T00:00:00Z"));
        assert_eq!(to, ts("2026-11-24T00:00:00Z"));
        assert_eq!(date_text(from), "2026-11-17");
    }

    #[test]
    fn addresses_are_reported_by_kind_only() {
        for (ip, class) in [
            (Some("127.0.0.1"), AddressClass::Loopback),
            (Some("::1"), AddressClass::Loopback),
            (Some("::ffff:127.0.0.1"), AddressClass::Loopback),
            (Some("10.1.2.3"), AddressClass::PrivateNetwork),
            (Some("172.16.0.9"), AddressClass::PrivateNetwork),
            (Some("192.168.1.20"), AddressClass::PrivateNetwork),
            (Some("100.64.0.1"), AddressClass::PrivateNetwork),
            (Some("169.254.1.1"), AddressClass::PrivateNetwork),
            (Some("fd12:3456::1"), AddressClass::PrivateNetwork),
            (Some("fe80::1"), AddressClass::PrivateNetwork),
            (Some("203.0.113.7"), AddressClass::Internet),
            (Some("172.32.0.1"), AddressClass::Internet),
            (Some("2001:db8::1"), AddressClass::Internet),
            (Some("not an address"), AddressClass::Unknown),
            (None, AddressClass::Unknown),
        ] {
            assert_eq!(AddressClass::of(ip), class, "{ip:?}");
        }
    }

    fn user(id: i64) -> User {
        User {
            id,
            aad_object_id: format!("aad-{id}"),
            tenant_id: None,
            teams_user_id: None,
            upn: None,
            email: Some(format!("p{id}@x.example")),
            display_name: format!("Person {id}"),
            role: Role::Requester,
            allow_multiple_leases: false,
            created_at: ts("2026-01-01T00:00:00Z"),
            updated_at: ts("2026-01-01T00:00:00Z"),
            directory_checked_at: None,
            directory_check_failed: false,
        }
    }

    fn request(id: i64, requester_id: i64, record_id: i64, status: RequestStatus) -> Request {
        let at = ts("2026-10-01T00:00:00Z").plus(Duration::hours(id));
        let leased = !matches!(
            status,
            RequestStatus::Denied | RequestStatus::Pending | RequestStatus::RequiresTriage
        );
        Request {
            id,
            requester_id,
            record_id,
            status,
            justification: "because".into(),
            ticket_id: None,
            requested_duration_secs: 3600,
            approved_duration_secs: leased.then_some(3600),
            break_glass: id % 5 == 0,
            required_approvals: 1,
            policy_version: None,
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            lease_started_at: leased.then_some(at),
            lease_expires_at: leased.then_some(at.plus(Duration::hours(1))),
            ended_at: None,
            issuance_token_hash: None,
            issuance_token_expires_at: None,
            issuance_count: 0,
            max_issuances: 3,
            extension_count: 0,
            renewal_duration_secs: None,
            preflight_attempts: 0,
            next_attempt_at: None,
            created_at: at,
            updated_at: at,
            claimed_by: None,
            claim_until: None,
            review_required: id % 5 == 0,
            otp_required: false,
            reminded_at: None,
            expiry_warned_at: None,
            issuances_in_flight: 0,
        }
    }

    fn issuance(id: i64, request_id: i64, ip: Option<&str>) -> IssuanceEvent {
        IssuanceEvent {
            id,
            request_id,
            share_link_hash: "0".repeat(64),
            vault_share_id: format!("share-{id}"),
            client_ip: ip.map(str::to_string),
            user_agent: None,
            issued_at: ts("2026-10-02T00:00:00Z").plus(Duration::minutes(id)),
            expires_at: ts("2026-10-03T00:00:00Z"),
            revoked_at: None,
            revoke_attempts: 0,
            last_revoke_error: None,
        }
    }

    fn window() -> ReportWindow {
        ReportWindow {
            from: ts("2026-10-01T00:00:00Z"),
            to: ts("2027-01-01T00:00:00Z"),
            record_id: None,
            requester_id: None,
        }
    }

    fn event(
        seq: i64,
        request_id: i64,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            seq,
            event_id: uuid::Uuid::nil(),
            actor: actor.into(),
            action: action.into(),
            request_id: Some(request_id),
            record_id: None,
            detail: Json(detail),
            created_at: ts("2026-10-05T12:00:00Z").plus(Duration::seconds(seq)),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn a_row_tells_decisions_lease_end_retrievals_and_the_break_glass_review() {
        let mut glass = request(5, 1, 1, RequestStatus::Expired);
        glass.ended_at = Some(ts("2026-10-05T11:00:00Z"));
        let flagged = request(10, 1, 1, RequestStatus::Released);
        let mut awaiting = request(15, 2, 1, RequestStatus::Issued);
        awaiting.review_required = true;
        let approved = request(3, 2, 1, RequestStatus::Expired);
        let denied = request(4, 2, 1, RequestStatus::Denied);
        let data = ReportData {
            requests: vec![approved, denied, glass, flagged, awaiting],
            approvals: vec![Approval {
                id: 1,
                request_id: 3,
                approver_id: 9,
                stage: 1,
                decision: ApprovalDecision::Approve,
                comment: None,
                decided_at: ts("2026-10-01T03:05:00Z"),
            }],
            issuances: vec![
                issuance(1, 3, Some("10.0.0.5")),
                issuance(2, 3, Some("198.51.100.4")),
            ],
            events: vec![
                event(1, 5, "system:policy", "BREAK_GLASS_APPROVED", json!({})),
                event(2, 3, "user:9", "LEASE_REVOKED", json!({})),
                event(3, 5, "system:lease-expiry", "LEASE_EXPIRED", json!({})),
                event(
                    4,
                    5,
                    "user:9",
                    "BREAK_GLASS_REVIEWED",
                    json!({"outcome": "accepted", "reviewer": "Olga Owner"}),
                ),
                event(
                    5,
                    10,
                    "user:9",
                    "BREAK_GLASS_REVIEWED",
                    json!({"outcome": "flagged", "reviewer": "Olga Owner"}),
                ),
            ],
            users: vec![user(1), user(2), user(9)],
            ..ReportData::default()
        };
        let report = assemble(&window(), (None, None), &data);
        let row = |id: i64| report.rows.iter().find(|r| r.request_id == id).unwrap();
        let approved = row(3);
        assert_eq!(approved.decisions.len(), 1);
        assert_eq!(
            (
                approved.decisions[0].by.as_str(),
                approved.decisions[0].decision
            ),
            ("Person 9", "APPROVE")
        );
        assert_eq!(approved.ending.as_ref().unwrap().kind, "revoked");
        assert_eq!(
            approved.ending.as_ref().unwrap().by.as_deref(),
            Some("Person 9")
        );
        assert_eq!(
            approved
                .retrievals
                .iter()
                .map(|r| r.address)
                .collect::<Vec<_>>(),
            [AddressClass::PrivateNetwork, AddressClass::Internet]
        );
        assert_eq!(approved.review, None);
        assert_eq!(row(4).decisions[0].by, "policy");
        assert_eq!(row(4).decisions[0].decision, "DENY");
        assert_eq!(row(4).ending, None);
        assert_eq!(row(5).decisions[0].decision, "BREAK_GLASS");
        assert_eq!(row(5).ending.as_ref().unwrap().kind, "expired");
        assert_eq!(row(5).lease_end, Some(ts("2026-10-05T11:00:00Z")));
        assert_eq!(
            row(5).review.as_deref(),
            Some("accepted by Olga Owner on 2026-10-05")
        );
        assert_eq!(
            row(10).review.as_deref(),
            Some("flagged by Olga Owner on 2026-10-05")
        );
        assert_eq!(row(15).review.as_deref(), Some("awaiting review"));
        assert_eq!(row(15).ending.as_ref().unwrap().kind, "active");
        // No raw address anywhere in any rendering.
        for text in [report.to_csv(), report.to_json(), report.to_markdown()] {
            assert!(!text.contains("10.0.0.5") && !text.contains("198.51.100.4"));
        }
    }

    #[test]
    fn the_csv_has_a_header_and_one_crlf_record_per_request() {
        let mut hostile = user(1);
        hostile.display_name = "=cmd|' /C calc'!A0, \"boss\"".into();
        let data = ReportData {
            requests: vec![request(1, 1, 1, RequestStatus::Pending)],
            users: vec![hostile],
            ..ReportData::default()
        };
        let csv = assemble(&window(), (None, None), &data).to_csv();
        let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert!(
            lines[1].contains(",\"'=cmd|' /C calc'!A0, \"\"boss\"\"\","),
            "{}",
            lines[1]
        );
        assert!(!csv.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(md_cell("a|b\nc\\"), "a\\|b c\\\\");
    }

    proptest! {
        /// However requests, people, records and retrievals are spread, each retrieval is
        /// counted once: on its own request's row, once in the grand total, once under its
        /// record and once under its requester.
        #[test]
        fn each_retrieval_is_counted_once(
            requests in proptest::collection::vec((1i64..6, 1i64..5, 0usize..4), 0..40),
            shares in proptest::collection::vec((0usize..40, proptest::option::of("[0-9.]{1,15}")), 0..120),
        ) {
            let statuses = [RequestStatus::Issued, RequestStatus::Expired, RequestStatus::Released, RequestStatus::Denied];
            let rows: Vec<Request> = requests
                .iter()
                .enumerate()
                .map(|(i, &(person, record, status))| request(i as i64 + 1, person, record, statuses[status]))
                .collect();
            let issuances: Vec<IssuanceEvent> = if rows.is_empty() {
                Vec::new()
            } else {
                shares
                    .iter()
                    .enumerate()
                    .map(|(i, (which, ip))| issuance(i as i64 + 1, rows[which % rows.len()].id, ip.as_deref()))
                    .collect()
            };
            let data = ReportData {
                requests: rows.clone(),
                issuances: issuances.clone(),
                users: (1..6).map(user).collect(),
                ..ReportData::default()
            };
            let report = assemble(&window(), (None, None), &data);
            let n = issuances.len() as u64;
            prop_assert_eq!(report.rows.len(), rows.len());
            prop_assert_eq!(report.rows.iter().map(|r| r.retrievals.len() as u64).sum::<u64>(), n);
            prop_assert_eq!(report.totals.retrievals, n);
            prop_assert_eq!(report.by_record.iter().map(|r| r.counts.retrievals).sum::<u64>(), n);
            prop_assert_eq!(report.by_person.iter().map(|p| p.counts.retrievals).sum::<u64>(), n);
            for row in &report.rows {
                let own = issuances.iter().filter(|i| i.request_id == row.request_id).count();
                prop_assert_eq!(row.retrievals.len(), own);
            }
            let csv_ids: Vec<i64> = report
                .to_csv()
                .split_terminator("\r\n")
                .skip(1)
                .map(|line| line.split(',').next().unwrap().parse().unwrap())
                .collect();
            prop_assert_eq!(csv_ids, rows.iter().map(|r| r.id).collect::<Vec<_>>());
        }
    }
}
