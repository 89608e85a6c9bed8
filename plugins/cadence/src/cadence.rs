//! The purchase-cadence rule itself, free of any WebAssembly plumbing: it
//! owns the settings (`kind`, `min_events`, `tolerance`,
//! `max_interval_days`), how a customer's usual interval is learnt from their
//! history, and the send / skip / defer verdict with its template variables.
//!
//! How the usual interval is learnt:
//! 1. Only events of the configured `kind` count; events with a timestamp
//!    ≤ 0 (a missing date imported as the epoch) or later than `now` are
//!    ignored. The input order does not matter.
//! 2. Events less than [`MERGE_WINDOW_MS`] (12 hours) after the first event
//!    of a group are one *occasion* (a same-day double order, a retried
//!    webhook, two identical timestamps), so duplicates never make zero gaps.
//!    An occasion is dated by its first event.
//! 3. The usual interval is the median of the gaps between consecutive
//!    occasions. With an even number of gaps it is the mean of the two middle
//!    gaps; with exactly two gaps that is their mean (the only choice that
//!    favours neither gap). One odd gap is therefore outvoted from three gaps
//!    on (gaps 30, 31, 90, 29 days → 30.5 days).
//!
//! The alert is due at `last + usual × (1 + tolerance)`, where `last` is the
//! newest counted event (not the start of its occasion: the customer did buy
//! then). Before that the verdict is `defer(due)`; from then on it is `send`.
//! The verdict depends only on the arguments, so asking twice gives the same
//! answer; the host re-plans the rule on every new event, which moves `last`.

use std::fmt;

/// Events closer than this to the first event of an occasion are merged into it.
pub const MERGE_WINDOW_MS: i64 = 12 * HOUR_MS;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The settings every key of which this plugin understands.
pub const SETTING_KEYS: [&str; 4] = ["kind", "min_events", "tolerance", "max_interval_days"];

/// The parsed settings of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The event kind whose cadence is learnt.
    pub kind: String,
    /// Fewest occasions (after merging) needed to trust a cadence; at least 2.
    pub min_events: u32,
    /// Fraction of the usual interval a customer may be late before the alert.
    pub tolerance: f64,
    /// Customers whose usual interval is longer than this many days are skipped.
    pub max_interval_days: Option<f64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kind: "purchase".to_string(),
            min_events: 3,
            tolerance: 0.2,
            max_interval_days: None,
        }
    }
}

impl Settings {
    /// Parses the rule's `settings = { ... }` (values arrive as strings; TOML
    /// numbers are stringified by the host). An unknown key is an error so a
    /// typo such as `tolerence` does not silently fall back to the default.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut settings = Settings::default();
        for (key, value) in pairs {
            let value = value.trim();
            match key {
                "kind" => {
                    if value.is_empty() {
                        return Err("setting kind is empty; name the event kind to watch, e.g. kind = \"purchase\"".to_string());
                    }
                    settings.kind = value.to_string();
                }
                "min_events" => {
                    settings.min_events = parse_whole(value)
                        .filter(|n| *n >= 2)
                        .ok_or_else(|| {
                            format!("setting min_events = {value:?} is not a whole number ≥ 2; a cadence needs at least two events, e.g. min_events = 3")
                        })?;
                }
                "tolerance" => {
                    settings.tolerance = value
                        .parse::<f64>()
                        .ok()
                        .filter(|t| t.is_finite() && *t >= 0.0)
                        .ok_or_else(|| {
                            format!("setting tolerance = {value:?} is not a fraction ≥ 0; write e.g. tolerance = 0.2 to allow 20% of the usual interval late")
                        })?;
                }
                "max_interval_days" => {
                    settings.max_interval_days = Some(
                        value
                            .parse::<f64>()
                            .ok()
                            .filter(|d| d.is_finite() && *d > 0.0)
                            .ok_or_else(|| {
                                format!("setting max_interval_days = {value:?} is not a positive number of days, e.g. max_interval_days = 90")
                            })?,
                    );
                }
                other => {
                    return Err(format!(
                        "unknown setting {other:?}; cadence understands {}",
                        SETTING_KEYS.join(", ")
                    ))
                }
            }
        }
        Ok(settings)
    }
}

/// `"3"` or `"3.0"` → 3.
fn parse_whole(value: &str) -> Option<u32> {
    if let Ok(n) = value.parse::<u32>() {
        return Some(n);
    }
    let f = value.parse::<f64>().ok()?;
    (f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f)).then_some(f as u32)
}

/// One event of the customer's history, as far as the cadence cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: &'a str,
    /// Milliseconds since the Unix epoch, UTC.
    pub at: i64,
}

/// Why a customer is overdue, for the message templates.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Median gap between occasions, in milliseconds.
    pub usual_ms: i64,
    /// The newest counted event.
    pub last_at: i64,
    /// `last_at + usual_ms`: when the next event was expected.
    pub expected_at: i64,
    /// The evaluation time.
    pub now: i64,
    /// Occasions the interval was learnt from.
    pub occasions: usize,
}

impl Alert {
    /// The usual interval in days, rounded to one decimal.
    pub fn usual_interval_days(&self) -> f64 {
        round1(self.usual_ms as f64 / DAY_MS as f64)
    }

    /// Whole days since the newest counted event (rounded down).
    pub fn days_since_last(&self) -> i64 {
        (self.now - self.last_at).div_euclid(DAY_MS)
    }

    /// Whole days since the next event was expected (rounded down).
    pub fn days_overdue(&self) -> i64 {
        (self.now - self.expected_at).div_euclid(DAY_MS)
    }

    /// The template variables, as `(name, JSON value)` pairs. The names stay
    /// the same whatever `kind` is watched (`last_purchase_at` is the newest
    /// event of that kind).
    pub fn variables(&self) -> Vec<(String, String)> {
        vec![
            (
                "usual_interval_days".to_string(),
                format!("{:.1}", self.usual_interval_days()),
            ),
            (
                "days_since_last".to_string(),
                self.days_since_last().to_string(),
            ),
            ("days_overdue".to_string(), self.days_overdue().to_string()),
            (
                "last_purchase_at".to_string(),
                format!("\"{}\"", rfc3339(self.last_at)),
            ),
            (
                "expected_at".to_string(),
                format!("\"{}\"", rfc3339(self.expected_at)),
            ),
            ("purchase_count".to_string(), self.occasions.to_string()),
        ]
    }
}

/// What the host should do with the reminder.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Send(Alert),
    Skip(String),
    Defer(i64),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Send(a) => write!(f, "send ({} days overdue)", a.days_overdue()),
            Verdict::Skip(r) => write!(f, "skip: {r}"),
            Verdict::Defer(t) => write!(f, "defer to {}", rfc3339(*t)),
        }
    }
}

/// Decides about one due reminder.
pub fn evaluate(settings: &Settings, history: &[Event<'_>], now: i64) -> Verdict {
    let mut times: Vec<i64> = history
        .iter()
        .filter(|e| e.kind == settings.kind && e.at > 0 && e.at <= now)
        .map(|e| e.at)
        .collect();
    times.sort_unstable();
    let kind = &settings.kind;
    let need = settings.min_events as usize;

    let Some(&last_at) = times.last() else {
        return Verdict::Skip(format!("no {kind} events yet; the cadence needs {need}"));
    };
    let occasions = occasions(&times);
    if occasions.len() < need {
        let merged = if occasions.len() < times.len() {
            format!(
                " ({} events, merged into {} because some are less than 12 hours apart)",
                times.len(),
                occasions.len()
            )
        } else {
            String::new()
        };
        let n = occasions.len();
        let events = if n == 1 { "event" } else { "events" };
        return Verdict::Skip(format!(
            "only {n} {kind} {events}{merged}; the cadence needs {need}"
        ));
    }

    let mut gaps: Vec<i64> = occasions.windows(2).map(|w| w[1] - w[0]).collect();
    let usual_ms = median(&mut gaps);
    let usual_days = usual_ms as f64 / DAY_MS as f64;
    if let Some(max) = settings.max_interval_days {
        if usual_days > max {
            return Verdict::Skip(format!(
                "the usual interval between {kind} events is {:.1} days, longer than max_interval_days = {max}",
                round1(usual_days)
            ));
        }
    }

    let due = last_at.saturating_add((usual_ms as f64 * (1.0 + settings.tolerance)).round() as i64);
    if now < due {
        return Verdict::Defer(due);
    }
    Verdict::Send(Alert {
        usual_ms,
        last_at,
        expected_at: last_at + usual_ms,
        now,
        occasions: occasions.len(),
    })
}

/// Merges sorted timestamps into occasions, each dated by its first event.
fn occasions(sorted: &[i64]) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for &t in sorted {
        match out.last() {
            Some(&start) if t - start < MERGE_WINDOW_MS => {}
            _ => out.push(t),
        }
    }
    out
}

/// Median of a non-empty list; the mean of the two middle values when even.
fn median(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        // Halve first so two huge gaps cannot overflow.
        let (a, b) = (values[n / 2 - 1], values[n / 2]);
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `2025-03-01T10:00:00Z` (UTC, whole seconds) for milliseconds since the epoch.
pub fn rfc3339(ms: i64) -> String {
    herald_pdk::time::iso8601_secs(ms.div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-01-01T10:00:00Z.
    const T0: i64 = 1_735_725_600_000;

    fn day(n: f64) -> i64 {
        T0 + (n * DAY_MS as f64).round() as i64
    }

    fn purchases(days: &[f64]) -> Vec<Event<'static>> {
        days.iter()
            .map(|d| Event {
                kind: "purchase",
                at: day(*d),
            })
            .collect()
    }

    fn run(days: &[f64], now_day: f64) -> Verdict {
        evaluate(&Settings::default(), &purchases(days), day(now_day))
    }

    fn alert(v: Verdict) -> Alert {
        match v {
            Verdict::Send(a) => a,
            other => panic!("expected send, got {other}"),
        }
    }

    fn var(a: &Alert, name: &str) -> String {
        a.variables()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
            .1
    }

    #[test]
    fn regular_30_day_buyer_is_deferred_at_day_35_and_alerted_at_day_36() {
        // Gaps 30, 30, 30 → usual 30 days; due = 90 + 30 × 1.2 = day 126.
        let days = [0.0, 30.0, 60.0, 90.0];
        assert_eq!(run(&days, 90.0 + 35.0), Verdict::Defer(day(126.0)));
        assert_eq!(run(&days, 90.0 + 1.0), Verdict::Defer(day(126.0)));
        let a = alert(run(&days, 90.0 + 36.0));
        assert_eq!(a.usual_ms, 30 * DAY_MS);
        assert_eq!(var(&a, "usual_interval_days"), "30.0");
        assert_eq!(var(&a, "days_since_last"), "36");
        // Expected on day 120, now day 126.
        assert_eq!(var(&a, "days_overdue"), "6");
        // Day 90 after 2025-01-01 is 2025-04-01.
        assert_eq!(var(&a, "last_purchase_at"), "\"2025-04-01T10:00:00Z\"");
        assert_eq!(var(&a, "expected_at"), "\"2025-05-01T10:00:00Z\"");
        assert_eq!(var(&a, "purchase_count"), "4");
        // One millisecond before the due time is still a deferral.
        let v = evaluate(&Settings::default(), &purchases(&days), day(126.0) - 1);
        assert_eq!(v, Verdict::Defer(day(126.0)));
    }

    #[test]
    fn one_odd_gap_does_not_move_the_usual_interval() {
        // Gaps 30, 31, 90, 29 → sorted 29, 30, 31, 90 → (30 + 31) / 2 = 30.5.
        let days = [0.0, 30.0, 61.0, 151.0, 180.0];
        // due = 180 + 30.5 × 1.2 = 180 + 36.6 = day 216.6.
        assert_eq!(run(&days, 200.0), Verdict::Defer(day(216.6)));
        let a = alert(run(&days, 217.0));
        assert_eq!(var(&a, "usual_interval_days"), "30.5");
        assert_eq!(var(&a, "days_since_last"), "37");
        // Expected 180 + 30.5 = 210.5; 217 − 210.5 = 6.5 → 6 whole days.
        assert_eq!(var(&a, "days_overdue"), "6");
    }

    #[test]
    fn odd_number_of_gaps_takes_the_middle_one() {
        // Gaps 20, 40, 25 → sorted 20, 25, 40 → 25; due = 85 + 30 = day 115.
        assert_eq!(
            run(&[0.0, 20.0, 60.0, 85.0], 100.0),
            Verdict::Defer(day(115.0))
        );
    }

    #[test]
    fn exactly_two_gaps_use_their_mean() {
        // Gaps 30 and 50 → 40 days; due = 80 + 48 = day 128.
        assert_eq!(run(&[0.0, 30.0, 80.0], 100.0), Verdict::Defer(day(128.0)));
        let a = alert(run(&[0.0, 30.0, 80.0], 128.0));
        assert_eq!(var(&a, "usual_interval_days"), "40.0");
        assert_eq!(var(&a, "days_overdue"), "8");
    }

    #[test]
    fn too_few_events_are_skipped_with_the_count() {
        assert_eq!(
            run(&[0.0, 30.0], 100.0),
            Verdict::Skip("only 2 purchase events; the cadence needs 3".into())
        );
        assert_eq!(
            run(&[10.0], 100.0),
            Verdict::Skip("only 1 purchase event; the cadence needs 3".into())
        );
        assert_eq!(
            run(&[], 100.0),
            Verdict::Skip("no purchase events yet; the cadence needs 3".into())
        );
        let two = Settings {
            min_events: 2,
            ..Settings::default()
        };
        // One gap of 30 days → due = 30 + 36 = day 66.
        assert_eq!(
            evaluate(&two, &purchases(&[0.0, 30.0]), day(40.0)),
            Verdict::Defer(day(66.0))
        );
    }

    #[test]
    fn unsorted_history_gives_the_same_verdict() {
        let sorted = run(&[0.0, 30.0, 60.0, 90.0], 126.0);
        let shuffled = run(&[60.0, 0.0, 90.0, 30.0], 126.0);
        assert_eq!(sorted, shuffled);
        assert_eq!(alert(shuffled).last_at, day(90.0));
    }

    #[test]
    fn events_of_other_kinds_are_ignored() {
        let mut history = purchases(&[0.0, 30.0, 60.0, 90.0]);
        history.push(Event {
            kind: "login",
            at: day(5.0),
        });
        history.push(Event {
            kind: "login",
            at: day(120.0),
        });
        history.push(Event {
            kind: "refund",
            at: day(100.0),
        });
        history.push(Event {
            kind: "Purchase",
            at: day(110.0),
        });
        let v = evaluate(&Settings::default(), &history, day(126.0));
        let a = alert(v);
        assert_eq!(a.last_at, day(90.0));
        assert_eq!(a.usual_ms, 30 * DAY_MS);

        let orders = Settings {
            kind: "order".into(),
            ..Settings::default()
        };
        assert_eq!(
            evaluate(&orders, &history, day(126.0)),
            Verdict::Skip("no order events yet; the cadence needs 3".into())
        );
    }

    #[test]
    fn duplicate_and_same_day_events_do_not_make_zero_gaps() {
        // Two identical timestamps on day 30 and a second order 5 hours after
        // day 60: still gaps 30, 30, 30 (occasions dated by their first event).
        let days = [0.0, 30.0, 30.0, 60.0, 60.0 + 5.0 / 24.0, 90.0];
        let a = alert(run(&days, 126.0));
        assert_eq!(a.usual_ms, 30 * DAY_MS);
        assert_eq!(a.occasions, 4);
        // Duplicates alone do not reach min_events.
        assert_eq!(
            run(&[0.0, 0.0, 0.2, 30.0], 40.0),
            Verdict::Skip(
                "only 2 purchase events (4 events, merged into 2 because some are less than 12 hours apart); the cadence needs 3"
                    .into()
            )
        );
    }

    #[test]
    fn the_newest_event_of_a_merged_occasion_is_the_last_purchase() {
        // Day 90 and day 90 + 6 h are one occasion; the alert counts from the later.
        let days = [0.0, 30.0, 60.0, 90.0, 90.25];
        // due = 90.25 + 36 = day 126.25.
        assert_eq!(run(&days, 126.0), Verdict::Defer(day(126.25)));
        let a = alert(run(&days, 126.25));
        assert_eq!(var(&a, "last_purchase_at"), "\"2025-04-01T16:00:00Z\"");
        assert_eq!(var(&a, "days_since_last"), "36");
    }

    #[test]
    fn events_at_the_epoch_or_in_the_future_are_ignored() {
        let mut history = purchases(&[0.0, 30.0, 60.0, 90.0]);
        history.push(Event {
            kind: "purchase",
            at: 0,
        });
        history.push(Event {
            kind: "purchase",
            at: -5,
        });
        history.push(Event {
            kind: "purchase",
            at: day(200.0),
        });
        let a = alert(evaluate(&Settings::default(), &history, day(126.0)));
        assert_eq!(a.last_at, day(90.0));
        assert_eq!(a.usual_ms, 30 * DAY_MS);
        assert_eq!(a.occasions, 4);
    }

    #[test]
    fn every_other_month_buyer_is_alerted_at_the_first_missed_interval() {
        // BRIEF item 10: bought every other month for eight months, then stopped.
        // Gaps 61, 59, 61, 61 → sorted 59, 61, 61, 61 → (61 + 61) / 2 = 61.
        let days = [0.0, 61.0, 120.0, 181.0, 242.0];
        // A 30-day buyer would be alerted at day 36; this customer is not.
        assert_eq!(run(&days, 242.0 + 36.0), Verdict::Defer(day(242.0 + 73.2)));
        // due = 242 + 61 × 1.2 = 242 + 73.2 = day 315.2.
        assert_eq!(run(&days, 315.0), Verdict::Defer(day(315.2)));
        let a = alert(run(&days, 315.2));
        assert_eq!(var(&a, "usual_interval_days"), "61.0");
        assert_eq!(var(&a, "days_since_last"), "73");
        // Expected 242 + 61 = 303; 315.2 − 303 = 12.2 → 12.
        assert_eq!(var(&a, "days_overdue"), "12");
        assert_eq!(var(&a, "purchase_count"), "5");
    }

    #[test]
    fn tolerance_zero_alerts_on_the_expected_day() {
        let s = Settings {
            tolerance: 0.0,
            ..Settings::default()
        };
        let h = purchases(&[0.0, 30.0, 60.0]);
        assert_eq!(evaluate(&s, &h, day(89.0)), Verdict::Defer(day(90.0)));
        let a = alert(evaluate(&s, &h, day(90.0)));
        assert_eq!(a.days_overdue(), 0);
    }

    #[test]
    fn max_interval_days_skips_slow_buyers() {
        let s = Settings {
            max_interval_days: Some(45.0),
            ..Settings::default()
        };
        assert_eq!(
            evaluate(&s, &purchases(&[0.0, 61.0, 120.0, 181.0]), day(300.0)),
            Verdict::Skip(
                "the usual interval between purchase events is 61.0 days, longer than max_interval_days = 45"
                    .into()
            )
        );
        // A 30-day buyer is still watched.
        assert!(matches!(
            evaluate(&s, &purchases(&[0.0, 30.0, 60.0]), day(100.0)),
            Verdict::Send(_)
        ));
    }

    #[test]
    fn evaluation_is_deterministic() {
        let days = [0.0, 30.0, 61.0, 151.0, 180.0];
        assert_eq!(run(&days, 220.0), run(&days, 220.0));
    }

    #[test]
    fn settings_parse_defaults_values_and_errors() {
        assert_eq!(Settings::parse([]), Ok(Settings::default()));
        let s = Settings::parse([
            ("kind", "order"),
            ("min_events", "4"),
            ("tolerance", "0.5"),
            ("max_interval_days", "90"),
        ])
        .unwrap();
        assert_eq!(
            s,
            Settings {
                kind: "order".into(),
                min_events: 4,
                tolerance: 0.5,
                max_interval_days: Some(90.0)
            }
        );
        assert_eq!(
            Settings::parse([("min_events", "3.0")]).unwrap().min_events,
            3
        );
        let err = |k: &'static str, v: &'static str| Settings::parse([(k, v)]).unwrap_err();
        assert!(err("min_events", "1").contains("whole number ≥ 2"));
        assert!(err("min_events", "2.5").contains("whole number ≥ 2"));
        assert!(err("tolerance", "-0.1").contains("fraction ≥ 0"));
        assert!(err("tolerance", "abc").contains("tolerance = \"abc\""));
        assert!(err("max_interval_days", "0").contains("positive number of days"));
        assert!(err("kind", " ").contains("kind is empty"));
        assert_eq!(
            err("tolerence", "0.3"),
            "unknown setting \"tolerence\"; cadence understands kind, min_events, tolerance, max_interval_days"
        );
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(T0), "2025-01-01T10:00:00Z");
        // 2024-02-29T23:59:59.999Z, a leap day; milliseconds are dropped.
        assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(-1000), "1969-12-31T23:59:59Z");
    }
}
