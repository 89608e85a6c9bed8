//! Rules with a targeting plugin: loading each rule's plugin with its
//! settings and limits at start, and evaluating a due reminder — the
//! customer's view and recent events in, a verdict out.

use crate::config::Config;
use crate::customer::Customer;
use crate::plugin::bindings::targeting::exports::herald::plugin::targeting::{CustomerView, Event};
use crate::plugin::bindings::types::Setting;
use crate::plugin::targeting::{LoadedTargeting, Verdict, DEFAULT_FUEL};
use crate::plugin::{Limits, PluginServices, Runtime, DEFAULT_MEMORY};
use crate::span::parse_exact;
use crate::store::{events, Store};
use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The default deadline of one evaluation.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// Most events handed to one evaluation.
const MAX_HISTORY: i64 = 1000;

/// A rule's targeting plugin with its settings.
pub struct RuleTargeting {
    /// The plugin.
    pub plugin: LoadedTargeting,
    settings: Vec<Setting>,
    history: Duration,
    kinds: Option<Vec<String>>,
}

/// Load the targeting plugin of every rule that has one. The fuel-metering
/// engine is only built when some rule needs it.
pub async fn load_all(
    config: &Config,
    cache_dir: PathBuf,
    services: &PluginServices,
) -> Result<HashMap<String, Arc<RuleTargeting>>> {
    let mut out = HashMap::new();
    let sections: Vec<_> = config
        .file
        .rules
        .iter()
        .filter_map(|r| r.targeting.as_ref().map(|t| (r.id.trim().to_string(), t)))
        .collect();
    if sections.is_empty() {
        return Ok(out);
    }
    let mut limits = Vec::new();
    for (rule, t) in &sections {
        let memory = match &t.memory {
            Some(m) => crate::config::parse_memory(m)
                .map_err(|e| anyhow!("rule `{rule}`, targeting memory: {e}"))?,
            None => DEFAULT_MEMORY,
        };
        let timeout = match &t.timeout {
            Some(d) => {
                parse_exact(d).map_err(|e| anyhow!("rule `{rule}`, targeting timeout: {e}"))?
            }
            None => DEFAULT_TIMEOUT,
        };
        limits.push(Limits {
            memory,
            timeout,
            ..Limits::default()
        });
    }
    let max_memory = limits
        .iter()
        .map(|l| l.memory)
        .max()
        .unwrap_or(DEFAULT_MEMORY);
    let runtime = Arc::new(Runtime::with_fuel(cache_dir, max_memory)?);
    let mut errors = Vec::new();
    for ((rule, t), limits) in sections.into_iter().zip(limits) {
        let loaded: Result<RuleTargeting> = async {
            let fuel = t.fuel.unwrap_or(DEFAULT_FUEL);
            if fuel == 0 {
                bail!("fuel = 0 lets the plugin run nothing; leave it out for the default of {DEFAULT_FUEL}");
            }
            let history = match t.history {
                None => Duration::days(365),
                Some(span) => span
                    .as_duration()
                    .map_err(|e| anyhow!("history: {e}"))?,
            };
            let mut settings = Vec::new();
            for (key, value) in &t.settings {
                settings.push(Setting {
                    key: key.clone(),
                    value: value.resolve_at(config, &format!("rule `{rule}`, targeting settings {key}"))?,
                });
            }
            let plugin = runtime
                .load_targeting(&config.resolve(&t.plugin), &rule, limits, fuel, services.clone())
                .await?;
            for spec in &plugin.info.settings {
                if spec.required && !t.settings.contains_key(&spec.key) {
                    bail!("plugin `{}` needs the setting `{}` ({})", plugin.info.name, spec.key, spec.description);
                }
            }
            for key in t.settings.keys() {
                if !plugin.info.settings.iter().any(|s| &s.key == key) {
                    let known: Vec<&str> = plugin.info.settings.iter().map(|s| s.key.as_str()).collect();
                    bail!(
                        "plugin `{}` has no setting `{key}`; it knows: {}",
                        plugin.info.name,
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    );
                }
            }
            Ok(RuleTargeting {
                plugin,
                settings,
                history,
                kinds: t.kinds.clone(),
            })
        }
        .await;
        match loaded {
            Ok(t) => {
                out.insert(rule, Arc::new(t));
            }
            Err(e) => errors.push(format!("rule `{rule}`, targeting: {e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(out)
}

impl RuleTargeting {
    /// Ask the plugin about a reminder due for `customer` now.
    pub async fn evaluate(
        &self,
        store: &Store,
        customer: &Customer,
        now: DateTime<Utc>,
    ) -> Result<(Verdict, u64)> {
        let mut tx = store.read().await?;
        let recent = events::since(
            &mut tx,
            customer.id,
            now - self.history,
            self.kinds.as_deref(),
            MAX_HISTORY,
        )
        .await?;
        drop(tx);
        let view = CustomerView {
            external_id: customer.external_id.clone(),
            name: customer.name.clone(),
            region: customer.region.clone(),
            timezone: customer.timezone.clone(),
            locale: customer.locale.clone(),
            state: customer.state.clone(),
            attributes_json: serde_json::to_string(&customer.attributes)?,
            created_at: customer.created_at.timestamp_millis(),
        };
        let history = recent
            .into_iter()
            .map(|e| Event {
                kind: e.kind,
                at: e.at.timestamp_millis(),
                properties_json: serde_json::to_string(&e.properties)
                    .unwrap_or_else(|_| "{}".into()),
            })
            .collect();
        Ok(self
            .plugin
            .evaluate(&self.settings, view, history, now)
            .await)
    }
}
