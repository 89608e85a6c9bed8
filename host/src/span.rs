//! Human-written durations used throughout the configuration: `250ms`, `30s`, `5m`,
//! `12h`, `4d`, `2w`, `3mo`, `1y`, and sums such as `1d12h`.
//!
//! Months and years are calendar units: they are added to local dates, so
//! "1 month after 31 January" is the last day of February, and "1y" after a
//! date is the same date next year whatever the day count.

use chrono::{Duration, Months, NaiveDate};
use std::fmt;
use std::str::FromStr;

/// A signed span of calendar months, days and exact seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Calendar months (years are 12 months).
    pub months: i32,
    /// Calendar days.
    pub days: i32,
    /// Exact milliseconds (ms, s, m, h).
    pub millis: i64,
}

impl Span {
    /// True when the span has no calendar part, so it is an exact duration.
    pub fn is_exact(&self) -> bool {
        self.months == 0 && self.days == 0
    }

    /// The span as an exact duration, counting a day as 24 hours. Months are
    /// refused: use [`Span::add_to_date`] for calendar arithmetic.
    pub fn as_duration(&self) -> Result<Duration, String> {
        if self.months != 0 {
            return Err(format!(
                "`{self}` uses months or years, which have no fixed length here; use days (d) or hours (h)"
            ));
        }
        Ok(Duration::days(self.days as i64) + Duration::milliseconds(self.millis))
    }

    /// Add the calendar part of the span to a date (the seconds are ignored).
    pub fn add_to_date(&self, date: NaiveDate) -> Option<NaiveDate> {
        let with_months = if self.months >= 0 {
            date.checked_add_months(Months::new(self.months as u32))?
        } else {
            date.checked_sub_months(Months::new(self.months.unsigned_abs()))?
        };
        with_months.checked_add_signed(Duration::days(self.days as i64))
    }

    /// The span with every part negated.
    pub fn negated(&self) -> Span {
        Span {
            months: -self.months,
            days: -self.days,
            millis: -self.millis,
        }
    }

    /// Multiply the span by a whole number.
    pub fn times(&self, n: i32) -> Span {
        Span {
            months: self.months * n,
            days: self.days * n,
            millis: self.millis * n as i64,
        }
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let (negative, body) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if body.is_empty() {
            return Err(format!(
                "empty duration `{input}`: write e.g. `30s`, `4d`, `3mo`, `1y`"
            ));
        }
        let mut span = Span::default();
        let mut rest = body;
        while !rest.is_empty() {
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits == 0 {
                return Err(format!(
                    "bad duration `{input}`: expected a number before `{rest}` (units: ms, s, m, h, d, w, mo, y)"
                ));
            }
            let number: i64 = rest[..digits]
                .parse()
                .map_err(|_| format!("bad duration `{input}`: number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let small = i32::try_from(number)
                .map_err(|_| format!("bad duration `{input}`: number too large"))?;
            let too_long = || format!("bad duration `{input}`: longer than {MAX_YEARS} years");
            let add_ms = |acc: i64, per: i64| {
                number
                    .checked_mul(per)
                    .and_then(|v| acc.checked_add(v))
                    .ok_or_else(too_long)
            };
            let add_small = |acc: i32, per: i32| {
                small
                    .checked_mul(per)
                    .and_then(|v| acc.checked_add(v))
                    .ok_or_else(too_long)
            };
            match unit {
                "ms" => span.millis = add_ms(span.millis, 1)?,
                "s" => span.millis = add_ms(span.millis, 1000)?,
                "m" | "min" => span.millis = add_ms(span.millis, 60_000)?,
                "h" => span.millis = add_ms(span.millis, 3_600_000)?,
                "d" => span.days = add_small(span.days, 1)?,
                "w" => span.days = add_small(span.days, 7)?,
                "mo" => span.months = add_small(span.months, 1)?,
                "y" => span.months = add_small(span.months, 12)?,
                "" => {
                    return Err(format!(
                        "bad duration `{input}`: `{number}` needs a unit (ms, s, m, h, d, w, mo, y)"
                    ))
                }
                other => {
                    return Err(format!(
                    "bad duration `{input}`: unknown unit `{other}` (use ms, s, m, h, d, w, mo, y)"
                ))
                }
            }
        }
        // Bounded so every later calendar or clock computation stays in range.
        let max_days = i64::from(MAX_YEARS) * 366;
        if span.months.unsigned_abs() > MAX_YEARS * 12
            || i64::from(span.days).abs() > max_days
            || span.millis.unsigned_abs() > (max_days * 86_400_000) as u64
        {
            return Err(format!(
                "bad duration `{input}`: longer than {MAX_YEARS} years"
            ));
        }
        Ok(if negative { span.negated() } else { span })
    }
}

/// The longest duration a strategy may use.
pub const MAX_YEARS: u32 = 1000;

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        let mut part = |f: &mut fmt::Formatter<'_>, n: i64, unit: &str| -> fmt::Result {
            if n != 0 {
                wrote = true;
                write!(f, "{n}{unit}")?;
            }
            Ok(())
        };
        part(f, (self.months / 12) as i64, "y")?;
        part(f, (self.months % 12) as i64, "mo")?;
        part(f, self.days as i64, "d")?;
        part(f, self.millis / 3_600_000, "h")?;
        part(f, (self.millis % 3_600_000) / 60_000, "m")?;
        part(f, (self.millis % 60_000) / 1000, "s")?;
        part(f, self.millis % 1000, "ms")?;
        if !wrote {
            write!(f, "0s")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parse an exact duration such as `5s` or `10m` (no months or years).
pub fn parse_exact(text: &str) -> Result<std::time::Duration, String> {
    let span: Span = text.parse()?;
    let duration = span.as_duration()?;
    duration
        .to_std()
        .map_err(|_| format!("duration `{text}` must not be negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!("4d".parse::<Span>().unwrap().days, 4);
        assert_eq!("1y".parse::<Span>().unwrap().months, 12);
        assert_eq!("3mo".parse::<Span>().unwrap().months, 3);
        let s: Span = "1d12h".parse().unwrap();
        assert_eq!((s.days, s.millis), (1, 12 * 3_600_000));
        assert_eq!("250ms".parse::<Span>().unwrap().millis, 250);
        assert_eq!("-4d".parse::<Span>().unwrap().days, -4);
        assert!("4".parse::<Span>().unwrap_err().contains("needs a unit"));
        assert!("4x".parse::<Span>().unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn calendar_months_clamp_to_month_end() {
        let jan31 = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        let one_month: Span = "1mo".parse().unwrap();
        assert_eq!(
            one_month.add_to_date(jan31),
            NaiveDate::from_ymd_opt(2026, 2, 28)
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["1y", "3mo", "4d", "1d12h", "30s", "0s", "1s500ms"] {
            assert_eq!(text.parse::<Span>().unwrap().to_string(), text);
        }
    }
}
