//! What the app logged while a test ran.
//!
//! A test installs a subscriber for its own thread ([`capture`]). tracing caches, per callsite,
//! whether anyone is interested and the highest level anyone wants, and recomputes both from the
//! live dispatchers. While exactly one scoped dispatcher is alive, tracing-core computes them
//! from whichever thread asks — another test's thread, with no subscriber, answers "nobody",
//! and this test's events (or all of one level) silently vanish. So [`capture`] first makes sure
//! a second, never-used dispatcher stays alive for the whole test binary: interest is then always
//! computed over every live dispatcher, this test's included.

use std::sync::{Arc, Mutex, OnceLock};
use tracing::Dispatch;
use tracing::subscriber::DefaultGuard;

/// The captured bytes; clone it into a subscriber's writer.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Makes `subscriber` this thread's default until the guard drops, seeing every event it asks
/// for whatever other tests do meanwhile.
pub fn capture<S>(subscriber: S) -> DefaultGuard
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    static KEEP_INTEREST_SHARED: OnceLock<Dispatch> = OnceLock::new();
    KEEP_INTEREST_SHARED.get_or_init(|| Dispatch::new(tracing_subscriber::registry()));
    let guard = tracing::subscriber::set_default(subscriber);
    // Callsites first seen while nobody here was listening cached "not interested": recompute.
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// The app's own subscriber (redaction included), configured by `PASSKEY_LOG__*` pairs.
pub fn capture_app(env: &[(&str, &str)]) -> (Logs, DefaultGuard) {
    let settings = passkey::config::Settings::from_layers(
        None,
        &env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap();
    let logs = Logs::default();
    let writer = logs.clone();
    let guard = capture(passkey::telemetry::subscriber(&settings, move || {
        writer.clone()
    }));
    (logs, guard)
}

/// Every event down to TRACE, plain text, without the redaction layer: what code logs before
/// anything scrubs it.
pub fn capture_raw() -> (Logs, DefaultGuard) {
    let logs = Logs::default();
    let guard = capture(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(logs.clone())
            .finish(),
    );
    (logs, guard)
}
