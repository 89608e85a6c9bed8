//! Notices when the wall clock is set back while `herald serve` runs (the
//! injected clock falls behind what the monotonic clock says has passed)
//! and brings the schedule's relative waits back with it: retries,
//! rate-limit slots, deferrals and leases were set as "now + delay" on the
//! later clock, and would otherwise wait the size of the jump. Reminders at
//! their planned time keep it (a birthday stays on its day). Embedded
//! database only: a fleet node whose clock moves is stopped by the skew
//! check instead ([`super::scheduler::fleet_problem`]). Holds no SQL.

use crate::engine::Herald;
use crate::store::schedule;
use chrono::{DateTime, Duration, Utc};
use std::time::Instant;

/// A jump back smaller than this is clock slew, not worth a statement.
const NOTICED: Duration = Duration::seconds(5);

/// The last reading of both clocks.
#[derive(Debug, Default)]
pub struct JumpWatch {
    last: Option<(Instant, DateTime<Utc>)>,
}

impl JumpWatch {
    /// Take a reading; how far the wall clock went back since the last one,
    /// when it went back by more than [`NOTICED`].
    pub fn observe(&mut self, mono: Instant, wall: DateTime<Utc>) -> Option<Duration> {
        let back = self.last.and_then(|(mono_then, wall_then)| {
            let passed = Duration::from_std(mono.checked_duration_since(mono_then)?).ok()?;
            let expected = wall_then.checked_add_signed(passed)?;
            let back = expected.signed_duration_since(wall);
            (back > NOTICED).then_some(back)
        });
        self.last = Some((mono, wall));
        back
    }
}

/// Read both clocks and, after a jump back, bring the relative waits back.
pub async fn watch(watch: &mut JumpWatch, herald: &Herald) {
    let now = herald.clock.now();
    let Some(back) = watch.observe(Instant::now(), now) else {
        return;
    };
    if herald.store.location().is_server() {
        tracing::warn!(seconds = back.num_seconds(), "the wall clock went back; the fleet's skew check stops this node until it agrees with the database server again");
        return;
    }
    match schedule::pull_back(&herald.store, back, now).await {
        Ok(rows) => tracing::warn!(
            seconds = back.num_seconds(),
            rows,
            "the wall clock went back: retries, rate-limit slots, deferrals and leases brought back with it"
        ),
        Err(e) => tracing::error!("the wall clock went back and the waits could not be brought back: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_clock_set_back_is_noticed_and_a_steady_one_is_not() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let m0 = Instant::now();
        let mut watch = JumpWatch::default();
        assert_eq!(watch.observe(m0, t0), None);
        let m1 = m0 + std::time::Duration::from_secs(60);
        assert_eq!(
            watch.observe(m1, t0 + Duration::seconds(61)),
            None,
            "forward is fine"
        );
        let m2 = m1 + std::time::Duration::from_secs(10);
        let back = watch.observe(m2, t0 - Duration::hours(1));
        assert_eq!(back, Some(Duration::seconds(3600 + 71)));
        let m3 = m2 + std::time::Duration::from_secs(1);
        assert_eq!(
            watch.observe(m3, t0 - Duration::hours(1) + Duration::seconds(1)),
            None
        );
    }
}
