//! Occurrences of date triggers: "4 days before `trial_ends_at` at 10:00 in
//! the customer's zone", optionally repeating every span or on a cron
//! schedule. Local times that fall into a DST gap move forward by the gap;
//! ambiguous local times take the earlier instant, so DST never shifts the
//! local time a reminder fires at.

use crate::span::Span;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How a date trigger repeats after its first occurrence.
#[derive(Debug, Clone)]
pub enum Repeat {
    /// Every calendar span (`1y`, `3mo`, `7d`).
    Every(Span),
    /// On a cron schedule in the customer's zone.
    Cron(Box<cron::Schedule>),
}

/// A compiled date trigger.
#[derive(Debug, Clone)]
pub struct DateTrigger {
    /// The date attribute it is relative to.
    pub attribute: String,
    /// Calendar offset from the date (negative = before).
    pub offset: Span,
    /// Local time of day.
    pub at: NaiveTime,
    /// Repetition after the first occurrence.
    pub repeat: Option<Repeat>,
}

/// The instant of a local date and time in `tz`, DST-safe.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut local = NaiveDateTime::new(date, time);
    for _ in 0..4 {
        match tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(earlier, _) => return earlier.with_timezone(&Utc),
            // Inside a spring-forward gap: the wall clock skips this time, so
            // fire at the same distance past the gap.
            chrono::LocalResult::None => local += Duration::hours(1),
        }
    }
    Utc.from_utc_datetime(&NaiveDateTime::new(date, time))
}

impl DateTrigger {
    /// The first occurrence at or after `not_before`, given the anchor date.
    pub fn next_occurrence(
        &self,
        anchor: NaiveDate,
        tz: Tz,
        not_before: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let first_date = self.offset.add_to_date(anchor)?;
        let first = local_instant(tz, first_date, self.at);
        match &self.repeat {
            None => (first >= not_before).then_some(first),
            Some(Repeat::Every(step)) => {
                if first >= not_before {
                    return Some(first);
                }
                // Jump close to `not_before` first for day-based steps, then walk.
                let mut k: i32 = 0;
                if step.months == 0 && step.days > 0 {
                    let behind =
                        (not_before.with_timezone(&tz).date_naive() - first_date).num_days();
                    k = ((behind / step.days as i64) - 1).max(0) as i32;
                }
                for _ in 0..200_000 {
                    let date = step.times(k).add_to_date(first_date)?;
                    let t = local_instant(tz, date, self.at);
                    if t >= not_before {
                        return Some(t);
                    }
                    k = k.checked_add(1)?;
                }
                None
            }
            Some(Repeat::Cron(schedule)) => {
                let start = first.max(not_before);
                // `after` is exclusive and works in whole seconds: start a
                // second early and take the first time not before `start`.
                schedule
                    .after(&(start - Duration::seconds(1)).with_timezone(&tz))
                    .map(|t| t.with_timezone(&Utc))
                    .find(|t| *t >= start)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(offset: &str, repeat: Option<Repeat>) -> DateTrigger {
        DateTrigger {
            attribute: "d".into(),
            offset: offset.parse().unwrap(),
            at: NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
            repeat,
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn fires_at_local_ten_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let t = trigger("-4d", None);
        // 2026-03-08 is the US spring-forward day.
        let before = t.next_occurrence(
            NaiveDate::from_ymd_opt(2026, 3, 11).unwrap(),
            ny,
            utc(2026, 1, 1, 0, 0),
        );
        assert_eq!(before, Some(utc(2026, 3, 7, 15, 0)));
        let after = t.next_occurrence(
            NaiveDate::from_ymd_opt(2026, 3, 13).unwrap(),
            ny,
            utc(2026, 1, 1, 0, 0),
        );
        assert_eq!(after, Some(utc(2026, 3, 9, 14, 0)));
    }

    #[test]
    fn past_single_occurrence_is_none_and_repeats_walk_forward() {
        let anchor = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(
            trigger("0d", None).next_occurrence(anchor, Tz::UTC, utc(2025, 1, 1, 0, 0)),
            None
        );
        let yearly = trigger("1y", Some(Repeat::Every("1y".parse().unwrap())));
        assert_eq!(
            yearly.next_occurrence(anchor, Tz::UTC, utc(2026, 6, 1, 0, 0)),
            Some(utc(2027, 2, 28, 10, 0))
        );
        let weekly = trigger("0d", Some(Repeat::Every("7d".parse().unwrap())));
        assert_eq!(
            weekly.next_occurrence(anchor, Tz::UTC, utc(2024, 3, 8, 0, 0)),
            Some(utc(2024, 3, 14, 10, 0))
        );
    }

    #[test]
    fn gap_moves_forward() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = DateTrigger {
            at: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            ..trigger("0d", None)
        };
        // 2026-03-29 02:30 does not exist in Berlin; 03:30 CEST = 01:30 UTC.
        assert_eq!(
            t.next_occurrence(
                NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(),
                berlin,
                utc(2026, 1, 1, 0, 0)
            ),
            Some(utc(2026, 3, 29, 1, 30))
        );
    }

    #[test]
    fn cron_repeats_in_the_customer_zone_from_the_first_occurrence() {
        use std::str::FromStr;
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        // 09:00 on the 1st of every month, local time, starting 7 days after the anchor.
        let t = trigger(
            "7d",
            Some(Repeat::Cron(Box::new(
                cron::Schedule::from_str("0 0 9 1 * *").unwrap(),
            ))),
        );
        let anchor = NaiveDate::from_ymd_opt(2026, 1, 20).unwrap();
        assert_eq!(
            t.next_occurrence(anchor, shanghai, utc(2026, 1, 1, 0, 0)),
            Some(utc(2026, 2, 1, 1, 0))
        );
        assert_eq!(
            t.next_occurrence(
                anchor,
                shanghai,
                utc(2026, 2, 1, 1, 0) + Duration::milliseconds(1)
            ),
            Some(utc(2026, 3, 1, 1, 0))
        );
    }
}
