//! `herald-pdk`: the plugin development kit for Herald channel plugins.
//!
//! This crate owns the guest side of the `herald:plugin@0.2.0` contract
//! (`wit/herald.wit`, world `channel-plugin`; a plugin built with it runs on
//! a Herald that serves 0.2.0, and Herald keeps serving 0.1.0 plugins built
//! with earlier versions of this crate): it generates the bindings
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
//! - [`Settings`]: lookup of the channel's configured settings (raw,
//!   required, or trimmed with blanks as absent: [`Settings::optional`]);
//! - [`tls`]: TCP connections opened by the host, secured with TLS that the
//!   host verifies (implicit, or STARTTLS-style upgrades), as `Read + Write`;
//! - [`http`]: a small blocking HTTP client over `wasi:http/outgoing-handler`,
//!   with JSON bodies ([`http::Request::post_json`], [`http::Response::json`])
//!   and [`http::Response::error_for_status`];
//! - [`SettingSpec::required`], [`SettingSpec::optional`] and
//!   [`SettingSpec::secret`]: the settings a plugin declares in `describe`;
//! - [`classify_http_status`], [`SendError::retryable`] and
//!   `From<http::HttpError> for SendError`: the usual mapping of provider
//!   answers onto retryable / permanent errors;
//! - [`form`] (form bodies and query strings, [`CallbackRequest::query`]),
//!   [`time`] (calendar dates, RFC 3339, the host's clock) and
//!   [`constant_time_eq`] for callback signatures, and [`replay`] (the
//!   freshness window and seen-request store that refuse a replayed one);
//! - `testing` (with the `testing` feature, for unit tests): a sample
//!   message, provider answers and callback requests to feed pure functions.

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
    DeliveryReport, DeliveryState, Field, Guest, InboundReply, Message, PushToken, Receipt,
    Recipient, RetryableError, SendError,
};

pub mod form;
pub mod replay;
pub mod time;
pub mod tls;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

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

/// `value` trimmed, or `None` when it is absent or blank: how an optional
/// setting, rule field or recipient address is read.
pub fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Whether `a` and `b` are equal, in a time that does not depend on where
/// they first differ (for comparing a callback's signature or token with the
/// expected one). Slices of different lengths are unequal.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SendError {
    /// A [`SendError::Retryable`] with `reason` and the provider's
    /// `retry_after_ms` hint, if it gave one.
    pub fn retryable(reason: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        SendError::Retryable(RetryableError {
            reason: reason.into(),
            retry_after_ms,
        })
    }
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
        http::find_header(&self.headers, name)
    }

    /// The URL's query parameters, decoded, in order (none when the URL has
    /// no query); look one up with [`form::get`].
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.url.split_once('?').map_or("", |(_, q)| q);
        let query = query.split('#').next().unwrap_or_default();
        form::decode(query.as_bytes())
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

    /// The value of `key` trimmed, or `None` when it is not configured or
    /// blank. (Secrets whose spaces count, such as passwords, want
    /// [`Settings::get`].)
    pub fn optional(&self, key: &str) -> Option<&'a str> {
        non_empty(self.get(key))
    }

    /// The value of `key` trimmed, or `default` when it is not configured
    /// or blank.
    pub fn optional_or(&self, key: &str, default: &'a str) -> &'a str {
        self.optional(key).unwrap_or(default)
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
        408 | 429 | 500..=599 => Err(SendError::retryable(
            format!("provider answered HTTP {status}"),
            retry_after.and_then(parse_retry_after_ms),
        )),
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
        } else if err.prohibited_address() {
            SendError::Permanent(format!(
                "request refused by host: {} resolves to a private or loopback address; set allow_private_network = true on the channel if the provider is on your own network",
                err.host
            ))
        } else if err.invalid_request {
            SendError::Permanent(err.to_string())
        } else {
            SendError::retryable(err.to_string(), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{callback, permanent, retryable, settings};

    #[test]
    fn settings_lookup() {
        let list = settings(&[("a", "1"), ("b", ""), ("a", "2"), ("c", "  x ")]);
        let s = Settings::new(&list);
        assert_eq!(s.get("a"), Some("2"));
        assert_eq!(s.get("d"), None);
        assert_eq!(s.get_or("d", "x"), "x");
        assert_eq!(s.get_or("b", "x"), "");
        assert_eq!(s.required("a").unwrap(), "2");
        assert_eq!(
            permanent(s.required("b")),
            "missing setting `b`: add it under [channels.NAME.settings]"
        );
        assert_eq!(s.optional("c"), Some("x"));
        assert_eq!(s.optional("b"), None);
        assert_eq!(s.optional("d"), None);
        assert_eq!(s.optional_or("c", "y"), "x");
        assert_eq!(s.optional_or("b", "y"), "y");
        assert_eq!(s.optional_or("d", "y"), "y");
        assert_eq!(non_empty(Some(" \t")), None);
        assert_eq!(non_empty(Some(" v ")), Some("v"));
        assert_eq!(non_empty(None), None);
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
            let r = retryable(classify_http_status(s, Some(" 7 ")));
            assert_eq!(r.retry_after_ms, Some(7000), "{s}");
        }
        let r = retryable(classify_http_status(
            503,
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
        ));
        assert_eq!(r.retry_after_ms, None);
        for s in [301, 400, 401, 404, 422] {
            permanent(classify_http_status(s, None));
        }
    }

    #[test]
    fn a_prohibited_address_is_a_permanent_failure_naming_the_switch() {
        let err = http::HttpError {
            url: "http://localhost:1/x".into(),
            host: "localhost".into(),
            message: "destination-IP-prohibited".into(),
            denied: false,
            invalid_request: false,
        };
        assert!(err.prohibited_address());
        let m = permanent(Err::<(), _>(SendError::from(err)));
        assert!(
            m.contains("private") && m.contains("allow_private_network"),
            "{m}"
        );
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn callback_query() {
        let q = |url: &str| callback("POST", url).query();
        assert_eq!(
            q("https://h.example/hooks/sms?token=a%2Bb&x=1#frag"),
            testing::pairs(&[("token", "a+b"), ("x", "1")])
        );
        assert!(q("https://h.example/hooks/sms").is_empty());
    }
}
