//! The WebAssembly plugin runtime: one wasmtime engine with the pooling
//! allocator and epoch interruption, components compiled once and cached on
//! disk, an `InstancePre` per plugin and a fresh instance per call, each call
//! capped in memory (all its memories together), run time and wall time,
//! its log and what it returns bounded, with no filesystem or environment,
//! and HTTP, TCP and TLS ([`tls`], verified by the host) only through the
//! channel's allow-list.
//!
//! A plugin that traps, loops, runs out of memory or overruns its deadline
//! fails only that call; the host carries on.

pub mod address;
pub mod bindings;
pub mod bounds;
mod cache;
pub mod contract;
pub mod http_policy;
pub mod kv;
mod log;
pub mod memory;
mod redact;
pub mod run_budget;
pub mod send_task;
pub(crate) mod state;
pub mod targeting;
pub mod tls;
pub mod tls_trust;
pub(crate) mod worlds;

use anyhow::{anyhow, bail, Context, Result};
use bindings::channel_api::{
    CallbackError, CallbackRequest, CallbackResult, Message, Receipt, SendError,
};
use bindings::types::{AddressKind, PluginInfo, Setting};
pub use contract::{Contract, PluginKind};
use http_policy::{AllowList, HttpMode};
pub use kv::KvBackend;
pub use redact::redact;
use run_budget::{BudgetExceeded, Budgeted, RunBudget};
pub use state::PluginServices;
use state::StoreState;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ComponentExportIndex, Linker, TypedFunc};
use wasmtime::{
    Config as EngineConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};
use worlds::{ChannelInstance, ChannelPre};

/// Default memory cap of one call.
pub const DEFAULT_MEMORY: usize = 64 << 20;
/// Default wall deadline of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How long past its deadline a plugin blocked in I/O (running no code the
/// epoch can interrupt) is given before the call is abandoned.
pub(crate) const IO_GRACE: Duration = Duration::from_millis(100);
/// Bytes of each pooled memory, table and stack slot kept resident between calls.
const KEEP_RESIDENT: usize = 1 << 18;
/// Store states of finished sends kept per channel for reuse (as many as
/// sends ran at once, up to this).
const SPARE_STATES: usize = 64;

/// The typed `send` export of the channel interface.
type SendFunc<'a> = TypedFunc<(&'a [Setting], &'a Message), (Result<Receipt, SendError>,)>;

/// Limits applied to every call of a plugin.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap in bytes.
    pub memory: usize,
    /// Wall-clock deadline.
    pub timeout: Duration,
    /// Run-time budget: time spent running rather than waiting on I/O
    /// ([`run_budget`]; channel plugins only, targeting plugins are bounded
    /// by fuel).
    pub cpu: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            cpu: run_budget::DEFAULT_CPU,
        }
    }
}

/// The shared engine and its linker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    cache_dir: PathBuf,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Build the engine. `max_memory` is the largest memory cap any plugin
    /// will get (the pool reserves slots of that size).
    pub fn new(cache_dir: PathBuf, max_memory: usize) -> Result<Runtime> {
        Self::build(cache_dir, max_memory, false)
    }

    /// An engine that meters every instruction, for targeting plugins with a
    /// fuel budget per call. (Channel plugins run on an engine without
    /// metering: it costs every instruction a little.)
    pub fn with_fuel(cache_dir: PathBuf, max_memory: usize) -> Result<Runtime> {
        Self::build(cache_dir, max_memory, true)
    }

    fn build(cache_dir: PathBuf, max_memory: usize, fuel: bool) -> Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(200)
            .total_core_instances(800)
            .total_memories(400)
            .total_tables(400)
            .total_stacks(200)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(max_memory.max(DEFAULT_MEMORY))
            // Keep the first 256 KiB of each slot mapped between calls instead
            // of returning them to the kernel: a fresh instance per call then
            // costs no page faults or madvise for the memory a typical send
            // touches. Plugins built here use a 128 KiB stack
            // (.cargo/config.toml) so that memory is at the start of the slot.
            // Measured by `herald bench`: 31 µs → 12 µs per call.
            // Measured and left off (docs/performance.md, "Plugin calls"):
            // `pagemap_scan` (its ioctl costs as much as the memset it saves),
            // `decommit_batch_size`, `table_lazy_init(false)`, no
            // copy-on-write memory images.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT);
        let mut config = EngineConfig::new();
        config
            .consume_fuel(fuel)
            .epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&config).map_err(|e| anyhow!("cannot create the wasm engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("{e}"))?;
        bindings::host_api::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow!("{e}"))?;
        bindings::tls_api::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow!("{e}"))?;
        contract::add_v0_1_to_linker(&mut linker).map_err(|e| anyhow!("{e}"))?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("herald-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .context("cannot start the epoch thread")?;
        }
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            stop_ticker,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker every plugin is instantiated with.
    pub(crate) fn linker(&self) -> &Linker<StoreState> {
        &self.linker
    }

    /// Compile (or load from the cache) a component and check which world
    /// and contract version it implements.
    pub fn load_component(&self, path: &Path) -> Result<(Component, PluginKind, Contract)> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot read plugin {}: build the plugins first (scripts/build-plugins)",
                path.display()
            )
        })?;
        cache::check_dir(&self.cache_dir)?;
        let component = cache::load_or_compile(&self.engine, &self.cache_dir, &bytes)
            .with_context(|| format!("{} is not a valid WebAssembly component", path.display()))?;
        let (kind, contract) = contract::world_of(&self.engine, &component)
            .map_err(|e| anyhow!("plugin {}: {e}", path.display()))?;
        Ok((component, kind, contract))
    }

    /// Load a channel plugin and ask it to describe itself.
    pub async fn load_channel(
        self: &Arc<Self>,
        path: &Path,
        channel: &str,
        limits: Limits,
        allowed: AllowList,
        services: PluginServices,
    ) -> Result<LoadedChannel> {
        let (component, kind, contract) = self.load_component(path)?;
        if kind != PluginKind::Channel {
            bail!(
                "plugin {} is a {kind} plugin; channel `{channel}` needs a channel plugin (one that exports {})",
                path.display(),
                PluginKind::Channel.export()
            );
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            anyhow!(
                "plugin {} needs an import this host does not offer: {e}",
                path.display()
            )
        })?;
        let pre = ChannelPre::new(pre, contract)
            .map_err(|e| anyhow!("plugin {}: {e}", path.display()))?;
        // The fast path of `send` serves the current contract; an older one
        // goes through its adapter.
        let send_index = match &pre {
            ChannelPre::Current(current) => Some(
                send_export_index(current.instance_pre().component())
                    .map_err(|e| anyhow!("plugin {}: {e}", path.display()))?,
            ),
            ChannelPre::V0_1(_) => None,
        };
        let mut loaded = LoadedChannel {
            runtime: self.clone(),
            channel: channel.to_string(),
            path: path.to_path_buf(),
            pre,
            contract,
            send_index,
            call_seconds: crate::metrics::plugin_call_histogram(channel),
            spare: Default::default(),
            limits,
            allowed: Arc::new(allowed),
            services,
            secrets: Arc::new(Vec::new()),
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                address: AddressKind::None,
                settings: Vec::new(),
                accepts_callbacks: false,
            },
        };
        // describe() instantiates through the typed bindings, which check
        // the type of every function of the channel interface, `send`
        // included: `send_func` relies on that.
        loaded.info = loaded
            .describe()
            .await
            .map_err(|e| anyhow!("plugin {} failed in describe(): {e}", path.display()))?;
        Ok(loaded)
    }
}

/// The outcome of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider accepted it.
    Delivered {
        /// The provider's message id.
        provider_message_id: String,
    },
    /// Worth retrying.
    Retryable {
        /// What went wrong.
        reason: String,
        /// The provider's hint.
        retry_after: Option<Duration>,
    },
    /// The call ended without an answer (timed out, trapped, or the host
    /// failed mid-call): the message may or may not have reached the
    /// provider. The channel's `uncertain` setting says whether it is sent
    /// again or held for an operator.
    Uncertain {
        /// What happened.
        reason: String,
    },
    /// Will not succeed.
    Permanent {
        /// What went wrong.
        reason: String,
    },
    /// The recipient refused this channel; suppress them on it.
    Unsubscribed {
        /// What the provider said.
        reason: String,
    },
    /// The address does not exist (a hard bounce, a number not in service,
    /// push tokens the provider no longer knows): never retried; dead push
    /// tokens are forgotten.
    InvalidAddress {
        /// What the provider said.
        reason: String,
    },
}

/// A loaded channel plugin.
pub struct LoadedChannel {
    runtime: Arc<Runtime>,
    /// The channel name from the config.
    pub channel: String,
    /// Where the plugin came from.
    pub path: PathBuf,
    pre: ChannelPre,
    /// The contract version the plugin was built against.
    pub contract: Contract,
    /// `send` within the channel interface, found once (current contract only).
    send_index: Option<ComponentExportIndex>,
    /// The `herald_plugin_call_seconds` histogram of this channel.
    call_seconds: prometheus::Histogram,
    /// States of finished sends, without and with TCP
    /// ([`StoreState::allows_tcp`]), for the next sends.
    spare: [Mutex<Vec<StoreState>>; 2],
    /// Limits per call.
    pub limits: Limits,
    allowed: Arc<AllowList>,
    services: PluginServices,
    secrets: Arc<Vec<String>>,
    /// What the plugin said about itself.
    pub info: PluginInfo,
}

impl LoadedChannel {
    /// The resolved secret values of this channel's settings: masked as
    /// `[redacted]` in everything the plugin logs or returns.
    pub fn set_secrets(&mut self, secrets: Vec<String>) {
        self.secrets = Arc::new(secrets);
    }

    /// `text` with this channel's secrets masked.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    /// A store for one call that starts `now`, with the state a finished
    /// send left when there is one ([`StoreState::reuse`]), and the call's
    /// run-time budget (run the call through [`Self::limited`]).
    fn new_store(&self, mode: HttpMode, now: Instant) -> (Store<StoreState>, Arc<RunBudget>) {
        let spare = self.spare[StoreState::allows_tcp(&self.allowed, &mode) as usize]
            .lock()
            .expect("spare store states")
            .pop();
        let state = match spare {
            Some(mut state) => {
                state.reuse(mode, self.secrets.clone());
                state
            }
            None => StoreState::new(
                &self.channel,
                self.allowed.clone(),
                mode,
                self.limits.memory,
                self.services.clone(),
                self.secrets.clone(),
            ),
        };
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        // At every epoch tick (10 ms) the plugin either yields to the
        // executor, so a busy plugin does not starve other tasks, or, past
        // its deadline or its run-time budget, is stopped. A plugin waiting
        // on I/O runs no code to interrupt: the timeout around the call
        // covers that.
        let budget = RunBudget::new(self.limits.cpu, now);
        interrupt_at(&mut store, now + self.limits.timeout, Some(budget.clone()));
        (store, budget)
    }

    /// `call`, metered against `budget` and abandoned past the deadline of a
    /// call that started at `started` (plus [`IO_GRACE`]).
    async fn limited<F: std::future::Future + Unpin>(
        &self,
        started: Instant,
        budget: Arc<RunBudget>,
        call: F,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        within(
            started + self.limits.timeout + IO_GRACE,
            Budgeted::new(call, budget),
        )
        .await
    }

    /// Drop the store of a finished send (its instance goes back to the
    /// pool, its memory reset) and keep its state for a later send.
    fn recycle(&self, store: Store<StoreState>) {
        let mut state = store.into_data();
        state.finish();
        let mut spare = self.spare[state.tcp() as usize]
            .lock()
            .expect("spare store states");
        if spare.len() < SPARE_STATES {
            spare.push(state);
        }
    }

    /// A fresh instance of the plugin in `store` and its `send`.
    ///
    /// Cheaper than [`Self::instantiate`]: the bindings look up and
    /// type-check all three functions of the channel interface on every
    /// instantiation, this only finds `send`, by the index found at load.
    async fn send_func<'a>(
        &self,
        store: &mut Store<StoreState>,
        send_index: ComponentExportIndex,
    ) -> Result<SendFunc<'a>, String> {
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut *store)
            .await
            .map_err(|e| format!("cannot instantiate plugin: {}", describe_error(&e)))?;
        let func = instance
            .get_func(&mut *store, send_index)
            .ok_or_else(|| "the plugin does not export send".to_string())?;
        // SAFETY: the type of `send` in this component was checked when it
        // was loaded (describe() instantiates through the typed bindings,
        // which check it), and every instance is of the same component.
        Ok(unsafe { SendFunc::new_unchecked(func) })
    }

    async fn instantiate(&self, store: &mut Store<StoreState>) -> Result<ChannelInstance, String> {
        self.pre
            .instantiate(store)
            .await
            .map_err(|e| format!("cannot instantiate plugin: {}", describe_error(&e)))
    }

    /// Call `describe`.
    pub async fn describe(&self) -> Result<PluginInfo, String> {
        let started = Instant::now();
        let (mut store, budget) = self.new_store(HttpMode::Live, started);
        let call = std::pin::pin!(async {
            let world = self.instantiate(&mut store).await?;
            world
                .describe(&mut store)
                .await
                .map_err(|e| describe_error(&e))
        });
        match self.limited(started, budget, call).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "describe() did not return within {:?}",
                self.limits.timeout
            )),
        }
    }

    /// Send one message. Never fails as a Rust error: every problem becomes
    /// a retryable or permanent outcome with its reason.
    pub async fn send(
        &self,
        settings: &[Setting],
        message: &Message,
        mode: HttpMode,
    ) -> SendOutcome {
        let started = Instant::now();
        let (mut store, budget) = self.new_store(mode, started);
        let result = {
            // Pinned here, not moved into `within`: the future is large.
            let call = std::pin::pin!(async {
                let Some(send_index) = self.send_index else {
                    let world = self.instantiate(&mut store).await?;
                    return world
                        .send(&mut store, settings, message)
                        .await
                        .map_err(|e| describe_error(&e));
                };
                let send = self.send_func(&mut store, send_index).await?;
                send.call_async(&mut store, (settings, message))
                    .await
                    .map(|(result,)| result)
                    .map_err(|e| describe_error(&e))
            });
            self.limited(started, budget, call).await
        };
        if result.is_ok() {
            self.recycle(store);
        } else {
            // Abandoned at its deadline: nothing of the call is kept.
            drop(store);
        }
        let outcome = match result {
            Err(_) => SendOutcome::Uncertain {
                reason: format!(
                    "plugin timed out: no answer within {:?}",
                    self.limits.timeout
                ),
            },
            Ok(Err(trap)) => SendOutcome::Uncertain {
                reason: format!("plugin failed: {trap}"),
            },
            Ok(Ok(Ok(receipt))) => SendOutcome::Delivered {
                provider_message_id: receipt.provider_message_id,
            },
            Ok(Ok(Err(SendError::Retryable(e)))) => SendOutcome::Retryable {
                reason: e.reason,
                retry_after: e.retry_after_ms.map(Duration::from_millis),
            },
            Ok(Ok(Err(SendError::Permanent(reason)))) => SendOutcome::Permanent { reason },
            Ok(Ok(Err(SendError::Unsubscribed(reason)))) => SendOutcome::Unsubscribed { reason },
            Ok(Ok(Err(SendError::InvalidAddress(reason)))) => {
                SendOutcome::InvalidAddress { reason }
            }
        };
        let outcome = self.bounded(outcome);
        crate::metrics::plugin_call(&self.call_seconds, started.elapsed());
        tracing::debug!(channel = %self.channel, elapsed_us = started.elapsed().as_micros() as u64, ?outcome, "plugin send");
        outcome
    }
}

impl LoadedChannel {
    /// `outcome` as the host keeps it: secrets masked, then reasons and the
    /// provider message id cut to their [`bounds`].
    fn bounded(&self, outcome: SendOutcome) -> SendOutcome {
        let reason = |text: String| bounds::reason(redact::redact_owned(text, &self.secrets));
        match outcome {
            SendOutcome::Delivered {
                provider_message_id,
            } => SendOutcome::Delivered {
                provider_message_id: bounds::provider_id(redact::redact_owned(
                    provider_message_id,
                    &self.secrets,
                )),
            },
            SendOutcome::Retryable {
                reason: text,
                retry_after,
            } => SendOutcome::Retryable {
                reason: reason(text),
                retry_after,
            },
            SendOutcome::Uncertain { reason: text } => SendOutcome::Uncertain {
                reason: reason(text),
            },
            SendOutcome::Permanent { reason: text } => SendOutcome::Permanent {
                reason: reason(text),
            },
            SendOutcome::Unsubscribed { reason: text } => SendOutcome::Unsubscribed {
                reason: reason(text),
            },
            SendOutcome::InvalidAddress { reason: text } => SendOutcome::InvalidAddress {
                reason: reason(text),
            },
        }
    }

    /// Hand a provider's callback request to the plugin. Traps, timeouts and
    /// errors come back as text (secrets masked).
    pub async fn handle_callback(
        &self,
        settings: &[Setting],
        request: &CallbackRequest,
    ) -> Result<Result<CallbackResult, CallbackError>, String> {
        let started = Instant::now();
        let (mut store, budget) = self.new_store(HttpMode::Live, started);
        let call = std::pin::pin!(async {
            let world = self.instantiate(&mut store).await?;
            world
                .handle_callback(&mut store, settings, request)
                .await
                .map_err(|e| describe_error(&e))
        });
        let result = match self.limited(started, budget, call).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "handle-callback() did not return within {:?}",
                self.limits.timeout
            )),
        };
        let reason = |text: &str| bounds::reason(self.redact(text));
        result.map_err(|e| reason(&e)).map(|r| {
            r.map(bounded_callback).map_err(|e| match e {
                CallbackError::Unauthorized(m) => CallbackError::Unauthorized(reason(&m)),
                CallbackError::BadRequest(m) => CallbackError::BadRequest(reason(&m)),
                CallbackError::Unsupported => CallbackError::Unsupported,
            })
        })
    }
}

/// A callback's result as the host keeps it: every report's provider
/// message id and reason, every reply's sender and text, and the answer to
/// the provider cut to their [`bounds`].
fn bounded_callback(mut result: CallbackResult) -> CallbackResult {
    use bindings::channel_api::CallbackEvent;
    for event in &mut result.events {
        match event {
            CallbackEvent::Report(report) => {
                report.provider_message_id =
                    bounds::provider_id(std::mem::take(&mut report.provider_message_id));
                report.reason = report.reason.take().map(bounds::reason);
            }
            CallbackEvent::Reply(reply) => {
                reply.sender = bounds::cut(std::mem::take(&mut reply.sender), bounds::MAX_ADDRESS);
                reply.text = bounds::reason(std::mem::take(&mut reply.text));
            }
        }
    }
    let body = std::mem::take(&mut result.response.body);
    result.response.body = bounds::cut(body, bounds::MAX_RESPONSE);
    result
}

/// `call`, abandoned at `deadline`. A call that finishes in its first poll
/// (a plugin that waits on no I/O: the epoch deadline covers its running
/// code) needs no timer.
async fn within<F: std::future::Future + Unpin>(
    deadline: Instant,
    mut call: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    if let std::task::Poll::Ready(output) = futures::poll!(&mut call) {
        return Ok(output);
    }
    tokio::time::timeout_at(deadline.into(), call).await
}

/// The index of `send` within the channel interface a component exports.
fn send_export_index(component: &Component) -> Result<ComponentExportIndex> {
    let interface = format!(
        "{}@{}",
        PluginKind::Channel.export(),
        Contract::CURRENT.version()
    );
    let index = component
        .get_export_index(None, &interface)
        .ok_or_else(|| anyhow!("it does not export {interface}"))?;
    component
        .get_export_index(Some(&index), "send")
        .ok_or_else(|| anyhow!("its {interface} has no `send`"))
}

/// Turn a wasmtime error into one line (shared with the targeting runtime).
pub(crate) fn describe_call_error(e: &wasmtime::Error) -> String {
    if let Some(wasmtime::Trap::OutOfFuel) = e.downcast_ref::<wasmtime::Trap>() {
        return "ran out of fuel (its instruction budget)".to_string();
    }
    describe_error(e)
}

/// Turn a wasmtime error into one line that says what the plugin did.
fn describe_error(e: &wasmtime::Error) -> String {
    if let Some(over) = e.downcast_ref::<BudgetExceeded>() {
        return over.to_string();
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => "timed out: interrupted at its deadline".to_string(),
            wasmtime::Trap::UnreachableCodeReached => {
                "trapped (unreachable: the plugin panicked or aborted, e.g. after running out of memory)".to_string()
            }
            other => format!("trapped: {other}"),
        };
    }
    let text = format!("{e:#}");
    if text.contains("memory") && (text.contains("limit") || text.contains("grow")) {
        return format!(
            "exceeded its memory limit: {}",
            text.lines().next().unwrap_or("")
        );
    }
    text.lines().next().unwrap_or("unknown error").to_string()
}

/// Interrupt the guest of `store` once `deadline` has passed, or end its
/// call with [`BudgetExceeded`] once it has used up `budget`, checked at
/// every epoch tick (10 ms), yielding to the async runtime in between. The
/// call's key-value waits are charged to `budget` too.
pub(crate) fn interrupt_at(
    store: &mut Store<StoreState>,
    deadline: Instant,
    budget: Option<Arc<RunBudget>>,
) {
    store.data_mut().budget = budget.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let now = Instant::now();
        if now >= deadline {
            return Ok(wasmtime::UpdateDeadline::Interrupt);
        }
        if let Some(over) = budget.as_ref().and_then(|b| b.exceeded(now)) {
            return Err(over.into());
        }
        Ok(wasmtime::UpdateDeadline::Yield(1))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_exporting(dir: &Path, name: &str) -> PathBuf {
        // Component text; wasmtime's `wat` feature (enabled for tests) compiles it.
        let wat = format!(r#"(component (instance $i) (export "{name}" (instance $i)))"#);
        let path = dir.join("p.wasm");
        std::fs::write(&path, wat).unwrap();
        path
    }

    #[tokio::test]
    async fn within_needs_no_timer_for_a_ready_call_and_abandons_a_late_one() {
        let past = Instant::now();
        assert_eq!(within(past, std::future::ready(7)).await.ok(), Some(7));
        let never = std::future::pending::<()>();
        assert!(within(past, never).await.is_err());
    }

    /// Instantiate `wat` (a component) in a store capped at `cap` bytes.
    async fn instantiate_capped(runtime: &Runtime, wat: &str, cap: usize) -> Result<(), String> {
        let component = Component::new(runtime.engine(), wat).map_err(|e| e.to_string())?;
        let services = PluginServices {
            kv: KvBackend::Memory(Default::default()),
            clock: Arc::new(crate::clock::SystemClock),
        };
        let state = StoreState::new(
            "memories",
            Arc::new(AllowList::default()),
            HttpMode::Live,
            cap,
            services,
            Arc::new(Vec::new()),
        );
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        runtime
            .linker()
            .instantiate_async(&mut store, &component)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    }

    #[tokio::test]
    async fn the_memory_cap_covers_all_of_a_components_memories() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(dir.path().join("cache"), 128 << 20).unwrap();
        // 640 pages of 64 KiB: 40 MiB each.
        let one = r#"(component
            (core module $a (memory 640))
            (core instance (instantiate $a)))"#;
        let two = r#"(component
            (core module $a (memory 640))
            (core module $b (memory 640))
            (core instance (instantiate $a))
            (core instance (instantiate $b)))"#;
        let cap = 64 << 20;
        instantiate_capped(&runtime, one, cap).await.unwrap();
        let err = instantiate_capped(&runtime, two, cap)
            .await
            .expect_err("80 MiB over two memories is past a 64 MiB cap");
        assert!(err.contains("memory limit"), "{err}");
        instantiate_capped(&runtime, two, 100 << 20).await.unwrap();
    }

    #[test]
    fn worlds_and_versions_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(dir.path().join("cache"), DEFAULT_MEMORY).unwrap();

        let path = component_exporting(dir.path(), "herald:plugin/channel@0.2.0");
        let (_, kind, contract) = runtime.load_component(&path).unwrap();
        assert_eq!((kind, contract), (PluginKind::Channel, Contract::V0_2));
        let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .collect();
        assert_eq!(cached.len(), 1, "the compiled component is cached on disk");
        let (_, kind, _) = runtime.load_component(&path).unwrap();
        assert_eq!(kind, PluginKind::Channel, "and loads from the cache");

        let path = component_exporting(dir.path(), "herald:plugin/targeting@0.1.0");
        let (_, kind, contract) = runtime.load_component(&path).unwrap();
        assert_eq!((kind, contract), (PluginKind::Targeting, Contract::V0_1));

        let path = component_exporting(dir.path(), "herald:plugin/channel@0.9.0");
        let err = runtime.load_component(&path).unwrap_err().to_string();
        assert!(
            err.contains("herald:plugin@0.9.0")
                && err.contains("herald:plugin@0.1.0, herald:plugin@0.2.0"),
            "{err}"
        );

        let path = component_exporting(dir.path(), "acme:sms/sender@1.0.0");
        let err = runtime.load_component(&path).unwrap_err().to_string();
        assert!(
            err.contains("is it a Herald plugin") && err.contains("acme:sms/sender@1.0.0"),
            "{err}"
        );
    }
}
