//! `lifecycle.schedules`: cron expressions for the scheduled jobs (#17.3). A job without one runs
//! on its interval setting as before. Expressions are read in UTC, with an optional seconds field
//! first (`"0 0 2 * * *"` and `"0 2 * * *"` both mean 02:00 UTC every day).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The scheduled jobs' names, as `lifecycle.schedules` keys (the same as `jobs::Job::name`; a
/// unit test there keeps the two lists equal).
pub const JOB_NAMES: [&str; 8] = [
    "lease-expiry",
    "preflight-retry",
    "stale-requests",
    "vault-sync",
    "housekeeping",
    "audit-checkpoint",
    "audit-verify",
    "access-reviews",
];

/// One parsed cron expression.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    cron: std::sync::Arc<Cron>,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CronSchedule({:?})", self.expression)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl CronSchedule {
    /// Parses five fields (minute hour day month weekday) or six (seconds first). An expression
    /// that never fires (say the 30th of February) is refused too.
    pub fn parse(expression: &str) -> Result<CronSchedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| e.to_string())?;
        let schedule = CronSchedule {
            expression: expression.trim().to_string(),
            cron: std::sync::Arc::new(cron),
        };
        if schedule.next_after(OffsetDateTime::now_utc()).is_none() {
            return Err("it never fires".into());
        }
        Ok(schedule)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first fire time strictly after `after` (UTC, whole seconds), or None if none comes.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = chrono::DateTime::from_timestamp(after.unix_timestamp(), 0)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        OffsetDateTime::from_unix_timestamp(next.timestamp()).ok()
    }
}

/// `lifecycle.schedules`: job name → cron expression. Keys may use `_` for `-` (environment
/// variables cannot hold a dash: `PASSKEY_LIFECYCLE__SCHEDULES__VAULT_SYNC`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedules(BTreeMap<&'static str, CronSchedule>);

impl Schedules {
    /// The cron schedule set for `job` (a `JOB_NAMES` name), if any.
    pub fn get(&self, job: &str) -> Option<&CronSchedule> {
        self.0.get(job)
    }

    /// Reads the `lifecycle.schedules` table; an unknown job or a bad expression is an error
    /// naming the key.
    pub fn from_table(table: BTreeMap<String, String>) -> Result<Schedules, String> {
        let mut out = BTreeMap::new();
        for (key, expression) in table {
            let name = key.replace('_', "-");
            let Some(job) = JOB_NAMES.iter().find(|j| **j == name) else {
                return Err(format!(
                    "lifecycle.schedules.{key}: no such job (the jobs are {})",
                    JOB_NAMES.join(", ")
                ));
            };
            let schedule = CronSchedule::parse(&expression).map_err(|e| {
                format!("lifecycle.schedules.{key}: {expression:?} is not a cron expression: {e}")
            })?;
            if out.insert(*job, schedule).is_some() {
                return Err(format!("lifecycle.schedules.{key}: {job} is set twice"));
            }
        }
        Ok(Schedules(out))
    }
}

impl<'de> Deserialize<'de> for Schedules {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = BTreeMap::<String, String>::deserialize(d)?;
        Schedules::from_table(table).map_err(serde::de::Error::custom)
    }
}

/// One line in `passkey doctor`'s summary: `vault-sync = "0 0 2 * * *"; …`, or that every job
/// runs on its interval.
impl serde::Serialize for Schedules {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            return s.serialize_str("(none: every job runs on its interval)");
        }
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|(job, c)| format!("{job} = {:?}", c.expression))
            .collect();
        s.serialize_str(&lines.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn five_and_six_fields_fire_in_utc() {
        let at_two = CronSchedule::parse("0 0 2 * * *").unwrap();
        assert_eq!(
            at_two.next_after(datetime!(2026-12-06 16:29:14 UTC)),
            Some(datetime!(2026-12-07 02:00:00 UTC))
        );
        let five = CronSchedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            five.next_after(datetime!(2026-12-06 02:30:00 UTC)),
            Some(datetime!(2026-12-07 02:30:00 UTC))
        );
        let every_second = CronSchedule::parse("* * * * * *").unwrap();
        assert_eq!(
            every_second.next_after(datetime!(2026-12-06 02:30:00.5 UTC)),
            Some(datetime!(2026-12-06 02:30:01 UTC))
        );
    }

    #[test]
    fn bad_expressions_unknown_jobs_and_never_firing_ones_are_refused() {
        let table = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let err = Schedules::from_table(table("vault-sync", "0 99 * * *")).unwrap_err();
        assert!(
            err.starts_with(
                "lifecycle.schedules.vault-sync: \"0 99 * * *\" is not a cron expression: "
            ),
            "{err}"
        );
        let err = Schedules::from_table(table("vault-snyc", "0 2 * * *")).unwrap_err();
        assert!(
            err.contains("lifecycle.schedules.vault-snyc: no such job"),
            "{err}"
        );
        let err = Schedules::from_table(table("housekeeping", "0 0 30 2 *")).unwrap_err();
        assert!(err.contains("never fires"), "{err}");
        let ok = Schedules::from_table(table("vault_sync", "0 2 * * *")).unwrap();
        assert_eq!(ok.get("vault-sync").unwrap().expression(), "0 2 * * *");
    }
}
