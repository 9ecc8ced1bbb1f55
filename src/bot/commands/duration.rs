//! Durations: `30m`, `2h`, `1d`, `90 minutes`, `1h 30m`…

use super::*;

/// Why some text is not an acceptable duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// No text at all.
    Empty,
    /// Text that is not part of a duration, such as `soon`.
    Invalid { found: String },
    /// A unit without a number, such as `h`.
    MissingNumber { unit: String },
    /// A number without a unit, such as `2`.
    MissingUnit { number: String },
    /// A unit that isn't minutes, hours, days or weeks.
    UnknownUnit { unit: String },
    /// Seconds were used; the smallest unit is minutes.
    Seconds,
    /// A decimal such as `1.5h`.
    Fractional,
    /// A negative amount such as `-2h`.
    Negative,
    /// The total is zero.
    Zero,
    /// More than 366 days, or a number too large to hold.
    TooLong,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("no duration was given"),
            DurationError::Invalid { found } => {
                write!(f, "`{}` isn't a length of time", echo(found))
            }
            DurationError::MissingNumber { unit } => write!(
                f,
                "`{}` needs a number in front of it, like `2h`",
                echo(unit)
            ),
            DurationError::MissingUnit { number } => {
                let number = echo(number);
                write!(
                    f,
                    "`{number}` needs a unit, like `{number}h` for hours or `{number}m` for minutes"
                )
            }
            DurationError::UnknownUnit { unit } => write!(
                f,
                "`{}` isn't a unit I know; use minutes (`m`), hours (`h`) or days (`d`)",
                echo(unit)
            ),
            DurationError::Seconds => {
                f.write_str("seconds are too short; the smallest unit is minutes, like `30m`")
            }
            DurationError::Fractional => {
                f.write_str("use whole numbers, like `1h 30m` instead of `1.5h`")
            }
            DurationError::Negative => f.write_str("a duration can't be negative"),
            DurationError::Zero => f.write_str("a duration has to be longer than zero"),
            DurationError::TooLong => {
                f.write_str("that's too long; the most I accept is 366 days (`366d`)")
            }
        }
    }
}

impl std::error::Error for DurationError {}

impl DurationError {
    /// Errors about the value rather than the shape of the text. When trying
    /// successively shorter runs of words as a duration, these say more about
    /// what the person meant than "that word isn't a unit".
    pub(super) fn is_about_value(&self) -> bool {
        matches!(
            self,
            DurationError::Seconds
                | DurationError::Fractional
                | DurationError::Negative
                | DurationError::Zero
                | DurationError::TooLong
        )
    }
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Parses a duration such as `30m`, `2h`, `1d`, `90 minutes`, `2 hours`,
/// `45min`, `2hrs`, `1h30m`, `1h 30m`, `1 h`, or `1 hour and 30 minutes`.
///
/// Units are minutes, hours, days and weeks, case-insensitive. Amounts are
/// whole numbers; the total must be more than zero and at most 366 days.
/// Seconds are rejected: the smallest unit is minutes.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let chars: Vec<char> = text.trim().chars().collect();
    if chars.is_empty() {
        return Err(DurationError::Empty);
    }
    let token_from = |start: usize| -> String {
        chars[start..]
            .iter()
            .take_while(|c| !c.is_whitespace())
            .collect()
    };
    let mut total: u64 = 0;
    let mut parts = 0;
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|&c| c.is_whitespace() || c == ',') {
            i += 1;
        }
        let Some(&c) = chars.get(i) else {
            break;
        };
        if c.is_ascii_digit() {
            let number_start = i;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            let number: String = chars[number_start..i].iter().collect();
            if matches!(chars.get(i), Some('.' | ','))
                && chars.get(i + 1).is_some_and(char::is_ascii_digit)
            {
                return Err(DurationError::Fractional);
            }
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            let unit_start = i;
            while chars.get(i).is_some_and(|c| c.is_alphabetic()) {
                i += 1;
            }
            let unit: String = chars[unit_start..i].iter().collect();
            if unit.is_empty() {
                return match chars.get(i) {
                    None => Err(DurationError::MissingUnit { number }),
                    Some(c) if c.is_ascii_digit() => Err(DurationError::MissingUnit { number }),
                    Some(_) => Err(DurationError::Invalid {
                        found: token_from(i),
                    }),
                };
            }
            let seconds_per_unit = unit_seconds(&unit)?;
            // A number too big for u64 is certainly more than 366 days.
            let amount: u64 = number.parse().map_err(|_| DurationError::TooLong)?;
            total = amount
                .checked_mul(seconds_per_unit)
                .and_then(|seconds| total.checked_add(seconds))
                .ok_or(DurationError::TooLong)?;
            parts += 1;
        } else if c.is_alphabetic() {
            let word_start = i;
            while chars.get(i).is_some_and(|c| c.is_alphabetic()) {
                i += 1;
            }
            let word: String = chars[word_start..i].iter().collect();
            let lower = word.to_lowercase();
            if lower == "and" && parts > 0 {
                continue;
            }
            return Err(match unit_seconds(&lower) {
                Ok(_) | Err(DurationError::Seconds) => DurationError::MissingNumber { unit: word },
                Err(_) => DurationError::Invalid {
                    found: token_from(word_start),
                },
            });
        } else if c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            return Err(DurationError::Negative);
        } else if c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            return Err(DurationError::Fractional);
        } else {
            return Err(DurationError::Invalid {
                found: token_from(i),
            });
        }
    }
    if parts == 0 {
        return Err(DurationError::Invalid {
            found: text.trim().to_string(),
        });
    }
    if total == 0 {
        return Err(DurationError::Zero);
    }
    if total > MAX_DURATION_SECONDS {
        return Err(DurationError::TooLong);
    }
    // At most 366 days, so it fits an i64 comfortably.
    Ok(Duration::seconds(total as i64))
}

/// Seconds in one of `unit`, or why the unit isn't accepted.
fn unit_seconds(unit: &str) -> Result<u64, DurationError> {
    match unit.to_lowercase().as_str() {
        "m" | "min" | "mins" | "minute" | "minutes" => Ok(SECONDS_PER_MINUTE),
        "h" | "hr" | "hrs" | "hour" | "hours" => Ok(SECONDS_PER_HOUR),
        "d" | "day" | "days" => Ok(SECONDS_PER_DAY),
        "w" | "wk" | "wks" | "week" | "weeks" => Ok(SECONDS_PER_WEEK),
        "s" | "sec" | "secs" | "second" | "seconds" => Err(DurationError::Seconds),
        _ => Err(DurationError::UnknownUnit {
            unit: unit.to_string(),
        }),
    }
}
