//! Send windows (quiet hours): the local times of day, in the customer's own
//! zone, when reminders may go out — e.g. `11:00-12:00` and `19:00-21:00`. A
//! window may cross midnight (`21:00-08:00`). A send due outside every window
//! waits for the next opening, found on the customer's local calendar so a
//! DST change moves the UTC instant, never the local time.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// One window of local time, `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Opening time.
    pub start: NaiveTime,
    /// Closing time; earlier than `start` when the window crosses midnight.
    pub end: NaiveTime,
}

impl Window {
    /// Parse `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let hint = "write windows as \"HH:MM-HH:MM\" in the customer's local time, e.g. \"11:00-12:00\" or \"21:00-08:00\"";
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("send window `{text}`: {hint}"))?;
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("send window `{text}`: `{}` is not HH:MM; {hint}", t.trim()))
        };
        let (start, end) = (time(a)?, time(b)?);
        if start == end {
            return Err(format!(
                "send window `{text}` is empty; to allow any time, leave send_windows out (or set it to [])"
            ));
        }
        Ok(Window { start, end })
    }

    fn contains(&self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// Parse a list of windows; an empty list means any time.
pub fn parse_all(texts: &[String]) -> Result<Vec<Window>, String> {
    texts.iter().map(|t| Window::parse(t)).collect()
}

/// The first instant at or after `local` on `date` in `tz` (a time in a
/// spring-forward gap moves to the end of the gap; an ambiguous autumn time
/// takes its first occurrence).
fn resolve(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = date.and_time(time);
    for _ in 0..180 {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => naive += Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&date.and_time(time))
}

/// `None` when `now` is inside one of `windows` (or there are none) in `tz`;
/// otherwise the next opening.
pub fn next_opening(windows: &[Window], tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if windows.is_empty() {
        return None;
    }
    let local = now.with_timezone(&tz);
    if windows.iter().any(|w| w.contains(local.time())) {
        return None;
    }
    let today = local.date_naive();
    (0..3)
        .flat_map(|d| {
            let date = today + Duration::days(d);
            windows.iter().map(move |w| resolve(tz, date, w.start))
        })
        .filter(|t| *t > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(
            Window::parse("11:00-12:00").unwrap(),
            Window {
                start: NaiveTime::from_hms_opt(11, 0, 0).unwrap(),
                end: NaiveTime::from_hms_opt(12, 0, 0).unwrap()
            }
        );
        for bad in ["11-12", "11:00", "25:00-26:00", "10:00-10:00"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defers_to_the_next_opening_in_the_customers_zone() {
        let w = parse_all(&["11:00-12:00".into(), "19:00-21:00".into()]).unwrap();
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 10:30 Shanghai = 02:30 UTC → 11:00 Shanghai.
        assert_eq!(
            next_opening(&w, tz, utc("2026-03-02T02:30:00Z")),
            Some(utc("2026-03-02T03:00:00Z"))
        );
        // 11:30 Shanghai is inside.
        assert_eq!(next_opening(&w, tz, utc("2026-03-02T03:30:00Z")), None);
        // 12:00 Shanghai (end is exclusive) → 19:00.
        assert_eq!(
            next_opening(&w, tz, utc("2026-03-02T04:00:00Z")),
            Some(utc("2026-03-02T11:00:00Z"))
        );
        // 22:00 Shanghai → 11:00 next day.
        assert_eq!(
            next_opening(&w, tz, utc("2026-03-02T14:00:00Z")),
            Some(utc("2026-03-03T03:00:00Z"))
        );
        assert_eq!(next_opening(&[], tz, utc("2026-03-02T14:00:00Z")), None);
    }

    #[test]
    fn a_window_crossing_midnight() {
        let w = parse_all(&["21:00-08:00".into()]).unwrap();
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 23:30 and 07:59 Berlin (winter, UTC+1) are inside.
        assert_eq!(next_opening(&w, tz, utc("2026-01-10T22:30:00Z")), None);
        assert_eq!(next_opening(&w, tz, utc("2026-01-11T06:59:00Z")), None);
        // 08:00 Berlin → 21:00 the same day.
        assert_eq!(
            next_opening(&w, tz, utc("2026-01-11T07:00:00Z")),
            Some(utc("2026-01-11T20:00:00Z"))
        );
    }

    #[test]
    fn dst_moves_the_utc_instant_not_the_local_time() {
        let w = parse_all(&["09:00-10:00".into()]).unwrap();
        let tz: Tz = "America/New_York".parse().unwrap();
        // Sat 2026-03-07 20:00 EST; next opening Sun 03-08 09:00 EDT = 13:00 UTC
        // (the clocks went forward at 02:00 that night).
        assert_eq!(
            next_opening(&w, tz, utc("2026-03-08T01:00:00Z")),
            Some(utc("2026-03-08T13:00:00Z"))
        );
        // A window opening inside the spring-forward gap opens at its end.
        let gap = parse_all(&["02:30-04:00".into()]).unwrap();
        assert_eq!(
            next_opening(&gap, tz, utc("2026-03-08T05:00:00Z")),
            Some(utc("2026-03-08T07:00:00Z")),
            "02:30 does not exist on 03-08; 03:00 EDT = 07:00 UTC"
        );
    }
}
