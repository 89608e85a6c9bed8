//! Building blocks for a plugin's native unit tests: a sample message as the
//! engine sends it, provider answers, provider callbacks, settings, and
//! assertions on a send's outcome.
//!
//! Compiled only with the `testing` feature, which a plugin enables for its
//! tests alone, so none of it reaches the `.wasm`:
//!
//! ```toml
//! [dev-dependencies]
//! herald-pdk = { path = "../pdk", features = ["testing"] }
//! ```
//!
//! Unit tests run natively (`cargo test`), where the host's capabilities
//! (`http::send`, `kv`, `log`) are not there: test the pure parts of a
//! plugin (building the request body, mapping the provider's answer,
//! parsing a callback) and leave whole sends to `herald plugin test`.
//!
//! ```
//! use herald_pdk::testing::{permanent, response, retryable, sample_message};
//!
//! let message = sample_message();
//! assert_eq!(message.recipient.phone.as_deref(), Some("+15551234567"));
//!
//! let answer = response(429)
//!     .with_header("Retry-After", "30")
//!     .with_json(&serde_json::json!({"error": "slow down"}));
//! assert_eq!(retryable(answer.error_for_status()).retry_after_ms, Some(30_000));
//! assert!(permanent(response(400).error_for_status()).contains("HTTP 400"));
//! ```

use crate::http::Response;
use crate::{CallbackRequest, Field, Message, Recipient, RetryableError, SendError, Setting};
use core::fmt::Debug;

/// The message of rule `trial-ending` to customer `c-42`, as the engine sends
/// it: every address filled in (email, phone, WeChat OpenID), subject, text
/// and HTML, two rendered fields, an unsubscribe link and a callback URL, an
/// idempotency key of the engine's form (`herald:{customer}:{rule}:{trigger}`)
/// and `sent_at` 2024-03-01T08:30:00.123Z. Change what a test needs:
///
/// ```
/// let mut message = herald_pdk::testing::sample_message();
/// message.recipient.email = None;
/// message.fields = herald_pdk::testing::fields(&[("template_id", "SMS_1")]);
/// ```
pub fn sample_message() -> Message {
    Message {
        idempotency_key: "herald:42:trial-ending:created".into(),
        rule: "trial-ending".into(),
        recipient: Recipient {
            customer_id: "c-42".into(),
            name: Some("Ada Lovelace".into()),
            email: Some("ada@example.com".into()),
            phone: Some("+15551234567".into()),
            wechat_openid: Some("oia2TjuEGTNoeX76QEjQNrcURxG8".into()),
            locale: Some("en".into()),
            timezone: "Europe/London".into(),
            push_tokens: vec![crate::PushToken {
                token: "fcm-token-ada-pixel".into(),
                platform: "android".into(),
                app: "com.acme.app".into(),
            }],
        },
        subject: "Your Acme trial ends in 4 days".into(),
        text: "Hi Ada, your Acme trial ends in 4 days.".into(),
        html: Some("<p>Hi Ada, your Acme trial ends in <b>4 days</b>.</p>".into()),
        fields: fields(&[("name", "Ada"), ("days_left", "4")]),
        unsubscribe_url: Some(
            "https://herald.example/unsubscribe?c=c-42&ch=email&s=5f1c0e8d9a2b4c6d8e0f1a2b3c4d5e6f"
                .into(),
        ),
        callback_url: Some("https://herald.example/hooks/sms".into()),
        sent_at: 1_709_281_800_123,
    }
}

/// A message's rendered fields from `(name, value)` pairs.
pub fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
    pairs
        .iter()
        .map(|(name, value)| Field {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
}

/// A channel's settings from `(key, value)` pairs, as `send` receives them.
pub fn settings(pairs: &[(&str, &str)]) -> Vec<Setting> {
    pairs
        .iter()
        .map(|(key, value)| Setting {
            key: key.to_string(),
            value: value.to_string(),
        })
        .collect()
}

/// Owned `(name, value)` pairs, as [`crate::form::decode`] returns them.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A provider's answer with `status`, no headers and an empty body; add
/// them with [`Response::with_header`], [`Response::with_text`],
/// [`Response::with_json`] or [`Response::with_form`].
pub fn response(status: u16) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// A provider's request to `POST /hooks/{channel}`, at `url` (the full URL,
/// with any query), without headers or body; add them with
/// [`CallbackRequest::with_header`], [`CallbackRequest::with_form`],
/// [`CallbackRequest::with_body`] and the like.
pub fn callback(method: &str, url: &str) -> CallbackRequest {
    CallbackRequest {
        method: method.to_string(),
        url: url.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The same builder methods for the two HTTP messages a test makes up: a
/// provider's answer ([`Response`]) and a provider's callback
/// ([`CallbackRequest`]).
macro_rules! http_message_builder {
    ($ty:ty, $what:literal) => {
        impl $ty {
            #[doc = concat!("Adds a header to the ", $what, " (its name lowercased, as the host gives them); a `content-type` replaces an earlier one.")]
            pub fn with_header(mut self, name: &str, value: &str) -> Self {
                let name = name.to_ascii_lowercase();
                if name == "content-type" {
                    self.headers.retain(|(k, _)| k != "content-type");
                }
                self.headers.push((name, value.to_string()));
                self
            }

            #[doc = concat!("Sets the ", $what, "'s body to `body` (raw bytes, no content type).")]
            pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
                self.body = body.into();
                self
            }

            #[doc = concat!("Sets the ", $what, "'s body to `text` (no content type: an HTML error page, an XML push, ...).")]
            pub fn with_text(self, text: &str) -> Self {
                self.with_body(text.as_bytes())
            }

            #[doc = concat!("Sets the ", $what, "'s body to `value` as JSON, with `content-type: application/json`.")]
            pub fn with_json(self, value: &serde_json::Value) -> Self {
                self.with_header("content-type", "application/json")
                    .with_body(value.to_string())
            }

            #[doc = concat!("Sets the ", $what, "'s body to the form-encoded `pairs`, with `content-type: application/x-www-form-urlencoded`.")]
            pub fn with_form(self, pairs: &[(&str, &str)]) -> Self {
                self.with_header("content-type", FORM)
                    .with_body(crate::form::encode(pairs))
            }
        }
    };
}

http_message_builder!(Response, "answer");
http_message_builder!(CallbackRequest, "callback");

/// The reason of a [`SendError::Permanent`]; panics with the outcome when
/// `outcome` is anything else.
#[track_caller]
pub fn permanent<T: Debug>(outcome: Result<T, SendError>) -> String {
    match outcome {
        Err(SendError::Permanent(reason)) => reason,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

/// The [`RetryableError`] of a [`SendError::Retryable`]; panics with the
/// outcome when `outcome` is anything else.
#[track_caller]
pub fn retryable<T: Debug>(outcome: Result<T, SendError>) -> RetryableError {
    match outcome {
        Err(SendError::Retryable(error)) => error,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

/// The reason of a [`SendError::Unsubscribed`]; panics with the outcome when
/// `outcome` is anything else.
#[track_caller]
pub fn unsubscribed<T: Debug>(outcome: Result<T, SendError>) -> String {
    match outcome {
        Err(SendError::Unsubscribed(reason)) => reason,
        other => panic!("expected an unsubscribed error, got {other:?}"),
    }
}

/// The reason of a [`SendError::InvalidAddress`]; panics with the outcome
/// when `outcome` is anything else.
#[track_caller]
pub fn invalid_address<T: Debug>(outcome: Result<T, SendError>) -> String {
    match outcome {
        Err(SendError::InvalidAddress(reason)) => reason,
        other => panic!("expected an invalid-address error, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_message_is_what_the_engine_sends() {
        let m = sample_message();
        let key: Vec<&str> = m.idempotency_key.split(':').collect();
        assert_eq!(key, ["herald", "42", "trial-ending", "created"]);
        assert_eq!(key[2], m.rule);
        assert_eq!(m.field("days_left"), Some("4"));
        assert_eq!(
            crate::time::rfc3339_millis(m.sent_at),
            "2024-03-01T08:30:00.123Z"
        );
    }

    #[test]
    fn answers_and_callbacks() {
        let r = response(201)
            .with_header("X-Message-Id", "m1")
            .with_json(&serde_json::json!({"id": "m1"}));
        assert_eq!(r.header("x-message-id"), Some("m1"));
        assert_eq!(r.headers[0].0, "x-message-id");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), r#"{"id":"m1"}"#);
        let r = r.with_form(&[("a", "1 2")]);
        assert_eq!(r.headers.len(), 2, "one content type: {:?}", r.headers);
        assert_eq!(r.text(), "a=1+2");
        assert_eq!(response(502).with_text("<html>").body, b"<html>");

        let c = callback("POST", "https://h.example/hooks/sms?token=t%201#x")
            .with_header("X-Twilio-Signature", "sig")
            .with_form(&[("MessageSid", "SM1")]);
        assert_eq!(c.header("x-twilio-signature"), Some("sig"));
        assert_eq!(crate::form::get(&c.query(), "token"), Some("t 1"));
        assert_eq!(
            crate::form::decode(&c.body),
            pairs(&[("MessageSid", "SM1")])
        );
        assert!(callback("GET", "https://h.example/hooks/sms")
            .query()
            .is_empty());
        let j = callback("POST", "u").with_json(&serde_json::json!([1]));
        assert_eq!((j.body.as_slice(), j.headers.len()), (&b"[1]"[..], 1));
        assert_eq!(callback("POST", "u").with_body("<xml/>").body, b"<xml/>");
    }

    #[test]
    fn outcome_assertions() {
        let r: Result<(), SendError> = Err(SendError::Permanent("no".into()));
        assert_eq!(permanent(r), "no");
        let r: Result<(), SendError> = Err(SendError::retryable("busy", Some(5)));
        assert_eq!(retryable(r).retry_after_ms, Some(5));
        let r: Result<(), SendError> = Err(SendError::Unsubscribed("stop".into()));
        assert_eq!(unsubscribed(r), "stop");
        let wrong = std::panic::catch_unwind(|| permanent(Ok::<u8, SendError>(1)));
        assert!(wrong.is_err());
    }
}
