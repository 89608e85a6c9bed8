//! The channel and targeting worlds of every served contract version behind
//! one type each: prepared once per plugin ([`ChannelPre`],
//! [`TargetingPre`]), instantiated per call, and called in the current
//! types, an older version's values converted by [`super::contract`]. Owns
//! no limits, stores or deadlines: its callers run these calls inside
//! theirs.

use super::bindings::channel::{ChannelPlugin, ChannelPluginPre};
use super::bindings::channel_api::{
    CallbackError, CallbackRequest, CallbackResult, Message, Receipt, SendError,
};
use super::bindings::targeting::exports::herald::plugin::targeting::{
    CustomerView, Decision, Event,
};
use super::bindings::targeting::{TargetingPlugin, TargetingPluginPre};
use super::bindings::types::{PluginInfo, Setting};
use super::bindings::v0_1;
use super::contract::{self as adapt, Contract};
use super::state::StoreState;
use wasmtime::component::InstancePre;
use wasmtime::Store;

/// A channel plugin ready to instantiate, in the version it targets.
pub(crate) enum ChannelPre {
    /// The current contract.
    Current(ChannelPluginPre<StoreState>),
    /// herald:plugin@0.1.0.
    V0_1(v0_1::channel::ChannelPluginPre<StoreState>),
}

/// One instance of a channel plugin.
pub(crate) enum ChannelInstance {
    /// The current contract.
    Current(ChannelPlugin),
    /// herald:plugin@0.1.0.
    V0_1(v0_1::channel::ChannelPlugin),
}

impl ChannelPre {
    /// Check that `pre`'s component implements the channel world of `contract`.
    pub(crate) fn new(pre: InstancePre<StoreState>, contract: Contract) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_2 => ChannelPre::Current(ChannelPluginPre::new(pre)?),
            Contract::V0_1 => ChannelPre::V0_1(v0_1::channel::ChannelPluginPre::new(pre)?),
        })
    }

    /// The untyped instance-pre underneath.
    pub(crate) fn instance_pre(&self) -> &InstancePre<StoreState> {
        match self {
            ChannelPre::Current(pre) => pre.instance_pre(),
            ChannelPre::V0_1(pre) => pre.instance_pre(),
        }
    }

    /// A fresh instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<ChannelInstance> {
        Ok(match self {
            ChannelPre::Current(pre) => {
                ChannelInstance::Current(pre.instantiate_async(store).await?)
            }
            ChannelPre::V0_1(pre) => ChannelInstance::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl ChannelInstance {
    /// `describe`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<PluginInfo> {
        match self {
            ChannelInstance::Current(w) => w.herald_plugin_channel().call_describe(store).await,
            ChannelInstance::V0_1(w) => Ok(adapt::info_from_v0_1(
                w.herald_plugin_channel().call_describe(store).await?,
            )),
        }
    }

    /// `send`.
    pub(crate) async fn send(
        &self,
        store: &mut Store<StoreState>,
        settings: &[Setting],
        message: &Message,
    ) -> wasmtime::Result<Result<Receipt, SendError>> {
        match self {
            ChannelInstance::Current(w) => {
                w.herald_plugin_channel()
                    .call_send(store, settings, message)
                    .await
            }
            ChannelInstance::V0_1(w) => {
                let settings = adapt::settings_to_v0_1(settings);
                let message = adapt::message_to_v0_1(message);
                let result = w
                    .herald_plugin_channel()
                    .call_send(store, &settings, &message)
                    .await?;
                Ok(adapt::send_from_v0_1(result))
            }
        }
    }

    /// `handle-callback`.
    pub(crate) async fn handle_callback(
        &self,
        store: &mut Store<StoreState>,
        settings: &[Setting],
        request: &CallbackRequest,
    ) -> wasmtime::Result<Result<CallbackResult, CallbackError>> {
        match self {
            ChannelInstance::Current(w) => {
                w.herald_plugin_channel()
                    .call_handle_callback(store, settings, request)
                    .await
            }
            ChannelInstance::V0_1(w) => {
                let settings = adapt::settings_to_v0_1(settings);
                let request = adapt::callback_request_to_v0_1(request);
                let result = w
                    .herald_plugin_channel()
                    .call_handle_callback(store, &settings, &request)
                    .await?;
                Ok(adapt::callback_from_v0_1(result))
            }
        }
    }
}

/// A targeting plugin ready to instantiate, in the version it targets.
pub(crate) enum TargetingPre {
    /// The current contract.
    Current(TargetingPluginPre<StoreState>),
    /// herald:plugin@0.1.0.
    V0_1(v0_1::targeting::TargetingPluginPre<StoreState>),
}

/// One instance of a targeting plugin.
pub(crate) enum TargetingInstance {
    /// The current contract.
    Current(TargetingPlugin),
    /// herald:plugin@0.1.0.
    V0_1(v0_1::targeting::TargetingPlugin),
}

impl TargetingPre {
    /// Check that `pre`'s component implements the targeting world of `contract`.
    pub(crate) fn new(pre: InstancePre<StoreState>, contract: Contract) -> wasmtime::Result<Self> {
        Ok(match contract {
            Contract::V0_2 => TargetingPre::Current(TargetingPluginPre::new(pre)?),
            Contract::V0_1 => TargetingPre::V0_1(v0_1::targeting::TargetingPluginPre::new(pre)?),
        })
    }

    /// A fresh instance in `store`.
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<TargetingInstance> {
        Ok(match self {
            TargetingPre::Current(pre) => {
                TargetingInstance::Current(pre.instantiate_async(store).await?)
            }
            TargetingPre::V0_1(pre) => TargetingInstance::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

impl TargetingInstance {
    /// `describe`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<PluginInfo> {
        match self {
            TargetingInstance::Current(w) => w.herald_plugin_targeting().call_describe(store).await,
            TargetingInstance::V0_1(w) => Ok(adapt::info_from_v0_1(
                w.herald_plugin_targeting().call_describe(store).await?,
            )),
        }
    }

    /// `evaluate`.
    pub(crate) async fn evaluate(
        &self,
        store: &mut Store<StoreState>,
        settings: &[Setting],
        customer: &CustomerView,
        history: &[Event],
        now_ms: i64,
    ) -> wasmtime::Result<Decision> {
        match self {
            TargetingInstance::Current(w) => {
                w.herald_plugin_targeting()
                    .call_evaluate(store, settings, customer, history, now_ms)
                    .await
            }
            TargetingInstance::V0_1(w) => {
                let settings = adapt::settings_to_v0_1(settings);
                let customer = adapt::customer_to_v0_1(customer);
                let history = adapt::events_to_v0_1(history);
                let decision = w
                    .herald_plugin_targeting()
                    .call_evaluate(store, &settings, &customer, &history, now_ms)
                    .await?;
                Ok(adapt::decision_from_v0_1(decision))
            }
        }
    }
}
