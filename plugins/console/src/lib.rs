//! `herald-console`: a channel plugin that "delivers" each reminder by
//! writing it to the host's log at info level.
//!
//! It owns nothing but the rendering of that log entry: one header line
//! `[{prefix}] to {customer-id} <{email or phone or '-'}>: {subject}`
//! followed by the text body. It needs no address and reaches no network,
//! which makes it the channel for demos, dry runs and tests.

use herald_pdk::{
    AddressKind, Guest, Message, PluginInfo, Receipt, SendError, Setting, SettingSpec, Settings,
};

/// The prefix used when the `prefix` setting is absent.
const DEFAULT_PREFIX: &str = "console";

struct Console;

impl Guest for Console {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "console".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            accepts_callbacks: false,
            settings: vec![SettingSpec {
                key: "prefix".to_string(),
                description: format!(
                    "Text shown in brackets at the start of each logged message (default `{DEFAULT_PREFIX}`)"
                ),
                secret: false,
                required: false,
            }],
        }
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        herald_pdk::no_callbacks()
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let prefix = settings.get_or("prefix", DEFAULT_PREFIX);
        herald_pdk::log::info(&render(prefix, &message));
        Ok(Receipt {
            provider_message_id: format!("console-{}", message.idempotency_key),
        })
    }
}

/// The log entry for `message`: a header line, then the text body.
fn render(prefix: &str, message: &Message) -> String {
    let recipient = &message.recipient;
    let address = recipient
        .email
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(recipient.phone.as_deref().filter(|s| !s.is_empty()))
        .unwrap_or("-");
    let mut out = format!(
        "[{prefix}] to {} <{address}>: {}",
        recipient.customer_id, message.subject
    );
    let text = message.text.trim_end();
    if !text.is_empty() {
        out.push('\n');
        out.push_str(text);
    }
    out
}

herald_pdk::export!(Console);
