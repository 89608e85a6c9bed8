//! `herald-email-http`: a channel plugin that sends each reminder as an email
//! through SendGrid's v3 Mail Send API.
//!
//! It owns the SendGrid wire format: the `POST {api_base}/v3/mail/send` JSON
//! body (personalizations with the idempotency key as a custom arg, from,
//! reply-to, subject, plain and HTML content, `List-Unsubscribe` headers, the
//! rule as category), the mapping of SendGrid's answers onto a receipt (the
//! `X-Message-Id` header) or a retryable / permanent error, and the parsing
//! and ECDSA verification of SendGrid's signed Event Webhook into delivery
//! reports (a batch is taken only within the freshness window of its signed
//! timestamp and once: see `herald_pdk::replay`).

use base64::Engine as _;
use herald_pdk::http::{Request, Response};
use herald_pdk::{
    callback_reply, non_empty, replay, time, AddressKind, CallbackError, CallbackEvent,
    CallbackRequest, CallbackResult, DeliveryReport, DeliveryState, Guest, InboundReply, Message,
    PluginInfo, Receipt, SendError, Setting, SettingSpec, Settings,
};
use serde::Serialize;
use serde_json::Value;

const DEFAULT_API_BASE: &str = "https://api.sendgrid.com";
/// The custom arg carrying Herald's idempotency key (echoed in every event).
const IDEMPOTENCY_ARG: &str = "herald_idempotency_key";
const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";
/// How much of an unexpected error body goes into an error message.
const BODY_SNIPPET_CHARS: usize = 300;

struct EmailHttp;

impl Guest for EmailHttp {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "email-http".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Email,
            accepts_callbacks: true,
            settings: vec![
                SettingSpec::required("api_key", "SendGrid API key with the Mail Send permission (starts with `SG.`)").secret(),
                SettingSpec::required("from_email", "Sender address; must be a verified Single Sender or on an authenticated domain"),
                SettingSpec::optional("from_name", "Sender display name"),
                SettingSpec::optional("reply_to", "Reply-To address"),
                SettingSpec::optional("api_base", "API origin (default https://api.sendgrid.com; https://api.eu.sendgrid.com for EU subusers); must be in allowed_hosts"),
                SettingSpec::optional("webhook_public_key", "Verification key of SendGrid's Signed Event Webhook (base64 DER or PEM); required to accept delivery events at /hooks/{channel}"),
                replay::window_setting_spec(),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let api_key = settings.required("api_key")?;
        let from_email = settings.required("from_email")?;
        let api_base = settings
            .optional_or("api_base", DEFAULT_API_BASE)
            .trim_end_matches('/');
        let to = non_empty(message.recipient.email.as_deref()).ok_or_else(|| {
            SendError::Permanent(format!(
                "customer `{}` has no email address",
                message.recipient.customer_id
            ))
        })?;

        let from = Address {
            email: from_email.trim(),
            name: settings.optional("from_name"),
        };
        let reply_to = settings
            .optional("reply_to")
            .map(|email| Address { email, name: None });
        let body = mail_json(&message, to, from, reply_to)?;

        let url = format!("{api_base}/v3/mail/send");
        let request = Request::post(url.as_str(), body)
            .header("Authorization", format!("Bearer {}", api_key.trim()))
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("herald-email-http/", env!("CARGO_PKG_VERSION")),
            );
        let response = herald_pdk::http::send(request)?;
        outcome(&response, from_email.trim(), time::unix_now_secs())
    }

    fn handle_callback(
        settings: Vec<Setting>,
        request: CallbackRequest,
    ) -> Result<CallbackResult, CallbackError> {
        let settings = Settings::new(&settings);
        let batch = verify_batch(&settings, &request, time::unix_now_secs())?;
        if !replay::first_use(&batch.key, batch.fresh_for) {
            return Err(CallbackError::Unauthorized(
                "this event batch was already received (same signature): a replayed request is refused"
                    .to_string(),
            ));
        }
        let events = parse_events(&request.body).map_err(CallbackError::BadRequest)?;
        callback_reply(events, 200, "text/plain; charset=utf-8", "ok")
    }
}

/// An event batch whose signature and timestamp checked out.
#[derive(Debug, PartialEq, Eq)]
struct VerifiedBatch {
    /// The key-value entry that marks it seen.
    key: String,
    /// Seconds it stays fresh, so how long to remember it.
    fresh_for: u64,
}

/// Checks an Event Webhook request's signature and that its signed
/// timestamp is within the channel's window of `now`.
fn verify_batch(
    settings: &Settings,
    request: &CallbackRequest,
    now: u64,
) -> Result<VerifiedBatch, CallbackError> {
    let key = settings.optional("webhook_public_key").ok_or_else(|| {
        CallbackError::Unauthorized(
            "this channel has no `webhook_public_key`: enable the Signed Event Webhook in SendGrid \
             (Settings → Mail Settings → Event Webhook) and copy its verification key into the setting"
                .to_string(),
        )
    })?;
    let window = replay::window(settings).map_err(CallbackError::Unauthorized)?;
    let signature = request.header(SIGNATURE_HEADER).unwrap_or_default();
    let timestamp = request.header(TIMESTAMP_HEADER).unwrap_or_default();
    let signed = verify_signature(key, signature, timestamp, &request.body)
        .map_err(CallbackError::Unauthorized)?;
    let fresh_for =
        replay::fresh_for(timestamp, now, window).map_err(CallbackError::Unauthorized)?;
    Ok(VerifiedBatch {
        key: format!("event-seen:{}", hex(&signed)),
        fresh_for,
    })
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct Address<'a> {
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct Personalization<'a> {
    to: Vec<Address<'a>>,
    custom_args: serde_json::Map<String, Value>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Mail<'a> {
    personalizations: Vec<Personalization<'a>>,
    from: Address<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<Address<'a>>,
    subject: &'a str,
    content: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    headers: serde_json::Map<String, Value>,
    categories: Vec<&'a str>,
}

/// The Mail Send JSON body for `message` to `to`.
fn mail_json(
    message: &Message,
    to: &str,
    from: Address<'_>,
    reply_to: Option<Address<'_>>,
) -> Result<Vec<u8>, SendError> {
    let mut custom_args = serde_json::Map::new();
    custom_args.insert(
        IDEMPOTENCY_ARG.to_string(),
        Value::String(message.idempotency_key.clone()),
    );
    // SendGrid requires the first content to be text/plain and refuses an
    // empty value; a single space keeps an HTML-only reminder sendable.
    let text = if message.text.is_empty() {
        " "
    } else {
        message.text.as_str()
    };
    let mut content = vec![Content {
        kind: "text/plain",
        value: text,
    }];
    if let Some(html) = message.html.as_deref().filter(|h| !h.is_empty()) {
        content.push(Content {
            kind: "text/html",
            value: html,
        });
    }
    let mut headers = serde_json::Map::new();
    if let Some(url) = non_empty(message.unsubscribe_url.as_deref()) {
        headers.insert("List-Unsubscribe".into(), Value::String(format!("<{url}>")));
        headers.insert(
            "List-Unsubscribe-Post".into(),
            Value::String("List-Unsubscribe=One-Click".into()),
        );
    }
    let mail = Mail {
        personalizations: vec![Personalization {
            to: vec![Address {
                email: to,
                name: non_empty(message.recipient.name.as_deref()),
            }],
            custom_args,
        }],
        from,
        reply_to,
        subject: &message.subject,
        content,
        headers,
        categories: vec![message.rule.as_str()],
    };
    serde_json::to_vec(&mail)
        .map_err(|e| SendError::Permanent(format!("cannot encode the SendGrid request: {e}")))
}

/// Maps SendGrid's answer to a receipt or an error.
fn outcome(response: &Response, from_email: &str, now_secs: u64) -> Result<Receipt, SendError> {
    let status = response.status;
    match status {
        200..=299 => {
            let id = non_empty(response.header("x-message-id")).ok_or_else(|| {
                SendError::Permanent(format!(
                    "SendGrid answered HTTP {status} without an X-Message-Id header; \
                     check that api_base points at SendGrid's v3 API"
                ))
            })?;
            Ok(Receipt {
                provider_message_id: id.to_string(),
            })
        }
        400 => Err(SendError::Permanent(format!(
            "SendGrid rejected the message (HTTP 400): {}",
            error_messages(response)
        ))),
        401 => Err(SendError::Permanent(format!(
            "SendGrid refused the API key (HTTP 401: {}): check the `api_key` setting",
            error_messages(response)
        ))),
        403 => Err(SendError::Permanent(format!(
            "SendGrid refused the send (HTTP 403: {}): check that `api_key` has the Mail Send \
             permission and that the from address `{from_email}` is a verified sender",
            error_messages(response)
        ))),
        413 => Err(SendError::Permanent(
            "SendGrid refused the message as too large (HTTP 413): the whole request must stay under 30 MB"
                .to_string(),
        )),
        429 => Err(SendError::retryable(
            format!(
                "SendGrid rate limit reached (HTTP 429: {})",
                error_messages(response)
            ),
            rate_limit_delay_ms(response, now_secs),
        )),
        500..=599 | 408 => Err(SendError::retryable(
            format!(
                "SendGrid answered HTTP {status} (will retry): {}",
                error_messages(response)
            ),
            response.retry_after_ms(),
        )),
        _ => Err(SendError::Permanent(format!(
            "SendGrid answered HTTP {status}: {}",
            error_messages(response)
        ))),
    }
}

/// How long to wait after a 429: `Retry-After` seconds, else the reset time
/// `X-RateLimit-Reset` (epoch seconds) minus now, at least one second.
fn rate_limit_delay_ms(response: &Response, now_secs: u64) -> Option<u64> {
    if let Some(ms) = response.retry_after_ms() {
        return Some(ms);
    }
    let reset: u64 = response.header("x-ratelimit-reset")?.trim().parse().ok()?;
    Some(reset.saturating_sub(now_secs).max(1) * 1000)
}

/// The messages of SendGrid's `{"errors":[{"message","field","help"}]}`
/// body, joined; the body itself (shortened) when it is not that shape.
fn error_messages(response: &Response) -> String {
    let parsed: Option<Vec<String>> = response.json::<Value>().ok().and_then(|v| {
        let errors = v.get("errors")?.as_array()?;
        Some(
            errors
                .iter()
                .filter_map(|e| {
                    let message = e.get("message")?.as_str()?;
                    let mut s = message.to_string();
                    if let Some(field) = e.get("field").and_then(Value::as_str) {
                        s.push_str(&format!(" (field `{field}`)"));
                    }
                    if let Some(help) = e.get("help").and_then(Value::as_str) {
                        s.push_str(&format!(" [{help}]"));
                    }
                    Some(s)
                })
                .collect(),
        )
    });
    match parsed {
        Some(list) if !list.is_empty() => list.join("; "),
        _ => match response.snippet(BODY_SNIPPET_CHARS) {
            snippet if snippet.is_empty() => "no details".to_string(),
            snippet => snippet,
        },
    }
}

/// Checks SendGrid's Event Webhook signature: ECDSA P-256 / SHA-256 over
/// `timestamp ++ body`, DER signature in base64, key as base64 DER
/// SubjectPublicKeyInfo (optionally wrapped as PEM). Returns the signature
/// in one canonical form (`r ++ s` with the low `s`), so the two encodings
/// ECDSA allows of one signature are one request when it is remembered.
fn verify_signature(
    public_key: &str,
    signature_b64: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;

    let b64 = base64::engine::general_purpose::STANDARD;
    let key_b64: String = public_key
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let key_der = b64
        .decode(key_b64)
        .map_err(|_| "the `webhook_public_key` setting is not base64: copy the verification key from SendGrid's Event Webhook settings".to_string())?;
    let key = VerifyingKey::from_public_key_der(&key_der)
        .map_err(|_| "the `webhook_public_key` setting is not a P-256 public key: copy the verification key from SendGrid's Event Webhook settings".to_string())?;
    if signature_b64.trim().is_empty() || timestamp.trim().is_empty() {
        return Err(
            "missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp header".to_string(),
        );
    }
    let sig_der = b64
        .decode(signature_b64.trim())
        .map_err(|_| "the event webhook signature is not base64".to_string())?;
    let sig = Signature::from_der(&sig_der)
        .map_err(|_| "the event webhook signature is not a DER ECDSA signature".to_string())?;
    let sig = sig.normalize_s().unwrap_or(sig);
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &sig)
        .map_err(|_| "the event webhook signature does not match the body".to_string())?;
    Ok(sig.to_bytes().to_vec())
}

/// The reports in an Event Webhook body (a JSON array of events).
///
/// - `delivered` → Delivered; `bounce` of type `bounce` (a hard bounce) →
///   Bounced, so the host lists the address as do-not-contact; a `bounce`
///   of type `blocked` and `dropped` → Undelivered; each with the reason; `deferred` (still retrying at SendGrid) and the engagement
///   events (`processed`, `open`, `click`) → nothing;
/// - `unsubscribe` / `spamreport` → a STOP reply from the address, so the
///   customer is suppressed on this channel; `group_resubscribe` → START.
fn parse_events(body: &[u8]) -> Result<Vec<CallbackEvent>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the event webhook body is not JSON: {e}"))?;
    let events = value
        .as_array()
        .ok_or("the event webhook body is not a JSON array of events")?;
    let mut out = Vec::new();
    for event in events {
        let kind = event
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let message_id = event
            .get("sg_message_id")
            .and_then(Value::as_str)
            .map(|id| id.split('.').next().unwrap_or(id).to_string())
            .filter(|id| !id.is_empty());
        let email = event.get("email").and_then(Value::as_str);
        match (kind, message_id) {
            ("delivered", Some(id)) => out.push(CallbackEvent::Report(DeliveryReport {
                provider_message_id: id,
                state: DeliveryState::Delivered,
                reason: None,
            })),
            ("bounce" | "dropped", Some(id)) => {
                let reason = non_empty(event.get("reason").and_then(Value::as_str));
                let bounce_type = event.get("type").and_then(Value::as_str);
                let kind = match bounce_type {
                    Some("blocked") => "blocked",
                    _ => kind,
                };
                // A `bounce` of type `bounce` is SendGrid's hard bounce: the
                // mailbox does not exist. A block (type `blocked`) or a drop
                // may pass another day.
                let state = match (kind, bounce_type) {
                    ("bounce", Some("bounce")) => DeliveryState::Bounced,
                    _ => DeliveryState::Undelivered,
                };
                out.push(CallbackEvent::Report(DeliveryReport {
                    provider_message_id: id,
                    state,
                    reason: Some(match reason {
                        Some(r) => format!("{kind}: {r}"),
                        None => kind.to_string(),
                    }),
                }));
            }
            ("unsubscribe" | "spamreport", _) => {
                if let Some(email) = email {
                    out.push(CallbackEvent::Reply(InboundReply {
                        sender: email.to_string(),
                        text: "STOP".to_string(),
                    }));
                }
            }
            ("group_resubscribe", _) => {
                if let Some(email) = email {
                    out.push(CallbackEvent::Reply(InboundReply {
                        sender: email.to_string(),
                        text: "START".to_string(),
                    }));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

herald_pdk::export!(EmailHttp);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{permanent, response, retryable, sample_message};

    /// The sample message to a customer with a Chinese name and subject:
    /// SendGrid takes UTF-8 as it is.
    fn message() -> Message {
        let mut m = sample_message();
        m.recipient.name = Some("李雷".into());
        m.subject = "【Acme】您的试用将于4天后结束".into();
        m
    }

    fn from() -> Address<'static> {
        Address {
            email: "noreply@acme.example",
            name: Some("Acme"),
        }
    }

    #[test]
    fn payload_shape() {
        let m = message();
        let body = mail_json(
            &m,
            "ada@example.com",
            from(),
            Some(Address {
                email: "help@acme.example",
                name: None,
            }),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "personalizations": [{
                    "to": [{"email": "ada@example.com", "name": "李雷"}],
                    "custom_args": {"herald_idempotency_key": "herald:42:trial-ending:created"}
                }],
                "from": {"email": "noreply@acme.example", "name": "Acme"},
                "reply_to": {"email": "help@acme.example"},
                "subject": "【Acme】您的试用将于4天后结束",
                "content": [
                    {"type": "text/plain", "value": m.text},
                    {"type": "text/html", "value": m.html}
                ],
                "headers": {
                    "List-Unsubscribe": format!("<{}>", m.unsubscribe_url.as_deref().unwrap()),
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
                },
                "categories": ["trial-ending"]
            })
        );
        // UTF-8 as is, not \u escapes.
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("【Acme】您的试用将于4天后结束"));
    }

    #[test]
    fn payload_omits_what_is_absent() {
        let mut m = message();
        m.recipient.name = None;
        m.html = None;
        m.unsubscribe_url = None;
        let body = mail_json(
            &m,
            "ada@example.com",
            Address {
                email: "a@b.c",
                name: None,
            },
            None,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["personalizations"][0]["to"],
            serde_json::json!([{"email": "ada@example.com"}])
        );
        assert_eq!(v["from"], serde_json::json!({"email": "a@b.c"}));
        assert!(v.get("reply_to").is_none());
        assert!(v.get("headers").is_none());
        assert_eq!(v["content"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn outcomes() {
        let ok = outcome(
            &response(202).with_header("x-message-id", "W8bmrwkfRrGHEgyLM0ygAg"),
            "f@x",
            0,
        );
        assert_eq!(ok.unwrap().provider_message_id, "W8bmrwkfRrGHEgyLM0ygAg");

        let answer = |status, body| outcome(&response(status).with_text(body), "f@x", 0);
        let m = permanent(answer(
            400,
            r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":"http://sendgrid.com/docs/x"}]}"#,
        ));
        assert!(m.contains("HTTP 400"), "{m}");
        assert!(
            m.contains("Does not contain a valid address. (field `personalizations.0.to.0.email`)"),
            "{m}"
        );
        let m = permanent(answer(
            401,
            r#"{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]}"#,
        ));
        assert!(m.contains("api_key") && m.contains("revoked"), "{m}");
        let m = permanent(answer(
            403,
            r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#,
        ));
        assert!(m.contains("verified sender") && m.contains("`f@x`"), "{m}");
        permanent(answer(413, ""));

        let rate_limited = |header, value, now| {
            retryable(outcome(&response(429).with_header(header, value), "f", now)).retry_after_ms
        };
        assert_eq!(rate_limited("retry-after", "30", 0), Some(30_000));
        assert_eq!(
            rate_limited("x-ratelimit-reset", "1000090", 1_000_000),
            Some(90_000)
        );
        assert_eq!(
            rate_limited("x-ratelimit-reset", "5", 1_000_000),
            Some(1_000)
        );
        let r = retryable(answer(502, "<html>bad gateway</html>"));
        assert!(r.reason.contains("502") && r.reason.contains("bad gateway"));
        assert!(permanent(answer(202, "")).contains("X-Message-Id"));
        assert_eq!(
            permanent(answer(418, " \n ")),
            "SendGrid answered HTTP 418: no details"
        );
    }

    #[test]
    fn events() {
        let body = br#"[
            {"email":"a@x.com","event":"processed","sg_message_id":"AAA.filter1.1"},
            {"email":"a@x.com","event":"delivered","sg_message_id":"AAA.filterdrecv-p3mdw1-1.0","response":"250 OK"},
            {"email":"b@x.com","event":"bounce","type":"bounce","sg_message_id":"BBB.f.0","reason":"550 5.1.1 The email account that you tried to reach does not exist"},
            {"email":"c@x.com","event":"dropped","sg_message_id":"CCC.f.0","reason":"Bounced Address"},
            {"email":"d@x.com","event":"deferred","sg_message_id":"DDD.f.0","response":"400 try again later"},
            {"email":"e@x.com","event":"spamreport","sg_message_id":"EEE.f.0"}
        ]"#;
        let events = parse_events(body).unwrap();
        assert_eq!(events.len(), 4, "{events:?}");
        match &events[0] {
            CallbackEvent::Report(r) => {
                assert_eq!(r.provider_message_id, "AAA");
                assert!(matches!(r.state, DeliveryState::Delivered));
            }
            other => panic!("{other:?}"),
        }
        match &events[1] {
            CallbackEvent::Report(r) => {
                assert_eq!(r.provider_message_id, "BBB");
                assert!(matches!(r.state, DeliveryState::Bounced), "a hard bounce");
                assert_eq!(r.reason.as_deref(), Some("bounce: 550 5.1.1 The email account that you tried to reach does not exist"));
            }
            other => panic!("{other:?}"),
        }
        match &events[2] {
            CallbackEvent::Report(r) => {
                assert!(matches!(r.state, DeliveryState::Undelivered));
                assert_eq!(r.reason.as_deref(), Some("dropped: Bounced Address"))
            }
            other => panic!("{other:?}"),
        }
        match &events[3] {
            CallbackEvent::Reply(r) => {
                assert_eq!((r.sender.as_str(), r.text.as_str()), ("e@x.com", "STOP"))
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_events(b"{}").is_err());
        assert!(parse_events(b"not json").is_err());
    }

    // A key pair made with `openssl ecparam -name prime256v1 -genkey`; the
    // signature is `openssl dgst -sha256 -sign` over timestamp ++ body.
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhlURl6Tr4ThxbypWT2/cfPGCRIKZZIl+bxqTelxADdeKLmKCT19IOLKzv70/QXnP1UODKJeE1XQeK8SMKmic/Q==";

    const SIGNATURE: &str = "MEYCIQDuIFGji00Y0mnpQSF4fr3icFynsDZcsYc5yoYVmKl/UwIhAOmuygCJ6/CqXYCuuDWm8auiYRjPw7TKZChj35CZzx0I";
    const SIGNED_BODY: &[u8] =
        br#"[{"email":"a@x.com","event":"delivered","sg_message_id":"AAA.f.0"}]"#;

    #[test]
    fn signature_checks() {
        verify_signature(PUBLIC_KEY, SIGNATURE, "1700000000", SIGNED_BODY).unwrap();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &PUBLIC_KEY[..64],
            &PUBLIC_KEY[64..]
        );
        verify_signature(&pem, SIGNATURE, "1700000000", SIGNED_BODY).unwrap();
        assert!(
            verify_signature(PUBLIC_KEY, SIGNATURE, "1700000001", SIGNED_BODY)
                .unwrap_err()
                .contains("does not match")
        );
        let mut tampered = SIGNED_BODY.to_vec();
        tampered[30] = b'X';
        assert!(verify_signature(PUBLIC_KEY, SIGNATURE, "1700000000", &tampered).is_err());
        assert!(verify_signature(PUBLIC_KEY, "", "1", b"[]")
            .unwrap_err()
            .contains("missing"));
        assert!(verify_signature("not a key!", "MEUC", "1", b"[]")
            .unwrap_err()
            .contains("webhook_public_key"));
        assert!(verify_signature(PUBLIC_KEY, "%%%", "1", b"[]").is_err());
    }

    #[test]
    fn batches_are_taken_within_the_window_of_their_signed_timestamp() {
        let with_key = herald_pdk::testing::settings(&[("webhook_public_key", PUBLIC_KEY)]);
        let settings = Settings::new(&with_key);
        let request = herald_pdk::testing::callback("POST", "https://herald.example/hooks/email")
            .with_header("X-Twilio-Email-Event-Webhook-Signature", SIGNATURE)
            .with_header("X-Twilio-Email-Event-Webhook-Timestamp", "1700000000")
            .with_body(SIGNED_BODY);
        let batch = verify_batch(&settings, &request, 1_700_000_010).unwrap();
        assert_eq!(batch.fresh_for, 290);
        assert_eq!(batch.key.len(), "event-seen:".len() + 128, "{}", batch.key);
        match verify_batch(&settings, &request, 1_700_000_301) {
            Err(CallbackError::Unauthorized(m)) => assert!(m.contains("301 s old"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(verify_batch(&Settings::new(&[]), &request, 1_700_000_000).is_err());
    }
}
