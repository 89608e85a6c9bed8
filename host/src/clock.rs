//! The injected notion of "now": the wall clock for `herald serve`, a virtual
//! clock that only moves when told to for `herald simulate` and tests; and
//! instants as commands take them. Nothing else reads the wall clock.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A source of the current time. Everything in Herald that needs "now" asks one.
pub trait Clock: Send + Sync + 'static {
    /// The current instant, UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or advanced. Millisecond precision.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    millis: Arc<AtomicI64>,
}

impl VirtualClock {
    /// A virtual clock reading `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(start.timestamp_millis())),
        }
    }

    /// Move the clock to `at`. Moving backwards is ignored: virtual time never rewinds.
    pub fn set(&self, at: DateTime<Utc>) {
        self.millis
            .fetch_max(at.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.millis.load(Ordering::SeqCst))
            .single()
            .expect("virtual clock holds a valid timestamp")
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The first year of the instants and dates Herald accepts from outside.
pub const EARLIEST_YEAR: i32 = 1900;
/// The last year of the instants and dates Herald accepts from outside.
/// With strategy durations bounded to [`crate::span::MAX_YEARS`], every
/// later calendar or clock computation stays far inside chrono's range.
pub const LATEST_YEAR: i32 = 9999;

/// `at` itself when its year lies in the accepted range, else an error
/// saying so (`what` names the value, e.g. "`at`").
pub fn in_range(at: DateTime<Utc>, what: &str) -> Result<DateTime<Utc>, String> {
    match accepted_year(at.date_naive()) {
        true => Ok(at),
        false => Err(out_of_range(what, &at.to_rfc3339())),
    }
}

/// `date` itself when its year lies in the accepted range, else an error.
pub fn date_in_range(date: NaiveDate, what: &str) -> Result<NaiveDate, String> {
    match accepted_year(date) {
        true => Ok(date),
        false => Err(out_of_range(what, &date.to_string())),
    }
}

fn accepted_year(date: NaiveDate) -> bool {
    use chrono::Datelike;
    (EARLIEST_YEAR..=LATEST_YEAR).contains(&date.year())
}

fn out_of_range(what: &str, value: &str) -> String {
    format!(
        "{what} = `{value}` is outside the years {EARLIEST_YEAR}–{LATEST_YEAR} that Herald accepts"
    )
}

/// Parse an instant as commands take it (`--from`, `--at`, report bounds):
/// `YYYY-MM-DD` (UTC midnight) or RFC 3339, in the accepted years.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        let d = date_in_range(d, "the date")?;
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let at = DateTime::parse_from_rfc3339(text.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("`{text}` is neither YYYY-MM-DD nor an RFC 3339 timestamp"))?;
    in_range(at, "the instant")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_only_moves_forward() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = VirtualClock::new(t0);
        clock.set(t0 + chrono::Duration::days(1));
        clock.set(t0);
        assert_eq!(clock.now(), t0 + chrono::Duration::days(1));
    }

    #[test]
    fn instants() {
        assert_eq!(
            parse_instant("2026-01-02").unwrap().to_rfc3339(),
            "2026-01-02T00:00:00+00:00"
        );
        assert!(parse_instant("tomorrow").is_err());
        assert!(parse_instant("+262142-12-31T23:59:59Z").is_err());
        for far in [
            "0000-01-01T00:00:00Z",
            "1899-12-31",
            "1899-12-31T23:59:59+01:00",
        ] {
            let e = parse_instant(far).unwrap_err();
            assert!(e.contains("1900–9999"), "{far}: {e}");
        }
        assert!(parse_instant("9999-12-31T23:59:59Z").is_ok());
    }
}
