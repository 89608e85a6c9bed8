//! The retry backoff: exponential from the policy's base, capped at its
//! max, with a ±20% jitter derived from the occurrence key (so a replay is
//! identical), never shorter than the provider's `Retry-After` — up to a
//! day (or the policy's `max`, if longer): a provider's hint is outside
//! input, and an absurd one must not park a reminder for ever or push its
//! retry time off the calendar.

use crate::config::RetryPolicy;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Delay before attempt `attempt + 1`, after `attempt` failed attempts:
/// `base * 2^(attempt-1)` capped at `max`, jittered by ±20% with a jitter
/// derived from the occurrence key (so a replay is identical), and never
/// shorter than the provider's `retry_after`.
pub fn backoff(
    policy: &RetryPolicy,
    attempt: u32,
    key: &str,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let raw = policy.base.saturating_mul(1u32 << exp).min(policy.max);
    let digest = Sha256::digest(format!("{key}#{attempt}").as_bytes());
    let frac = u16::from_le_bytes([digest[0], digest[1]]) as f64 / u16::MAX as f64;
    let jittered = raw
        .mul_f64(0.8 + 0.4 * frac)
        .min(policy.max.max(policy.base));
    match retry_after {
        Some(hint) => jittered.max(hint.min(LONGEST_RETRY_AFTER.max(policy.max))),
        None => jittered,
    }
}

/// The longest `Retry-After` honoured (unless the policy's `max` is longer).
pub const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(60),
            max: Duration::from_secs(600),
        };
        let d1 = backoff(&p, 1, "k", None);
        let d3 = backoff(&p, 3, "k", None);
        assert!(
            d1 >= Duration::from_secs(48) && d1 <= Duration::from_secs(72),
            "{d1:?}"
        );
        assert!(
            d3 >= Duration::from_secs(192) && d3 <= Duration::from_secs(288),
            "{d3:?}"
        );
        assert!(backoff(&p, 20, "k", None) <= Duration::from_secs(600));
        assert_eq!(
            backoff(&p, 1, "k", Some(Duration::from_secs(3600))),
            Duration::from_secs(3600)
        );
        assert_eq!(backoff(&p, 2, "k", None), backoff(&p, 2, "k", None));
        let absurd = Some(Duration::from_millis(u64::MAX));
        assert_eq!(backoff(&p, 1, "k", absurd), LONGEST_RETRY_AFTER);
        let patient = RetryPolicy {
            max: Duration::from_secs(3 * 24 * 3600),
            ..p
        };
        assert_eq!(backoff(&patient, 1, "k", absurd), patient.max);
    }
}
