//! `herald-pdk`: the plugin development kit for Herald channel plugins.
//!
//! This crate owns the guest side of the `herald:plugin@0.1.0` contract
//! (`wit/herald.wit`, world `channel-plugin`): it generates the bindings
//! (including `wasi:http` for outgoing requests) and wraps them in a small,
//! safe API so a channel plugin only has to implement [`Guest`] and call
//! [`export!`]:
//!
//! ```ignore
//! use herald_pdk::{Guest, Message, PluginInfo, Receipt, SendError, Setting};
//!
//! struct MyChannel;
//!
//! impl Guest for MyChannel {
//!     fn describe() -> PluginInfo { /* ... */ }
//!     fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
//!         /* ... */
//!     }
//! }
//!
//! herald_pdk::export!(MyChannel);
//! ```
//!
//! What it offers besides the generated types:
//! - [`log`]: writes to the host's log, attributed to the plugin;
//! - [`kv`]: the plugin's own key-value store on the host;
//! - [`Settings`]: lookup of the channel's configured settings;
//! - [`http`]: a small blocking HTTP client over `wasi:http/outgoing-handler`,
//!   with JSON bodies ([`http::Request::post_json`], [`http::Response::json`])
//!   and [`http::Response::error_for_status`];
//! - [`SettingSpec::required`], [`SettingSpec::optional`] and
//!   [`SettingSpec::secret`]: the settings a plugin declares in `describe`;
//! - [`classify_http_status`] and `From<http::HttpError> for SendError`: the
//!   usual mapping of provider answers onto retryable / permanent errors.

pub mod http;

/// The bindings generated from `wit/herald.wit` (world `channel-plugin`),
/// including the `wasi:http`, `wasi:io` and `wasi:clocks` interfaces it uses.
///
/// Plugin authors normally use the re-exports at the crate root instead.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "herald:plugin/channel-plugin",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "herald_pdk::bindings",
    });
}

/// Exports a type implementing [`Guest`] as the plugin's `channel`
/// interface: `herald_pdk::export!(MyChannel);`.
pub use bindings::export;

pub use bindings::exports::herald::plugin::channel::{
    CallbackError, CallbackEvent, CallbackRequest, CallbackResponse, CallbackResult,
    DeliveryReport, DeliveryState, Field, Guest, InboundReply, Message, Receipt, Recipient,
    RetryableError, SendError,
};

pub mod form;
pub mod time;

/// The answer of a plugin that takes no provider callbacks.
pub fn no_callbacks() -> Result<CallbackResult, CallbackError> {
    Err(CallbackError::Unsupported)
}

/// A plain-text HTTP answer to a provider's callback.
pub fn callback_reply(
    events: Vec<CallbackEvent>,
    status: u16,
    content_type: &str,
    body: impl Into<String>,
) -> Result<CallbackResult, CallbackError> {
    Ok(CallbackResult {
        events,
        response: CallbackResponse {
            status,
            content_type: content_type.to_string(),
            body: body.into(),
        },
    })
}

impl Message {
    /// The value of the rule's rendered field `name`, if the rule has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }
}

impl SettingSpec {
    /// A setting the plugin can do without: `SettingSpec::optional("from", "Sender number")`.
    pub fn optional(key: &str, description: &str) -> Self {
        Self {
            key: key.to_string(),
            description: description.to_string(),
            secret: false,
            required: false,
        }
    }

    /// A setting the host refuses to start without.
    pub fn required(key: &str, description: &str) -> Self {
        Self {
            required: true,
            ..Self::optional(key, description)
        }
    }

    /// Marks the setting secret: the host never prints or logs its value.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

impl CallbackRequest {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
pub use bindings::herald::plugin::types::{
    AddressKind, PluginInfo, Setting, SettingSpec, Timestamp,
};

/// Writes lines to the host's log, attributed to the calling plugin.
pub mod log {
    use crate::bindings::herald::plugin::host::{self, LogLevel};

    /// Logs `msg` at trace level.
    pub fn trace(msg: &str) {
        host::log(LogLevel::Trace, msg);
    }

    /// Logs `msg` at debug level.
    pub fn debug(msg: &str) {
        host::log(LogLevel::Debug, msg);
    }

    /// Logs `msg` at info level.
    pub fn info(msg: &str) {
        host::log(LogLevel::Info, msg);
    }

    /// Logs `msg` at warn level.
    pub fn warn(msg: &str) {
        host::log(LogLevel::Warn, msg);
    }

    /// Logs `msg` at error level.
    pub fn error(msg: &str) {
        host::log(LogLevel::Error, msg);
    }
}

/// The plugin's own key-value store on the host. Keys are namespaced per
/// plugin by the host: no plugin sees another's keys.
pub mod kv {
    use crate::bindings::herald::plugin::host;

    /// Reads the value stored under `key`, if any (and not expired).
    pub fn get(key: &str) -> Option<Vec<u8>> {
        host::kv_get(key)
    }

    /// Reads the value stored under `key` as UTF-8 text; `None` when the key
    /// is missing or its value is not valid UTF-8.
    pub fn get_string(key: &str) -> Option<String> {
        get(key).and_then(|v| String::from_utf8(v).ok())
    }

    /// Stores `value` under `key`, expiring after `ttl_seconds` if given.
    pub fn set(key: &str, value: &[u8], ttl_seconds: Option<u64>) {
        host::kv_set(key, value, ttl_seconds);
    }

    /// Removes `key`; removing a missing key is not an error.
    pub fn delete(key: &str) {
        host::kv_delete(key);
    }
}

/// Read-only lookup over the settings the host passes to `send`.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    settings: &'a [Setting],
}

impl<'a> Settings<'a> {
    /// Wraps the settings list received by `send`.
    pub fn new(settings: &'a [Setting]) -> Self {
        Self { settings }
    }

    /// The value of `key`, if configured. When a key appears more than once
    /// the last occurrence wins.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .map(|s| s.value.as_str())
    }

    /// The value of `key`, or `default` when it is not configured.
    pub fn get_or(&self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of a required setting. A missing (or blank) value is a
    /// permanent error that tells the operator where to add it.
    pub fn required(&self, key: &str) -> Result<&'a str, SendError> {
        match self.get(key) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(SendError::Permanent(format!(
                "missing setting `{key}`: add it under [channels.NAME.settings]"
            ))),
        }
    }
}

impl<'a> From<&'a [Setting]> for Settings<'a> {
    fn from(settings: &'a [Setting]) -> Self {
        Self::new(settings)
    }
}

impl<'a> From<&'a Vec<Setting>> for Settings<'a> {
    fn from(settings: &'a Vec<Setting>) -> Self {
        Self::new(settings)
    }
}

/// Maps an HTTP status to the outcome of a send.
///
/// - 2xx: `Ok(())`;
/// - 408, 429 and 5xx: [`SendError::Retryable`], with `retry-after-ms` taken
///   from a `Retry-After` header given in seconds (an HTTP-date is ignored);
/// - anything else: [`SendError::Permanent`].
pub fn classify_http_status(status: u16, retry_after: Option<&str>) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Retryable(RetryableError {
            reason: format!("provider answered HTTP {status}"),
            retry_after_ms: retry_after.and_then(parse_retry_after_ms),
        })),
        _ => Err(SendError::Permanent(format!(
            "provider answered HTTP {status}"
        ))),
    }
}

/// Parses a `Retry-After` value given as delay-seconds into milliseconds.
/// Returns `None` for an HTTP-date or anything unparsable.
pub fn parse_retry_after_ms(value: &str) -> Option<u64> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(secs.saturating_mul(1000))
}

impl From<http::HttpError> for SendError {
    fn from(err: http::HttpError) -> Self {
        if err.denied {
            SendError::Permanent(format!(
                "request denied by host: {} is not in this channel's allowed_hosts",
                err.host
            ))
        } else if err.invalid_request {
            SendError::Permanent(err.to_string())
        } else {
            SendError::Retryable(RetryableError {
                reason: err.to_string(),
                retry_after_ms: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(key: &str, value: &str) -> Setting {
        Setting {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn settings_lookup() {
        let list = vec![setting("a", "1"), setting("b", ""), setting("a", "2")];
        let s = Settings::new(&list);
        assert_eq!(s.get("a"), Some("2"));
        assert_eq!(s.get("c"), None);
        assert_eq!(s.get_or("c", "x"), "x");
        assert_eq!(s.required("a").unwrap(), "2");
        match s.required("b") {
            Err(SendError::Permanent(m)) => {
                assert_eq!(
                    m,
                    "missing setting `b`: add it under [channels.NAME.settings]"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn setting_specs() {
        let s = SettingSpec::required("auth_token", "API token").secret();
        assert_eq!(
            (s.key.as_str(), s.description.as_str(), s.secret, s.required),
            ("auth_token", "API token", true, true)
        );
        let s = SettingSpec::optional("from", "Sender");
        assert!(!s.secret && !s.required);
    }

    #[test]
    fn status_classification() {
        assert!(classify_http_status(200, None).is_ok());
        assert!(classify_http_status(204, Some("5")).is_ok());
        for s in [408, 429, 500, 503, 599] {
            match classify_http_status(s, Some(" 7 ")) {
                Err(SendError::Retryable(r)) => assert_eq!(r.retry_after_ms, Some(7000)),
                other => panic!("{s}: {other:?}"),
            }
        }
        match classify_http_status(503, Some("Wed, 21 Oct 2015 07:28:00 GMT")) {
            Err(SendError::Retryable(r)) => assert_eq!(r.retry_after_ms, None),
            other => panic!("{other:?}"),
        }
        for s in [301, 400, 401, 404, 422] {
            assert!(matches!(
                classify_http_status(s, None),
                Err(SendError::Permanent(_))
            ));
        }
    }
}
