//! Per-channel send rate limits (`rate = "5/s"`), on the host's clock so a
//! simulation spaces sends in virtual time exactly as a live run would in
//! real time. The limiter never drops anything: a send over the rate is told
//! when its turn comes and is put back in the schedule for then.
//!
//! It is a generic cell rate algorithm (GCRA): one send every `interval`,
//! with up to `burst` sends at once after a quiet spell.

use chrono::{DateTime, Duration, Utc};
use std::sync::Mutex;

/// A parsed `rate` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between two sends at the steady rate.
    pub interval: Duration,
}

impl Rate {
    /// Parse `N/s`, `N/m`, `N/h` or `N/d` (N a positive whole number).
    pub fn parse(text: &str) -> Result<Rate, String> {
        let hint = "write the rate as sends per unit, e.g. \"10/s\", \"1/s\", \"100/m\", \"5000/h\" or \"20000/d\"";
        let (count, unit) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("rate = \"{text}\": {hint}"))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("rate = \"{text}\": `{count}` is not a positive whole number; {hint}")
            })?;
        let per_ms: i64 = match unit.trim() {
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => return Err(format!("rate = \"{text}\": unknown unit `{other}`; {hint}")),
        };
        // Microsecond precision keeps "3/s" from drifting.
        let interval = Duration::microseconds(per_ms * 1000 / count as i64);
        if interval <= Duration::zero() {
            return Err(format!("rate = \"{text}\" is too fast to enforce; {hint}"));
        }
        Ok(Rate { interval })
    }
}

/// The limiter of one channel.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    burst: u32,
    /// The theoretical arrival time of the next send at the steady rate.
    tat: Mutex<Option<DateTime<Utc>>>,
}

impl RateLimiter {
    /// A limiter allowing `rate`, with bursts of up to `burst` (at least 1).
    pub fn new(rate: Rate, burst: u32) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1),
            tat: Mutex::new(None),
        }
    }

    /// The configured rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// The configured burst (at least 1).
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Ask to send at `now`. `Ok` takes the slot; `Err(t)` says the earliest
    /// time this send could go (nothing is taken).
    pub fn try_acquire(&self, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let mut tat = self.tat.lock().expect("rate limiter lock");
        // While the clock only moves forward the next arrival time is at
        // most `burst` intervals ahead; one further ahead is left from a
        // wall clock that went back, and is brought back so the channel
        // never waits for the size of the jump.
        let ceiling = i32::try_from(self.burst)
            .ok()
            .and_then(|b| self.rate.interval.checked_mul(b))
            .and_then(|ahead| now.checked_add_signed(ahead));
        let current = match (tat.unwrap_or(now).max(now), ceiling) {
            (t, Some(ceiling)) if t > ceiling => {
                *tat = Some(ceiling);
                ceiling
            }
            (t, _) => t,
        };
        let tolerance = self.rate.interval * (self.burst as i32 - 1);
        let allowed_at = current - tolerance;
        if allowed_at > now {
            return Err(allowed_at);
        }
        *tat = Some(current + self.rate.interval);
        Ok(())
    }

    /// The time the `k`-th (0-based) waiting send should come back, given
    /// the earliest time `first` the limiter named: waiting sends are spread
    /// one interval apart rather than all returning at once.
    pub fn slot(&self, first: DateTime<Utc>, k: u32) -> DateTime<Utc> {
        first + self.rate.interval * k as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_rates_and_refuses_nonsense() {
        assert_eq!(
            Rate::parse("5/s").unwrap().interval,
            Duration::milliseconds(200)
        );
        assert_eq!(Rate::parse(" 1/s ").unwrap().interval, Duration::seconds(1));
        assert_eq!(
            Rate::parse("120/m").unwrap().interval,
            Duration::milliseconds(500)
        );
        assert_eq!(
            Rate::parse("3/s").unwrap().interval,
            Duration::microseconds(333_333)
        );
        for bad in ["5", "0/s", "-1/s", "x/s", "5/fortnight", ""] {
            let e = Rate::parse(bad).unwrap_err();
            assert!(e.contains("e.g. \"10/s\""), "{bad}: {e}");
        }
    }

    #[test]
    fn spaces_sends_one_interval_apart() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let l = RateLimiter::new(Rate::parse("5/s").unwrap(), 1);
        assert!(l.try_acquire(t0).is_ok());
        assert_eq!(l.try_acquire(t0), Err(t0 + Duration::milliseconds(200)));
        assert_eq!(
            l.slot(t0 + Duration::milliseconds(200), 3),
            t0 + Duration::milliseconds(800)
        );
        assert!(l.try_acquire(t0 + Duration::milliseconds(199)).is_err());
        assert!(l.try_acquire(t0 + Duration::milliseconds(200)).is_ok());
        // After a quiet spell the next send goes at once.
        assert!(l.try_acquire(t0 + Duration::seconds(10)).is_ok());
    }

    /// A wall clock set back a day must not make the channel wait a day:
    /// the state left from the later time is brought back.
    #[test]
    fn a_clock_set_back_waits_one_interval_not_the_jump() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let l = RateLimiter::new(Rate::parse("1/s").unwrap(), 2);
        let later = t0 + Duration::days(1);
        assert!(l.try_acquire(later).is_ok());
        assert!(l.try_acquire(later).is_ok());
        assert_eq!(l.try_acquire(t0), Err(t0 + Duration::seconds(1)));
        assert!(l.try_acquire(t0 + Duration::seconds(1)).is_ok());
    }

    #[test]
    fn bursts_then_settles_to_the_rate() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let l = RateLimiter::new(Rate::parse("1/s").unwrap(), 3);
        for _ in 0..3 {
            assert!(l.try_acquire(t0).is_ok());
        }
        assert_eq!(l.try_acquire(t0), Err(t0 + Duration::seconds(1)));
        assert!(l.try_acquire(t0 + Duration::seconds(1)).is_ok());
        assert!(l.try_acquire(t0 + Duration::seconds(1)).is_err());
    }
}
