//! The plugin tools' sandbox: a fuel-metered engine on which a `.wasm` is
//! probed (which world and version it implements, what it imports and
//! exports, with a clear refusal for anything else) and on which channel
//! plugins are called with a fuel budget, so `herald plugin test` can report
//! the instructions a send used and stop a runaway plugin.
//!
//! Targeting plugins run through [`crate::plugin::targeting`], which already
//! meters fuel; channel plugins run here because a deployment's channel
//! engine does not meter.

use crate::plugin::bindings::channel_api::{Message, Receipt, SendError};
use crate::plugin::bindings::types::{PluginInfo, Setting};
use crate::plugin::http_policy::{AllowList, HttpMode};
use crate::plugin::run_budget::{BudgetExceeded, Budgeted, RunBudget};
use crate::plugin::state::StoreState;
use crate::plugin::worlds::{ChannelInstance, ChannelPre};
use crate::plugin::{Contract, PluginKind, PluginServices, Runtime};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::Store;

/// The WIT package plugins are built against.
pub const PACKAGE: &str = "herald:plugin";

/// What a component is, as far as its type says.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Which Herald world it implements.
    pub kind: PluginKind,
    /// The contract version it was built against.
    pub contract: Contract,
    /// Its imports (interface names, e.g. `wasi:http/outgoing-handler@0.2.12`).
    pub imports: Vec<String>,
    /// Its exports.
    pub exports: Vec<String>,
    /// The compiled component.
    pub component: Component,
}

/// The world name of a kind.
pub fn world_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Channel => "channel-plugin",
        PluginKind::Targeting => "targeting-plugin",
    }
}

fn expectation() -> String {
    let current = Contract::CURRENT.version();
    format!(
        "Herald expects a component exporting {PACKAGE}/channel@{current} (world channel-plugin) or {PACKAGE}/targeting@{current} (world targeting-plugin), or the same of an earlier version it serves ({})",
        Contract::served_list()
    )
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

/// Compile `path` and find out which Herald world it implements. Anything
/// else — not a file, not a component, another package or version — is an
/// error naming what the file is and what Herald expects.
pub fn probe(runtime: &Runtime, path: &Path) -> Result<Probe> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read plugin {}", path.display()))?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        bail!(
            "{} is not a WebAssembly file (no `\\0asm` header); {}",
            path.display(),
            expectation()
        );
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        bail!(
            "{} is a core WebAssembly module, not a component; build the plugin with `cargo build --target wasm32-wasip2` (which produces a component); {}",
            path.display(),
            expectation()
        );
    }
    // The cached path first (fast, and the same check a deployment makes);
    // on refusal, compile here to say what the component does export.
    let (component, kind, contract) = match runtime.load_component(path) {
        Ok(found) => found,
        Err(load_error) => {
            let component = Component::new(runtime.engine(), &bytes).map_err(|e| {
                anyhow!(
                    "{} is not a valid WebAssembly component: {}",
                    path.display(),
                    e.to_string().lines().next().unwrap_or("unknown error")
                )
            })?;
            let (imports, exports) = names(runtime, &component);
            let served = Contract::SERVED.map(|c| c.version());
            let other_version = exports.iter().find_map(|e| {
                let rest = e.strip_prefix(PACKAGE)?;
                let (_, version) = rest.split_once('@')?;
                (!served.contains(&version)).then(|| version.to_string())
            });
            if let Some(version) = other_version {
                bail!(
                    "{} was built for {PACKAGE}@{version} (it exports {}), but this Herald serves {}: rebuild it against the WIT of this Herald (wit/herald.wit); {}",
                    path.display(),
                    list(&exports),
                    Contract::served_list(),
                    expectation()
                );
            }
            if !exports.iter().any(|e| e.starts_with(PACKAGE)) {
                bail!(
                    "{} is not a Herald plugin: it exports {} (and imports {}); {}",
                    path.display(),
                    list(&exports),
                    list(&imports),
                    expectation()
                );
            }
            return Err(load_error);
        }
    };
    let (imports, exports) = names(runtime, &component);
    Ok(Probe {
        kind,
        contract,
        imports,
        exports,
        component,
    })
}

fn names(runtime: &Runtime, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty
        .imports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let exports = ty
        .exports(runtime.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    (imports, exports)
}

/// Why a call did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The plugin panicked, aborted or otherwise trapped.
    Trap,
    /// It used up its instruction budget.
    OutOfFuel,
    /// It ran past its wall-clock deadline.
    Timeout,
    /// It ran (rather than waited on I/O) past its run-time budget.
    RunTime,
    /// It tried to grow memory past its cap.
    Memory,
    /// It could not be instantiated.
    Instantiate,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::Trap => "trap",
            FailureKind::OutOfFuel => "out of fuel",
            FailureKind::Timeout => "timeout",
            FailureKind::RunTime => "run-time budget",
            FailureKind::Memory => "memory limit",
            FailureKind::Instantiate => "cannot instantiate",
        })
    }
}

/// A call that ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// What happened, in one line.
    pub message: String,
}

fn failure(e: &wasmtime::Error) -> CallFailure {
    let message = crate::plugin::describe_call_error(e);
    let kind = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => FailureKind::OutOfFuel,
        Some(wasmtime::Trap::Interrupt) => FailureKind::Timeout,
        Some(_) => FailureKind::Trap,
        None if e.downcast_ref::<BudgetExceeded>().is_some() => FailureKind::RunTime,
        None if message.starts_with("exceeded its memory limit") => FailureKind::Memory,
        None => FailureKind::Trap,
    };
    CallFailure { kind, message }
}

/// One finished call: the answer (or why there is none), the fuel it used
/// and how long it took.
#[derive(Debug)]
pub struct Metered<T> {
    /// The answer.
    pub result: Result<T, CallFailure>,
    /// Instructions used (the whole budget when it ran out).
    pub fuel: u64,
    /// Wall time of the call, instantiation included.
    pub elapsed: Duration,
}

/// A channel plugin ready to be called on the fuel-metered engine.
pub struct MeteredChannel {
    runtime: Arc<Runtime>,
    pre: ChannelPre,
    /// Memory cap per call.
    pub memory: usize,
    /// Wall deadline per call.
    pub timeout: Duration,
    /// Run-time budget per call ([`crate::plugin::run_budget`]).
    pub cpu: Duration,
    /// Instruction budget per call.
    pub fuel: u64,
    services: PluginServices,
    allowed: Arc<AllowList>,
    secrets: Arc<Vec<String>>,
    namespace: String,
}

impl MeteredChannel {
    /// Prepare a probed channel plugin. `runtime` must meter fuel.
    pub fn new(
        runtime: Arc<Runtime>,
        probe: &Probe,
        path: &Path,
        limits: (crate::plugin::Limits, u64),
        services: PluginServices,
        allowed: AllowList,
    ) -> Result<Self> {
        let pre = runtime
            .linker()
            .instantiate_pre(&probe.component)
            .map_err(|e| {
                anyhow!(
                    "plugin {} needs an import this host does not offer: {e}",
                    path.display()
                )
            })?;
        let pre = ChannelPre::new(pre, probe.contract)
            .map_err(|e| anyhow!("plugin {}: {e}", path.display()))?;
        let (
            crate::plugin::Limits {
                memory,
                timeout,
                cpu,
            },
            fuel,
        ) = limits;
        Ok(Self {
            runtime,
            pre,
            memory,
            timeout,
            cpu,
            fuel,
            services,
            allowed: Arc::new(allowed),
            secrets: Arc::new(Vec::new()),
            namespace: "plugin-test".to_string(),
        })
    }

    /// Mask these values in what the plugin logs.
    pub fn set_secrets(&mut self, secrets: Vec<String>) {
        self.secrets = Arc::new(secrets);
    }

    fn new_store(
        &self,
        mode: HttpMode,
        started: Instant,
    ) -> Result<(Store<StoreState>, Arc<RunBudget>), CallFailure> {
        let state = StoreState::new(
            &self.namespace,
            self.allowed.clone(),
            mode,
            self.memory,
            self.services.clone(),
            self.secrets.clone(),
        );
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.fuel).map_err(|e| CallFailure {
            kind: FailureKind::Instantiate,
            message: format!("cannot set the fuel budget (is the engine metering fuel?): {e}"),
        })?;
        let budget = RunBudget::new(self.cpu, started);
        crate::plugin::interrupt_at(&mut store, started + self.timeout, Some(budget.clone()));
        Ok((store, budget))
    }

    async fn call<T: Send + 'static>(
        &self,
        mode: HttpMode,
        f: impl for<'a> FnOnce(&'a ChannelInstance, &'a mut Store<StoreState>) -> CallFuture<'a, T>,
    ) -> Metered<T> {
        let started = Instant::now();
        let (mut store, budget) = match self.new_store(mode, started) {
            Ok(s) => s,
            Err(e) => {
                return Metered {
                    result: Err(e),
                    fuel: 0,
                    elapsed: started.elapsed(),
                }
            }
        };
        let result = {
            let call = std::pin::pin!(async {
                let world = self
                    .pre
                    .instantiate(&mut store)
                    .await
                    .map_err(|e| CallFailure {
                        kind: FailureKind::Instantiate,
                        message: format!(
                            "cannot instantiate plugin: {}",
                            crate::plugin::describe_call_error(&e)
                        ),
                    })?;
                f(&world, &mut store).await.map_err(|e| failure(&e))
            });
            let call = Budgeted::new(call, budget);
            match tokio::time::timeout(self.timeout + crate::plugin::IO_GRACE, call).await {
                Ok(r) => r,
                Err(_) => Err(CallFailure {
                    kind: FailureKind::Timeout,
                    message: format!("no answer within {:?}", self.timeout),
                }),
            }
        };
        let elapsed = started.elapsed();
        let fuel = self.fuel - store.get_fuel().unwrap_or(0);
        let result = result.map_err(|mut e| {
            e.message = crate::plugin::redact(&e.message, &self.secrets);
            e
        });
        Metered {
            result,
            fuel,
            elapsed,
        }
    }

    /// Call `describe`.
    pub async fn describe(&self) -> Result<PluginInfo> {
        self.call(HttpMode::Sink(Default::default()), |world, store| {
            Box::pin(async move { world.describe(store).await })
        })
        .await
        .result
        .map_err(|e| anyhow!("describe() failed ({}): {}", e.kind, e.message))
    }

    /// Call `send` once with HTTP in `mode`.
    pub async fn send(
        &self,
        settings: &[Setting],
        message: &Message,
        mode: HttpMode,
    ) -> Metered<Result<Receipt, SendError>> {
        let settings = settings.to_vec();
        let message = message.clone();
        self.call(mode, move |world, store| {
            Box::pin(async move { world.send(store, &settings, &message).await })
        })
        .await
    }
}

type CallFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = wasmtime::Result<T>> + Send + 'a>>;
