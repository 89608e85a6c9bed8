//! Frequency caps: at most N reminders per period to one customer, overall
//! or on one channel (`{ max = 2, per = "7d" }`, `{ max = 1, per = "1d",
//! channel = "sms" }`). Transactional rules are exempt and do not count. A
//! capped send is deferred until the oldest counted send leaves the period,
//! or dropped when its rule says `on_cap = "drop"`.

use chrono::{DateTime, Duration, Utc};

/// One cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cap {
    /// Most reminders in `per`.
    pub max: u32,
    /// The sliding period.
    pub per: Duration,
    /// Only sends on this channel count, and only they are capped.
    pub channel: Option<String>,
}

impl Cap {
    /// How the cap reads in reasons.
    pub fn describe(&self) -> String {
        let hours = self.per.num_hours();
        let period = if hours % 24 == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{hours}h")
        };
        match &self.channel {
            Some(c) => format!("{} per {period} on {c}", self.max),
            None => format!("{} per {period}", self.max),
        }
    }
}

/// A reminder already sent (or being sent in this tick) to a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// When.
    pub at: DateTime<Utc>,
    /// On which channel.
    pub channel: String,
}

/// `None` when a send on `channel` at `now` stays within every cap;
/// otherwise the cap it breaks and the time it would next allow the send.
pub fn check<'a>(
    caps: &'a [Cap],
    history: &[Sent],
    channel: &str,
    now: DateTime<Utc>,
) -> Option<(&'a Cap, DateTime<Utc>)> {
    let mut worst: Option<(&Cap, DateTime<Utc>)> = None;
    for cap in caps {
        if cap.channel.as_deref().is_some_and(|c| c != channel) {
            continue;
        }
        let since = now
            .checked_sub_signed(cap.per)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut counted: Vec<DateTime<Utc>> = history
            .iter()
            .filter(|s| s.at > since && s.at <= now)
            .filter(|s| cap.channel.as_deref().is_none_or(|c| c == s.channel))
            .map(|s| s.at)
            .collect();
        if (counted.len() as u32) < cap.max {
            continue;
        }
        counted.sort();
        // The send may go once enough of the counted ones have aged out.
        let free_at = counted[counted.len() - cap.max as usize]
            .checked_add_signed(cap.per)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if worst.is_none_or(|(_, t)| free_at > t) {
            worst = Some((cap, free_at));
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sent(at: &str, channel: &str) -> Sent {
        Sent {
            at: utc(at),
            channel: channel.into(),
        }
    }

    #[test]
    fn two_per_week_overall_and_one_per_day_on_sms() {
        let caps = vec![
            Cap {
                max: 2,
                per: Duration::days(7),
                channel: None,
            },
            Cap {
                max: 1,
                per: Duration::days(1),
                channel: Some("sms".into()),
            },
        ];
        let now = utc("2026-03-10T10:00:00Z");
        assert_eq!(check(&caps, &[], "sms", now), None);
        let one = [sent("2026-03-10T09:00:00Z", "sms")];
        let (cap, until) = check(&caps, &one, "sms", now).unwrap();
        assert_eq!(cap.describe(), "1 per 1d on sms");
        assert_eq!(until, utc("2026-03-11T09:00:00Z"));
        assert_eq!(
            check(&caps, &one, "email", now),
            None,
            "sms cap only caps sms"
        );
        let two = [
            sent("2026-03-04T12:00:00Z", "email"),
            sent("2026-03-09T08:00:00Z", "email"),
        ];
        let (cap, until) = check(&caps, &two, "email", now).unwrap();
        assert_eq!(cap.describe(), "2 per 7d");
        assert_eq!(
            until,
            utc("2026-03-11T12:00:00Z"),
            "when the older one ages out"
        );
        let old = [
            sent("2026-03-01T12:00:00Z", "email"),
            sent("2026-03-09T08:00:00Z", "email"),
        ];
        assert_eq!(check(&caps, &old, "email", now), None);
    }
}
