//! Instants and the clock. Everything below the edges takes time as a value, so the policy engine
//! stays pure and tests can move time by hand.

use std::fmt;
use std::sync::Mutex;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

/// A UTC instant with microsecond precision — the precision both databases keep, so a value
/// read back equals the value written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn from_datetime(dt: OffsetDateTime) -> Self {
        let utc = dt.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        Timestamp(
            utc.replace_nanosecond(micros * 1_000)
                .expect("microseconds are in range"),
        )
    }

    pub fn from_unix_seconds(secs: i64) -> Self {
        Self::from_datetime(
            OffsetDateTime::from_unix_timestamp(secs).expect("unix seconds in range"),
        )
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// Fixed-width text: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Text order is time order, which is what
    /// lets SQLite compare stored instants with `<` and `ORDER BY`.
    pub fn to_fixed_text(self) -> String {
        let d = self.0;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.microsecond()
        )
    }

    /// `2026-11-23 10:00 UTC`: what people read in cards and messages (minutes are enough).
    pub fn to_minute_text(self) -> String {
        let d = self.0;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute()
        )
    }

    /// `2026-11-23 11:00 Europe/Berlin`: the minute in `zone`, with the zone's IANA name (UTC:
    /// exactly [`Self::to_minute_text`]). Names, not abbreviations: "CST" and "IST" each mean
    /// several zones, and many zones have none ("+03").
    pub fn to_local_text(self, zone: &Zone) -> String {
        let Some(tz) = &zone.tz else {
            return self.to_minute_text();
        };
        match jiff::Timestamp::from_second(self.unix_seconds()) {
            Ok(t) => format!(
                "{} {}",
                t.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M"),
                zone.name
            ),
            Err(_) => self.to_minute_text(),
        }
    }

    /// The minute as the person reading it sees it: in the zone of [`for_reader`], else UTC.
    /// Every time shown to people goes through here or [`Self::to_local_text`].
    pub fn to_reader_text(self) -> String {
        READER
            .try_with(|zone| self.to_local_text(zone))
            .unwrap_or_else(|_| self.to_minute_text())
    }

    /// Parses any RFC 3339 instant (the fixed form included).
    pub fn parse(text: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(text, &Rfc3339).map(Self::from_datetime)
    }

    pub fn plus(self, d: Duration) -> Self {
        Self::from_datetime(self.0 + d)
    }

    pub fn minus(self, d: Duration) -> Self {
        Self::from_datetime(self.0 - d)
    }

    pub fn since(self, earlier: Timestamp) -> Duration {
        self.0 - earlier.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_fixed_text())
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_fixed_text())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A person's time zone: a name of the tz database bundled in the binary (Teams reports the
/// client's, #18.6). UTC is the zone of anyone who has not reported one.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    /// `None`: UTC.
    tz: Option<jiff::tz::TimeZone>,
}

impl Zone {
    pub fn utc() -> Self {
        Zone {
            name: "UTC".into(),
            tz: None,
        }
    }

    /// The zone of an IANA name (`Europe/Berlin`); `None` for a name the database does not know.
    /// UTC and its aliases are plain UTC.
    pub fn named(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return None;
        }
        let tz = jiff::tz::TimeZone::get(name).ok()?;
        let name = tz.iana_name().unwrap_or(name).to_string();
        if matches!(
            name.as_str(),
            "UTC" | "Etc/UTC" | "Etc/UCT" | "UCT" | "Etc/Zulu" | "Zulu"
        ) {
            return Some(Self::utc());
        }
        Some(Zone { name, tz: Some(tz) })
    }

    /// The IANA name, as stored and shown.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

tokio::task_local! {
    static READER: Zone;
}

/// Runs `f` for a person in `zone`: the times it renders for people
/// ([`Timestamp::to_reader_text`]) are in that zone. A turn runs in its sender's zone; a notice
/// is rendered in its recipient's.
pub async fn for_reader<F: std::future::Future>(zone: Zone, f: F) -> F::Output {
    READER.scope(zone, f).await
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }
}

/// A clock that moves only when told to; for tests and replay.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn advance(&self, d: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now = now.plus(d);
    }

    pub fn set(&self, t: Timestamp) {
        *self.0.lock().expect("clock lock") = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// Formats a duration compactly, largest units first with zero parts left
/// out: `2h`, `1h 30m`, `1d 2h`, `45m`, `30s`. Fractions of a second are
/// dropped; zero is `0s` and negative durations get a leading `-`.
pub fn format_duration(d: time::Duration) -> String {
    let seconds = d.whole_seconds();
    let mut remaining = seconds.unsigned_abs();
    if remaining == 0 {
        return "0s".to_string();
    }
    let mut parts = Vec::new();
    for (size, suffix) in [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
        let count = remaining / size;
        remaining %= size;
        if count > 0 {
            parts.push(format!("{count}{suffix}"));
        }
    }
    let sign = if seconds < 0 { "-" } else { "" };
    format!("{sign}{}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_text_sorts_like_time_even_across_whole_seconds() {
        let whole = Timestamp::from_datetime(datetime!(2026-11-23 10:00:00 UTC));
        let fraction = whole.plus(Duration::microseconds(500_000));
        let later = whole.plus(Duration::seconds(1));
        let mut texts = [
            later.to_fixed_text(),
            whole.to_fixed_text(),
            fraction.to_fixed_text(),
        ];
        texts.sort();
        assert_eq!(
            texts,
            [
                whole.to_fixed_text(),
                fraction.to_fixed_text(),
                later.to_fixed_text()
            ]
        );
        assert_eq!(whole.to_fixed_text(), "2026-11-23T10:00:00.000000Z");
    }

    #[test]
    fn nanoseconds_are_dropped_and_offsets_normalised() {
        let t = Timestamp::from_datetime(datetime!(2026-11-23 12:00:00.123456789 +02:00));
        assert_eq!(t.to_fixed_text(), "2026-11-23T10:00:00.123456Z");
        assert_eq!(Timestamp::parse(&t.to_fixed_text()).unwrap(), t);
    }

    #[test]
    fn local_text_names_the_zone_and_follows_summer_time() {
        let winter = Timestamp::from_datetime(datetime!(2026-11-23 10:00:59 UTC));
        let summer = Timestamp::from_datetime(datetime!(2026-07-01 10:00:00 UTC));
        let berlin = Zone::named("Europe/Berlin").unwrap();
        assert_eq!(
            winter.to_local_text(&berlin),
            "2026-11-23 11:00 Europe/Berlin"
        );
        assert_eq!(
            summer.to_local_text(&berlin),
            "2026-07-01 12:00 Europe/Berlin"
        );
        let kolkata = Zone::named("Asia/Kolkata").unwrap();
        assert_eq!(
            winter.to_local_text(&kolkata),
            "2026-11-23 15:30 Asia/Kolkata"
        );
        assert_eq!(winter.to_local_text(&Zone::utc()), "2026-11-23 10:00 UTC");
        assert_eq!(Zone::named("Etc/UTC"), Some(Zone::utc()));
    }

    #[test]
    fn unknown_zone_names_are_not_zones() {
        for bogus in [
            "",
            "Mars/Olympus_Mons",
            "Europe/Berlin; DROP",
            "../../etc/passwd",
            &"A".repeat(80),
        ] {
            assert_eq!(Zone::named(bogus), None, "{bogus}");
        }
    }

    #[tokio::test]
    async fn reader_text_is_utc_outside_a_reader_and_local_inside() {
        let t = Timestamp::from_datetime(datetime!(2026-11-23 10:00:00 UTC));
        assert_eq!(t.to_reader_text(), "2026-11-23 10:00 UTC");
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let inside = for_reader(berlin, async { t.to_reader_text() }).await;
        assert_eq!(inside, "2026-11-23 11:00 Europe/Berlin");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Timestamp::from_unix_seconds(1_800_000_000);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::minutes(5));
        assert_eq!(clock.now().since(start), Duration::minutes(5));
    }
}
