//! View models: plain data, one struct per card, built from rows and use-case results by small
//! constructors that decide what the card says (so templates only lay it out). Fields are never
//! skipped when serialized — strict-mode templates test `{{#if field}}` on `null` — and none of
//! them can hold a share URL, token or OTP.

use crate::domain::{RequestStatus, Timestamp, format_duration};
use crate::store::{JobRun, Record, Request, User};
use serde::Serialize;
use time::Duration;

/// Names, titles, folders, tickets: one short line.
pub const SHORT_TEXT: usize = 80;
/// Justifications, reasons, comments.
pub const LONG_TEXT: usize = 600;
/// Items listed on one card; the rest are counted in `more`.
pub const MAX_LIST_ITEMS: usize = 10;
/// Records offered by the request form and the search card.
pub const MAX_RECORD_CHOICES: usize = 30;
/// Policy reasons shown on one card.
pub const MAX_REASONS: usize = 6;
/// Teams runs a card's automatic refresh for at most 60 listed users.
pub const MAX_REFRESH_USERS: usize = 60;
/// Lease lengths the request form offers, shortest first (each one `parse_duration` reads).
pub const DURATION_LADDER: [i64; 10] = [
    15 * 60,
    30 * 60,
    3600,
    2 * 3600,
    4 * 3600,
    8 * 3600,
    12 * 3600,
    86_400,
    3 * 86_400,
    7 * 86_400,
];
/// What Extend asks for when a list card offers one button, and offers first on the status card.
pub const DEFAULT_EXTENSION: &str = "1h";
/// The longest extension the status card offers (the policy decides what is granted).
pub const MAX_EXTENSION_OFFERED: i64 = 4 * 3600;

fn short(text: &str) -> String {
    super::clean_text(text, SHORT_TEXT)
}

fn long(text: &str) -> String {
    super::clean_text(text, LONG_TEXT)
}

/// `2026-11-23 11:00 Europe/Berlin`: minutes are enough on a phone, in the reader's zone, named
/// (UTC for someone whose client never reported one: `Timestamp::to_reader_text`).
pub fn when(t: Timestamp) -> String {
    t.to_reader_text()
}

fn span(secs: i64) -> String {
    format_duration(Duration::seconds(secs))
}

/// A request's state in words, for every card and message: [`RequestStatus::in_words`], except
/// that a lease an admin ended says so ("Revoked by an admin", not "Ended").
pub fn status_words(request: &Request) -> &'static str {
    let revoked = request.status == RequestStatus::Expired
        && request
            .decision_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("revoked by an admin"));
    if revoked {
        "Revoked by an admin"
    } else {
        request.status.in_words()
    }
}

/// Keeper record types as people say them; an unknown type is its camelCase split into words.
const RECORD_TYPE_WORDS: [(&str, &str); 22] = [
    ("login", "Login"),
    ("databaseCredentials", "Database credentials"),
    ("serverCredentials", "Server credentials"),
    ("sshKeys", "SSH keys"),
    ("bankAccount", "Bank account"),
    ("bankCard", "Payment card"),
    ("paymentCard", "Payment card"),
    ("encryptedNotes", "Secure note"),
    ("file", "File attachment"),
    ("address", "Address"),
    ("contact", "Contact"),
    ("birthCertificate", "Birth certificate"),
    ("driverLicense", "Driver's license"),
    ("healthInsurance", "Health insurance"),
    ("membership", "Membership"),
    ("passport", "Passport"),
    ("photo", "Photo"),
    ("softwareLicense", "Software license"),
    ("ssnCard", "Identity card"),
    ("wifiCredentials", "Wi-Fi credentials"),
    ("general", "General"),
    ("pamMachine", "PAM machine"),
];

/// A Keeper record type as people read it: `databaseCredentials` → "Database credentials".
pub fn record_type_words(record_type: &str) -> String {
    let trimmed = record_type.trim();
    if let Some((_, words)) = RECORD_TYPE_WORDS.iter().find(|(t, _)| *t == trimmed) {
        return (*words).to_string();
    }
    let mut out = String::new();
    let mut prev_lower = false;
    for c in trimmed.chars() {
        if c == '_' || c == '-' {
            out.push(' ');
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    let mut chars = out.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Record".into(),
    }
}

/// Where the requester retrieves the credential: a sign-in page. The link carries no secret.
pub fn retrieve_url(base_url: &str, request_id: i64) -> String {
    format!(
        "{}/requests/{request_id}/issue",
        base_url.trim_end_matches('/')
    )
}

/// One line of a FactSet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fact {
    pub title: String,
    pub value: String,
}

impl Fact {
    pub fn new(title: &str, value: impl AsRef<str>) -> Self {
        Fact {
            title: title.to_string(),
            value: short(value.as_ref()),
        }
    }
}

/// One choice of an Input.ChoiceSet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub title: String,
    pub value: String,
}

/// The card's accent: an Adaptive Cards `Colors` / `ContainerStyle` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Default,
    Accent,
    Good,
    Warning,
    Attention,
}

// ---------------------------------------------------------------------------------------------
// Welcome and help
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct WelcomeCard {
    pub name: Option<String>,
    /// "2 requests wait for you", when something waits for this approver.
    pub waiting_headline: Option<String>,
    /// What waits for this approver's decision, each with Review.
    pub waiting: Vec<PendingItem>,
}

impl WelcomeCard {
    pub fn new(display_name: Option<&str>) -> Self {
        WelcomeCard {
            name: display_name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(short),
            waiting_headline: None,
            waiting: Vec::new(),
        }
    }

    /// Lists the requests waiting for this person's decision (an approver's welcome).
    pub fn with_waiting(mut self, items: Vec<PendingItem>) -> Self {
        self.waiting_headline = (!items.is_empty()).then(|| waiting_headline(items.len()));
        self.waiting = items.into_iter().take(MAX_LIST_ITEMS).collect();
        self
    }
}

/// "1 request waits for you" / "2 requests wait for you".
pub fn waiting_headline(count: usize) -> String {
    if count == 1 {
        "1 request waits for you".into()
    } else {
        format!("{count} requests wait for you")
    }
}

/// Names in a sentence: "Bob", "Bob and Dave", "Bob, Dave and Erin", "… and 3 more".
fn names(people: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut shown: Vec<String> = people.iter().take(SHOWN).map(|p| short(p)).collect();
    if people.len() > SHOWN {
        shown.push(format!("{} more", people.len() - SHOWN));
    }
    match shown.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HelpCard {
    /// Show the admin commands.
    pub admin: bool,
}

impl HelpCard {
    pub fn for_user(user: Option<&User>) -> Self {
        HelpCard {
            admin: user.is_some_and(|u| u.role == crate::domain::Role::Admin),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct RequestFormCard {
    /// Records the user may request: title shown, vault uid submitted.
    pub records: Vec<Choice>,
    /// Records left out of the list (too many to show).
    pub more_records: usize,
    /// The record chosen in advance, if any (a value from `records`).
    pub record: Option<String>,
    pub durations: Vec<Choice>,
    /// Each of `durations` in seconds, in the same order.
    pub duration_secs: Vec<i64>,
    /// The duration chosen in advance (a value from `durations`).
    pub duration: String,
    /// The longest lease the policy allows, as text.
    pub cap: String,
    /// The lifecycle's limit on justification and ticket length.
    pub max_text: usize,
    /// What was wrong with the last attempt, when the form is shown again.
    pub problem: Option<String>,
    /// The justification and ticket typed last time, when the form is shown again.
    pub justification: Option<String>,
    pub ticket: Option<String>,
    /// The pattern a justification must match before the form is sent (a JavaScript regex:
    /// at least the policy's minimum of characters, blanks at the ends aside), and what the
    /// form says when it does not.
    pub justification_regex: Option<String>,
    pub justification_error: String,
}

impl RequestFormCard {
    /// `cap_secs`: the policy's maximum lease; `default_secs`: the duration chosen in advance.
    pub fn new(records: &[Record], cap_secs: i64, default_secs: i64) -> Self {
        let durations = duration_choices(cap_secs);
        let default_secs = default_secs.clamp(1, cap_secs.max(1));
        // The longest offered duration not over the default.
        let duration = DURATION_LADDER
            .iter()
            .chain(std::iter::once(&cap_secs))
            .filter(|&&s| s <= default_secs && s <= cap_secs)
            .max()
            .map(|&s| duration_value(s))
            .unwrap_or_else(|| {
                durations
                    .first()
                    .map(|c| c.value.clone())
                    .unwrap_or_default()
            });
        RequestFormCard {
            records: records
                .iter()
                .take(MAX_RECORD_CHOICES)
                .map(|r| Choice {
                    title: short(&format!("{} ({})", r.title, r.sensitivity)),
                    value: r.vault_uid.clone(),
                })
                .collect(),
            more_records: records.len().saturating_sub(MAX_RECORD_CHOICES),
            record: None,
            duration_secs: duration_steps(cap_secs),
            durations,
            duration,
            cap: span(cap_secs),
            max_text: 500,
            problem: None,
            justification: None,
            ticket: None,
            justification_regex: None,
            justification_error: "Say why you need it.".into(),
        }
    }

    /// Names, in each duration's title, the sensitivities it is too long for, when some offered
    /// record's cap (`cap_of` its sensitivity) is shorter: `4h (not CRITICAL)`, `12h (LOW only)`.
    pub fn with_record_caps(
        mut self,
        records: &[Record],
        cap_of: impl Fn(crate::domain::Sensitivity) -> i64,
    ) -> Self {
        let mut offered: Vec<_> = records
            .iter()
            .take(MAX_RECORD_CHOICES)
            .map(|r| r.sensitivity)
            .collect();
        offered.sort();
        offered.dedup();
        for (choice, &secs) in self.durations.iter_mut().zip(&self.duration_secs) {
            let (fits, not): (Vec<_>, Vec<_>) = offered.iter().partition(|&&s| cap_of(s) >= secs);
            let names = |list: Vec<&crate::domain::Sensitivity>, sep: &str| {
                list.iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(sep)
            };
            if not.is_empty() || fits.is_empty() {
                continue;
            }
            choice.title = if not.len() < fits.len() {
                format!("{} (not {})", choice.title, names(not, ", "))
            } else {
                format!("{} ({} only)", choice.title, names(fits, " or "))
            };
        }
        self
    }

    /// Asks for at least `min_chars` characters of justification before the form is sent.
    pub fn with_min_justification(mut self, min_chars: usize) -> Self {
        if min_chars > 1 {
            self.justification_regex = Some(format!(r"^\s*\S[\s\S]{{{},}}\S\s*$", min_chars - 2));
            self.justification_error =
                format!("Say why you need it, in at least {min_chars} characters.");
        }
        self
    }

    /// Fills the form with what was typed last time; the duration becomes the longest offered
    /// one not over `duration_secs` (so one over the record's cap comes back as the cap).
    pub fn with_answers(
        mut self,
        duration_secs: Option<i64>,
        cap_secs: i64,
        justification: Option<&str>,
        ticket: Option<&str>,
    ) -> Self {
        if let Some(asked) = duration_secs {
            let limit = asked.min(cap_secs);
            if let Some(best) = self
                .durations
                .iter()
                .zip(&self.duration_secs)
                .filter(|&(_, &secs)| secs <= limit)
                .max_by_key(|&(_, &secs)| secs)
            {
                self.duration = best.0.value.clone();
            }
        }
        let kept = |t: Option<&str>, max: usize| {
            t.map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| super::clean_text(t, max))
        };
        self.justification = kept(justification, self.max_text);
        self.ticket = kept(ticket, 100);
        self
    }

    /// Chooses a record in advance (ignored unless it is one of the choices).
    pub fn with_record(mut self, vault_uid: &str) -> Self {
        if self.records.iter().any(|c| c.value == vault_uid) {
            self.record = Some(vault_uid.to_string());
        }
        self
    }

    /// Shows the form again with what was wrong.
    pub fn with_problem(mut self, problem: &str) -> Self {
        self.problem = Some(long(problem));
        self
    }
}

/// The form's value for a duration: compact text `parse_duration` reads (`30m`, `2h`, `1d 12h`).
fn duration_value(secs: i64) -> String {
    span(secs)
}

/// The ladder's durations up to the cap, and the cap itself when it is not on the ladder.
pub fn duration_choices(cap_secs: i64) -> Vec<Choice> {
    duration_steps(cap_secs)
        .into_iter()
        .map(|s| Choice {
            title: span(s),
            value: duration_value(s),
        })
        .collect()
}

/// The seconds of [`duration_choices`], in order.
fn duration_steps(cap_secs: i64) -> Vec<i64> {
    let cap_secs = cap_secs.max(60);
    let mut secs: Vec<i64> = DURATION_LADDER
        .iter()
        .copied()
        .filter(|&s| s <= cap_secs)
        .collect();
    if secs.last() != Some(&cap_secs) {
        secs.push(cap_secs);
    }
    secs
}

// ---------------------------------------------------------------------------------------------
// Request status
// ---------------------------------------------------------------------------------------------

/// The requester's card for one request, one look per state.
#[derive(Debug, Clone, Serialize)]
pub struct RequestStatusCard {
    pub request_id: i64,
    pub status: RequestStatus,
    pub record: String,
    pub headline: String,
    pub tone: Tone,
    /// What the state means for the requester, in a sentence or two.
    pub summary: String,
    pub facts: Vec<Fact>,
    /// Why it was denied, ended or cannot be fulfilled.
    pub reason: Option<String>,
    /// The sign-in page that retrieves the credential (live lease with retrievals left).
    pub retrieve_url: Option<String>,
    pub can_release: bool,
    /// Release goes to the overflow menu ("…") when Retrieve and Extend are shown too: three
    /// buttons do not fit a phone's width (#18.10).
    pub release_in_menu: bool,
    /// Durations offered by Extend; empty when the lease cannot be extended now.
    pub extend_choices: Vec<Choice>,
    /// The one Extend offers first.
    pub extend_default: String,
    /// Teams user ids (`29:…`) whose clients refresh the card to their own view: in a group
    /// chat the requester alone (see [`RequestStatusCard::refresh_for`]).
    pub refresh_user_ids: Vec<String>,
}

impl RequestStatusCard {
    pub fn new(request: &Request, record: &Record, folder: Option<&str>, base_url: &str) -> Self {
        use RequestStatus::*;
        let id = request.id;
        let left = request.issuances_left();
        let until = request
            .lease_expires_at
            .map(when)
            .unwrap_or_else(|| "—".into());
        let (_, tone, summary) = match request.status {
            Pending => (
                "Waiting for approval",
                Tone::Accent,
                "The approvers have been asked. You'll get a message when it is decided.".into(),
            ),
            RequiresTriage => (
                "Waiting for an admin",
                Tone::Warning,
                "This request needs an admin's decision; they have been told.".into(),
            ),
            Approved => (
                "Approved",
                Tone::Good,
                format!(
                    "Access until {until}. Retrieve opens a sign-in page that shows the credential; each retrieval opens once."
                ),
            ),
            Issued => (
                "Approved — retrieved",
                Tone::Good,
                format!(
                    "Access until {until}. {left} of {} retrievals left.",
                    request.max_issuances
                ),
            ),
            RenewalPending => (
                "More time asked for",
                Tone::Accent,
                format!("An approver will decide. Your access continues until {until} meanwhile."),
            ),
            Denied => ("Denied", Tone::Attention, "This request was denied.".into()),
            Expired => (
                "Ended",
                Tone::Default,
                if status_words(request) == "Revoked by an admin" {
                    "An admin ended your access; every link was removed.".into()
                } else {
                    "Access has ended and every link was removed.".into()
                },
            ),
            Released => (
                "Released",
                Tone::Default,
                "You handed access back; every link was removed.".into(),
            ),
            Unfulfillable => (
                "Cannot be fulfilled",
                Tone::Attention,
                "The vault cannot share this record, so nothing can be retrieved.".into(),
            ),
        };
        let summary = if request.status.has_live_lease() && request.next_attempt_at.is_some() {
            format!("{summary} The vault is slow to answer; Passkey is checking again shortly.")
        } else {
            summary
        };
        let mut facts = vec![
            Fact::new("Request", format!("#{id}")),
            Fact::new("Record", &record.title),
        ];
        if let Some(folder) = folder {
            facts.push(Fact::new("Folder", folder));
        }
        let duration = request
            .approved_duration_secs
            .unwrap_or(request.requested_duration_secs);
        facts.push(Fact::new("Duration", span(duration)));
        if request.status.has_live_lease() {
            facts.push(Fact::new("Until", &until));
            facts.push(Fact::new(
                "Retrievals left",
                format!("{left} of {}", request.max_issuances),
            ));
        }
        if let Some(extra) = request
            .renewal_duration_secs
            .filter(|_| request.status == RenewalPending)
        {
            facts.push(Fact::new("More time asked", span(extra)));
        }
        if let Some(ticket) = &request.ticket_id {
            facts.push(Fact::new("Ticket", ticket));
        }
        if request.break_glass {
            facts.push(Fact::new("Break-glass", "yes, to be reviewed"));
        }
        let reason = match request.status {
            Denied | Expired | Released | Unfulfillable => {
                request.decision_reason.as_deref().map(long)
            }
            _ => None,
        };
        let live = request.status.has_live_lease();
        let can_extend = matches!(request.status, Approved | Issued);
        RequestStatusCard {
            request_id: id,
            status: request.status,
            record: short(&record.title),
            headline: status_words(request).into(),
            tone,
            summary,
            facts,
            reason,
            retrieve_url: (live && left > 0).then(|| retrieve_url(base_url, id)),
            can_release: live,
            release_in_menu: live && left > 0 && can_extend,
            extend_choices: if can_extend {
                duration_choices(MAX_EXTENSION_OFFERED)
            } else {
                Vec::new()
            },
            extend_default: DEFAULT_EXTENSION.into(),
            refresh_user_ids: Vec::new(),
        }
    }

    /// Says who was asked to decide (`asked`: their approval card was delivered) and who could
    /// not be reached (`unreached`: the notice waits until they first talk to the bot), instead
    /// of "the approvers have been asked". A request that is not waiting is left as it is.
    pub fn with_reach(mut self, asked: &[String], unreached: &[String]) -> Self {
        if !matches!(
            self.status,
            RequestStatus::Pending | RequestStatus::RenewalPending
        ) || (asked.is_empty() && unreached.is_empty())
        {
            return self;
        }
        let mut said = Vec::new();
        if !asked.is_empty() {
            said.push(format!("Asked: {}.", names(asked)));
        }
        if !unreached.is_empty() {
            let (who, verb) = (
                names(unreached),
                if unreached.len() == 1 { "has" } else { "have" },
            );
            said.push(if asked.is_empty() {
                format!(
                    "Nobody could be reached yet: {who} {verb} no chat with Passkey. They will see it when they next open Passkey; if nobody decides in time, the admins are told."
                )
            } else {
                format!(
                    "Not reached yet: {who} ({verb} no chat with Passkey); they will see it when they next open Passkey."
                )
            });
        }
        said.push(if self.status == RequestStatus::Pending {
            "You'll get a message when it is decided.".into()
        } else {
            self.summary.clone()
        });
        self.summary = said.join(" ");
        self
    }

    /// Says where the approval card went in the approvers' team channels (#18.7): `posted` there,
    /// or `missed` (a channel could not be reached: its members were asked in their 1:1 chats
    /// only). Call after [`Self::with_reach`]; a request that is not waiting is left as it is.
    pub fn with_channels(mut self, posted: bool, missed: bool) -> Self {
        if !matches!(
            self.status,
            RequestStatus::Pending | RequestStatus::RenewalPending
        ) {
            return self;
        }
        let note = match (posted, missed) {
            (_, true) => {
                "The approvers' team channel could not be reached; its members were asked in their 1:1 chats."
            }
            (true, false) => "Posted in the approvers' team channel too.",
            (false, false) => return self,
        };
        self.summary = format!("{note} {}", self.summary);
        self
    }

    /// The card in a group chat or channel: the listed Teams user ids (the requester) refresh it
    /// to their own view, with every button; anyone else's refresh shows what they may see of the
    /// request (the approval or decided card), so Release and Extend stay the requester's.
    pub fn refresh_for(mut self, teams_user_ids: &[String]) -> Self {
        self.refresh_user_ids = teams_user_ids
            .iter()
            .take(MAX_REFRESH_USERS)
            .map(|id| short(id))
            .collect();
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Approval and decided
// ---------------------------------------------------------------------------------------------

/// What an approver sees. One card is sent to every approver; `refresh_user_ids` makes Teams ask
/// the bot for each listed person's own view (`refresh` verb, `view: "approver"`), so the buttons
/// show only to those who may decide.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalCard {
    pub request_id: i64,
    pub headline: String,
    pub requester: String,
    pub record: String,
    pub folder: String,
    pub sensitivity: String,
    pub record_type: String,
    pub duration: String,
    /// An extension: the extra time asked for.
    pub extension: Option<String>,
    pub ticket: Option<String>,
    pub justification: String,
    pub reasons: Vec<String>,
    pub break_glass: bool,
    /// Approve / Deny and the comment box are shown.
    pub can_decide: bool,
    /// Teams user ids (`29:…`) whose clients refresh the card automatically.
    pub refresh_user_ids: Vec<String>,
    /// On the copy in a team channel (#18.7): who may decide, for everyone who sees it without
    /// buttons.
    pub deciders: Option<String>,
}

impl ApprovalCard {
    pub fn new(
        request: &Request,
        record: &Record,
        requester: &User,
        folder: Option<&str>,
        reasons: &[String],
    ) -> Self {
        let extension = request
            .renewal_duration_secs
            .filter(|_| request.status == RequestStatus::RenewalPending)
            .map(span);
        ApprovalCard {
            request_id: request.id,
            headline: if extension.is_some() {
                "More time asked for".into()
            } else if request.break_glass {
                "Break-glass access taken".into()
            } else {
                "Approval needed".into()
            },
            requester: short(&requester.display_name),
            record: short(&record.title),
            folder: short(folder.unwrap_or("—")),
            sensitivity: record.sensitivity.to_string(),
            record_type: short(&record_type_words(&record.record_type)),
            duration: span(request.requested_duration_secs),
            extension,
            ticket: request.ticket_id.as_deref().map(short),
            justification: long(&request.justification),
            reasons: reasons.iter().take(MAX_REASONS).map(|r| long(r)).collect(),
            break_glass: request.break_glass,
            can_decide: false,
            refresh_user_ids: Vec::new(),
            deciders: None,
        }
    }

    /// The copy posted in a team channel: says that the members of `group` decide, and that
    /// they see Approve and Deny on their own view of the card.
    pub fn in_channel(mut self, group: &str) -> Self {
        self.deciders = Some(format!(
            "Members of the approver group {} decide here: their own view of this card shows Approve and Deny.",
            short(group)
        ));
        self
    }

    /// This view is for someone who may decide: show Approve / Deny and the comment box.
    pub fn decidable(mut self, yes: bool) -> Self {
        self.can_decide = yes;
        self
    }

    /// The Teams user ids whose clients refresh the card to their own view (at most 60).
    pub fn refresh_for(mut self, teams_user_ids: &[String]) -> Self {
        self.refresh_user_ids = teams_user_ids
            .iter()
            .take(MAX_REFRESH_USERS)
            .map(|id| short(id))
            .collect();
        self
    }
}

/// What every copy of an approval card becomes once the request is decided or ends: the
/// outcome and who decided when, without buttons.
#[derive(Debug, Clone, Serialize)]
pub struct DecidedCard {
    pub request_id: i64,
    pub outcome: String,
    pub tone: Tone,
    pub requester: String,
    pub record: String,
    pub facts: Vec<Fact>,
    /// The decider's comment or the reason it ended.
    pub reason: Option<String>,
    /// For a stale click: "Already decided by … at …".
    pub note: Option<String>,
}

impl DecidedCard {
    pub fn new(
        request: &Request,
        record: &Record,
        requester: &str,
        decided_by: Option<&str>,
    ) -> Self {
        use RequestStatus::*;
        let (outcome, tone) = match request.status {
            Approved | Issued | RenewalPending => ("Approved", Tone::Good),
            Denied => ("Denied", Tone::Attention),
            Expired => (status_words(request), Tone::Default),
            Released => ("Released", Tone::Default),
            Unfulfillable => ("Approved, but cannot be fulfilled", Tone::Warning),
            Pending => ("Waiting for approval", Tone::Accent),
            RequiresTriage => ("Sent to an admin", Tone::Warning),
        };
        let mut facts = vec![
            Fact::new("Request", format!("#{}", request.id)),
            Fact::new("Requester", requester),
            Fact::new("Record", &record.title),
        ];
        if let Some(by) = decided_by {
            facts.push(Fact::new("Decided by", by));
        }
        if let Some(at) = request.decided_at {
            facts.push(Fact::new("Decided at", when(at)));
        }
        if let Some(end) = request.ended_at {
            facts.push(Fact::new("Ended at", when(end)));
        }
        DecidedCard {
            request_id: request.id,
            outcome: outcome.into(),
            tone,
            requester: short(requester),
            record: short(&record.title),
            facts,
            reason: request.decision_reason.as_deref().map(long),
            note: None,
        }
    }

    /// Marks the card as the answer to a click on a card that was already decided.
    pub fn already_decided(mut self) -> Self {
        let by = self
            .facts
            .iter()
            .find(|f| f.title == "Decided by")
            .map(|f| format!(" by {}", f.value))
            .unwrap_or_default();
        let at = self
            .facts
            .iter()
            .find(|f| f.title == "Decided at")
            .map(|f| format!(" at {}", f.value))
            .unwrap_or_default();
        self.note = Some(format!("Already decided{by}{at}. Nothing was changed."));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// One request in a list.
#[derive(Debug, Clone, Serialize)]
pub struct RequestItem {
    pub request_id: i64,
    pub record: String,
    pub status: RequestStatus,
    /// The state in words ([`status_words`]).
    pub status_words: String,
    /// What matters about the state, one short line.
    pub detail: String,
    pub can_release: bool,
    pub can_extend: bool,
    /// The duration Extend asks for (one button per item).
    pub extension: String,
    /// The sign-in page that retrieves the credential (live lease with retrievals left), once
    /// [`MyRequestsCard::with_retrieve`] names the base URL.
    pub retrieve_url: Option<String>,
}

impl RequestItem {
    pub fn new(request: &Request, record_title: &str) -> Self {
        use RequestStatus::*;
        let detail = match request.status {
            Approved | Issued | RenewalPending => format!(
                "until {} · {} of {} retrievals left",
                request
                    .lease_expires_at
                    .map(when)
                    .unwrap_or_else(|| "—".into()),
                request.issuances_left(),
                request.max_issuances
            ),
            Pending | RequiresTriage => format!("asked {}", when(request.created_at)),
            _ => request
                .decision_reason
                .as_deref()
                .map(short)
                .unwrap_or_else(|| status_words(request).to_lowercase()),
        };
        RequestItem {
            request_id: request.id,
            record: short(record_title),
            status: request.status,
            status_words: status_words(request).into(),
            detail,
            can_release: request.status.has_live_lease(),
            can_extend: matches!(request.status, Approved | Issued),
            extension: DEFAULT_EXTENSION.into(),
            retrieve_url: None,
        }
    }

    /// Whether Retrieve applies: approved or retrieved, with retrievals left.
    fn retrievable(request: &Request) -> bool {
        matches!(
            request.status,
            RequestStatus::Approved | RequestStatus::Issued
        ) && request.issuances_left() > 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MyRequestsCard {
    pub items: Vec<RequestItem>,
    pub more: usize,
}

impl MyRequestsCard {
    /// Requests with their record titles, newest first as given.
    pub fn new<'a>(requests: impl IntoIterator<Item = (&'a Request, &'a str)>) -> Self {
        let all: Vec<RequestItem> = requests
            .into_iter()
            .map(|(r, title)| RequestItem::new(r, title))
            .collect();
        let more = all.len().saturating_sub(MAX_LIST_ITEMS);
        MyRequestsCard {
            items: all.into_iter().take(MAX_LIST_ITEMS).collect(),
            more,
        }
    }

    /// Adds Retrieve to the approved and retrieved requests with retrievals left (`requests`
    /// as given to [`MyRequestsCard::new`]).
    pub fn with_retrieve<'a>(
        mut self,
        requests: impl IntoIterator<Item = &'a Request>,
        base_url: &str,
    ) -> Self {
        for request in requests {
            if let Some(item) = self
                .items
                .iter_mut()
                .find(|i| i.request_id == request.id)
                .filter(|_| RequestItem::retrievable(request))
            {
                item.retrieve_url = Some(retrieve_url(base_url, request.id));
            }
        }
        self
    }
}

/// A request waiting for the viewer's decision.
#[derive(Debug, Clone, Serialize)]
pub struct PendingItem {
    pub request_id: i64,
    pub requester: String,
    pub record: String,
    pub sensitivity: String,
    pub duration: String,
    pub justification: String,
    pub waiting_since: String,
}

impl PendingItem {
    pub fn new(request: &Request, record: &Record, requester: &str) -> Self {
        PendingItem {
            request_id: request.id,
            requester: short(requester),
            record: short(&record.title),
            sensitivity: record.sensitivity.to_string(),
            duration: span(
                request
                    .renewal_duration_secs
                    .filter(|_| request.status == RequestStatus::RenewalPending)
                    .unwrap_or(request.requested_duration_secs),
            ),
            justification: clip_line(&request.justification),
            waiting_since: when(request.created_at),
        }
    }
}

/// A list item's justification: the first 120 characters.
fn clip_line(text: &str) -> String {
    super::clean_text(text, 120)
}

#[derive(Debug, Clone, Serialize)]
pub struct PendingApprovalsCard {
    pub headline: String,
    pub items: Vec<PendingItem>,
    pub more: usize,
}

impl PendingApprovalsCard {
    pub fn new(items: Vec<PendingItem>) -> Self {
        let more = items.len().saturating_sub(MAX_LIST_ITEMS);
        PendingApprovalsCard {
            headline: "Waiting for you".into(),
            items: items.into_iter().take(MAX_LIST_ITEMS).collect(),
            more,
        }
    }

    /// What waited for an approver the bot could not reach before: "2 requests wait for you".
    pub fn waiting(items: Vec<PendingItem>) -> Self {
        let headline = waiting_headline(items.len());
        PendingApprovalsCard {
            headline,
            ..PendingApprovalsCard::new(items)
        }
    }
}

/// A request in the admins' triage queue.
#[derive(Debug, Clone, Serialize)]
pub struct TriageItem {
    pub request_id: i64,
    pub requester: String,
    pub record: String,
    pub sensitivity: String,
    pub duration: String,
    pub justification: String,
    pub reason: Option<String>,
    pub waiting_since: String,
}

impl TriageItem {
    pub fn new(request: &Request, record: &Record, requester: &str) -> Self {
        TriageItem {
            request_id: request.id,
            requester: short(requester),
            record: short(&record.title),
            sensitivity: record.sensitivity.to_string(),
            duration: span(request.requested_duration_secs),
            justification: clip_line(&request.justification),
            reason: request.decision_reason.as_deref().map(clip_line),
            waiting_since: when(request.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TriageQueueCard {
    pub items: Vec<TriageItem>,
    pub more: usize,
}

impl TriageQueueCard {
    pub fn new(items: Vec<TriageItem>) -> Self {
        let more = items.len().saturating_sub(MAX_LIST_ITEMS);
        TriageQueueCard {
            items: items.into_iter().take(MAX_LIST_ITEMS).collect(),
            more,
        }
    }
}

/// A record the user may request.
#[derive(Debug, Clone, Serialize)]
pub struct RecordItem {
    pub title: String,
    pub record_type: String,
    pub sensitivity: String,
}

impl From<&Record> for RecordItem {
    fn from(r: &Record) -> Self {
        RecordItem {
            title: short(&r.title),
            record_type: short(&record_type_words(&r.record_type)),
            sensitivity: r.sensitivity.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RecordSearchCard {
    pub query: Option<String>,
    pub items: Vec<RecordItem>,
    pub more: usize,
    /// Said when the list may be incomplete (permissions could not be refreshed…).
    pub note: Option<String>,
}

impl RecordSearchCard {
    pub fn new(query: Option<&str>, records: &[Record]) -> Self {
        RecordSearchCard {
            query: query.map(str::trim).filter(|q| !q.is_empty()).map(short),
            items: records
                .iter()
                .take(MAX_RECORD_CHOICES)
                .map(RecordItem::from)
                .collect(),
            more: records.len().saturating_sub(MAX_RECORD_CHOICES),
            note: None,
        }
    }

    pub fn with_note(mut self, note: &str) -> Self {
        self.note = Some(long(note));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Admin health, errors
// ---------------------------------------------------------------------------------------------

/// One check on the health card.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl HealthCheck {
    pub fn new(name: &str, ok: bool, detail: &str) -> Self {
        HealthCheck {
            name: short(name),
            ok,
            detail: short(detail),
        }
    }

    /// A check whose detail must say what to fix (settings and their variables), so it may be
    /// longer than a status line.
    pub fn explained(name: &str, ok: bool, detail: &str) -> Self {
        HealthCheck {
            name: short(name),
            ok,
            detail: long(detail),
        }
    }
}

impl From<&JobRun> for HealthCheck {
    fn from(run: &JobRun) -> Self {
        let detail = match &run.error {
            Some(e) => format!("{} · {e}", when(run.finished_at)),
            None => when(run.finished_at),
        };
        HealthCheck {
            name: short(&format!("job {}", run.job_name)),
            ok: run.ok,
            detail: short(&detail),
        }
    }
}

/// `admin health`: configuration diagnostics without secrets, the database, the vault backend,
/// the last run of each job.
#[derive(Debug, Clone, Serialize)]
pub struct AdminHealthCard {
    pub all_ok: bool,
    pub checks: Vec<HealthCheck>,
    pub jobs: Vec<HealthCheck>,
    pub version: String,
}

impl AdminHealthCard {
    pub fn new(checks: Vec<HealthCheck>, runs: &[JobRun]) -> Self {
        let jobs: Vec<HealthCheck> = runs.iter().take(20).map(HealthCheck::from).collect();
        AdminHealthCard {
            all_ok: checks.iter().chain(&jobs).all(|c| c.ok),
            checks: checks.into_iter().take(20).collect(),
            jobs,
            version: crate::VERSION.into(),
        }
    }

    /// Adds each listed job's schedule and next run (`job name` → `every 1m · next …`) to its
    /// line.
    pub fn with_job_schedules(
        mut self,
        schedules: &std::collections::BTreeMap<String, String>,
    ) -> Self {
        for job in &mut self.jobs {
            if let Some(schedule) = job
                .name
                .strip_prefix("job ")
                .and_then(|name| schedules.get(name))
            {
                job.detail = long(&format!("{} · {schedule}", job.detail));
            }
        }
        self
    }
}

/// The outcome of an admin command that changes or checks something (`admin sync`, `admin
/// authority …`, `admin role …`, `admin replay`): a title and the report, line by line.
#[derive(Debug, Clone, Serialize)]
pub struct AdminResultCard {
    pub title: String,
    pub ok: bool,
    pub lines: Vec<String>,
    /// Lines left out (the card stays small; the full report is in the audit trail or the CLI).
    pub more: usize,
    /// Tabular reports (replay) keep their columns.
    pub monospace: bool,
}

/// Lines an admin result card shows; each line is clipped like a reason.
pub const MAX_RESULT_LINES: usize = 40;

impl AdminResultCard {
    /// `report` is the command's text answer; a fenced block (```) is shown in monospace.
    pub fn new(title: &str, ok: bool, report: &str) -> Self {
        let fenced = report.trim().starts_with("```");
        let lines: Vec<String> = report
            .lines()
            .filter(|l| !l.trim().starts_with("```") && !l.trim().is_empty())
            .map(long)
            .collect();
        AdminResultCard {
            title: short(title),
            ok,
            more: lines.len().saturating_sub(MAX_RESULT_LINES),
            lines: lines.into_iter().take(MAX_RESULT_LINES).collect(),
            monospace: fenced,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCard {
    pub title: String,
    pub message: String,
    /// A reference for support (the request's trace id), never a secret.
    pub reference: Option<String>,
}

impl ErrorCard {
    pub fn new(title: &str, message: &str) -> Self {
        ErrorCard {
            title: short(title),
            message: long(message),
            reference: None,
        }
    }

    pub fn with_reference(mut self, reference: &str) -> Self {
        self.reference = Some(short(reference));
        self
    }
}

/// One line of the access report card: a record or a person, and what they add up to.
#[derive(Debug, Clone, Serialize)]
pub struct ReportLine {
    pub name: String,
    pub detail: String,
}

impl ReportLine {
    pub fn new(name: &str, detail: &str) -> Self {
        ReportLine {
            name: short(name),
            detail: short(detail),
        }
    }
}

/// `admin report`: the window, the totals, the top records and people, and the button that
/// downloads the full CSV from the signed-in page. The link holds the window and the record
/// number, no secret: the page signs the admin in and checks the role itself.
#[derive(Debug, Clone, Serialize)]
pub struct AccessReportCard {
    pub window: String,
    pub record: Option<String>,
    pub summary: String,
    pub records: Vec<ReportLine>,
    pub people: Vec<ReportLine>,
    pub download_url: String,
}

impl AccessReportCard {
    /// At most `top` records and people are listed.
    pub fn new(
        window: &str,
        record: Option<&str>,
        summary: &str,
        records: Vec<ReportLine>,
        people: Vec<ReportLine>,
        download_url: &str,
        top: usize,
    ) -> Self {
        AccessReportCard {
            window: short(window),
            record: record.map(short),
            summary: long(summary),
            records: records.into_iter().take(top).collect(),
            people: people.into_iter().take(top).collect(),
            download_url: download_url.to_string(),
        }
    }
}

/// The most rows an access review card shows at once: undecided rows first, so a big review is
/// answered a page at a time (and stays far below the size limit).
pub const MAX_REVIEW_ROWS: usize = 15;
/// The most lease holders an access review card names.
pub const MAX_LEASE_HOLDERS: usize = 20;

/// One row of an access review as the card takes it.
#[derive(Debug, Clone)]
pub struct ReviewRowInput {
    /// `AUTHORITY` or `BREAK_GLASS`.
    pub kind: String,
    pub id: i64,
    pub title: String,
    pub detail: String,
    /// "kept by Bob on 2026-11-23", once decided.
    pub decided: Option<String>,
    /// The reader may decide it (open review, undecided, not their own OWNER row).
    pub decidable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewRow {
    pub kind: String,
    pub id: i64,
    pub title: String,
    pub detail: String,
    pub decided: Option<String>,
    pub decidable: bool,
    pub keep_label: &'static str,
    pub remove_label: &'static str,
}

/// An access review (#19.2): the record's authority rows and break-glass uses to keep or remove,
/// and who held leases in the period.
#[derive(Debug, Clone, Serialize)]
pub struct AccessReviewCard {
    pub review_id: i64,
    pub record: String,
    pub headline: String,
    pub note: Option<String>,
    pub period: String,
    pub status: String,
    pub lease_holders: String,
    pub rows: Vec<ReviewRow>,
    /// Undecided rows not shown.
    pub more: usize,
    pub can_confirm: bool,
    /// The rows shown (`KIND:id,…`): "Confirm the rest" keeps only what the reader saw.
    pub shown: String,
}

impl AccessReviewCard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        review_id: i64,
        record: &str,
        period: (Timestamp, Timestamp),
        open: bool,
        status: &str,
        note: Option<&str>,
        lease_holders: &[(String, u32)],
        rows: Vec<ReviewRowInput>,
    ) -> Self {
        let (mut undecided, decided): (Vec<ReviewRowInput>, Vec<ReviewRowInput>) =
            rows.into_iter().partition(|r| r.decided.is_none());
        let more = undecided.len().saturating_sub(MAX_REVIEW_ROWS);
        undecided.truncate(MAX_REVIEW_ROWS);
        let room = MAX_REVIEW_ROWS - undecided.len();
        let shown_rows: Vec<ReviewRowInput> = undecided
            .into_iter()
            .chain(decided.into_iter().take(room))
            .collect();
        let can_confirm = open && shown_rows.iter().any(|r| r.decidable);
        let shown = shown_rows
            .iter()
            .filter(|r| r.decidable)
            .map(|r| format!("{}:{}", r.kind, r.id))
            .collect::<Vec<_>>()
            .join(",");
        let rows = shown_rows
            .into_iter()
            .map(|r| {
                let break_glass = r.kind == "BREAK_GLASS";
                ReviewRow {
                    decidable: open && r.decidable,
                    kind: r.kind,
                    id: r.id,
                    title: short(&r.title),
                    detail: long(&r.detail),
                    // A row the reader may not decide is their own authority or break-glass use.
                    decided: match (&r.decided, open && !r.decidable) {
                        (Some(d), _) => Some(short(d)),
                        (None, true) => Some("Yours: another owner or an admin decides it.".into()),
                        (None, false) => None,
                    },
                    keep_label: if break_glass { "Accept" } else { "Keep" },
                    remove_label: if break_glass { "Flag" } else { "Remove" },
                }
            })
            .collect();
        let mut names: Vec<String> = lease_holders
            .iter()
            .take(MAX_LEASE_HOLDERS)
            .map(|(name, n)| format!("{} ({n})", short(name)))
            .collect();
        if lease_holders.len() > MAX_LEASE_HOLDERS {
            names.push(format!(
                "and {} more",
                lease_holders.len() - MAX_LEASE_HOLDERS
            ));
        }
        let headline = if open {
            "Keep or remove each row; Confirm the rest keeps every row shown that you did not remove."
        } else {
            "This review is over; nothing here can be changed."
        };
        AccessReviewCard {
            review_id,
            record: short(record),
            headline: headline.into(),
            note: note.map(long),
            period: format!("{} to {}", when(period.0), when(period.1)),
            status: short(status),
            lease_holders: if names.is_empty() {
                "Nobody.".into()
            } else {
                long(&names.join(", "))
            },
            rows,
            more,
            can_confirm,
            shown,
        }
    }
}
