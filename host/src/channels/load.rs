//! Loading one configured channel: a built-in (inbox, call list) or a WASM
//! plugin compiled, described and checked against its settings, with its
//! limits, retry policy, rate limit and failover. Every problem found is
//! collected as a [`Finding`], so `herald check` reports them all at once.

use super::failover::{Breaker, Failover};
use super::ratelimit::{Rate, RateLimiter};
use super::{wit_address, Channel, Delivery, Finding, Severity};
use crate::config::{parse_memory, AddressKind, ChannelSection, Config, RetryPolicy, SettingValue};
use crate::plugin::bindings::types::{PluginInfo, Setting};
use crate::plugin::http_policy::AllowList;
use crate::plugin::tls_trust::TlsTrust;
use crate::plugin::{Limits, PluginServices, Runtime};
use crate::span::parse_exact;
use anyhow::{anyhow, bail, Result};
use std::sync::Arc;
use std::time::Duration;

/// Load one channel, pushing every problem found onto `found`; the channel
/// comes back only when nothing stopped it from loading (warnings allowed).
pub(super) async fn load_one(
    config: &Config,
    name: &str,
    section: &ChannelSection,
    default_retry: RetryPolicy,
    runtime: &Arc<Runtime>,
    services: &PluginServices,
    found: &mut Vec<Finding>,
) -> Option<Channel> {
    let errors_before = found.len();
    let mut error = |e: anyhow::Error| found.push(Finding::error(format!("{e:#}")));
    let retry = match &section.retry {
        Some(r) => r
            .resolve(&format!("[channels.{name}.retry]"))
            .map_err(&mut error)
            .unwrap_or(default_retry),
        None => default_retry,
    };
    let rate = limiter(section).map_err(&mut error).ok().flatten();
    let failover = failover(section).map_err(&mut error).ok().flatten();
    let (delivery, address, provider) = match (&section.plugin, &section.builtin) {
        (Some(_), Some(_)) => {
            found.push(Finding::error("give `plugin` or `builtin`, not both"));
            return None;
        }
        (None, None) => {
            found.push(Finding::error("no `plugin = \"path/to/plugin.wasm\"` and no `builtin = \"inbox\"`; add one of them"));
            return None;
        }
        (None, Some(builtin)) => {
            let delivery = builtin_delivery(builtin, section, found)?;
            let address = section.address.unwrap_or(AddressKind::None);
            (delivery, address, builtin.clone())
        }
        (Some(path), None) => {
            plugin_delivery(config, name, path, section, runtime, services, found).await?
        }
    };
    if found[errors_before..]
        .iter()
        .any(|f| f.severity == Severity::Error)
    {
        return None;
    }
    Some(Channel {
        name: name.to_string(),
        address,
        retry,
        provider,
        delivery,
        rate,
        failover,
        breaker: Breaker::default(),
        uncertain: section.uncertain.unwrap_or_default(),
    })
}

/// The delivery of a built-in channel (`inbox`, `task`).
fn builtin_delivery(
    builtin: &str,
    section: &ChannelSection,
    found: &mut Vec<Finding>,
) -> Option<Delivery> {
    let delivery = match builtin {
        "inbox" => Delivery::Inbox,
        "task" => Delivery::Task,
        other => {
            found.push(Finding::error(format!("unknown builtin `{other}`; the built-in channels are `inbox` (in-app messages) and `task` (a call list for staff)")));
            return None;
        }
    };
    if !section.settings.is_empty()
        || !section.allowed_hosts.is_empty()
        || section.allow_private_network
        || section.tls_ca_file.is_some()
    {
        found.push(Finding::error(format!(
            "the built-in `{builtin}` channel takes no settings, allowed_hosts, allow_private_network or tls_ca_file; remove them"
        )));
    }
    Some(delivery)
}

/// A plugin channel: its limits and allow-list, its settings resolved, the
/// plugin loaded and its declared settings checked. Returns the delivery,
/// the address it needs and the provider name, unless it could not load.
async fn plugin_delivery(
    config: &Config,
    name: &str,
    path: &str,
    section: &ChannelSection,
    runtime: &Arc<Runtime>,
    services: &PluginServices,
    found: &mut Vec<Finding>,
) -> Option<(Delivery, AddressKind, String)> {
    let limits = plugin_limits(section, found);
    // Each entry on its own, so every bad one is named.
    for entry in &section.allowed_hosts {
        if let Err(e) = AllowList::parse(std::slice::from_ref(entry)) {
            found.push(Finding::error(e));
        }
    }
    let allowed = AllowList::parse(&section.allowed_hosts)
        .unwrap_or_default()
        .with_private_network(section.allow_private_network)
        .with_tls(tls_trust(config, name, section, found));
    if section.allow_private_network {
        found.push(Finding::warning(format!(
            "channel `{name}` may reach loopback, private and link-local addresses (allow_private_network = true): a name in its allowed_hosts that resolves to an internal service or a cloud metadata address (169.254.169.254) is reached; keep it only for a provider on your own network"
        )));
    }
    let (settings, external) = resolve_settings(config, name, section, found);
    let loaded = runtime
        .load_channel(
            &config.resolve(path),
            name,
            limits,
            allowed,
            services.clone(),
        )
        .await;
    let mut plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            found.push(Finding::error(format!("{e:#}")));
            return None;
        }
    };
    // Secrets (declared secret by the plugin, or read from the environment
    // or a file) are masked in everything the plugin says: logs, errors,
    // receipts.
    let secrets = settings
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
        .collect();
    plugin.set_secrets(secrets);
    check_declared_settings(&plugin.info, name, section, found);
    found.extend(super::dedup::uncertain_findings(
        &plugin.info.name,
        name,
        section,
    ));
    warn_plaintext_auth(&settings, name, found);
    let address = section.address.unwrap_or(wit_address(plugin.info.address));
    let provider = plugin.info.name.clone();
    let delivery = Delivery::Plugin {
        plugin: Arc::new(plugin),
        settings: settings.into(),
    };
    Some((delivery, address, provider))
}

/// Whom the channel's TLS connections trust: the webpki roots, plus its
/// `tls_ca_file` when it names one (a bad file is an error; one on a channel
/// without `tcp://` entries, which nothing would use, a warning).
fn tls_trust(
    config: &Config,
    name: &str,
    section: &ChannelSection,
    found: &mut Vec<Finding>,
) -> TlsTrust {
    let Some(file) = &section.tls_ca_file else {
        return TlsTrust::default();
    };
    if !section
        .allowed_hosts
        .iter()
        .any(|h| h.starts_with("tcp://"))
    {
        found.push(Finding::warning(format!(
            "channel `{name}` names tls_ca_file but no tcp://host:port in allowed_hosts: the CA only applies to the plugin's TCP/TLS connections (its HTTPS requests trust the webpki roots alone); remove it or add the relay's tcp:// entry"
        )));
    }
    match TlsTrust::with_ca_file(&config.resolve(file)) {
        Ok(trust) => trust,
        Err(e) => {
            found.push(Finding::error(format!("{e:#}")));
            TlsTrust::default()
        }
    }
}

/// The memory cap, wall-clock timeout and run-time budget of one send.
fn plugin_limits(section: &ChannelSection, found: &mut Vec<Finding>) -> Limits {
    let mut limits = Limits::default();
    if let Some(m) = &section.memory {
        match parse_memory(m) {
            Ok(m) => limits.memory = m,
            Err(e) => found.push(Finding::error(format!("memory: {e}"))),
        }
    }
    if let Some(t) = &section.timeout {
        match parse_exact(t) {
            Ok(t) => limits.timeout = t,
            Err(e) => found.push(Finding::error(format!("timeout: {e}"))),
        }
    }
    if let Some(c) = &section.cpu {
        match parse_exact(c) {
            Ok(c) if c.is_zero() => found.push(Finding::error(format!(
                "cpu: a run-time budget of 0 lets the plugin run nothing; leave it out for the default ({:?})",
                crate::plugin::run_budget::DEFAULT_CPU
            ))),
            Ok(c) => limits.cpu = c,
            Err(e) => found.push(Finding::error(format!("cpu: {e}"))),
        }
    }
    limits
}

/// The channel's settings with `{ env }` and `{ file }` values read, and the
/// keys whose values came from outside the config (masked as secrets).
fn resolve_settings(
    config: &Config,
    name: &str,
    section: &ChannelSection,
    found: &mut Vec<Finding>,
) -> (Vec<Setting>, Vec<String>) {
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
            Err(e) => found.push(Finding::error(format!("{e:#}"))),
        }
    }
    (settings, external)
}

/// Required settings the config lacks are errors; settings the plugin does
/// not declare are warnings.
fn check_declared_settings(
    info: &PluginInfo,
    name: &str,
    section: &ChannelSection,
    found: &mut Vec<Finding>,
) {
    for spec in &info.settings {
        if spec.required && !section.settings.contains_key(&spec.key) {
            let prefer = if spec.secret {
                ", preferably as { env = \"VAR\" } or { file = \"path\" }"
            } else {
                ""
            };
            found.push(Finding::error(format!(
                "plugin `{}` needs the setting `{}` ({}); add it under [channels.{name}.settings]{prefer}",
                info.name, spec.key, spec.description,
            )));
        }
    }
    let takes_pushes = info.settings.iter().any(|s| s.key == "callback_token");
    if takes_pushes && !section.settings.contains_key("callback_token") {
        found.push(Finding::warning(format!(
            "channel `{name}` has no `callback_token`, so plugin `{}` refuses every push to /hooks/{name} (delivery reports, opt-out replies); set one under [channels.{name}.settings] and give it to the provider",
            info.name,
        )));
    }
    for key in section.settings.keys() {
        if !info.settings.iter().any(|s| &s.key == key) {
            let known: Vec<&str> = info.settings.iter().map(|s| s.key.as_str()).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            found.push(Finding::warning(format!(
                "plugin `{}` has no setting `{key}`, so it is ignored; remove it or fix its name (the plugin knows: {known})",
                info.name,
            )));
        }
    }
}

/// The setting with which an operator lets a plugin send a login over a
/// clear-text connection (`email-smtp`, which has no TLS).
const PLAINTEXT_AUTH: &str = "allow_plaintext_auth";

/// A warning when the channel lets its plugin send a login in clear text.
fn warn_plaintext_auth(settings: &[Setting], name: &str, found: &mut Vec<Finding>) {
    let on = settings
        .iter()
        .any(|s| s.key == PLAINTEXT_AUTH && s.value.trim().eq_ignore_ascii_case("true"));
    if on {
        found.push(Finding::warning(format!(
            "channel `{name}` sends its login in clear text ({PLAINTEXT_AUTH} = true): anyone on the network path to the relay can read the password; keep it only for a relay on a trusted network (the same host, a private link)"
        )));
    }
}

fn limiter(section: &ChannelSection) -> Result<Option<RateLimiter>> {
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

fn failover(section: &ChannelSection) -> Result<Option<Failover>> {
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
