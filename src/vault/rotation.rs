//! Password rotation as Commander reports it: `pam rotation info -r <RECORD_UID> --format json`,
//! and when a scheduled rotation is *due* (its time has passed and the vault shows no change since).
//!
//! The JSON shape is keepercommander 18.x's (`PAMRouterGetRotationInfo`, read from its source):
//!
//! ```text
//! {"status": "RRS_ONLINE", "ready_to_rotate": true, "pam_config_uid": "…", "node_id": …,
//!  "gateway_name": "…", "gateway_uid": "…", "admin_resource_uid": "…",
//!  "password_complexity": "…", "password_complexity_detail": {…},
//!  "schedule_type": "scheduled" | "manual" | null, "schedule_data": "<text>" | null,
//!  "use_default_rotation_schedule": false, "disabled": false, "script_name": null}
//! ```
//! and, when the router cannot rotate the record, only
//! `{"status": "RRS_NO_ROTATION" | "RRS_NO_CONTROLLER" | "RRS_CONTROLLER_DOWN", "ready_to_rotate": false, …}`.
//!
//! Commander prints no "next run" and no "last rotated" time, so "due" is computed here: the
//! latest run the schedule asked for (at or before now) is later than the last change Passkey saw
//! in the record (its metadata's last update, which a rotation's new revision causes). So run the
//! check after a vault sync. `schedule_data` is the router's schedule text: a JSON list as
//! `pam rotation set` stores it (`[{"type": "DAILY", "utcTime": "15:44", "intervalCount": 1}]`,
//! `WEEKLY` with `weekday`, `MONTHLY_BY_DAY` with `monthDay`; `time` is accepted for `utcTime`),
//! or the older `RotateActionJob|DAILY.15:44.1` / `RotateActionJob|WEEKLY.SUNDAY.15:44.1` form.
//! CRON, `MONTHLY_BY_WEEKDAY`, `YEARLY`, `RUN_ONCE` and time zones other than UTC are not
//! interpreted: such records are counted as "unsupported", never flagged.
//!
//! Nothing here is secret (no field values), but only the fields above are kept.

use super::VaultError;
use crate::domain::Timestamp;
use async_trait::async_trait;
use serde::Serialize;
use time::{Duration, Time, Weekday};

/// What `pam rotation info` says about one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationInfo {
    /// The router's status: `RRS_ONLINE` when a gateway can rotate the record.
    pub status: String,
    pub ready_to_rotate: bool,
    pub disabled: bool,
    /// `scheduled`, `manual`, or none.
    pub schedule_type: Option<String>,
    /// The router's schedule text, as printed.
    pub schedule_data: Option<String>,
}

/// A rotation schedule Passkey can reason about (all times UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every `every` days at `at`.
    Daily { at: Time, every: u32 },
    /// Every `every` weeks on `weekday` at `at`.
    Weekly {
        weekday: Weekday,
        at: Time,
        every: u32,
    },
    /// Each month on day `day` (clamped to the month's length) at `at`.
    MonthlyByDay { day: u8, at: Time },
}

/// Whether a rotation is due, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// The schedule's run at this time has not been followed by a change in the vault.
    Since(Timestamp),
    NotDue,
    /// The router cannot rotate it, rotation is off, manual, or there is no schedule.
    NotScheduled,
    /// A schedule Passkey does not interpret (the text says which).
    Unsupported(String),
}

impl RotationInfo {
    /// From the JSON object Commander printed. Missing booleans read as false.
    pub fn from_json(json: &serde_json::Value) -> Result<RotationInfo, String> {
        let object = json
            .as_object()
            .ok_or_else(|| "pam rotation info did not print a JSON object".to_string())?;
        let text = |key: &str| {
            object
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let flag = |key: &str| object.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        let status =
            text("status").ok_or_else(|| "pam rotation info printed no status".to_string())?;
        Ok(RotationInfo {
            status,
            ready_to_rotate: flag("ready_to_rotate"),
            disabled: flag("disabled"),
            schedule_type: text("schedule_type"),
            schedule_data: text("schedule_data"),
        })
    }

    /// Whether the router would rotate this record on a schedule at all.
    pub fn is_scheduled(&self) -> bool {
        self.status == "RRS_ONLINE"
            && self.ready_to_rotate
            && !self.disabled
            && self.schedule_type.as_deref() == Some("scheduled")
            && self.schedule_data.is_some()
    }

    /// The schedule, or why there is none Passkey can use.
    pub fn schedule(&self) -> Result<Option<Schedule>, String> {
        if !self.is_scheduled() {
            return Ok(None);
        }
        Schedule::parse(self.schedule_data.as_deref().unwrap_or_default()).map(Some)
    }

    /// Due when the schedule's latest run at or before `now` came after `last_change` (the last
    /// time Passkey saw the record change in the vault) — for an every-N schedule, when nothing
    /// changed during the whole interval that ended at that run.
    pub fn due(&self, last_change: Timestamp, now: Timestamp) -> Due {
        match self.schedule() {
            Ok(None) => Due::NotScheduled,
            Err(why) => Due::Unsupported(why),
            Ok(Some(schedule)) => {
                let run = schedule.last_run_at_or_before(now);
                if last_change < run.minus(schedule.slack()) {
                    Due::Since(run)
                } else {
                    Due::NotDue
                }
            }
        }
    }
}

impl Schedule {
    /// `schedule_data` in either of the router's forms.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if text.starts_with('[') || text.starts_with('{') {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|_| "schedule is not valid JSON".to_string())?;
            let first = match &json {
                serde_json::Value::Array(items) => items.first().cloned().unwrap_or_default(),
                other => other.clone(),
            };
            return Schedule::from_json(&first);
        }
        Schedule::from_legacy(text.trim_start_matches("RotateActionJob|"))
    }

    fn from_json(item: &serde_json::Value) -> Result<Schedule, String> {
        let text = |key: &str| item.get(key).and_then(|v| v.as_str()).map(str::trim);
        let kind = text("type").unwrap_or_default().to_ascii_uppercase();
        if let Some(tz) = text("tz").filter(|tz| !matches!(*tz, "Etc/UTC" | "UTC" | "GMT" | "")) {
            return Err(format!("time zone {tz} is not interpreted"));
        }
        let at = text("utcTime")
            .or_else(|| text("time"))
            .map(time_of_day)
            .transpose()?
            .unwrap_or(Time::MIDNIGHT);
        let every = item
            .get("intervalCount")
            .and_then(|v| v.as_u64())
            .unwrap_or(1)
            .clamp(1, 366) as u32;
        match kind.as_str() {
            "DAILY" => Ok(Schedule::Daily { at, every }),
            "WEEKLY" => Ok(Schedule::Weekly {
                weekday: weekday(text("weekday").unwrap_or_default())?,
                at,
                every,
            }),
            "MONTHLY_BY_DAY" => Ok(Schedule::MonthlyByDay {
                day: month_day(item.get("monthDay"))?,
                at,
            }),
            "" => Err("schedule has no type".to_string()),
            other => Err(format!("{other} schedules are not interpreted")),
        }
    }

    /// `DAILY.15:44.1`, `WEEKLY.SUNDAY.15:44.1`, `MONTHLY_BY_DAY.1.15:44.1`.
    fn from_legacy(text: &str) -> Result<Schedule, String> {
        let parts: Vec<&str> = text.split('.').collect();
        let every = |s: &str| s.trim().parse::<u32>().unwrap_or(1).clamp(1, 366);
        match parts.as_slice() {
            [kind, at, n] if kind.eq_ignore_ascii_case("DAILY") => Ok(Schedule::Daily {
                at: time_of_day(at)?,
                every: every(n),
            }),
            [kind, day, at, n] if kind.eq_ignore_ascii_case("WEEKLY") => Ok(Schedule::Weekly {
                weekday: weekday(day)?,
                at: time_of_day(at)?,
                every: every(n),
            }),
            [kind, day, at, _] if kind.eq_ignore_ascii_case("MONTHLY_BY_DAY") => {
                Ok(Schedule::MonthlyByDay {
                    day: month_day(Some(&serde_json::Value::String(day.to_string())))?,
                    at: time_of_day(at)?,
                })
            }
            _ => Err("schedule text is not in a known form".to_string()),
        }
    }

    /// The latest time at or before `now` at which this schedule asked for a rotation.
    pub fn last_run_at_or_before(&self, now: Timestamp) -> Timestamp {
        let now_dt = now.datetime();
        let today = now_dt.date();
        let at_day = |date: time::Date, at: Time| {
            Timestamp::from_datetime(time::PrimitiveDateTime::new(date, at).assume_utc())
        };
        match *self {
            Schedule::Daily { at, .. } => {
                let run = at_day(today, at);
                if run <= now {
                    run
                } else {
                    run.minus(Duration::days(1))
                }
            }
            Schedule::Weekly { weekday, at, .. } => {
                let back = (today.weekday().number_days_from_monday() + 7
                    - weekday.number_days_from_monday())
                    % 7;
                let run = at_day(today - Duration::days(back as i64), at);
                if run <= now {
                    run
                } else {
                    run.minus(Duration::days(7))
                }
            }
            Schedule::MonthlyByDay { day, at } => {
                let in_month = |year: i32, month: time::Month| {
                    let last = time::util::days_in_month(month, year);
                    let date =
                        time::Date::from_calendar_date(year, month, day.min(last)).unwrap_or(today);
                    at_day(date, at)
                };
                let run = in_month(today.year(), today.month());
                if run <= now {
                    run
                } else {
                    let (year, month) = match today.month() {
                        time::Month::January => (today.year() - 1, time::Month::December),
                        m => (today.year(), m.previous()),
                    };
                    in_month(year, month)
                }
            }
        }
    }

    /// How long before the latest run a change still counts as that interval's rotation: for an
    /// every-N schedule the N−1 runs Passkey cannot place (it does not know the cycle's phase).
    fn slack(&self) -> Duration {
        match *self {
            Schedule::Daily { every, .. } => Duration::days(i64::from(every) - 1),
            Schedule::Weekly { every, .. } => Duration::weeks(i64::from(every) - 1),
            Schedule::MonthlyByDay { .. } => Duration::ZERO,
        }
    }
}

fn time_of_day(text: &str) -> Result<Time, String> {
    let mut parts = text.trim().split(':').map(|p| p.trim().parse::<u8>());
    let bad = || format!("time of day {text:?} is not HH:MM");
    let hour = parts.next().and_then(Result::ok).ok_or_else(bad)?;
    let minute = parts.next().and_then(Result::ok).ok_or_else(bad)?;
    let second = parts.next().and_then(Result::ok).unwrap_or(0);
    Time::from_hms(hour, minute, second).map_err(|_| bad())
}

fn weekday(text: &str) -> Result<Weekday, String> {
    let days = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    let text = text.trim();
    days.into_iter()
        .find(|d| d.to_string().eq_ignore_ascii_case(text))
        .ok_or_else(|| format!("weekday {text:?} is not known"))
}

fn month_day(value: Option<&serde_json::Value>) -> Result<u8, String> {
    let day = match value {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match day {
        Some(d @ 1..=31) => Ok(d as u8),
        _ => Err("month day is not 1–31".to_string()),
    }
}

/// Rotation information per record. Commander's backends ask `pam rotation info`; backends
/// without rotation (the local vault, the staging stub) say so and a check does nothing.
#[async_trait]
pub trait RotationChecker: Send + Sync {
    /// False when this backend has no rotation information at all.
    fn has_rotation_info(&self) -> bool {
        true
    }
    async fn rotation_info(&self, record_uid: &str) -> Result<RotationInfo, VaultError>;
}

/// The checker for backends without rotation information.
pub struct NoRotationInfo;

#[async_trait]
impl RotationChecker for NoRotationInfo {
    fn has_rotation_info(&self) -> bool {
        false
    }

    async fn rotation_info(&self, _record_uid: &str) -> Result<RotationInfo, VaultError> {
        Ok(RotationInfo {
            status: "RRS_NO_ROTATION".to_string(),
            ready_to_rotate: false,
            disabled: false,
            schedule_type: None,
            schedule_data: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    fn info(schedule_data: &str) -> RotationInfo {
        RotationInfo::from_json(&serde_json::json!({
            "status": "RRS_ONLINE", "ready_to_rotate": true, "disabled": false,
            "schedule_type": "scheduled", "schedule_data": schedule_data,
            "pam_config_uid": "x", "node_id": 1,
        }))
        .unwrap()
    }

    #[test]
    fn both_schedule_forms_parse() {
        let t = Time::from_hms(15, 44, 0).unwrap();
        assert_eq!(
            Schedule::parse(r#"[{"type":"DAILY","utcTime":"15:44","intervalCount":1}]"#),
            Ok(Schedule::Daily { at: t, every: 1 })
        );
        assert_eq!(
            Schedule::parse(
                r#"[{"type":"WEEKLY","time":"15:44:00","weekday":"SUNDAY","tz":"Etc/UTC","intervalCount":2}]"#
            ),
            Ok(Schedule::Weekly {
                weekday: Weekday::Sunday,
                at: t,
                every: 2
            })
        );
        assert_eq!(
            Schedule::parse(r#"{"type":"MONTHLY_BY_DAY","monthDay":31,"utcTime":"15:44"}"#),
            Ok(Schedule::MonthlyByDay { day: 31, at: t })
        );
        assert_eq!(
            Schedule::parse("RotateActionJob|DAILY.15:44.1"),
            Ok(Schedule::Daily { at: t, every: 1 })
        );
        assert_eq!(
            Schedule::parse("RotateActionJob|WEEKLY.SUNDAY.15:44.1"),
            Ok(Schedule::Weekly {
                weekday: Weekday::Sunday,
                at: t,
                every: 1
            })
        );
        for bad in [
            r#"[{"type":"CRON","cron":"56 17 * * *"}]"#,
            r#"[{"type":"DAILY","utcTime":"15:44","tz":"Europe/Paris"}]"#,
            r#"[{"type":"DAILY","utcTime":"25:00"}]"#,
            "every tuesday",
            "[",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_latest_run_is_at_or_before_now() {
        let now = at("2026-11-23T09:00:00Z"); // a Monday
        let nine = Time::from_hms(9, 0, 0).unwrap();
        let ten = Time::from_hms(10, 0, 0).unwrap();
        let daily = |at| Schedule::Daily { at, every: 1 };
        assert_eq!(daily(nine).last_run_at_or_before(now), now);
        assert_eq!(
            daily(ten).last_run_at_or_before(now),
            at("2026-11-22T10:00:00Z")
        );
        let weekly = |weekday, at| Schedule::Weekly {
            weekday,
            at,
            every: 1,
        };
        assert_eq!(
            weekly(Weekday::Sunday, ten).last_run_at_or_before(now),
            at("2026-11-22T10:00:00Z")
        );
        assert_eq!(
            weekly(Weekday::Monday, ten).last_run_at_or_before(now),
            at("2026-11-16T10:00:00Z")
        );
        let monthly = |day| Schedule::MonthlyByDay { day, at: nine };
        assert_eq!(
            monthly(23).last_run_at_or_before(now),
            at("2026-11-23T09:00:00Z")
        );
        assert_eq!(
            monthly(31).last_run_at_or_before(now),
            at("2026-10-31T09:00:00Z")
        );
        assert_eq!(
            monthly(31).last_run_at_or_before(at("2026-03-05T00:00:00Z")),
            at("2026-02-28T09:00:00Z"),
            "clamped to the month's length"
        );
    }

    #[test]
    fn due_only_when_no_change_followed_the_run() {
        let now = at("2026-11-23T09:00:00Z");
        let daily = info(r#"[{"type":"DAILY","utcTime":"08:00","intervalCount":1}]"#);
        assert_eq!(
            daily.due(at("2026-11-22T12:00:00Z"), now),
            Due::Since(at("2026-11-23T08:00:00Z"))
        );
        assert_eq!(daily.due(at("2026-11-23T08:30:00Z"), now), Due::NotDue);
        let every_three = info(r#"[{"type":"DAILY","utcTime":"08:00","intervalCount":3}]"#);
        assert_eq!(
            every_three.due(at("2026-11-21T12:00:00Z"), now),
            Due::NotDue
        );
        assert_eq!(
            every_three.due(at("2026-11-20T12:00:00Z"), now),
            Due::Since(at("2026-11-23T08:00:00Z"))
        );

        let old = at("2020-01-01T00:00:00Z");
        let not = |json: serde_json::Value| RotationInfo::from_json(&json).unwrap().due(old, now);
        assert_eq!(
            not(serde_json::json!({"status":"RRS_NO_ROTATION","ready_to_rotate":false})),
            Due::NotScheduled
        );
        assert_eq!(
            not(
                serde_json::json!({"status":"RRS_ONLINE","ready_to_rotate":true,"disabled":true,
                "schedule_type":"scheduled","schedule_data":"RotateActionJob|DAILY.08:00.1"})
            ),
            Due::NotScheduled
        );
        assert_eq!(
            not(
                serde_json::json!({"status":"RRS_ONLINE","ready_to_rotate":true,
                "schedule_type":"manual","schedule_data":null})
            ),
            Due::NotScheduled
        );
        assert!(matches!(
            info(r#"[{"type":"CRON","cron":"0 8 * * *"}]"#).due(old, now),
            Due::Unsupported(_)
        ));
        assert!(RotationInfo::from_json(&serde_json::json!([])).is_err());
        assert!(RotationInfo::from_json(&serde_json::json!({"ready_to_rotate": true})).is_err());
    }
}
