//! Channels and delivery: loading each configured channel (a WASM plugin or
//! the built-in inbox) with its resolved settings, limits, retry policy,
//! rate limit and failover; routing a reminder to the first channel of its
//! rule that can reach the customer (skipping disabled channels and those
//! the customer refused, and going to a backup while a provider is failing);
//! and the retry backoff (exponential, with deterministic jitter so
//! simulations replay identically).

mod backoff;
pub mod dedup;
pub mod failover;
mod load;
pub mod ratelimit;
mod route;

pub use backoff::backoff;
pub use route::{address_of, Refusals};

use crate::config::{parse_memory, AddressKind, Config, RetryPolicy};
use crate::plugin::bindings::types::{AddressKind as WitAddressKind, Setting};
use crate::plugin::{LoadedChannel, PluginServices, Runtime, DEFAULT_MEMORY};
use anyhow::{anyhow, bail, Result};
use failover::{Breaker, Failover};
use ratelimit::RateLimiter;

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// What it does with a send whose outcome is unknown.
    pub uncertain: crate::config::UncertainSends,
}

/// Where a reminder goes.
pub struct Route<'a> {
    /// The channel that will carry it.
    pub channel: &'a Channel,
    /// The channel the rule wanted, when a failover moved it.
    pub failover_from: Option<&'a str>,
    /// The channels tried before it, each with why it was passed over.
    pub passed_over: Vec<String>,
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
        WitAddressKind::Push => AddressKind::Push,
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
            let channel = load::load_one(
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
                    if plugin.contract != crate::plugin::Contract::CURRENT {
                        found.push(Finding::warning(format!(
                            "its plugin was built against {}, an earlier contract this Herald still serves (adapted in the host); rebuild it against {} to receive push tokens and report invalid addresses",
                            plugin.contract,
                            crate::plugin::Contract::CURRENT
                        )));
                    }
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
}
