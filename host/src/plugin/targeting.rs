//! Targeting plugins: a rule's own logic for whether a due reminder goes
//! out now (with extra template variables), is skipped (with a reason), or is
//! asked about again later. Each call runs in a fresh instance with a fuel
//! budget (instructions, like Shopify Functions' 11M), a memory cap and a
//! deadline; a plugin that exceeds any of them, traps or answers nonsense
//! has that evaluation skipped with the reason. No network.

use super::bindings::targeting::exports::herald::plugin::targeting::{
    CustomerView, Decision as WitDecision, Event,
};
use super::bindings::types::{PluginInfo, Setting};
use super::http_policy::{AllowList, HttpMode};
use super::state::StoreState;
use super::worlds::{TargetingInstance, TargetingPre};
use super::{describe_call_error, Contract, Limits, PluginKind, PluginServices, Runtime, IO_GRACE};
use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Store;

/// The default fuel budget of one evaluation.
pub const DEFAULT_FUEL: u64 = 11_000_000;

/// What a targeting plugin decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Send now; these variables go to the templates as `target.<name>`.
    Send(Map<String, Value>),
    /// Do not send this occurrence.
    Skip(String),
    /// Ask again at this time.
    Defer(DateTime<Utc>),
    /// The evaluation failed (trap, fuel, memory, deadline, bad answer).
    Failed(String),
}

/// A loaded targeting plugin.
pub struct LoadedTargeting {
    runtime: Arc<Runtime>,
    /// Where it came from.
    pub path: PathBuf,
    pre: TargetingPre,
    /// The contract version the plugin was built against.
    pub contract: Contract,
    /// Memory and deadline per call.
    pub limits: Limits,
    /// Fuel per call.
    pub fuel: u64,
    services: PluginServices,
    namespace: String,
    /// What the plugin said about itself.
    pub info: PluginInfo,
}

impl Runtime {
    /// Load a targeting plugin for `rule`. The runtime must meter fuel
    /// ([`Runtime::with_fuel`]).
    pub async fn load_targeting(
        self: &Arc<Self>,
        path: &Path,
        rule: &str,
        limits: Limits,
        fuel: u64,
        services: PluginServices,
    ) -> Result<LoadedTargeting> {
        let (component, kind, contract) = self.load_component(path)?;
        if kind != PluginKind::Targeting {
            bail!(
                "plugin {} is a {kind} plugin; rule `{rule}` needs a targeting plugin (one that exports herald:plugin/targeting)",
                path.display()
            );
        }
        let pre = self.linker().instantiate_pre(&component).map_err(|e| {
            anyhow!(
                "plugin {} needs an import this host does not offer: {e}",
                path.display()
            )
        })?;
        let pre = TargetingPre::new(pre, contract)
            .map_err(|e| anyhow!("plugin {}: {e}", path.display()))?;
        let mut loaded = LoadedTargeting {
            runtime: self.clone(),
            path: path.to_path_buf(),
            pre,
            contract,
            limits,
            fuel,
            services,
            namespace: format!("targeting:{rule}"),
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                address: super::bindings::types::AddressKind::None,
                settings: Vec::new(),
                accepts_callbacks: false,
            },
        };
        loaded.info = loaded
            .call(|world, store| Box::pin(async move { world.describe(store).await }))
            .await
            .map_err(|e| anyhow!("plugin {} failed in describe(): {e}", path.display()))?
            .0;
        Ok(loaded)
    }
}

type CallFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = wasmtime::Result<T>> + Send + 'a>>;

impl LoadedTargeting {
    fn new_store(&self) -> Result<Store<StoreState>, String> {
        let state = StoreState::new(
            &self.namespace,
            Arc::new(AllowList::default()),
            HttpMode::Live,
            self.limits.memory,
            self.services.clone(),
            Arc::new(Vec::new()),
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(self.fuel)
            .map_err(|e| format!("cannot set the fuel budget: {e}"))?;
        let deadline = Instant::now() + self.limits.timeout;
        crate::plugin::interrupt_at(&mut store, deadline, None);
        Ok(store)
    }

    /// Run one call in a fresh instance; returns its result and the fuel used.
    async fn call<T: Send + 'static>(
        &self,
        f: impl for<'a> FnOnce(&'a TargetingInstance, &'a mut Store<StoreState>) -> CallFuture<'a, T>,
    ) -> Result<(T, u64), String> {
        let mut store = self.new_store()?;
        let call = async {
            let world =
                self.pre.instantiate(&mut store).await.map_err(|e| {
                    format!("cannot instantiate plugin: {}", describe_call_error(&e))
                })?;
            f(&world, &mut store)
                .await
                .map_err(|e| describe_call_error(&e))
        };
        let result = tokio::time::timeout(self.limits.timeout + IO_GRACE, call).await;
        let used = self.fuel - store.get_fuel().unwrap_or(0);
        match result {
            Err(_) => Err(format!("no answer within {:?}", self.limits.timeout)),
            Ok(Err(e)) => Err(e),
            Ok(Ok(v)) => Ok((v, used)),
        }
    }

    /// Evaluate a due reminder. Never an error: failures become
    /// [`Verdict::Failed`] with the reason.
    pub async fn evaluate(
        &self,
        settings: &[Setting],
        customer: CustomerView,
        history: Vec<Event>,
        now: DateTime<Utc>,
    ) -> (Verdict, u64) {
        let settings = settings.to_vec();
        let result = self
            .call(move |world, store| {
                Box::pin(async move {
                    world
                        .evaluate(
                            store,
                            &settings,
                            &customer,
                            &history,
                            now.timestamp_millis(),
                        )
                        .await
                })
            })
            .await;
        match result {
            Err(reason) => (Verdict::Failed(super::bounds::reason(reason)), self.fuel),
            Ok((decision, used)) => (bounded(verdict(decision, now)), used),
        }
    }
}

/// `verdict` with its skip or failure reason cut to [`super::bounds::MAX_REASON`].
fn bounded(verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Skip(reason) => Verdict::Skip(super::bounds::reason(reason)),
        Verdict::Failed(reason) => Verdict::Failed(super::bounds::reason(reason)),
        other => other,
    }
}

fn verdict(decision: WitDecision, now: DateTime<Utc>) -> Verdict {
    match decision {
        WitDecision::Skip(reason) => Verdict::Skip(reason),
        WitDecision::Defer(ms) => match Utc.timestamp_millis_opt(ms).single() {
            Some(t) if t > now => Verdict::Defer(t),
            _ => Verdict::Failed(format!(
                "deferred to {ms} ms, which is not a time after now; defer to a later time or skip"
            )),
        },
        WitDecision::Send(vars) => {
            let mut map = Map::new();
            for var in vars {
                let valid_name = !var.name.is_empty()
                    && var
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid_name {
                    return Verdict::Failed(format!(
                        "variable name `{}` is not letters, digits and `_`",
                        var.name
                    ));
                }
                match serde_json::from_str::<Value>(&var.value_json) {
                    Ok(v) => {
                        map.insert(var.name, v);
                    }
                    Err(e) => {
                        return Verdict::Failed(format!(
                            "variable `{}` is not JSON ({e}): {}",
                            var.name, var.value_json
                        ))
                    }
                }
            }
            Verdict::Send(map)
        }
    }
}
