//! Adaptive Cards: the templates in `cards/*.json` (one per card, embedded at build time) rendered
//! with handlebars into `serde_json::Value`s ready to attach to an activity.
//!
//! How a card is made safe, whatever the people using Passkey type:
//! - Handlebars' HTML escaping is replaced by a **JSON string escaper** ([`json_string_escape`]):
//!   every `{{value}}` in a template sits inside a JSON string literal (`"text": "{{title}}"`), or
//!   is a number or a boolean we computed, and the escaper makes quotes, backslashes, newlines and
//!   control characters legal there. Templates never use triple-stash (`{{{…}}}`) or `{{& …}}`,
//!   which would bypass the escaper; a test reads every template to hold that line.
//! - Before rendering, every string in the view model is cleaned ([`clean_text`]): control
//!   characters other than newline and tab and bidirectional override characters (the "Trojan
//!   Source" trick: text that reads differently from what it is) are dropped, and anything longer
//!   than [`MAX_TEXT_CHARS`] is cut with an ellipsis; markdown link syntax (`](`) is broken with a
//!   zero-width space, so typed text cannot become a link on someone else's card. Backticks are
//!   dropped: Teams card markdown has no inline code, so they would show as stray characters. View-model constructors clip shorter fields
//!   and cap lists on top of that.
//! - Strict mode: a template naming a field the view model does not have is an error, not an
//!   empty string.
//! - The rendered text is parsed back as JSON, must be an `AdaptiveCard`, and must fit in
//!   [`MAX_CARD_BYTES`]. Anything else is a [`CardError`], never a panic.
//! - No view model has a field for a share URL, an issuance token or an OTP (INV-5). The only link
//!   a card carries is the Retrieve button's `{base}/requests/{id}/issue`, and the access report's
//!   download link `{base}/reports/access/{from}/{to}[/{record id}]`; neither holds a secret.

mod views;

pub use views::*;

use handlebars::Handlebars;
use serde::Serialize;
use serde_json::Value;
use std::sync::LazyLock;

/// The largest card (compact JSON) the renderer hands out. Teams refuses messages over 28 KB,
/// activity envelope included, so cards keep 2 KB of room for it.
pub const MAX_CARD_BYTES: usize = 26 * 1024;
/// The longest any single text in a card may be, in characters, whatever the view model holds.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Why a card could not be made. Every variant is a bug or an oversized input, for the log;
/// the caller falls back to a text reply.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("card templates failed to load: {0}")]
    Templates(String),
    #[error("card view model for `{card}` could not be serialized: {source}")]
    ViewModel {
        card: &'static str,
        source: serde_json::Error,
    },
    #[error("card `{card}` failed to render: {message}")]
    Render { card: &'static str, message: String },
    #[error("card `{card}` rendered invalid JSON: {source}")]
    InvalidJson {
        card: &'static str,
        source: serde_json::Error,
    },
    #[error("card `{card}` rendered JSON that is not an AdaptiveCard")]
    NotACard { card: &'static str },
    #[error("card `{card}` is {bytes} bytes, over the {MAX_CARD_BYTES}-byte limit")]
    TooLarge { card: &'static str, bytes: usize },
}

/// Every template, by name. The name is also the file name in `cards/` (without `.json`).
pub const TEMPLATES: [(&str, &str); 15] = [
    ("welcome", include_str!("../../cards/welcome.json")),
    ("help", include_str!("../../cards/help.json")),
    (
        "request-form",
        include_str!("../../cards/request-form.json"),
    ),
    (
        "request-status",
        include_str!("../../cards/request-status.json"),
    ),
    ("approval", include_str!("../../cards/approval.json")),
    ("decided", include_str!("../../cards/decided.json")),
    ("my-requests", include_str!("../../cards/my-requests.json")),
    (
        "pending-approvals",
        include_str!("../../cards/pending-approvals.json"),
    ),
    (
        "record-search",
        include_str!("../../cards/record-search.json"),
    ),
    (
        "triage-queue",
        include_str!("../../cards/triage-queue.json"),
    ),
    (
        "admin-health",
        include_str!("../../cards/admin-health.json"),
    ),
    (
        "admin-result",
        include_str!("../../cards/admin-result.json"),
    ),
    ("error", include_str!("../../cards/error.json")),
    (
        "access-report",
        include_str!("../../cards/access-report.json"),
    ),
    (
        "access-review",
        include_str!("../../cards/access-review.json"),
    ),
];

static REGISTRY: LazyLock<Result<Handlebars<'static>, String>> = LazyLock::new(registry);

fn registry() -> Result<Handlebars<'static>, String> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(json_string_escape);
    for (name, text) in TEMPLATES {
        if let Some(why) = unsafe_template_syntax(text) {
            return Err(format!("template `{name}` uses {why}"));
        }
        hb.register_template_string(name, text)
            .map_err(|e| format!("template `{name}`: {e}"))?;
    }
    Ok(hb)
}

/// Template syntax that would put text into the card without the JSON escaper.
pub fn unsafe_template_syntax(template: &str) -> Option<&'static str> {
    if template.contains("{{{") {
        Some("triple-stash `{{{`")
    } else if template.contains("{{&") || template.contains("{{~&") {
        Some("unescaped `{{&`")
    } else if template.contains("{{{{") {
        Some("a raw block")
    } else {
        None
    }
}

/// Escapes text for the inside of a JSON string literal (the quotes are in the template).
/// `serde_json::from_str(&format!("\"{}\"", json_string_escape(s)))` gives back `s` for every `s`.
pub fn json_string_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // The rest of C0 and DEL, plus the two separators JavaScript chokes on, as \uXXXX.
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// Bidirectional embedding/override/isolate controls: dropped from card text.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Cleans one text for a card: drops control characters (newline and tab stay) and bidi
/// overrides, and cuts it to `max_chars` characters, the last being an ellipsis.
pub fn clean_text(text: &str, max_chars: usize) -> String {
    let kept = text
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !(c.is_control() || is_bidi_control(c)));
    let mut out = String::new();
    let mut cut = false;
    for (count, c) in kept.enumerate() {
        if count == max_chars {
            cut = true;
            break;
        }
        out.push(c);
    }
    if cut && max_chars > 0 {
        out.pop();
        out.push('…');
    }
    // TextBlocks render markdown: `[Approve here](https://…)` in a justification would become a
    // link on the approver's card. A zero-width space between `]` and `(` keeps the text as typed
    // to the eye but is no link syntax any more.
    if out.contains("](") {
        out = out.replace("](", "]\u{200b}(");
    }
    out
}

fn clean_value(value: &mut Value) {
    match value {
        Value::String(s) => {
            // Card markdown has no inline code: a backtick would show as a stray character.
            let cleaned = clean_text(s, MAX_TEXT_CHARS).replace('`', "");
            if cleaned != *s {
                *s = cleaned;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean_value),
        Value::Object(map) => map.values_mut().for_each(clean_value),
        _ => {}
    }
}

/// Renders one card: view model → cleaned JSON context → template → parsed, checked card.
/// A card is a pure function of its template and its context, so cards rendered lately are
/// kept ([`RenderedCards`]) and a repeated view (help, the request form, an unchanged list) is
/// shared instead of rendered and parsed again.
fn render<T: Serialize>(card: &'static str, view: &T) -> Result<Card, CardError> {
    let hb = REGISTRY
        .as_ref()
        .map_err(|e| CardError::Templates(e.clone()))?;
    let mut context =
        serde_json::to_value(view).map_err(|source| CardError::ViewModel { card, source })?;
    clean_value(&mut context);
    // The context's compact text, whole, is the key: two views render the same card exactly
    // when their contexts are equal, and a key that merely hashed alike could show one person
    // another's card.
    let key = serde_json::to_string(&context).ok();
    if let Some(key) = &key
        && let Some(kept) = RENDERED.get(card, key)
    {
        return Ok(kept);
    }
    let text = hb.render(card, &context).map_err(|e| CardError::Render {
        card,
        message: e.to_string(),
    })?;
    let value: Value =
        serde_json::from_str(&text).map_err(|source| CardError::InvalidJson { card, source })?;
    if value.get("type").and_then(Value::as_str) != Some("AdaptiveCard") {
        return Err(CardError::NotACard { card });
    }
    let value = Card::from(value);
    let bytes = value.size();
    if bytes > MAX_CARD_BYTES {
        return Err(CardError::TooLarge { card, bytes });
    }
    if let Some(key) = key {
        RENDERED.keep(card, key, &value);
    }
    Ok(value)
}

static RENDERED: RenderedCards = RenderedCards::new();

/// A rendered Adaptive Card, checked (it parsed, says `AdaptiveCard`, fits Teams' size limit).
/// Shared, not copied: a kept card goes to every turn that shows it as one tree behind an `Arc`
/// (copying the tree — every object an `IndexMap`, every key a `String` — was 3 % of a `help`
/// turn's CPU), with its compact JSON text, written once: a card is serialized into each message
/// that carries it as that text, not by walking the tree again. Reads go through `Deref` to the
/// `Value`; a card is never changed after it is rendered (its views build a new one), and
/// `into_value` copies only when it is shared.
#[derive(Clone, Debug)]
pub struct Card(std::sync::Arc<CardParts>);

#[derive(Debug)]
struct CardParts {
    value: Value,
    /// `value` as compact JSON: what Teams receives, and what its size limit counts.
    json: Box<serde_json::value::RawValue>,
}

impl Card {
    /// The card's JSON, for a caller that must own or change it.
    pub fn into_value(self) -> Value {
        match std::sync::Arc::try_unwrap(self.0) {
            Ok(parts) => parts.value,
            Err(shared) => shared.value.clone(),
        }
    }

    /// The card's size as sent: compact JSON, in bytes.
    pub fn size(&self) -> usize {
        self.0.json.get().len()
    }
}

impl From<Value> for Card {
    fn from(value: Value) -> Card {
        // A `Value` always serializes (its keys are strings), and what serde_json wrote it
        // reads back.
        let json = serde_json::to_string(&value)
            .ok()
            .and_then(|text| serde_json::value::RawValue::from_string(text).ok())
            .expect("a JSON value serializes to JSON");
        Card(std::sync::Arc::new(CardParts { value, json }))
    }
}

impl PartialEq for Card {
    fn eq(&self, other: &Card) -> bool {
        self.0.value == other.0.value
    }
}

impl From<Card> for Value {
    fn from(card: Card) -> Value {
        card.into_value()
    }
}

impl std::fmt::Display for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.json.get())
    }
}

impl std::ops::Deref for Card {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0.value
    }
}

/// The kept text, as is (serde_json's raw value: into a `Value`, it is parsed back).
impl Serialize for Card {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.json.serialize(serializer)
    }
}

impl PartialEq<Value> for Card {
    fn eq(&self, other: &Value) -> bool {
        self.0.value == *other
    }
}

/// Cards rendered lately, by template and context. Bounded in count and in the size of what one
/// entry holds; when full, the oldest entry makes room (views that repeat come back at once).
/// Only cards that rendered and passed every check are kept; they hold no secret (INV-5: no
/// view model has a field for one).
struct RenderedCards {
    cards: std::sync::Mutex<Kept>,
}

/// The entries, and which one makes room next (they are replaced in turn).
struct Kept {
    entries: Vec<(&'static str, String, Card)>,
    next: usize,
}

impl RenderedCards {
    const ENTRIES: usize = 32;
    /// Contexts longer than this (long lists, long justifications) are rendered every time:
    /// they rarely repeat, and would crowd out the views that do.
    const MAX_CONTEXT_BYTES: usize = 2048;

    const fn new() -> Self {
        RenderedCards {
            cards: std::sync::Mutex::new(Kept {
                entries: Vec::new(),
                next: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.cards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept card, shared (a pointer copied, not the tree).
    fn get(&self, card: &'static str, context: &str) -> Option<Card> {
        self.lock()
            .entries
            .iter()
            .find(|(name, key, _)| *name == card && key == context)
            .map(|(_, _, value)| value.clone())
    }

    fn keep(&self, card: &'static str, context: String, value: &Card) {
        if context.len() > Self::MAX_CONTEXT_BYTES {
            return;
        }
        let entry = (card, context, value.clone());
        let mut kept = self.lock();
        // Two turns that rendered the same new card at once keep it once.
        if kept
            .entries
            .iter()
            .any(|(name, key, _)| *name == card && *key == entry.1)
        {
            return;
        }
        if kept.entries.len() < Self::ENTRIES {
            kept.entries.push(entry);
        } else {
            let next = kept.next;
            kept.entries[next] = entry;
            kept.next = (next + 1) % Self::ENTRIES;
        }
    }
}

/// The card's size as sent: compact JSON, in bytes.
pub fn card_size(card: &Value) -> usize {
    serde_json::to_vec(card)
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

pub fn render_welcome(view: &WelcomeCard) -> Result<Card, CardError> {
    render("welcome", view)
}

pub fn render_help(view: &HelpCard) -> Result<Card, CardError> {
    render("help", view)
}

pub fn render_request_form(view: &RequestFormCard) -> Result<Card, CardError> {
    render("request-form", view)
}

pub fn render_request_status(view: &RequestStatusCard) -> Result<Card, CardError> {
    render("request-status", view)
}

pub fn render_approval(view: &ApprovalCard) -> Result<Card, CardError> {
    render("approval", view)
}

pub fn render_decided(view: &DecidedCard) -> Result<Card, CardError> {
    render("decided", view)
}

pub fn render_my_requests(view: &MyRequestsCard) -> Result<Card, CardError> {
    render("my-requests", view)
}

pub fn render_pending_approvals(view: &PendingApprovalsCard) -> Result<Card, CardError> {
    render("pending-approvals", view)
}

pub fn render_record_search(view: &RecordSearchCard) -> Result<Card, CardError> {
    render("record-search", view)
}

pub fn render_triage_queue(view: &TriageQueueCard) -> Result<Card, CardError> {
    render("triage-queue", view)
}

pub fn render_admin_health(view: &AdminHealthCard) -> Result<Card, CardError> {
    render("admin-health", view)
}

pub fn render_admin_result(view: &AdminResultCard) -> Result<Card, CardError> {
    render("admin-result", view)
}

pub fn render_access_review(view: &AccessReviewCard) -> Result<Card, CardError> {
    render("access-review", view)
}

pub fn render_error(view: &ErrorCard) -> Result<Card, CardError> {
    render("error", view)
}

pub fn render_access_report(view: &AccessReportCard) -> Result<Card, CardError> {
    render("access-report", view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_loads_and_none_bypasses_the_escaper() {
        assert!(REGISTRY.is_ok(), "{:?}", REGISTRY.as_ref().err());
        for (name, text) in TEMPLATES {
            assert_eq!(unsafe_template_syntax(text), None, "{name}");
        }
        assert!(unsafe_template_syntax(r#""a": "{{{x}}}""#).is_some());
        assert!(unsafe_template_syntax(r#""a": "{{&x}}""#).is_some());
    }

    #[test]
    fn the_escaper_round_trips_every_awkward_character() {
        let mut nasty: String = (0u32..0x80).filter_map(char::from_u32).collect();
        nasty.push_str("\u{2028}\u{2029}\u{202e}é😀 שלום {{x}} </script> \\\" ");
        let escaped = json_string_escape(&nasty);
        let back: String = serde_json::from_str(&format!("\"{escaped}\"")).unwrap();
        assert_eq!(back, nasty);
    }

    #[test]
    fn cleaning_drops_controls_and_overrides_and_clips() {
        assert_eq!(clean_text("a\u{0}b\u{1b}[31mc\nd\te", 100), "ab[31mc\nd\te");
        assert_eq!(clean_text("abc\u{202e}fdp.exe", 100), "abcfdp.exe");
        assert_eq!(clean_text("abcdef", 4), "abc…");
        assert_eq!(clean_text("abcd", 4), "abcd");
        assert_eq!(clean_text("שלום עולם", 100), "שלום עולם");
        assert_eq!(
            clean_text("[Approve](https://evil.example)", 100),
            "[Approve]\u{200b}(https://evil.example)"
        );
    }

    #[test]
    fn strict_mode_refuses_a_missing_field() {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(json_string_escape);
        hb.register_template_string("t", r#"{"a": "{{missing}}"}"#)
            .unwrap();
        assert!(hb.render("t", &serde_json::json!({})).is_err());
    }

    #[test]
    fn a_kept_card_is_the_card_of_exactly_that_view() {
        let requester = render_help(&HelpCard { admin: false }).unwrap();
        let admin = render_help(&HelpCard { admin: true }).unwrap();
        assert_ne!(
            requester, admin,
            "the admin's help lists the admin commands"
        );
        for _ in 0..3 {
            // Whichever rendered first, each view gets its own card back, not the other's.
            assert_eq!(render_help(&HelpCard { admin: false }).unwrap(), requester);
            assert_eq!(render_help(&HelpCard { admin: true }).unwrap(), admin);
        }
        let text = serde_json::to_string(&admin).unwrap();
        assert!(text.contains("audit verify"), "{text}");
        assert!(
            !serde_json::to_string(&requester)
                .unwrap()
                .contains("audit verify")
        );
    }

    /// A card goes out as its kept text: into a message's JSON text and into a `Value` alike,
    /// it reads back as the card it is, and its size is that text's.
    #[test]
    fn a_card_is_sent_as_the_json_of_its_value() {
        let card = render_help(&HelpCard { admin: true }).unwrap();
        let message = serde_json::to_vec(&[&card]).unwrap();
        let back: Vec<Value> = serde_json::from_slice(&message).unwrap();
        assert_eq!(back[0], *card);
        let as_value = serde_json::json!({"value": card.clone()});
        assert_eq!(as_value["value"], *card);
        assert_eq!(card.size(), serde_json::to_vec(&*card).unwrap().len());
        assert_eq!(card.to_string(), serde_json::to_string(&*card).unwrap());
    }

    #[test]
    fn kept_cards_stay_bounded_and_long_contexts_are_not_kept() {
        let kept = RenderedCards::new();
        let card = Card::from(serde_json::json!({"type": "AdaptiveCard"}));
        for i in 0..(RenderedCards::ENTRIES + 5) {
            kept.keep("help", format!("{{\"n\":{i}}}"), &card);
            kept.keep("help", format!("{{\"n\":{i}}}"), &card);
        }
        assert_eq!(kept.lock().entries.len(), RenderedCards::ENTRIES);
        assert!(
            kept.get("help", "{\"n\":0}").is_none(),
            "the oldest made room"
        );
        let newest = format!("{{\"n\":{}}}", RenderedCards::ENTRIES + 4);
        assert_eq!(kept.get("help", &newest), Some(card.clone()));
        let (once, again) = (kept.get("help", &newest), kept.get("help", &newest));
        assert!(
            std::sync::Arc::ptr_eq(&once.unwrap().0, &again.unwrap().0),
            "a kept card is handed out shared, not copied"
        );
        assert!(
            kept.get("welcome", &newest).is_none(),
            "another template's card is another card"
        );
        let long = format!(
            "{{\"text\":\"{}\"}}",
            "x".repeat(RenderedCards::MAX_CONTEXT_BYTES)
        );
        kept.keep("help", long.clone(), &card);
        assert!(kept.get("help", &long).is_none());
    }
}
