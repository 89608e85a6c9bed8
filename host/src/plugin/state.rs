//! Per-call store state of a plugin: its WASI context (no files, no
//! environment, the host's clock, TCP only to the channel's `tcp://` allow-list
//! entries), its `wasi:http` policy, its memory cap ([`super::memory`]), and
//! the `herald:plugin/host` capabilities (log, bounded per call by
//! [`super::log`]; key-value, which [`super::kv`] implements, its waits
//! charged to the call's run-time budget; `tls` connections, which
//! [`super::tls`] implements, held in the call's resource table).

use super::bindings::host_api::{self, LogLevel};
use super::bindings::tls_api;
use super::http_policy::{AllowList, HttpMode, HttpPolicy};
use super::kv::KvBackend;
use super::log::LogQuota;
use super::memory::MemoryCap;
use super::run_budget::RunBudget;
use super::tls::Connection;
use crate::clock::SharedClock;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What the host lends every call of a plugin.
#[derive(Clone)]
pub struct PluginServices {
    /// Key-value storage.
    pub kv: KvBackend,
    /// The host's clock (virtual under `simulate`).
    pub clock: SharedClock,
}

/// The wall clock a plugin sees: the host's clock, so simulated runs are consistent.
struct PluginWallClock(SharedClock);

impl HostWallClock for PluginWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        let ms = self.0.now().timestamp_millis().max(0) as u64;
        Duration::from_millis(ms)
    }
}

/// The `T` of every plugin `Store<T>`.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    policy: HttpPolicy,
    /// Memory cap of this call, over all its memories.
    pub limits: MemoryCap,
    services: PluginServices,
    namespace: String,
    secrets: Arc<Vec<String>>,
    /// What this call has logged.
    log: LogQuota,
    /// The run-time budget of this call, charged with its key-value waits
    /// (none for targeting plugins, which fuel bounds).
    pub(crate) budget: Option<Arc<RunBudget>>,
}

impl StoreState {
    /// Fresh state for one call of the plugin of `channel`.
    pub fn new(
        channel: &str,
        allowed: Arc<AllowList>,
        mode: HttpMode,
        memory: usize,
        services: PluginServices,
        secrets: Arc<Vec<String>>,
    ) -> Self {
        StoreState {
            wasi: Self::wasi_ctx(channel, &allowed, &mode, &services),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            policy: HttpPolicy {
                channel: channel.to_string(),
                allowed,
                mode,
            },
            limits: MemoryCap::new(memory),
            services,
            namespace: channel.to_string(),
            secrets,
            log: LogQuota::default(),
            budget: None,
        }
    }

    /// Whether a call in `mode` may open TCP sockets: only where the operator
    /// listed `tcp://host:port`, and never under the simulation's recording
    /// sink (no real network there).
    pub(crate) fn allows_tcp(allowed: &AllowList, mode: &HttpMode) -> bool {
        allowed.allows_tcp() && matches!(mode, HttpMode::Live)
    }

    /// The WASI context of a call: no files, no environment or arguments,
    /// stdio discarded, the host's clock, TCP only to the allow-list.
    fn wasi_ctx(
        channel: &str,
        allowed: &Arc<AllowList>,
        mode: &HttpMode,
        services: &PluginServices,
    ) -> WasiCtx {
        let tcp = Self::allows_tcp(allowed, mode);
        let mut wasi = WasiCtx::builder();
        wasi.allow_tcp(tcp)
            .allow_udp(false)
            .allow_ip_name_lookup(tcp && allowed.tcp_needs_lookup())
            .wall_clock(PluginWallClock(services.clock.clone()));
        // Without TCP, wasmtime-wasi refuses every socket before any address
        // is checked (and its default check denies all), so the check below
        // is only installed, and allocated, for channels that list
        // `tcp://` entries.
        if tcp {
            let check_list = allowed.clone();
            let log_channel = channel.to_string();
            wasi.socket_addr_check(move |addr, usage| {
                let list = check_list.clone();
                let channel = log_channel.clone();
                Box::pin(async move {
                    use wasmtime_wasi::sockets::SocketAddrUse;
                    let refusal = match usage {
                        SocketAddrUse::TcpConnect => list.tcp_refusal(addr).await,
                        // The implicit bind to an ephemeral local port
                        // that precedes a connect; no listening.
                        SocketAddrUse::TcpBind
                            if addr.ip().is_unspecified() && addr.port() == 0 =>
                        {
                            None
                        }
                        _ => Some("only outgoing TCP connections are allowed".to_string()),
                    };
                    if let Some(why) = &refusal {
                        tracing::warn!(%channel, %addr, ?usage, "plugin socket refused: {why}");
                    }
                    refusal.is_none()
                })
            });
        }
        wasi.build()
    }

    /// The state of a finished call, made ready for another call of the same
    /// channel: every resource the call left (streams, sockets, HTTP
    /// requests in flight) dropped with its resource table, and a new HTTP
    /// context. What is kept holds nothing the guest can write: the WASI
    /// context (no files, environment or arguments; stdio discarded; the
    /// host's clocks; random generators, which simply continue), the
    /// allow-list, the memory cap and the services.
    pub(crate) fn finish(&mut self) {
        self.table = ResourceTable::new();
        self.http = WasiHttpCtx::new();
        self.limits.reset();
        self.log = LogQuota::default();
        self.budget = None;
    }

    /// Use a [`finish`](StoreState::finish)ed state for a call in `mode` (with
    /// the same TCP permission, [`StoreState::allows_tcp`]) with `secrets`.
    pub(crate) fn reuse(&mut self, mode: HttpMode, secrets: Arc<Vec<String>>) {
        debug_assert_eq!(Self::allows_tcp(&self.policy.allowed, &mode), self.tcp());
        self.policy.mode = mode;
        self.secrets = secrets;
    }

    /// Whether this call may open TCP sockets ([`StoreState::allows_tcp`]).
    pub(crate) fn tcp(&self) -> bool {
        Self::allows_tcp(&self.policy.allowed, &self.policy.mode)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.policy,
        }
    }
}

/// `call` charged to `budget` (when the call has one): its wait counts as
/// run time, and it is abandoned when the budget runs out.
async fn charged<T>(
    budget: Option<Arc<RunBudget>>,
    what: &str,
    call: impl Future<Output = anyhow::Result<T>>,
) -> wasmtime::Result<T> {
    let result = match budget {
        Some(budget) => budget.host_call(call).await?,
        None => call.await,
    };
    result.map_err(|e| wasmtime::format_err!("key-value {what} failed: {e:#}"))
}

impl host_api::Host for StoreState {
    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log
            .write(&self.namespace, level, message, &self.secrets);
        Ok(())
    }

    async fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let now = self.services.clock.now();
        let read = self.services.kv.get(&self.namespace, &key, now);
        charged(self.budget.clone(), "read", read).await
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
    ) -> wasmtime::Result<()> {
        let now = self.services.clock.now();
        let write = self
            .services
            .kv
            .set(&self.namespace, &key, value, ttl_seconds, now);
        charged(self.budget.clone(), "write", write).await
    }

    async fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        let delete = self.services.kv.delete(&self.namespace, &key);
        charged(self.budget.clone(), "delete", delete).await
    }
}

impl super::bindings::types::Host for StoreState {}

impl StoreState {
    /// What this call's plugin may reach over `herald:plugin/tls`.
    fn reach(&self) -> super::tls::Reach<'_> {
        super::tls::Reach {
            channel: &self.policy.channel,
            allowed: &self.policy.allowed,
            live: matches!(self.policy.mode, HttpMode::Live),
        }
    }
}

impl tls_api::Host for StoreState {}

/// The WIT form of a connection failure.
fn wit_error(e: super::tls::TlsError) -> tls_api::TlsError {
    use super::tls::TlsError as E;
    match e {
        E::Denied(m) => tls_api::TlsError::Denied(m),
        E::Io(m) => tls_api::TlsError::Io(m),
        E::Tls(m) => tls_api::TlsError::Tls(m),
    }
}

impl tls_api::HostConnection for StoreState {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        mode: tls_api::Mode,
    ) -> wasmtime::Result<Result<Resource<Connection>, tls_api::TlsError>> {
        let mode = match mode {
            tls_api::Mode::Implicit => super::tls::Mode::Implicit,
            tls_api::Mode::Plain => super::tls::Mode::Plain,
        };
        match Connection::connect(&self.reach(), &host, port, mode).await {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(wit_error(e))),
        }
    }

    async fn read(
        &mut self,
        conn: Resource<Connection>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, tls_api::TlsError>> {
        Ok(self
            .table
            .get_mut(&conn)?
            .read(max)
            .await
            .map_err(wit_error))
    }

    async fn write(
        &mut self,
        conn: Resource<Connection>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), tls_api::TlsError>> {
        Ok(self
            .table
            .get_mut(&conn)?
            .write(&bytes)
            .await
            .map_err(wit_error))
    }

    async fn start_tls(
        &mut self,
        conn: Resource<Connection>,
    ) -> wasmtime::Result<Result<(), tls_api::TlsError>> {
        Ok(self
            .table
            .get_mut(&conn)?
            .start_tls()
            .await
            .map_err(wit_error))
    }

    async fn is_encrypted(&mut self, conn: Resource<Connection>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&conn)?.is_encrypted())
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}
