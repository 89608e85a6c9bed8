//! Provider health for failover: a circuit breaker per channel on the
//! host's clock. After `after` retryable failures in a row the circuit opens
//! for `cooldown`; while it is open, sends that name a backup go there. When
//! the cooldown ends the next send tries the primary again (half-open): a
//! success closes the circuit, a failure opens it for another cooldown.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

/// A channel's failover settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The backup channel.
    pub backup: String,
    /// Retryable failures in a row (of the channel, or of one reminder on it)
    /// before sends go to the backup.
    pub after: u32,
    /// How long the circuit stays open.
    pub cooldown: Duration,
}

#[derive(Debug, Default)]
struct State {
    failures_in_a_row: u32,
    open_until: Option<DateTime<Utc>>,
    /// The cooldown the circuit was opened for.
    cooldown: Duration,
}

/// The circuit breaker of one channel.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    /// Whether the circuit is open at `now`.
    /// An end further away than the cooldown is left from a wall clock
    /// that went back: it is brought to one cooldown from now, so the
    /// circuit never stays open for the size of the jump.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let mut state = self.state.lock().expect("breaker lock");
        let latest = now.checked_add_signed(state.cooldown);
        if let (Some(until), Some(latest)) = (state.open_until, latest) {
            if until > latest {
                state.open_until = Some(latest);
            }
        }
        state.open_until.is_some_and(|until| now < until)
    }

    /// Record that the provider answered (delivered, or a permanent refusal
    /// of one message): it is up.
    pub fn record_success(&self) {
        let mut state = self.state.lock().expect("breaker lock");
        state.failures_in_a_row = 0;
        state.open_until = None;
    }

    /// Record a retryable failure; opens the circuit when `after` failures
    /// in a row are reached. Returns true when this failure opened it.
    pub fn record_failure(&self, now: DateTime<Utc>, after: u32, cooldown: Duration) -> bool {
        let mut state = self.state.lock().expect("breaker lock");
        state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
        if state.failures_in_a_row >= after.max(1) && state.open_until.is_none_or(|u| now >= u) {
            state.open_until = now.checked_add_signed(cooldown);
            state.cooldown = cooldown;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A circuit opened just before the wall clock was set back a day
    /// stays open one cooldown, not a day and a cooldown.
    #[test]
    fn a_clock_set_back_keeps_the_circuit_open_one_cooldown() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let b = Breaker::default();
        let cooldown = Duration::minutes(1);
        assert!(b.record_failure(t0 + Duration::days(1), 1, cooldown));
        assert!(b.is_open(t0));
        assert!(!b.is_open(t0 + Duration::seconds(61)));
    }

    #[test]
    fn opens_after_failures_in_a_row_and_closes_on_success() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let b = Breaker::default();
        let cooldown = Duration::minutes(1);
        assert!(!b.record_failure(t0, 3, cooldown));
        b.record_success();
        assert!(!b.record_failure(t0, 3, cooldown));
        assert!(!b.record_failure(t0, 3, cooldown));
        assert!(!b.is_open(t0));
        assert!(b.record_failure(t0, 3, cooldown), "third in a row opens it");
        assert!(b.is_open(t0 + Duration::seconds(59)));
        assert!(
            !b.is_open(t0 + Duration::seconds(60)),
            "half-open after the cooldown"
        );
        assert!(
            b.record_failure(t0 + Duration::seconds(60), 3, cooldown),
            "a failed probe re-opens"
        );
        assert!(b.is_open(t0 + Duration::seconds(61)));
        b.record_success();
        assert!(!b.is_open(t0 + Duration::seconds(61)));
    }
}
