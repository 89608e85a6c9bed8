//! A fake SendGrid v3 Mail Send API on loopback: it checks the bearer API
//! key and the JSON body the way SendGrid does (from.email,
//! personalizations[0].to[0].email, subject, non-empty content with
//! text/plain first) and answers with SendGrid's real error bodies, or 202
//! Accepted with an `X-Message-Id` header. Recipients script the answer by
//! the local part of their address:
//! - `bad…` → 400 "Does not contain a valid address." on
//!   `personalizations.0.to.0.email`;
//! - `slow…` → 429 with `Retry-After: RETRY_AFTER_SECS` the first time, then 202;
//! - `down…` → 500 every time.

#![allow(dead_code)]

use super::codec::sha256_hex;
use crate::support::{FakeProvider, Received, Reply};
use serde_json::{json, Value};

/// The `Retry-After` the fake sends with its 429.
pub const RETRY_AFTER_SECS: u64 = 7200;

/// The fake SendGrid and what it was sent.
pub struct FakeSendgrid {
    pub provider: FakeProvider,
}

/// The `X-Message-Id` the fake gives a message to `email`: 22 characters,
/// like SendGrid's, and the same for every send to that address so a test
/// can write (and sign) an event for it in advance.
pub fn message_id(email: &str) -> String {
    sha256_hex(email.as_bytes())[..22].to_string()
}

fn error(status: u16, message: &str, field: Option<&str>, help: Option<&str>) -> Reply {
    Reply::json(
        status,
        json!({"errors": [{"message": message, "field": field, "help": help}]}),
    )
}

const ERRORS_HELP: &str = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html";

/// SendGrid's checks of a Mail Send body, in its order; the first failure.
fn validate(body: &Value) -> Option<Reply> {
    let str_at = |ptr: &str| body.pointer(ptr).and_then(Value::as_str).unwrap_or("");
    if str_at("/from/email").is_empty() {
        return Some(error(
            400,
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
            Some("from"),
            Some(&format!("{ERRORS_HELP}#message.from")),
        ));
    }
    let to = str_at("/personalizations/0/to/0/email");
    if to.is_empty() {
        return Some(error(
            400,
            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            Some("personalizations.0.to"),
            Some(&format!("{ERRORS_HELP}#message.personalizations.to")),
        ));
    }
    if !to.contains('@') {
        return Some(error(
            400,
            "Does not contain a valid address.",
            Some("personalizations.0.to.0.email"),
            Some(&format!("{ERRORS_HELP}#message.personalizations.to")),
        ));
    }
    if str_at("/subject").is_empty() {
        return Some(error(
            400,
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
            Some("subject"),
            Some(&format!("{ERRORS_HELP}#message.subject")),
        ));
    }
    let content = body.get("content").and_then(Value::as_array);
    let blocks = content.map(Vec::as_slice).unwrap_or_default();
    if blocks.is_empty()
        || blocks
            .iter()
            .any(|b| b["value"].as_str().unwrap_or("").is_empty())
    {
        return Some(error(
            400,
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.",
            Some("content"),
            Some(&format!("{ERRORS_HELP}#message.content")),
        ));
    }
    if blocks.len() > 1 && blocks[0]["type"] != "text/plain" {
        return Some(error(
            400,
            "If present, text/plain content must be first, followed by text/html, followed by any other content.",
            Some("content"),
            Some(&format!("{ERRORS_HELP}#message.content")),
        ));
    }
    None
}

impl FakeSendgrid {
    /// Starts the fake; only `Authorization: Bearer {api_key}` is accepted.
    pub fn start(api_key: &str) -> FakeSendgrid {
        let expected = format!("Bearer {api_key}");
        let provider = FakeProvider::start(move |req: &Received, earlier: &[Received]| {
            if req.method != "POST" || req.path != "/v3/mail/send" {
                return error(404, "resource not found", None, None);
            }
            match req.header("authorization") {
                None => return error(401, "authorization required", None, None),
                Some(a) if a != expected => {
                    return error(
                        401,
                        "The provided authorization grant is invalid, expired, or revoked",
                        None,
                        None,
                    )
                }
                Some(_) => {}
            }
            if !req
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
            {
                return error(415, "Content-Type should be application/json.", None, None);
            }
            let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                return error(400, "Bad Request", None, None);
            };
            if let Some(reply) = validate(&body) {
                return reply;
            }
            let to = body["personalizations"][0]["to"][0]["email"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let local = to.split('@').next().unwrap_or("");
            if local.starts_with("bad") {
                return error(
                    400,
                    "Does not contain a valid address.",
                    Some("personalizations.0.to.0.email"),
                    Some(&format!("{ERRORS_HELP}#message.personalizations.to")),
                );
            }
            if local.starts_with("down") {
                return error(500, "Internal server error", None, None);
            }
            if local.starts_with("slow") {
                let before = earlier
                    .iter()
                    .filter(|r| {
                        serde_json::from_slice::<Value>(&r.body)
                            .ok()
                            .is_some_and(|b| {
                                b["personalizations"][0]["to"][0]["email"] == to.as_str()
                            })
                    })
                    .count();
                if before == 0 {
                    let mut reply = error(429, "too many requests", None, None);
                    reply
                        .headers
                        .push(("retry-after".into(), RETRY_AFTER_SECS.to_string()));
                    reply
                        .headers
                        .push(("x-ratelimit-limit".into(), "600".into()));
                    reply
                        .headers
                        .push(("x-ratelimit-remaining".into(), "0".into()));
                    return reply;
                }
            }
            Reply {
                status: 202,
                headers: vec![("x-message-id".into(), message_id(&to))],
                body: String::new(),
                delay: std::time::Duration::ZERO,
            }
        });
        FakeSendgrid { provider }
    }

    /// The API origin, for `api_base` and `allowed_hosts`.
    pub fn origin(&self) -> String {
        self.provider.origin()
    }

    /// Every Mail Send request, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.provider.requests()
    }

    /// The Mail Send bodies addressed to `email`, in order.
    pub fn sends_to(&self, email: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .filter(|b| b["personalizations"][0]["to"][0]["email"] == email)
            .collect()
    }
}
