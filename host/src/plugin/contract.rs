//! The versions of the `herald:plugin` contract this host serves, and the
//! adapter that serves the frozen 0.1.0 version on top of the current one:
//! which version a component targets ([`world_of`]), its values converted
//! to the current types and back, and the 0.1.0 `host` imports answered by
//! the current implementation. The rest of the host speaks only the current
//! types. Owns no plugin calls (those are in [`super`] and
//! [`super::targeting`]) and no decisions about outcomes.
//!
//! What 0.1.0 lacks is filled in the one safe way: a 0.1.0 plugin never
//! sees push tokens (it has no field for them) and never answers
//! `invalid-address` (it says `permanent`).

use super::bindings::{channel_api as now, host_api, targeting as now_targeting, types, v0_1};
use super::state::StoreState;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::Engine;

const CHANNEL_EXPORT: &str = "herald:plugin/channel";
const TARGETING_EXPORT: &str = "herald:plugin/targeting";

/// A version of the contract, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contract {
    /// `herald:plugin@0.1.0`, frozen (`wit/v0.1.0/herald.wit`).
    V0_1,
    /// `herald:plugin@0.2.0`, the current one (`wit/herald.wit`).
    V0_2,
}

impl Contract {
    /// The version new plugins are built against.
    pub const CURRENT: Contract = Contract::V0_2;
    /// Every version this host loads, oldest first.
    pub const SERVED: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

    /// The package version, e.g. `0.1.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    fn from_version(version: &str) -> Option<Contract> {
        Self::SERVED.into_iter().find(|c| c.version() == version)
    }

    /// The served versions as `herald:plugin@0.1.0, herald:plugin@0.2.0`.
    pub fn served_list() -> String {
        Self::SERVED
            .iter()
            .map(|c| format!("herald:plugin@{}", c.version()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "herald:plugin@{}", self.version())
    }
}

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `herald:plugin/channel`.
    Channel,
    /// Exports `herald:plugin/targeting`.
    Targeting,
}

impl PluginKind {
    /// The interface the kind exports, without its version.
    pub fn export(self) -> &'static str {
        match self {
            PluginKind::Channel => CHANNEL_EXPORT,
            PluginKind::Targeting => TARGETING_EXPORT,
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::Channel => "channel",
            PluginKind::Targeting => "targeting",
        })
    }
}

/// Find the Herald interface a component exports and the contract version
/// it targets (the newest, should it export several).
pub fn world_of(engine: &Engine, component: &Component) -> Result<(PluginKind, Contract), String> {
    let ty = component.component_type();
    let mut seen = Vec::new();
    let mut found: Option<(PluginKind, Contract)> = None;
    let mut unknown = None;
    for (name, _) in ty.exports(engine) {
        for kind in [PluginKind::Channel, PluginKind::Targeting] {
            let Some(version) = name
                .strip_prefix(kind.export())
                .and_then(|v| v.strip_prefix('@'))
            else {
                continue;
            };
            match Contract::from_version(version) {
                Some(c) if found.is_none_or(|(_, f)| c > f) => found = Some((kind, c)),
                Some(_) => {}
                None => unknown = Some(version.to_string()),
            }
        }
        seen.push(name.to_string());
    }
    if let Some(found) = found {
        return Ok(found);
    }
    if let Some(version) = unknown {
        return Err(format!(
            "it was built for herald:plugin@{version}, but this host serves {}; rebuild the plugin against the WIT shipped with this Herald, or run a Herald that serves {version}",
            Contract::served_list()
        ));
    }
    Err(format!(
        "it exports neither {CHANNEL_EXPORT} nor {TARGETING_EXPORT} of any served version ({}; exports: {}); is it a Herald plugin?",
        Contract::served_list(),
        if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
    ))
}

/// Add the 0.1.0 `host` imports to `linker` (the current ones are added by
/// the runtime).
pub(crate) fn add_v0_1_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    v0_1::host_api::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)
}

impl v0_1::host_api::Host for StoreState {
    async fn log(
        &mut self,
        level: v0_1::host_api::LogLevel,
        message: String,
    ) -> wasmtime::Result<()> {
        use v0_1::host_api::LogLevel as Old;
        let level = match level {
            Old::Trace => host_api::LogLevel::Trace,
            Old::Debug => host_api::LogLevel::Debug,
            Old::Info => host_api::LogLevel::Info,
            Old::Warn => host_api::LogLevel::Warn,
            Old::Error => host_api::LogLevel::Error,
        };
        host_api::Host::log(self, level, message).await
    }

    async fn kv_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        host_api::Host::kv_get(self, key).await
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
    ) -> wasmtime::Result<()> {
        host_api::Host::kv_set(self, key, value, ttl_seconds).await
    }

    async fn kv_delete(&mut self, key: String) -> wasmtime::Result<()> {
        host_api::Host::kv_delete(self, key).await
    }
}

impl v0_1::types::Host for StoreState {}

/// Settings as 0.1.0 spells them.
pub(crate) fn settings_to_v0_1(settings: &[types::Setting]) -> Vec<v0_1::types::Setting> {
    settings
        .iter()
        .map(|s| v0_1::types::Setting {
            key: s.key.clone(),
            value: s.value.clone(),
        })
        .collect()
}

/// A 0.1.0 plugin's description in the current types.
pub(crate) fn info_from_v0_1(info: v0_1::types::PluginInfo) -> types::PluginInfo {
    use v0_1::types::AddressKind as Old;
    types::PluginInfo {
        name: info.name,
        version: info.version,
        address: match info.address {
            Old::Email => types::AddressKind::Email,
            Old::Phone => types::AddressKind::Phone,
            Old::Wechat => types::AddressKind::Wechat,
            Old::None => types::AddressKind::None,
        },
        settings: info
            .settings
            .into_iter()
            .map(|s| types::SettingSpec {
                key: s.key,
                description: s.description,
                secret: s.secret,
                required: s.required,
            })
            .collect(),
        accepts_callbacks: info.accepts_callbacks,
    }
}

/// A message as 0.1.0 spells it: everything but the push tokens.
pub(crate) fn message_to_v0_1(m: &now::Message) -> v0_1::channel_api::Message {
    let r = &m.recipient;
    v0_1::channel_api::Message {
        idempotency_key: m.idempotency_key.clone(),
        rule: m.rule.clone(),
        recipient: v0_1::channel_api::Recipient {
            customer_id: r.customer_id.clone(),
            name: r.name.clone(),
            email: r.email.clone(),
            phone: r.phone.clone(),
            wechat_openid: r.wechat_openid.clone(),
            locale: r.locale.clone(),
            timezone: r.timezone.clone(),
        },
        subject: m.subject.clone(),
        text: m.text.clone(),
        html: m.html.clone(),
        fields: m
            .fields
            .iter()
            .map(|f| v0_1::channel_api::Field {
                name: f.name.clone(),
                value: f.value.clone(),
            })
            .collect(),
        unsubscribe_url: m.unsubscribe_url.clone(),
        callback_url: m.callback_url.clone(),
        sent_at: m.sent_at,
    }
}

/// A 0.1.0 send result in the current types.
pub(crate) fn send_from_v0_1(
    result: Result<v0_1::channel_api::Receipt, v0_1::channel_api::SendError>,
) -> Result<now::Receipt, now::SendError> {
    use v0_1::channel_api::SendError as Old;
    match result {
        Ok(receipt) => Ok(now::Receipt {
            provider_message_id: receipt.provider_message_id,
        }),
        Err(Old::Retryable(e)) => Err(now::SendError::Retryable(now::RetryableError {
            reason: e.reason,
            retry_after_ms: e.retry_after_ms,
        })),
        Err(Old::Permanent(reason)) => Err(now::SendError::Permanent(reason)),
        Err(Old::Unsubscribed(reason)) => Err(now::SendError::Unsubscribed(reason)),
    }
}

/// A callback request as 0.1.0 spells it.
pub(crate) fn callback_request_to_v0_1(
    request: &now::CallbackRequest,
) -> v0_1::channel_api::CallbackRequest {
    v0_1::channel_api::CallbackRequest {
        method: request.method.clone(),
        url: request.url.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
    }
}

/// A 0.1.0 callback answer in the current types.
pub(crate) fn callback_from_v0_1(
    result: Result<v0_1::channel_api::CallbackResult, v0_1::channel_api::CallbackError>,
) -> Result<now::CallbackResult, now::CallbackError> {
    use v0_1::channel_api as old;
    match result {
        Ok(r) => Ok(now::CallbackResult {
            events: r.events.into_iter().map(event_from_v0_1).collect(),
            response: now::CallbackResponse {
                status: r.response.status,
                content_type: r.response.content_type,
                body: r.response.body,
            },
        }),
        Err(old::CallbackError::Unsupported) => Err(now::CallbackError::Unsupported),
        Err(old::CallbackError::Unauthorized(m)) => Err(now::CallbackError::Unauthorized(m)),
        Err(old::CallbackError::BadRequest(m)) => Err(now::CallbackError::BadRequest(m)),
    }
}

fn event_from_v0_1(event: v0_1::channel_api::CallbackEvent) -> now::CallbackEvent {
    use v0_1::channel_api as old;
    match event {
        old::CallbackEvent::Report(r) => now::CallbackEvent::Report(now::DeliveryReport {
            provider_message_id: r.provider_message_id,
            state: match r.state {
                old::DeliveryState::Delivered => now::DeliveryState::Delivered,
                old::DeliveryState::Undelivered => now::DeliveryState::Undelivered,
            },
            reason: r.reason,
        }),
        old::CallbackEvent::Reply(r) => now::CallbackEvent::Reply(now::InboundReply {
            sender: r.sender,
            text: r.text,
        }),
    }
}

/// The targeting interface's current types.
use now_targeting::exports::herald::plugin::targeting as now_t;

/// A customer as a 0.1.0 targeting plugin reads it.
pub(crate) fn customer_to_v0_1(c: &now_t::CustomerView) -> v0_1::targeting_api::CustomerView {
    v0_1::targeting_api::CustomerView {
        external_id: c.external_id.clone(),
        name: c.name.clone(),
        region: c.region.clone(),
        timezone: c.timezone.clone(),
        locale: c.locale.clone(),
        state: c.state.clone(),
        attributes_json: c.attributes_json.clone(),
        created_at: c.created_at,
    }
}

/// Events as a 0.1.0 targeting plugin reads them.
pub(crate) fn events_to_v0_1(events: &[now_t::Event]) -> Vec<v0_1::targeting_api::Event> {
    events
        .iter()
        .map(|e| v0_1::targeting_api::Event {
            kind: e.kind.clone(),
            at: e.at,
            properties_json: e.properties_json.clone(),
        })
        .collect()
}

/// A 0.1.0 targeting decision in the current types.
pub(crate) fn decision_from_v0_1(d: v0_1::targeting_api::Decision) -> now_t::Decision {
    use v0_1::targeting_api::Decision as Old;
    match d {
        Old::Send(vars) => now_t::Decision::Send(
            vars.into_iter()
                .map(|v| now_t::Variable {
                    name: v.name,
                    value_json: v.value_json,
                })
                .collect(),
        ),
        Old::Skip(reason) => now_t::Decision::Skip(reason),
        Old::Defer(at) => now_t::Decision::Defer(at),
    }
}
