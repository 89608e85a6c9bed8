//! Limits on what arrives uninvited at the HTTP edge: provider callbacks
//! (`/hooks/{channel}`, each running the channel's plugin) and the links
//! customers follow (`/t/...`, `/unsubscribe`, each writing to the
//! database). Each kind has its own slots, apart from the scheduler's
//! sends, so a flood of either never takes what sends need; callbacks have
//! a rate per channel and links a rate per client address, both a generic
//! cell rate (GCRA) on the injected clock. A refusal says when to come
//! back. Owns the settings (`[server.inbound]`, bounded) and the counting;
//! knows nothing of HTTP (the edge answers a [`Refusal`] with 429).

use crate::channels::ratelimit::Rate;
use crate::config::InboundSection;
use anyhow::{bail, Result};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Client addresses whose link rate is tracked at once; past this, idle
/// ones are forgotten, and a new address is refused while all are busy.
const MAX_CLIENTS: usize = 10_000;

/// `[server.inbound]` resolved: every value within its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Callbacks handled at once.
    pub callbacks: u32,
    /// Callbacks per channel.
    pub callback_rate: Rate,
    /// Callbacks a channel may take at once after a quiet spell.
    pub callback_burst: u32,
    /// Link hits handled at once.
    pub links: u32,
    /// Link hits per client address.
    pub link_rate: Rate,
    /// Link hits an address may make at once after a quiet spell.
    pub link_burst: u32,
}

impl Settings {
    /// The settings of `section`, defaults filled in; a value out of its
    /// bounds is an error that names the key and the bounds.
    pub fn from_config(section: &InboundSection) -> Result<Settings> {
        let rate = |key: &str, value: &Option<String>, default: &str| {
            Rate::parse(value.as_deref().unwrap_or(default))
                .map_err(|e| anyhow::anyhow!("[server.inbound] {key}: {e}"))
        };
        Ok(Settings {
            callbacks: bounded("callbacks", section.callbacks, 32, 128)?,
            callback_rate: rate("callback_rate", &section.callback_rate, "100/s")?,
            callback_burst: bounded("callback_burst", section.callback_burst, 200, 100_000)?,
            links: bounded("links", section.links, 64, 1024)?,
            link_rate: rate("link_rate", &section.link_rate, "10/s")?,
            link_burst: bounded("link_burst", section.link_burst, 50, 100_000)?,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&InboundSection::default()).expect("the defaults are in bounds")
    }
}

/// `value` (or `default`) when it is between 1 and `max`.
fn bounded(key: &str, value: Option<u32>, default: u32, max: u32) -> Result<u32> {
    let value = value.unwrap_or(default);
    if !(1..=max).contains(&value) {
        bail!("[server.inbound] {key} = {value}: must be between 1 and {max} (default {default})");
    }
    Ok(value)
}

/// What kind of uninvited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A provider's callback to a channel's plugin.
    Callback,
    /// A tracking link, the open pixel or an unsubscribe page.
    Link,
}

impl Kind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Callback => "callback",
            Kind::Link => "link",
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Every slot of its kind was taken.
    Busy,
    /// Its channel's callback rate was used up.
    ChannelRate,
    /// Its client address's link rate was used up.
    ClientRate,
}

impl Reason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Busy => "busy",
            Reason::ChannelRate => "channel_rate",
            Reason::ClientRate => "client_rate",
        }
    }
}

/// A refused request: why, and how many whole seconds until trying again
/// may succeed (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// Seconds to wait.
    pub retry_after: u64,
}

/// A taken slot, given back when dropped (when the answer is made).
#[derive(Debug)]
pub struct Pass(#[allow(dead_code)] OwnedSemaphorePermit);

/// A generic cell rate: one every `interval`, `burst` at once.
#[derive(Debug, Clone, Copy)]
struct Cell {
    interval: Duration,
    tolerance: Duration,
}

impl Cell {
    fn new(rate: Rate, burst: u32) -> Cell {
        let tolerance = rate.interval.checked_mul(burst.max(1) as i32 - 1);
        Cell {
            interval: rate.interval,
            tolerance: tolerance.unwrap_or(Duration::MAX),
        }
    }

    /// Take a cell at `now` against the theoretical arrival time `tat`
    /// (moved on when taken); `Err` is the earliest time one is free.
    fn take(&self, tat: &mut DateTime<Utc>, now: DateTime<Utc>) -> Result<(), DateTime<Utc>> {
        let current = (*tat).max(now);
        let allowed_at = current
            .checked_sub_signed(self.tolerance)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if allowed_at > now {
            return Err(allowed_at);
        }
        *tat = current.checked_add_signed(self.interval).unwrap_or(current);
        Ok(())
    }
}

/// The limits in force and what they have counted so far.
#[derive(Debug)]
pub struct Inbound {
    settings: Settings,
    callback_slots: Arc<Semaphore>,
    link_slots: Arc<Semaphore>,
    callback_cell: Cell,
    link_cell: Cell,
    /// Per configured channel: the theoretical arrival time of its next callback.
    channels: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Per client address (IPv6 by /64): the same for its next link hit.
    clients: Mutex<HashMap<IpAddr, DateTime<Utc>>>,
}

impl Inbound {
    /// Limits with these settings, nothing counted yet.
    pub fn new(settings: Settings) -> Inbound {
        Inbound {
            settings,
            callback_slots: Arc::new(Semaphore::new(settings.callbacks as usize)),
            link_slots: Arc::new(Semaphore::new(settings.links as usize)),
            callback_cell: Cell::new(settings.callback_rate, settings.callback_burst),
            link_cell: Cell::new(settings.link_rate, settings.link_burst),
            channels: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Admit a callback to `channel` at `now`: within the channel's rate
    /// (`channel` is `None` for a name no channel has, which is answered
    /// without running anything, so it has no rate of its own) and a free
    /// callback slot, held until the [`Pass`] is dropped.
    pub fn admit_callback(
        &self,
        channel: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Pass, Refusal> {
        if let Some(channel) = channel {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            let tat = channels.entry(channel.to_string()).or_insert(now);
            self.callback_cell
                .take(tat, now)
                .map_err(|at| refusal(Reason::ChannelRate, at, now))?;
        }
        slot(&self.callback_slots)
    }

    /// Admit a link hit from `client` at `now`: within the address's rate
    /// and a free link slot, held until the [`Pass`] is dropped.
    pub fn admit_link(&self, client: IpAddr, now: DateTime<Utc>) -> Result<Pass, Refusal> {
        {
            let key = client_key(client);
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
                // An address whose next hit is due is as good as unknown.
                clients.retain(|_, tat| *tat > now);
                if clients.len() >= MAX_CLIENTS {
                    return Err(Refusal {
                        reason: Reason::Busy,
                        retry_after: 1,
                    });
                }
            }
            let tat = clients.entry(key).or_insert(now);
            self.link_cell
                .take(tat, now)
                .map_err(|at| refusal(Reason::ClientRate, at, now))?;
        }
        slot(&self.link_slots)
    }
}

/// A free slot of `slots`, or a refusal to come back in a second.
fn slot(slots: &Arc<Semaphore>) -> Result<Pass, Refusal> {
    slots
        .clone()
        .try_acquire_owned()
        .map(Pass)
        .map_err(|_| Refusal {
            reason: Reason::Busy,
            retry_after: 1,
        })
}

/// A refusal until `at`, in whole seconds from `now` (rounded up, at least 1).
fn refusal(reason: Reason, at: DateTime<Utc>, now: DateTime<Utc>) -> Refusal {
    let millis = (at - now).num_milliseconds().max(0) as u64;
    Refusal {
        reason,
        retry_after: millis.div_ceil(1000).max(1),
    }
}

/// The address a client is counted by: IPv4 as it is (IPv4-mapped IPv6
/// too), IPv6 by its /64 network, which one subscriber usually holds whole.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn settings(text: &str) -> Result<Settings> {
        let section: InboundSection = toml::from_str(text).unwrap();
        Settings::from_config(&section)
    }

    #[test]
    fn defaults_are_bounded_and_bad_values_name_their_key() {
        let d = Settings::default();
        assert_eq!((d.callbacks, d.links), (32, 64));
        for (text, says) in [
            ("callbacks = 0", "callbacks = 0: must be between 1 and 128"),
            ("links = 5000", "links = 5000: must be between 1 and 1024"),
            ("callback_rate = \"fast\"", "[server.inbound] callback_rate"),
            ("link_burst = 0", "link_burst = 0"),
        ] {
            let e = settings(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_channel_gets_its_burst_then_its_rate_on_the_clock() {
        let limits = Inbound::new(settings("callback_rate = \"1/s\"\ncallback_burst = 3").unwrap());
        let passes: Vec<Pass> = (0..3)
            .map(|_| limits.admit_callback(Some("sms"), t0()).unwrap())
            .collect();
        let refused = limits.admit_callback(Some("sms"), t0()).unwrap_err();
        assert_eq!(
            refused,
            Refusal {
                reason: Reason::ChannelRate,
                retry_after: 1
            }
        );
        // Another channel has its own rate; a name no channel has, none.
        assert!(limits.admit_callback(Some("email"), t0()).is_ok());
        assert!(limits.admit_callback(None, t0()).is_ok());
        let later = t0() + Duration::milliseconds(1000);
        assert!(limits.admit_callback(Some("sms"), later).is_ok());
        assert!(limits.admit_callback(Some("sms"), later).is_err());
        drop(passes);
    }

    #[test]
    fn slots_are_given_back_when_the_answer_is_made() {
        let limits = Inbound::new(settings("callbacks = 2").unwrap());
        let a = limits.admit_callback(None, t0()).unwrap();
        let _b = limits.admit_callback(None, t0()).unwrap();
        assert_eq!(
            limits.admit_callback(None, t0()).unwrap_err().reason,
            Reason::Busy
        );
        drop(a);
        assert!(limits.admit_callback(None, t0()).is_ok());
        // Links have slots of their own.
        assert!(limits.admit_link([10, 0, 0, 1].into(), t0()).is_ok());
    }

    #[test]
    fn each_address_has_its_own_rate_and_ipv6_counts_by_network() {
        let limits = Inbound::new(settings("link_rate = \"1/h\"\nlink_burst = 2").unwrap());
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        assert!(limits.admit_link(a, t0()).is_ok());
        assert!(limits.admit_link(a, t0()).is_ok());
        let refused = limits.admit_link(a, t0()).unwrap_err();
        assert_eq!(refused.reason, Reason::ClientRate);
        assert_eq!(refused.retry_after, 3600);
        assert!(limits.admit_link(b, t0()).is_ok());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_network: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limits.admit_link(one, t0()).is_ok());
        assert!(limits.admit_link(same_network, t0()).is_ok());
        assert!(limits.admit_link(one, t0()).is_err());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert!(limits.admit_link(mapped, t0()).is_err(), "the same as {a}");
        assert!(limits.admit_link(a, t0() + Duration::minutes(30)).is_err());
        assert!(limits.admit_link(a, t0() + Duration::hours(1)).is_ok());
    }

    #[test]
    fn the_address_table_is_bounded_and_forgets_idle_addresses() {
        let limits = Inbound::new(settings("link_rate = \"1/s\"\nlink_burst = 1").unwrap());
        let address = |i: usize| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        for i in 0..MAX_CLIENTS {
            assert!(limits.admit_link(address(i), t0()).is_ok());
        }
        let newcomer = address(MAX_CLIENTS);
        assert_eq!(
            limits.admit_link(newcomer, t0()).unwrap_err().reason,
            Reason::Busy
        );
        // A second on, every address is idle again and can be forgotten.
        assert!(limits
            .admit_link(newcomer, t0() + Duration::seconds(1))
            .is_ok());
        assert_eq!(limits.clients.lock().unwrap().len(), 1);
    }
}
