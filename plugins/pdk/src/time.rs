//! Calendar arithmetic for timestamps a plugin sends to providers (RFC 3339,
//! ISO 8601, RFC 5322 dates), without a date library: the Unix time from
//! `std::time::SystemTime::now()` (the host's clock, virtual under
//! `herald simulate`) or from a message turned into a UTC calendar date.

/// Seconds since the Unix epoch on the host's clock (virtual under
/// `herald simulate`); 0 if the clock is before 1970.
pub fn unix_now_secs() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch on the host's clock (virtual under
/// `herald simulate`); 0 if the clock is before 1970.
pub fn unix_now_millis() -> i64 {
    since_epoch().as_millis() as i64
}

fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDThh:mm:ssZ` for seconds since the Unix epoch.
pub fn iso8601_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` for milliseconds since the Unix epoch.
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = iso8601_secs(ms.div_euclid(1000));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601_secs(1_499_827_339), "2017-07-12T02:42:19Z");
        assert_eq!(
            rfc3339_millis(1_709_281_800_123),
            "2024-03-01T08:30:00.123Z"
        );
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
