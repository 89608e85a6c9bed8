//! Occurrence keys: the stable identity of every planned reminder, unique in
//! the schedule and sent to providers as the idempotency key. This module is
//! the only place that makes them, so planning twice yields the same keys
//! and an occurrence is never planned (or sent) twice.

use chrono::{DateTime, Utc};

/// What follow-up step keys carry after the key of the rule's own message.
pub const STEP_MARKER: &str = "#step";

/// An occurrence of a change or an event: `{customer}:{rule}:{tag}`, where
/// the tag names the change (`created`, `deleted`, `updated:<ms>`,
/// `event:<event id>`).
pub fn instant(customer_id: i64, rule: &str, tag: &str) -> String {
    format!("{customer_id}:{rule}:{tag}")
}

/// An occurrence of a date rule at `at`: `{customer}:{rule}:{UTC minute}`.
pub fn date(customer_id: i64, rule: &str, at: DateTime<Utc>) -> String {
    format!("{customer_id}:{rule}:{}", at.format("%Y-%m-%dT%H:%MZ"))
}

/// The `n`-th reminder (from 0) of a dormant spell counted from `since`.
pub fn inactive(customer_id: i64, rule: &str, since: DateTime<Utc>, n: u32) -> String {
    format!(
        "{customer_id}:{rule}:inactive:{}:{n}",
        since.timestamp_millis()
    )
}

/// Follow-up step `step` of the sequence `key` belongs to.
pub fn step(key: &str, step: usize) -> String {
    let base = key.split(STEP_MARKER).next().unwrap_or(key);
    format!("{base}{STEP_MARKER}{step}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_name_customer_rule_and_occurrence() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 15).unwrap();
        assert_eq!(instant(7, "welcome", "created"), "7:welcome:created");
        assert_eq!(date(7, "renewal", at), "7:renewal:2026-03-01T09:30Z");
        assert_eq!(
            inactive(7, "miss-you", at, 2),
            format!("7:miss-you:inactive:{}:2", at.timestamp_millis())
        );
    }

    #[test]
    fn step_keys_hang_off_the_first_key_whatever_step_they_follow() {
        assert_eq!(step("7:win-back:event:3", 1), "7:win-back:event:3#step1");
        assert_eq!(
            step("7:win-back:event:3#step1", 2),
            "7:win-back:event:3#step2"
        );
        assert!(step("7:r:created", 3).contains(STEP_MARKER));
    }
}
