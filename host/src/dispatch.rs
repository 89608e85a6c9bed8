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
        /// Shared, so each send's task holds them without a copy.
        settings: Arc<[Setting]>,
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
    /// Configured but `enabled = false`: not loaded, passed over by routing.
    disabled: std::collections::BTreeSet<String>,
}

fn wit_address(kind: WitAddressKind) -> AddressKind {
    match kind {
        WitAddressKind::Email => AddressKind::Email,
        WitAddressKind::Phone => AddressKind::Phone,
        WitAddressKind::Wechat => AddressKind::Wechat,
        WitAddressKind::None => AddressKind::None,
    }
}

/// How bad a problem found while loading a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Herald refuses to run with it.
    Error,
    /// Herald runs, but the operator should look.
    Warning,
}

/// One problem with a channel: what is wrong and how to fix it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and how to fix it. Never contains a secret's value.
    pub message: String,
}

impl Finding {
    /// An error finding.
    pub(crate) fn error(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            message: message.into(),
        }
    }
    /// A warning finding.
    pub(crate) fn warning(message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            message: message.into(),
        }
    }
}

/// Every channel of a config, loaded as far as each one goes, with every
/// problem found (for `herald check`, which reports them all at once).
pub struct Inspection {
    /// The channels that loaded without an error.
    pub channels: Channels,
    /// Problems by channel name.
    pub findings: BTreeMap<String, Vec<Finding>>,
    /// What each loaded plugin said about itself, by channel name (disabled
    /// channels included when they were inspected).
    pub plugins: BTreeMap<String, crate::plugin::bindings::types::PluginInfo>,
}

impl Channels {
    /// Load every enabled channel: plugins are compiled (or taken from the
    /// cache), described, and their settings checked against what they
    /// declare. Disabled channels (`enabled = false`) are not loaded; routing
    /// passes over them. Every error of every channel is reported together;
    /// warnings (settings the plugin does not know) are logged.
    pub async fn load(
        config: &Config,
        runtime: &Arc<Runtime>,
        services: &PluginServices,
    ) -> Result<Channels> {
        let inspection = Self::inspect(config, runtime, services, false).await?;
        let mut errors = Vec::new();
        for (name, findings) in &inspection.findings {
            for f in findings {
                match f.severity {
                    Severity::Error => errors.push(format!("[channels.{name}]: {}", f.message)),
                    Severity::Warning => tracing::warn!("[channels.{name}]: {}", f.message),
                }
            }
        }
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        Ok(inspection.channels)
    }

    /// Load every channel as far as it goes and collect every problem.
    /// With `disabled_too`, disabled channels are loaded as well (to check
    /// them) but stay out of the returned channels. Fails only when the
    /// config's `[retry]` section is unusable.
    pub async fn inspect(
        config: &Config,
        runtime: &Arc<Runtime>,
        services: &PluginServices,
        disabled_too: bool,
    ) -> Result<Inspection> {
        let default_retry = config.file.retry.resolve("[retry]")?;
        let mut by_name = BTreeMap::new();
        let mut disabled = std::collections::BTreeSet::new();
        let mut findings: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
        let mut plugins = BTreeMap::new();
        for (name, section) in &config.file.channels {
            if !section.enabled {
                disabled.insert(name.clone());
                if !disabled_too {
                    continue;
                }
            }
            let mut found = Vec::new();
            let channel = load_one(
                config,
                name,
                section,
                default_retry,
                runtime,
                services,
                &mut found,
            )
            .await;
            if let Some(channel) = channel {
                if let Delivery::Plugin { plugin, .. } = &channel.delivery {
                    plugins.insert(name.clone(), plugin.info.clone());
                }
                if section.enabled {
                    by_name.insert(name.clone(), channel);
                }
            }
            if !found.is_empty() {
                findings.insert(name.clone(), found);
            }
        }
        for (name, channel) in &by_name {
            let Some(f) = &channel.failover else { continue };
            let problem = if !config.file.channels.contains_key(&f.backup) {
                Some(Finding::error(format!(
                    "failover = \"{}\" is not a configured channel; name one of the [channels.*] sections or remove failover",
                    f.backup
                )))
            } else if &f.backup == name {
                Some(Finding::error(
                    "a channel cannot fail over to itself; name another channel or remove failover",
                ))
            } else if disabled.contains(&f.backup) {
                Some(Finding::warning(format!(
                    "its failover backup `{}` is disabled, so sends will not fail over; enable it or remove failover",
                    f.backup
                )))
            } else {
                match by_name.get(&f.backup) {
                    Some(backup) if backup.address != channel.address => Some(Finding::error(format!(
                        "failover = \"{}\" needs a {} address but `{name}` sends to {}; a backup must reach customers by the same kind of address",
                        f.backup, backup.address, channel.address
                    ))),
                    _ => None,
                }
            };
            if let Some(p) = problem {
                findings.entry(name.clone()).or_default().push(p);
            }
        }
        let errored: Vec<String> = findings
            .iter()
            .filter(|(_, f)| f.iter().any(|f| f.severity == Severity::Error))
            .map(|(n, _)| n.clone())
            .collect();
        for name in errored {
            by_name.remove(&name);
        }
        Ok(Inspection {
            channels: Channels { by_name, disabled },
            findings,
            plugins,
        })
    }

    /// Whether a configured channel is disabled (`enabled = false`).
    pub fn is_disabled(&self, name: &str) -> bool {
        self.disabled.contains(name)
    }

    /// Names of the disabled channels.
    pub fn disabled(&self) -> impl Iterator<Item = &str> {
        self.disabled.iter().map(String::as_str)
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
        if suppressed.is_some_and(|s| s.contains(&channel.name)) {
            return Some(format!("{} (the customer unsubscribed)", channel.name));
        }
        if address_of(customer, channel.address).is_none() {
            return Some(format!("{} (needs {})", channel.name, channel.address));
        }
        None
    }

    /// The first channel among `preference` that can reach the customer:
    /// enabled (disabled channels are passed over like unreachable ones), not
    /// refused by them, and with their address. When that
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
        let mut disabled = Vec::new();
        for name in preference {
            let Some(channel) = self.by_name.get(name) else {
                if self.disabled.contains(name) {
                    disabled.push(name.as_str());
                    tried.push(format!("{name} (disabled)"));
                }
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
        if !disabled.is_empty() && disabled.len() == tried.len() {
            return Err(format!(
                "every channel of this rule is disabled in the config ({}); enable one (enabled = true) or give the rule another channel",
                disabled.join(", ")
            ));
        }
        Err(format!(
            "no channel can reach the customer: {}",
            tried.join(", ")
        ))
    }
}

/// Load one channel, pushing every problem found onto `found`; the channel
/// comes back only when nothing stopped it from loading (warnings allowed).
async fn load_one(
    config: &Config,
    name: &str,
    section: &crate::config::ChannelSection,
    default_retry: RetryPolicy,
    runtime: &Arc<Runtime>,
    services: &PluginServices,
    found: &mut Vec<Finding>,
) -> Option<Channel> {
    let errors_before = found.len();
    let mut check = |result: Result<(), String>| {
        if let Err(e) = result {
            found.push(Finding::error(e));
        }
    };
    let retry = match &section.retry {
        Some(r) => r
            .resolve(&format!("[channels.{name}.retry]"))
            .map_err(|e| check(Err(format!("{e:#}"))))
            .unwrap_or(default_retry),
        None => default_retry,
    };
    let rate = limiter(section)
        .map_err(|e| check(Err(format!("{e:#}"))))
        .ok()
        .flatten();
    let failover = failover(section)
        .map_err(|e| check(Err(format!("{e:#}"))))
        .ok()
        .flatten();
    let (delivery, address) = match (&section.plugin, &section.builtin) {
        (Some(_), Some(_)) => {
            check(Err("give `plugin` or `builtin`, not both".into()));
            return None;
        }
        (None, None) => {
            check(Err("no `plugin = \"path/to/plugin.wasm\"` and no `builtin = \"inbox\"`; add one of them".into()));
            return None;
        }
        (None, Some(builtin)) => {
            let delivery = match builtin.as_str() {
                "inbox" => Delivery::Inbox,
                "task" => Delivery::Task,
                other => {
                    check(Err(format!("unknown builtin `{other}`; the built-in channels are `inbox` (in-app messages) and `task` (a call list for staff)")));
                    return None;
                }
            };
            if !section.settings.is_empty() || !section.allowed_hosts.is_empty() {
                check(Err(format!("the built-in `{builtin}` channel takes no settings or allowed_hosts; remove them")));
            }
            (delivery, section.address.unwrap_or(AddressKind::None))
        }
        (Some(path), None) => {
            let mut limits = Limits::default();
            if let Some(m) = &section.memory {
                match parse_memory(m) {
                    Ok(m) => limits.memory = m,
                    Err(e) => check(Err(format!("memory: {e}"))),
                }
            }
            if let Some(t) = &section.timeout {
                match parse_exact(t) {
                    Ok(t) => limits.timeout = t,
                    Err(e) => check(Err(format!("timeout: {e}"))),
                }
            }
            if let Some(c) = &section.cpu {
                match parse_exact(c) {
                    Ok(c) if c.is_zero() => check(Err(format!(
                        "cpu: a run-time budget of 0 lets the plugin run nothing; leave it out for the default ({:?})",
                        crate::plugin::run_budget::DEFAULT_CPU
                    ))),
                    Ok(c) => limits.cpu = c,
                    Err(e) => check(Err(format!("cpu: {e}"))),
                }
            }
            // Each entry on its own, so every bad one is named.
            for entry in &section.allowed_hosts {
                if let Err(e) = AllowList::parse(std::slice::from_ref(entry)) {
                    check(Err(e));
                }
            }
            let allowed = AllowList::parse(&section.allowed_hosts).unwrap_or_default();
            let mut settings = Vec::new();
            let mut external = Vec::new();
            for (key, value) in &section.settings {
                match value.resolve(config, name, key) {
                    Ok(resolved) => {
                        if !matches!(value, SettingValue::Literal(_) | SettingValue::Scalar(_)) {
                            external.push(key.clone());
                        }
                        settings.push(Setting {
                            key: key.clone(),
                            value: resolved,
                        });
                    }
                    Err(e) => check(Err(format!("{e:#}"))),
                }
            }
            let mut plugin = match runtime
                .load_channel(
                    &config.resolve(path),
                    name,
                    limits,
                    allowed,
                    services.clone(),
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    check(Err(format!("{e:#}")));
                    return None;
                }
            };
            // Secrets (declared secret by the plugin, or read from the
            // environment or a file) are masked in everything the plugin
            // says: logs, errors, receipts.
            plugin.set_secrets(
                settings
                    .iter()
                    .filter(|s| {
                        external.contains(&s.key)
                            || plugin
                                .info
                                .settings
                                .iter()
                                .any(|spec| spec.key == s.key && spec.secret)
                    })
                    .map(|s| s.value.clone())
                    .collect(),
            );
            for spec in &plugin.info.settings {
                if spec.required && !section.settings.contains_key(&spec.key) {
                    check(Err(format!(
                        "plugin `{}` needs the setting `{}` ({}); add it under [channels.{name}.settings]{}",
                        plugin.info.name,
                        spec.key,
                        spec.description,
                        if spec.secret {
                            ", preferably as { env = \"VAR\" } or { file = \"path\" }"
                        } else {
                            ""
                        }
                    )));
                }
            }
            for key in section.settings.keys() {
                if !plugin.info.settings.iter().any(|s| &s.key == key) {
                    let known: Vec<&str> = plugin
                        .info
                        .settings
                        .iter()
                        .map(|s| s.key.as_str())
                        .collect();
                    found.push(Finding::warning(format!(
                        "plugin `{}` has no setting `{key}`, so it is ignored; remove it or fix its name (the plugin knows: {})",
                        plugin.info.name,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            }
            let address = section.address.unwrap_or(wit_address(plugin.info.address));
            let provider = plugin.info.name.clone();
            let delivery = Delivery::Plugin {
                plugin: Arc::new(plugin),
                settings: settings.into(),
            };
            if found[errors_before..]
                .iter()
                .any(|f| f.severity == Severity::Error)
            {
                return None;
            }
            return Some(Channel {
                name: name.to_string(),
                address,
                retry,
                provider,
                delivery,
                rate,
                failover,
                breaker: Breaker::default(),
            });
        }
    };
    if found[errors_before..]
        .iter()
        .any(|f| f.severity == Severity::Error)
    {
        return None;
    }
    let provider = section.builtin.clone().unwrap_or_default();
    Some(Channel {
        name: name.to_string(),
        address,
        retry,
        provider,
        delivery,
        rate,
        failover,
        breaker: Breaker::default(),
    })
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
