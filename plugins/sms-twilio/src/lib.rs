//! `herald-sms-twilio`: placeholder until the plugin is written.

use herald_pdk::{AddressKind, Guest, Message, PluginInfo, Receipt, SendError, Setting};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sms-twilio".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            accepts_callbacks: false,
            settings: vec![],
        }
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        herald_pdk::no_callbacks()
    }

    fn send(_settings: Vec<Setting>, _message: Message) -> Result<Receipt, SendError> {
        Err(SendError::Permanent("not written yet".into()))
    }
}

herald_pdk::export!(Plugin);
