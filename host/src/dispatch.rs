//! Channels and delivery: loading each configured channel (a WASM plugin or
//! the built-in inbox) with its resolved settings, limits, retry policy,
//! rate limit and failover; routing a reminder to the first channel of its
//! rule that can reach the customer (skipping disabled channels and those
//! the customer refused, and going to a backup while a provider is failing);
//! and the retry backoff (exponential, with deterministic jitter so
//! simulations replay identically).

use crate::config::{parse_memory, AddressKind, Config, RetryPolicy, SettingValue};
use crate::customer::Customer;
use crate::failover::{Breaker, Failover};
use crate::plugin::bindings::types::{AddressKind as WitAddressKind, Setting};
use crate::plugin::http_policy::AllowList;
use crate::plugin::{Limits, LoadedChannel, PluginServices, Runtime, DEFAULT_MEMORY};
use crate::ratelimit::{Rate, RateLimiter};
use crate::span::parse_exact;
use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How a channel delivers.
pub enum Delivery {
    /// Through a WASM plugin.
    Plugin {
        /// The loaded plugin.
        plugin: Arc<LoadedChannel>,
        /// Settings with secrets resolved; they reach only this plugin.
        settings: Vec<Setting>,
    },
    /// Into the in-app inbox table.
    Inbox,
    /// Onto the staff call list (`herald tasks`).
    Task,
}

impl Delivery {
    /// Built-in channels are delivered by the tick's record transaction.
    pub fn is_builtin(&self) -> bool {
        matches!(self, Delivery::Inbox | Delivery::Task)
    }
}

/// A configured channel.
pub struct Channel {
    /// Channel name.
    pub name: String,
    /// The address it needs.
    pub address: AddressKind,
    /// Disabled channels are skipped when choosing.
    pub enabled: bool,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The provider name recorded on deliveries (plugin name or `inbox`).
    pub provider: String,
    /// How it delivers.
    pub delivery: Delivery,
    /// Its send rate limit, if any.
    pub rate: Option<RateLimiter>,
    /// Its backup, if any.
    pub failover: Option<Failover>,
    /// Its provider's health.
    pub breaker: Breaker,
}

/// Where a reminder goes.
pub struct Route<'a> {
    /// The channel that will carry it.
    pub channel: &'a Channel,
    /// The channel the rule wanted, when a failover moved it.
    pub failover_from: Option<&'a str>,
}

/// All channels of a deployment.
pub struct Channels {
    by_name: BTreeMap<String, Channel>,
}

fn wit_address(kind: WitAddressKind) -> AddressKind {
    match kind {
        WitAddressKind::Email => AddressKind::Email,
        WitAddressKind::Phone => AddressKind::Phone,
        WitAddressKind::Wechat => AddressKind::Wechat,
        WitAddressKind::None => AddressKind::None,
    }
}

impl Channels {
    /// Load every configured channel: plugins are compiled (or taken from the
    /// cache), described, and their settings checked against what they declare.
    pub async fn load(
        config: &Config,
        runtime: &Arc<Runtime>,
        services: &PluginServices,
    ) -> Result<Channels> {
        let default_retry = config.file.retry.resolve("[retry]")?;
        let mut by_name = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, section) in &config.file.channels {
            let result: Result<Channel> = async {
                let retry = match &section.retry {
                    Some(r) => r.resolve(&format!("[channels.{name}.retry]"))?,
                    None => default_retry,
                };
                match (&section.plugin, &section.builtin) {
                    (Some(_), Some(_)) => bail!("give `plugin` or `builtin`, not both"),
                    (None, None) => bail!("no `plugin = \"path/to/plugin.wasm\"` and no `builtin = \"inbox\"`"),
                    (None, Some(builtin)) => {
                        let delivery = match builtin.as_str() {
                            "inbox" => Delivery::Inbox,
                            "task" => Delivery::Task,
                            other => bail!("unknown builtin `{other}`; the built-in channels are `inbox` (in-app messages) and `task` (a call list for staff)"),
                        };
                        if !section.settings.is_empty() || !section.allowed_hosts.is_empty() {
                            bail!("the built-in `{builtin}` channel takes no settings or allowed_hosts");
                        }
                        Ok(Channel {
                            name: name.clone(),
                            address: section.address.unwrap_or(AddressKind::None),
                            enabled: section.enabled,
                            retry,
                            provider: builtin.clone(),
                            delivery,
                            rate: limiter(section)?,
                            failover: failover(section)?,
                            breaker: Breaker::default(),
                        })
                    }
                    (Some(path), None) => {
                        let limits = Limits {
                            memory: match &section.memory {
                                Some(m) => parse_memory(m).map_err(|e| anyhow!("memory: {e}"))?,
                                None => DEFAULT_MEMORY,
                            },
                            timeout: match &section.timeout {
                                Some(t) => parse_exact(t).map_err(|e| anyhow!("timeout: {e}"))?,
                                None => crate::plugin::DEFAULT_TIMEOUT,
                            },
                        };
                        let allowed = AllowList::parse(&section.allowed_hosts).map_err(|e| anyhow!(e))?;
                        let mut settings = Vec::new();
                        let mut external = Vec::new();
                        for (key, value) in &section.settings {
                            let resolved = value.resolve(config, name, key)?;
                            if !matches!(value, SettingValue::Literal(_) | SettingValue::Scalar(_)) {
                                external.push(key.clone());
                            }
                            settings.push(Setting {
                                key: key.clone(),
                                value: resolved,
                            });
                        }
                        let mut plugin = runtime
                            .load_channel(&config.resolve(path), name, limits, allowed, services.clone())
                            .await?;
                        // Secrets (declared secret by the plugin, or read from
                        // the environment or a file) are masked in everything
                        // the plugin says: logs, errors, receipts.
                        plugin.set_secrets(
                            settings
                                .iter()
                                .filter(|s| {
                                    external.contains(&s.key)
                                        || plugin.info.settings.iter().any(|spec| spec.key == s.key && spec.secret)
                                })
                                .map(|s| s.value.clone())
                                .collect(),
                        );
                        for spec in &plugin.info.settings {
                            if spec.required && !section.settings.contains_key(&spec.key) {
                                bail!(
                                    "plugin `{}` needs the setting `{}` ({}); add it under [channels.{name}.settings]{}",
                                    plugin.info.name,
                                    spec.key,
                                    spec.description,
                                    if spec.secret { ", preferably as { env = \"VAR\" } or { file = \"path\" }" } else { "" }
                                );
                            }
                        }
                        for key in section.settings.keys() {
                            if !plugin.info.settings.iter().any(|s| &s.key == key) {
                                let known: Vec<&str> = plugin.info.settings.iter().map(|s| s.key.as_str()).collect();
                                bail!(
                                    "plugin `{}` has no setting `{key}`; it knows: {}",
                                    plugin.info.name,
                                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                                );
                            }
                        }
                        Ok(Channel {
                            name: name.clone(),
                            address: section.address.unwrap_or(wit_address(plugin.info.address)),
                            enabled: section.enabled,
                            retry,
                            provider: plugin.info.name.clone(),
                            delivery: Delivery::Plugin {
                                plugin: Arc::new(plugin),
                                settings,
                            },
                            rate: limiter(section)?,
                            failover: failover(section)?,
                            breaker: Breaker::default(),
                        })
                    }
                }
            }
            .await;
            match result {
                Ok(channel) => {
                    by_name.insert(name.clone(), channel);
                }
                Err(e) => errors.push(format!("[channels.{name}]: {e:#}")),
            }
        }
        for (name, channel) in &by_name {
            let Some(f) = &channel.failover else { continue };
            match by_name.get(&f.backup) {
                None => errors.push(format!(
                    "[channels.{name}]: failover = \"{}\" is not a configured channel",
                    f.backup
                )),
                Some(_) if &f.backup == name => errors.push(format!(
                    "[channels.{name}]: a channel cannot fail over to itself"
                )),
                Some(backup) if backup.address != channel.address => errors.push(format!(
                    "[channels.{name}]: failover = \"{}\" needs a {} address but `{name}` sends to {}; a backup must reach customers by the same kind of address",
                    f.backup, backup.address, channel.address
                )),
                Some(_) => {}
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok(Channels { by_name })
    }

    /// The largest memory cap of any configured channel.
    pub fn max_memory(config: &Config) -> Result<usize> {
        let mut max = DEFAULT_MEMORY;
        for (name, section) in &config.file.channels {
            if let Some(m) = &section.memory {
                max =
                    max.max(parse_memory(m).map_err(|e| anyhow!("[channels.{name}] memory: {e}"))?);
            }
        }
        Ok(max)
    }

    /// Names of all configured channels.
    pub fn names(config: &Config) -> std::collections::BTreeSet<String> {
        config.file.channels.keys().cloned().collect()
    }

    /// A channel by name.
    pub fn get(&self, name: &str) -> Option<&Channel> {
        self.by_name.get(name)
    }

    /// All channels.
    pub fn iter(&self) -> impl Iterator<Item = &Channel> {
        self.by_name.values()
    }

    /// Why `channel` cannot carry a reminder to this customer, if it cannot.
    fn unusable(
        channel: &Channel,
        customer: &Customer,
        suppressed: Option<&HashSet<String>>,
    ) -> Option<String> {
        if !channel.enabled {
            return Some(format!("{} (disabled)", channel.name));
        }
        if suppressed.is_some_and(|s| s.contains(&channel.name)) {
            return Some(format!("{} (the customer unsubscribed)", channel.name));
        }
        if address_of(customer, channel.address).is_none() {
            return Some(format!("{} (needs {})", channel.name, channel.address));
        }
        None
    }

    /// The first channel among `preference` that can reach the customer:
    /// enabled, not refused by them, and with their address. When that
    /// channel names a failover backup and its provider is failing (its
    /// circuit is open, or this reminder already failed `failover_after`
    /// times in a row on it), the backup carries it instead.
    pub fn route(
        &self,
        preference: &[String],
        customer: &Customer,
        suppressed: Option<&HashSet<String>>,
        failed_attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<Route<'_>, String> {
        let mut tried = Vec::new();
        for name in preference {
            let Some(channel) = self.by_name.get(name) else {
                continue;
            };
            if let Some(why) = Self::unusable(channel, customer, suppressed) {
                tried.push(why);
                continue;
            }
            if let Some(f) = &channel.failover {
                let failing =
                    channel.breaker.is_open(now) || failed_attempts >= f.after.max(1) as i64;
                if let Some(backup) = self.by_name.get(&f.backup) {
                    if failing && Self::unusable(backup, customer, suppressed).is_none() {
                        return Ok(Route {
                            channel: backup,
                            failover_from: Some(&channel.name),
                        });
                    }
                }
            }
            return Ok(Route {
                channel,
                failover_from: None,
            });
        }
        Err(format!(
            "no channel can reach the customer: {}",
            tried.join(", ")
        ))
    }
}

fn limiter(section: &crate::config::ChannelSection) -> Result<Option<RateLimiter>> {
    match &section.rate {
        None => {
            if section.burst.is_some() {
                bail!("`burst` needs a `rate`, e.g. rate = \"10/s\"");
            }
            Ok(None)
        }
        Some(text) => {
            let rate = Rate::parse(text).map_err(|e| anyhow!(e))?;
            Ok(Some(RateLimiter::new(rate, section.burst.unwrap_or(1))))
        }
    }
}

fn failover(section: &crate::config::ChannelSection) -> Result<Option<Failover>> {
    match &section.failover {
        None => {
            if section.failover_after.is_some() || section.failover_cooldown.is_some() {
                bail!(
                    "`failover_after` and `failover_cooldown` need `failover = \"backup-channel\"`"
                );
            }
            Ok(None)
        }
        Some(backup) => {
            let cooldown = match &section.failover_cooldown {
                Some(t) => parse_exact(t).map_err(|e| anyhow!("failover_cooldown: {e}"))?,
                None => Duration::from_secs(60),
            };
            Ok(Some(Failover {
                backup: backup.clone(),
                after: section.failover_after.unwrap_or(3).max(1),
                cooldown: chrono::Duration::from_std(cooldown)?,
            }))
        }
    }
}

/// The customer's address of a kind (`Some("")` for kind `none`).
pub fn address_of(customer: &Customer, kind: AddressKind) -> Option<&str> {
    match kind {
        AddressKind::Email => customer.email.as_deref(),
        AddressKind::Phone => customer.phone.as_deref(),
        AddressKind::Wechat => customer.wechat_openid.as_deref(),
        AddressKind::None => Some(""),
    }
}

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
        Some(hint) => jittered.max(hint),
        None => jittered,
    }
}

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
    }
}
