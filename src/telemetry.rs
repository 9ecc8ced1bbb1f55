//! Logging. Every formatted line passes through [`redact`] on its way out, whatever produced it
//! (our code, a dependency, a panic message in a span), so secret shapes never reach a log sink:
//! one-time share URLs, bearer tokens and JWTs, 64-hex issuance tokens, and the values of fields
//! named like otp/code/token/password/secret.
//!
//! Logged values are often the caller's text (a token's `kid`, an activity's fields, an error
//! quoting them). Each one — every field, span field and the message, in both formats — goes
//! through [`tame`]: redacted, control characters escaped (a newline cannot forge a line, an ANSI
//! sequence cannot repaint the terminal), and cut at [`MAX_LOGGED_VALUE_BYTES`] with a marker (a
//! huge header cannot flood the log). One event is one line.

use crate::config::{LogFormat, Settings};
use crate::domain::{Clock, Timestamp};
use crate::store::Store;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use regex::{Captures, Regex};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::LazyLock;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::span;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{
    self, FormatEvent, FormatFields, JsonFields, Writer, format,
};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

pub const REDACTED: &str = "[REDACTED]";

/// The most of one value (a field, a span field, the message) a log line carries.
pub const MAX_LOGGED_VALUE_BYTES: usize = 256;

struct Patterns {
    share_url: Regex,
    bearer: Regex,
    jwt: Regex,
    hex64: Regex,
    base64_run: Regex,
    secret_field: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    Patterns {
    // Keeper one-time shares (…/vault/share/#key, also …/vault/share#key) and the local dev vault's
    // links (…/dev-vault/share/…): the whole URL goes, host included.
    share_url: Regex::new(
        r#"(?i)(?:https?://[^\s"'<>]*?)?/(?:vault/share/?#|dev-vault/share/)[A-Za-z0-9_\-=]+[^\s"'<>]*"#,
    )
    .unwrap(),
    bearer: Regex::new(r"(?i)\b(bearer)(\s+|%20)(?P<value>[A-Za-z0-9\-._~+/]+=*)").unwrap(),
    jwt: Regex::new(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*").unwrap(),
    // Long hex runs: issuance tokens (64), keys and digests (32 and up). Shorter hex (ids,
    // status codes, a commit's short sha) stays readable; so does a run without both digits
    // and letters.
    hex64: Regex::new(r"\b[0-9a-fA-F]{32,}\b").unwrap(),
    // Long base64 / base64url runs (keys, client secrets, opaque tokens). Only runs that mix
    // upper case, lower case and digits are redacted (see `looks_random`), so words, paths,
    // UUIDs and snake_case names survive.
    base64_run: Regex::new(r"(?:^|[^A-Za-z0-9+/_\-])(?P<value>[A-Za-z0-9+/_\-]{32,}={0,2})").unwrap(),
    // key=value, key: value, "key":"value", key="value" where the key names a secret.
    secret_field: Regex::new(
        r#"(?i)(?P<key>(?:\\?")?[A-Za-z0-9_.\-]*(?:otp|code|token|password|passwd|secret|api[_-]?key|client[_-]?key|private[_-]?key)[A-Za-z0-9_.\-]*(?:\\?")?)(?P<sep>\s*[=:]\s*)(?P<value>\\"(?:[^"\\]|\\[^"])*\\"|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}\])]+)"#,
    )
    .unwrap(),
}
});

/// A key whose only secret-sounding word is "code" (`result_code`, `error code`): it may carry an
/// error class. Keys naming a secret code (`otp_code`, `auth_code`, `device_code`, …) are not.
static CODE_ONLY_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:result|error|reason|status|exit|return|response|failure)[_.\-]?)?code$")
        .unwrap()
});

/// An error class or result code as tools write them (`throttled`, `access_denied`): lower-case
/// snake_case words. Secrets in a code field (OTP digits, random base64) never take this shape.
static ERROR_CLASS_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z_]{1,47}$").unwrap());

/// Whether a `code`-named field carries an error class (kept readable) rather than a secret.
fn is_error_class(bare_key: &str, value: &str) -> bool {
    CODE_ONLY_KEY.is_match(bare_key)
        && ERROR_CLASS_VALUE
            .is_match(value.trim_matches(|ch| ch == '"' || ch == '\\' || ch == '\''))
}

/// Whether a `code`-named field (`Status code: 503 Service Unavailable`, `exit code 1`) carries a
/// status or exit number: at most three digits. A one-time code has six, so it is still redacted.
fn is_status_number(bare_key: &str, value: &str) -> bool {
    let v = value.trim_matches(|ch| ch == '"' || ch == '\\' || ch == '\'');
    CODE_ONLY_KEY.is_match(bare_key)
        && (1..=3).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a bearer credential is a real one and not the sentence's next word
/// (`no bearer token`, `bearer auth`): a credential mixes in digits or symbols, or is long.
fn is_bearer_credential(value: &str) -> bool {
    let word = value.trim_end_matches(['.', ',']);
    !(word.len() < 16 && word.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// Whether a long base64-alphabet run looks machine-made: it mixes upper case, lower case and
/// digits. Names (`PASSKEY_OTP__TWILIO_AUTH_TOKEN`), paths and lower-case ids do not.
fn looks_random(run: &str) -> bool {
    run.bytes().any(|b| b.is_ascii_uppercase())
        && run.bytes().any(|b| b.is_ascii_lowercase())
        && run.bytes().any(|b| b.is_ascii_digit())
}

/// Field names that look secret but carry only harmless numbers or versions.
const HARMLESS_KEYS: &[&str] = &[
    "status_code",
    "exit_code",
    "code_version",
    "http.status_code",
    "error_code",
];

/// Scrubs secret shapes from one line of text.
pub fn redact(line: &str) -> Cow<'_, str> {
    let p = &*PATTERNS;
    let mut out = Cow::Borrowed(line);
    if p.share_url.is_match(&out) {
        out = Cow::Owned(
            p.share_url
                .replace_all(&out, "[REDACTED-SHARE-URL]")
                .into_owned(),
        );
    }
    if p.bearer.is_match(&out) {
        let replaced = p.bearer.replace_all(&out, |c: &Captures| {
            if is_bearer_credential(&c["value"]) {
                format!("{}{}{REDACTED}", &c[1], &c[2])
            } else {
                c[0].to_string()
            }
        });
        out = Cow::Owned(replaced.into_owned());
    }
    if p.jwt.is_match(&out) {
        out = Cow::Owned(p.jwt.replace_all(&out, REDACTED).into_owned());
    }
    if p.secret_field.is_match(&out) {
        let replaced = p.secret_field.replace_all(&out, |c: &Captures| {
            let key = &c["key"];
            let bare = key
                .trim_matches(|ch| ch == '"' || ch == '\\')
                .to_ascii_lowercase();
            let value = &c["value"];
            if HARMLESS_KEYS.contains(&bare.as_str())
                || is_error_class(&bare, value)
                || is_status_number(&bare, value)
                || value.trim_matches(|ch| ch == '"' || ch == '\\') == REDACTED
            {
                c[0].to_string()
            } else if value.starts_with("\\\"") {
                // A JSON string inside a JSON log line: keep its escaping intact.
                format!("{key}{}\\\"{REDACTED}\\\"", &c["sep"])
            } else if value.starts_with('"') || (key.ends_with('"') && !key.ends_with("\\\"")) {
                // Quoted values, and any value of a JSON key (numbers too), stay valid JSON strings.
                format!("{key}{}\"{REDACTED}\"", &c["sep"])
            } else {
                format!("{key}{}{REDACTED}", &c["sep"])
            }
        });
        out = Cow::Owned(replaced.into_owned());
    }
    if p.hex64.is_match(&out) {
        // A machine-made hex value mixes digits and letters; a run of one kind (`AAAA…`, a
        // long number) is text.
        let replaced = p.hex64.replace_all(&out, |c: &Captures| {
            let run = &c[0];
            if run.bytes().any(|b| b.is_ascii_digit())
                && run.bytes().any(|b| b.is_ascii_alphabetic())
            {
                REDACTED.to_string()
            } else {
                run.to_string()
            }
        });
        out = Cow::Owned(replaced.into_owned());
    }
    if p.base64_run.is_match(&out) {
        let replaced = p.base64_run.replace_all(&out, |c: &Captures| {
            let whole = &c[0];
            let run = &c["value"];
            if looks_random(run) {
                format!("{}{REDACTED}", &whole[..whole.len() - run.len()])
            } else {
                whole.to_string()
            }
        });
        out = Cow::Owned(replaced.into_owned());
    }
    out
}

/// Characters that could end a line, move the cursor or reorder text on a screen: controls
/// (C0, DEL, C1), the Unicode line and paragraph separators, and the bidirectional overrides.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// One logged value made safe to show: secrets redacted (first, so a cut cannot leave half a
/// token the patterns no longer recognise), control characters escaped as `\n`, `\r`, `\t` or
/// `\u{1b}`, and at most [`MAX_LOGGED_VALUE_BYTES`] kept — a cut value ends in `…[cut: N bytes]`,
/// N being its whole length.
pub fn tame(value: &str) -> Cow<'_, str> {
    let redacted = redact(value);
    if redacted.len() <= MAX_LOGGED_VALUE_BYTES && !redacted.chars().any(needs_escape) {
        return redacted;
    }
    let mut out = String::with_capacity(MAX_LOGGED_VALUE_BYTES + 32);
    let mut piece = String::new();
    for c in redacted.chars() {
        piece.clear();
        match c {
            '\n' => piece.push_str("\\n"),
            '\r' => piece.push_str("\\r"),
            '\t' => piece.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(piece, "\\u{{{:x}}}", c as u32);
            }
            c => piece.push(c),
        }
        if out.len() + piece.len() > MAX_LOGGED_VALUE_BYTES {
            let _ = write!(out, "…[cut: {} bytes]", redacted.len());
            return Cow::Owned(out);
        }
        out.push_str(&piece);
    }
    Cow::Owned(out)
}

/// Tames every string in a JSON log line (values only: names are the code's own).
fn tame_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(tamed) = tame(s) {
                *s = tamed;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(tame_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(tame_json),
        _ => {}
    }
}

/// The pretty format's fields, each tamed: the message as text, other fields as `name=value`
/// (strings quoted, as the default formatter does).
fn tamed_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => writer.write_str(&tame(&text)),
            name if name.starts_with("log.") => Ok(()),
            name => write!(writer, "{name}={}", tame(&text)),
        }
    })
    .delimited(" ")
}

/// Formats an event with `inner`, then makes sure it is one line: JSON lines have every string
/// tamed (the JSON formatter writes event fields itself, past any field formatter); pretty lines,
/// whose values were tamed as they were formatted, have any control character left escaped.
struct OneLine<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for OneLine<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        if self.json
            && let Ok(mut value) = serde_json::from_str::<serde_json::Value>(line)
        {
            tame_json(&mut value);
            return writeln!(writer, "{value}");
        }
        if line.chars().any(needs_escape) {
            let escaped: String = line
                .chars()
                .map(|c| {
                    if needs_escape(c) {
                        format!("\\u{{{:x}}}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            writeln!(writer, "{escaped}")
        } else {
            writeln!(writer, "{line}")
        }
    }
}

/// A `MakeWriter` whose writers redact each formatted event before passing it on.
/// tracing-subscriber formats an event completely, then writes it once, so one `write` call
/// holds whole lines and patterns never straddle calls.
#[derive(Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M) -> Self {
        RedactingMakeWriter { inner }
    }
}

pub struct RedactingWriter<W> {
    inner: W,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
        }
    }
}

/// Builds the subscriber for the given settings, writing (redacted) to `writer`.
pub fn subscriber<W>(settings: &Settings, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    subscriber_with(settings, writer, None)
}

/// As [`subscriber`], with the spans (not the log events) also sent to `tracer`.
fn subscriber_with<W>(
    settings: &Settings,
    writer: W,
    tracer: Option<SdkTracer>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log.filter));
    let writer = RedactingMakeWriter::new(writer);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    match settings.log_format() {
        LogFormat::Json => with_spans_to(
            builder
                .fmt_fields(JsonFields::new())
                .event_format(OneLine {
                    inner: format().json().with_current_span(true).flatten_event(true),
                    json: true,
                })
                .finish(),
            tracer,
        ),
        LogFormat::Pretty => with_spans_to(
            builder
                .fmt_fields(tamed_fields())
                .event_format(OneLine {
                    inner: format().compact().with_ansi(false),
                    json: false,
                })
                .finish(),
            tracer,
        ),
    }
}

fn with_spans_to<S>(subscriber: S, tracer: Option<SdkTracer>) -> Box<dyn Subscriber + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static,
{
    match tracer {
        Some(tracer) => Box::new(subscriber.with(SpansOnly(
            tracing_opentelemetry::layer().with_tracer(tracer),
        ))),
        None => Box::new(subscriber),
    }
}

/// The OpenTelemetry layer for spans only. Log events stay out of the export: their text is
/// redacted on its way to the log sink, not here, and spans carry all an operator correlates by.
/// The spans' own fields are the code's (method, path without query, request id, activity id,
/// activity type, request number), never a secret.
struct SpansOnly<L>(L);

impl<S, L> Layer<S> for SpansOnly<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.0.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber)
    }
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx)
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(id, values, ctx)
    }
    fn on_follows_from(&self, id: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(id, follows, ctx)
    }
    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_enter(id, ctx)
    }
    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.0.on_exit(id, ctx)
    }
    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx)
    }
    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx)
    }
    // SAFETY: forwards to the inner layer, whose pointers stay valid as long as `self` (it is
    // owned by `self`); `Self` itself answers for its own type.
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            Some(self as *const Self as *const ())
        } else {
            unsafe { self.0.downcast_raw(id) }
        }
    }
}

/// What [`init`] started: flush and stop it on the way out ([`Telemetry::shutdown`]).
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether anything is exported or served (the gauges then need refreshing).
    pub fn is_on(&self) -> bool {
        self.meter.is_some()
    }

    /// Sends what is still buffered and stops the exporters (blocking: call from a blocking
    /// thread).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(e) = tracer.shutdown()
        {
            eprintln!("passkey: telemetry: traces not flushed: {e}");
        }
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown()
        {
            eprintln!("passkey: telemetry: metrics not flushed: {e}");
        }
    }
}

/// The `/metrics` reader, when `telemetry.metrics_endpoint` is on in this process.
static PROMETHEUS: OnceLock<Arc<ManualReader>> = OnceLock::new();

/// The manual reader, shared between the meter provider and `/metrics`.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Installs the log subscriber, and for `passkey serve` (`serving`) the telemetry the settings
/// ask for: spans and metrics over OTLP/HTTP (`telemetry.otlp_endpoint`), the `/metrics` reader
/// (`telemetry.metrics_endpoint`). An exporter that cannot be built is reported and left off:
/// telemetry never stops the service.
pub fn init(settings: &Settings, serving: bool) -> Telemetry {
    let t = &settings.telemetry;
    let otlp = t.otlp().filter(|_| serving);
    let resource = || {
        Resource::builder()
            .with_service_name(t.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                crate::VERSION,
            ))
            .build()
    };
    let mut telemetry = Telemetry::default();
    let mut tracer = None;
    if let Some(base) = otlp {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
        {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build();
                tracer = Some(provider.tracer(crate::metrics::SCOPE));
                telemetry.tracer = Some(provider);
            }
            Err(e) => eprintln!("passkey: telemetry: no trace export to {base}: {e}"),
        }
    }
    if otlp.is_some() || (serving && t.metrics_endpoint) {
        let mut builder = SdkMeterProvider::builder().with_resource(resource());
        if let Some(base) = otlp {
            match opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_endpoint(format!("{base}/v1/metrics"))
                .with_timeout(EXPORT_TIMEOUT)
                .build()
            {
                Ok(exporter) => builder = builder.with_periodic_exporter(exporter),
                Err(e) => eprintln!("passkey: telemetry: no metrics export to {base}: {e}"),
            }
        }
        if t.metrics_endpoint {
            let reader = Arc::new(ManualReader::builder().build());
            if PROMETHEUS.set(reader.clone()).is_ok() {
                builder = builder.with_reader(SharedReader(reader));
            }
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        telemetry.meter = Some(provider);
    }
    let _ = tracing::subscriber::set_global_default(subscriber_with(settings, io::stderr, tracer));
    telemetry
}

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the gauges are read from the store for the OTLP export (`/metrics` reads them at
/// every scrape).
pub const GAUGE_REFRESH: Duration = Duration::from_secs(30);

/// Reads the gauges' values from the store. A failure leaves the last values in place.
pub async fn refresh_gauges(store: &dyn Store, now: Timestamp) {
    match store.telemetry_gauges(now).await {
        Ok(gauges) => crate::metrics::set_gauges(gauges),
        Err(e) => tracing::warn!(error = %e, "telemetry gauges not read from the database"),
    }
}

/// Keeps the gauges fresh for the periodic OTLP export until the task is dropped or aborted.
pub fn spawn_gauge_refresher(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(GAUGE_REFRESH);
        loop {
            tick.tick().await;
            refresh_gauges(store.as_ref(), clock.now()).await;
        }
    })
}

/// Everything the meter provider holds now, in the Prometheus text format; None when this
/// process has no `/metrics` reader.
pub fn prometheus_text() -> Option<String> {
    let reader = PROMETHEUS.get()?;
    let mut rm = ResourceMetrics::default();
    if let Err(e) = reader.collect(&mut rm) {
        tracing::warn!(error = %e, "metrics not collected");
        return None;
    }
    Some(render_prometheus(&rm))
}

/// A metric's Prometheus name: dots become underscores, seconds say so, counters end `_total`.
fn prometheus_name(name: &str, unit: &str, suffix: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if unit == "s" && !out.ends_with("_seconds") {
        out.push_str("_seconds");
    }
    out.push_str(suffix);
    out
}

/// Label values escaped as the text format wants (`\`, `\"`, `\n`).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels<'a>(
    attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>,
    extra: Option<(&str, String)>,
) -> String {
    let mut pairs: Vec<String> = attributes
        .map(|kv| {
            let key: String = kv
                .key
                .as_str()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            format!("{key}=\"{}\"", escape_label(&kv.value.as_str()))
        })
        .collect();
    pairs.sort();
    if let Some((key, value)) = extra {
        pairs.push(format!("{key}=\"{value}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A sample value: integers as integers, floats as Rust writes them (`1`, `0.005`).
fn number(value: impl std::fmt::Display) -> String {
    value.to_string()
}

/// The Prometheus text exposition of `rm`: `# HELP`, `# TYPE`, then one line per series.
pub fn render_prometheus(rm: &ResourceMetrics) -> String {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    let mut out = String::new();
    let header = |out: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {}", help.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    macro_rules! series {
        ($out:expr, $metric:expr, $data:expr) => {{
            let metric = $metric;
            match $data {
                MetricData::Sum(sum) => {
                    let (suffix, kind) = if sum.is_monotonic() {
                        ("_total", "counter")
                    } else {
                        ("", "gauge")
                    };
                    let name = prometheus_name(metric.name(), metric.unit(), suffix);
                    header($out, &name, metric.description(), kind);
                    for p in sum.data_points() {
                        let _ = writeln!(
                            $out,
                            "{name}{} {}",
                            labels(p.attributes(), None),
                            number(p.value())
                        );
                    }
                }
                MetricData::Gauge(gauge) => {
                    let name = prometheus_name(metric.name(), metric.unit(), "");
                    header($out, &name, metric.description(), "gauge");
                    for p in gauge.data_points() {
                        let _ = writeln!(
                            $out,
                            "{name}{} {}",
                            labels(p.attributes(), None),
                            number(p.value())
                        );
                    }
                }
                MetricData::Histogram(histogram) => {
                    let name = prometheus_name(metric.name(), metric.unit(), "");
                    header($out, &name, metric.description(), "histogram");
                    for p in histogram.data_points() {
                        let mut cumulative = 0u64;
                        let counts: Vec<u64> = p.bucket_counts().collect();
                        for (i, bound) in p.bounds().enumerate() {
                            cumulative += counts.get(i).copied().unwrap_or(0);
                            let _ = writeln!(
                                $out,
                                "{name}_bucket{} {cumulative}",
                                labels(p.attributes(), Some(("le", number(bound))))
                            );
                        }
                        let _ = writeln!(
                            $out,
                            "{name}_bucket{} {}",
                            labels(p.attributes(), Some(("le", "+Inf".into()))),
                            p.count()
                        );
                        let _ = writeln!(
                            $out,
                            "{name}_sum{} {}",
                            labels(p.attributes(), None),
                            number(p.sum())
                        );
                        let _ = writeln!(
                            $out,
                            "{name}_count{} {}",
                            labels(p.attributes(), None),
                            p.count()
                        );
                    }
                }
                MetricData::ExponentialHistogram(_) => {}
            }
        }};
    }
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            match metric.data() {
                AggregatedMetrics::F64(data) => series!(&mut out, metric, data),
                AggregatedMetrics::U64(data) => series!(&mut out, metric, data),
                AggregatedMetrics::I64(data) => series!(&mut out, metric, data),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    const SHARE: &str = "https://keepersecurity.com/vault/share/#Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA";
    const DEV_SHARE: &str = "http://127.0.0.1:3978/dev-vault/share/q8Xr2Lk3mN0pQ7sT";
    const TOKEN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2FwaS5ib3RmcmFtZXdvcmsuY29tIn0.c2lnbmF0dXJlLWJ5dGVz";

    /// Emits one event per secret shape through a real subscriber and reads back what it wrote.
    fn log_lines(format: &str) -> String {
        let capture = Capture::default();
        let mut env = std::collections::BTreeMap::new();
        env.insert("PASSKEY_LOG__FORMAT".to_string(), format.to_string());
        env.insert("PASSKEY_LOG__FILTER".to_string(), "trace".to_string());
        let settings = Settings::from_layers(None, &env).unwrap();
        let subscriber = subscriber(&settings, capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("share created: {SHARE}");
            tracing::info!(url = DEV_SHARE, "dev share");
            tracing::warn!("calling connector with Authorization: Bearer {JWT}");
            tracing::info!(header = %format!("bearer abc.def-ghi_jkl"), "lowercase bearer");
            tracing::info!("minted issuance token {TOKEN} for request 42");
            tracing::info!(otp = "493817", "challenge sent");
            tracing::info!(
                code = 123456,
                token = "tok_live_abc",
                password = "hunter2",
                "fields"
            );
            tracing::info!(
                client_secret = "cs~very.secret",
                api_key = "k-999",
                "more fields"
            );
            tracing::info!("raw body {{\"otp\":\"771234\",\"challengeId\":\"c1\"}}");
            tracing::info!(status_code = 200, exit_code = 1, "harmless numbers stay");
            tracing::error!(error = %format!("commander failed for {SHARE}"), "nested in an error");
        });
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn assert_scrubbed(out: &str) {
        for secret in [
            SHARE,
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA",
            DEV_SHARE,
            "q8Xr2Lk3mN0pQ7sT",
            JWT,
            "abc.def-ghi_jkl",
            TOKEN,
            "493817",
            "123456",
            "tok_live_abc",
            "hunter2",
            "cs~very.secret",
            "k-999",
            "771234",
        ] {
            assert!(
                !out.contains(secret),
                "`{secret}` leaked into the log:\n{out}"
            );
        }
        assert!(out.contains("[REDACTED-SHARE-URL]"), "{out}");
        assert!(
            out.contains("for request 42"),
            "surrounding text must survive:\n{out}"
        );
        assert!(
            out.contains("status_code=200") || out.contains("\"status_code\":200"),
            "{out}"
        );
        assert!(
            out.contains("exit_code=1") || out.contains("\"exit_code\":1"),
            "{out}"
        );
        assert!(out.contains("challengeId"), "{out}");
        assert_eq!(out.lines().count(), 11, "one line per event:\n{out}");
    }

    #[test]
    fn pretty_logs_scrub_every_secret_shape() {
        assert_scrubbed(&log_lines("pretty"));
    }

    #[test]
    fn json_logs_scrub_every_secret_shape_and_stay_valid_json() {
        let out = log_lines("json");
        assert_scrubbed(&out);
        for line in out.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }

    /// Runs `events` under the real subscriber for `format` and returns what it wrote.
    fn capture(format: &str, events: impl FnOnce()) -> String {
        let capture = Capture::default();
        let mut env = std::collections::BTreeMap::new();
        env.insert("PASSKEY_LOG__FORMAT".to_string(), format.to_string());
        env.insert("PASSKEY_LOG__FILTER".to_string(), "trace".to_string());
        let settings = Settings::from_layers(None, &env).unwrap();
        tracing::subscriber::with_default(subscriber(&settings, capture.clone()), events);
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// What an attacker controls (a token's kid, an activity's fields, an error quoting them)
    /// can forge no log line and flood no log: control characters are escaped, every value —
    /// fields, span fields and the message — is cut at `MAX_LOGGED_VALUE_BYTES`.
    #[test]
    fn hostile_values_stay_on_their_line_and_are_cut_in_both_formats() {
        let forged =
            "kid-x\nINFO passkey::bot::turn: request 1 approved by carol\r\x1b[2K\x1b[1A\u{9b}31m";
        let huge = "A".repeat(500_000);
        for format in ["pretty", "json"] {
            let out = capture(format, || {
                tracing::warn!(reason = %forged, "channel token refused");
                tracing::warn!(kid = forged, "as a str field");
                tracing::warn!(detail = ?forged, "as a debug field");
                tracing::warn!("in the message: {forged}");
                tracing::warn!(header = %huge, "a huge field");
                tracing::warn!("a huge message {huge}");
                let span = tracing::info_span!("request", path = %forged, body = %huge);
                span.in_scope(|| tracing::info!("inside a hostile span"));
                tracing::info!(
                    sep = "a\u{2028}b\u{2029}c\u{202e}d\u{7f}e",
                    "separators and bidi"
                );
                tracing::info!(note = %format!("{} {TOKEN} tail", "x".repeat(220)), "a token across the cut");
            });
            assert_eq!(
                out.matches('\n').count(),
                9,
                "{format}: one line per event:\n{out}"
            );
            for bad in [
                '\r', '\x1b', '\u{9b}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{7f}',
            ] {
                assert!(
                    !out.contains(bad),
                    "{format}: {bad:?} reached the log:\n{out}"
                );
            }
            assert!(
                !out.lines()
                    .any(|l| l.trim_start().starts_with("INFO passkey::bot::turn")),
                "{format}: a forged line:\n{out}"
            );
            for line in out.lines() {
                assert!(
                    line.len() < 4 * MAX_LOGGED_VALUE_BYTES,
                    "{format}: a {} byte line",
                    line.len()
                );
            }
            assert!(
                out.contains("[cut: 500000 bytes]"),
                "{format}: cuts are marked:\n{out}"
            );
            assert!(
                !out.contains(&TOKEN[..16]),
                "{format}: redacted before it was cut:\n{out}"
            );
            assert!(
                out.contains("approved by carol"),
                "{format}: the text is kept, escaped"
            );
            if format == "json" {
                for line in out.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).unwrap();
                    fn no_controls(v: &serde_json::Value) -> bool {
                        match v {
                            serde_json::Value::String(s) => !s.chars().any(char::is_control),
                            serde_json::Value::Array(a) => a.iter().all(no_controls),
                            serde_json::Value::Object(o) => o.values().all(no_controls),
                            _ => true,
                        }
                    }
                    assert!(
                        no_controls(&v),
                        "decoded values hold no control characters: {line}"
                    );
                }
            }
        }
    }

    #[test]
    fn bare_share_paths_are_scrubbed_too() {
        let line =
            redact("GET /dev-vault/share/q8Xr2Lk3mN0pQ7sTzz_-9 200 and /vault/share#QUJDREVGRw");
        assert!(
            !line.contains("q8Xr2Lk3mN0pQ7sTzz_-9") && !line.contains("QUJDREVGRw"),
            "{line}"
        );
        assert!(line.starts_with("GET [REDACTED-SHARE-URL] 200"), "{line}");
        let span = "path=/dev-vault/share/[REDACTED]";
        assert_eq!(
            redact(span),
            span,
            "the request span's own redaction is left alone"
        );
    }

    /// Lines the app and its dependencies really write, as they write them: the useful words
    /// survive, the secrets in them do not (#21.7).
    #[test]
    fn real_lines_keep_their_words_and_lose_their_secrets() {
        use tower_http::classify::ServerErrorsFailureClass;
        let unavailable =
            ServerErrorsFailureClass::StatusCode(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let b64_key = "q3Vx9ZtR2mK8pL4wN7yB1cD6fG0hJ5aS+eT/uI2oP9vX=";
        for format in ["pretty", "json"] {
            let out = capture(format, || {
                // src/bot/mod.rs, a channel request without an Authorization header.
                tracing::warn!(reason = "no bearer token", "channel token refused");
                // tower-http's trace layer on a 503 answer.
                tracing::error!(classification = %unavailable, latency = "3 ms", "response failed");
                // An auth error quoting the refused token.
                tracing::warn!(error = %format!("token refused: expired; sent Bearer {JWT}"), "refused");
                tracing::warn!(error = %format!("Authorization: Bearer {b64_key}"), "opaque token");
                tracing::warn!(detail = %format!("key {b64_key} rejected, digest {}", &TOKEN[..40]), "keys");
                tracing::warn!(error = "otp: 493817", "otp in prose");
                tracing::info!(
                    path = "/api/messages",
                    user = "0f8fad5b-d9cb-469f-a165-70867728950e",
                    setting = "PASSKEY_OTP__TWILIO_AUTH_TOKEN",
                    "names and ids"
                );
            });
            for kept in [
                "no bearer token",
                "Status code: 503 Service Unavailable",
                "token refused: expired",
                "/api/messages",
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                "PASSKEY_OTP__TWILIO_AUTH_TOKEN",
                "rejected, digest",
            ] {
                assert!(out.contains(kept), "{format}: `{kept}` was lost:\n{out}");
            }
            for secret in [
                JWT,
                b64_key,
                "q3Vx9ZtR2mK8pL4wN7yB1cD6fG0hJ5aS",
                &TOKEN[..40],
                "493817",
            ] {
                assert!(!out.contains(secret), "{format}: `{secret}` leaked:\n{out}");
            }
            assert!(!out.contains("[REDACTED] Service"), "{format}:\n{out}");
        }
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        let line = "request 42 approved by user:7 for 2h (policy v3, record db-prod)";
        assert!(matches!(redact(line), Cow::Borrowed(_)));
    }

    #[test]
    fn prometheus_text_names_counters_histograms_and_gauges_as_the_format_wants() {
        use opentelemetry::KeyValue;
        use opentelemetry::metrics::MeterProvider as _;
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(SharedReader(reader.clone()))
            .build();
        let meter = provider.meter("test");
        let counter = meter
            .u64_counter("passkey.things")
            .with_description("Things")
            .build();
        counter.add(
            2,
            &[
                KeyValue::new("outcome", "ok"),
                KeyValue::new("kind", "a\"b"),
            ],
        );
        let histogram = meter
            .f64_histogram("passkey.wait")
            .with_unit("s")
            .with_boundaries(vec![0.1, 1.0])
            .build();
        for v in [0.05, 0.5, 0.7, 3.0] {
            histogram.record(v, &[]);
        }
        let _gauge = meter
            .u64_observable_gauge("passkey.level")
            .with_callback(|o| o.observe(7, &[]))
            .build();
        let mut rm = ResourceMetrics::default();
        reader.collect(&mut rm).unwrap();
        let text = render_prometheus(&rm);
        for line in [
            "# HELP passkey_things_total Things",
            "# TYPE passkey_things_total counter",
            "passkey_things_total{kind=\"a\\\"b\",outcome=\"ok\"} 2",
            "# TYPE passkey_wait_seconds histogram",
            "passkey_wait_seconds_bucket{le=\"0.1\"} 1",
            "passkey_wait_seconds_bucket{le=\"1\"} 3",
            "passkey_wait_seconds_bucket{le=\"+Inf\"} 4",
            "passkey_wait_seconds_sum 4.25",
            "passkey_wait_seconds_count 4",
            "# TYPE passkey_level gauge",
            "passkey_level 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
    }
}
