//! `herald-webhook`: a channel plugin that delivers each reminder by POSTing
//! it as signed JSON to an operator-configured URL.
//!
//! It owns the webhook wire format: the JSON body (`idempotency_key`, `rule`,
//! `recipient`, `subject`, `text`, `html`, `sent_at`), the request headers
//! (`Idempotency-Key`, `User-Agent`, and an HMAC-SHA256 signature of the exact
//! body bytes under the configured `signature_header`), and the mapping of
//! the receiver's answer onto a receipt or a retryable / permanent error (and
//! `410 Gone` onto invalid-address: the recipient's address, e.g. the push
//! tokens of a channel with `address = "push"`, no longer exists).

use herald_pdk::http::{Request, Response};
use herald_pdk::{
    classify_http_status, AddressKind, Guest, Message, PluginInfo, Receipt, SendError, Setting,
    SettingSpec, Settings,
};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

const DEFAULT_SIGNATURE_HEADER: &str = "X-Herald-Signature";

/// How much of an error response's body goes into the error message.
const BODY_SNIPPET_CHARS: usize = 200;

struct Webhook;

impl Guest for Webhook {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "webhook".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            accepts_callbacks: false,
            settings: vec![
                SettingSpec::required("url", "The http(s) URL each reminder is POSTed to as JSON; its host must be in the channel's allowed_hosts"),
                SettingSpec::required("secret", "Shared secret for the HMAC-SHA256 signature of the request body").secret(),
                SettingSpec::optional("signature_header", "Header carrying `sha256=<hex HMAC>` of the body (default `X-Herald-Signature`)"),
            ],
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
        let url = settings.required("url")?;
        let secret = settings.required("secret")?;
        let signature_header = settings.optional_or("signature_header", DEFAULT_SIGNATURE_HEADER);

        let body = payload_json(&message)?;
        let signature = sign(secret, &body);
        let request = Request::post(url, body)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", message.idempotency_key.as_str())
            .header(
                "User-Agent",
                concat!("herald-webhook/", env!("CARGO_PKG_VERSION")),
            )
            .header(signature_header, signature);

        let response = herald_pdk::http::send(request)?;
        outcome(&response, &message.idempotency_key)
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    idempotency_key: &'a str,
    rule: &'a str,
    recipient: RecipientJson<'a>,
    subject: &'a str,
    text: &'a str,
    html: Option<&'a str>,
    sent_at: String,
}

#[derive(Serialize)]
struct RecipientJson<'a> {
    customer_id: &'a str,
    name: Option<&'a str>,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    wechat_openid: Option<&'a str>,
    locale: Option<&'a str>,
    timezone: &'a str,
    /// The customer's app installations, most recently registered first.
    push_tokens: Vec<PushTokenJson<'a>>,
}

#[derive(Serialize)]
struct PushTokenJson<'a> {
    token: &'a str,
    platform: &'a str,
    app: &'a str,
}

/// The JSON body POSTed for `message`.
fn payload_json(message: &Message) -> Result<Vec<u8>, SendError> {
    let r = &message.recipient;
    let payload = Payload {
        idempotency_key: &message.idempotency_key,
        rule: &message.rule,
        recipient: RecipientJson {
            customer_id: &r.customer_id,
            name: r.name.as_deref(),
            email: r.email.as_deref(),
            phone: r.phone.as_deref(),
            wechat_openid: r.wechat_openid.as_deref(),
            locale: r.locale.as_deref(),
            timezone: &r.timezone,
            push_tokens: r
                .push_tokens
                .iter()
                .map(|t| PushTokenJson {
                    token: &t.token,
                    platform: &t.platform,
                    app: &t.app,
                })
                .collect(),
        },
        subject: &message.subject,
        text: &message.text,
        html: message.html.as_deref(),
        sent_at: herald_pdk::time::rfc3339_millis(message.sent_at),
    };
    serde_json::to_vec(&payload)
        .map_err(|e| SendError::Permanent(format!("cannot encode the webhook body: {e}")))
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Maps the receiver's answer to a receipt or an error.
fn outcome(response: &Response, idempotency_key: &str) -> Result<Receipt, SendError> {
    let status = response.status;
    if status == 410 {
        let detail = response.snippet(BODY_SNIPPET_CHARS);
        return Err(SendError::InvalidAddress(if detail.is_empty() {
            "webhook answered HTTP 410 (the recipient's address is gone)".to_string()
        } else {
            format!("webhook answered HTTP 410 (the recipient's address is gone): {detail}")
        }));
    }
    if let Err(err) = classify_http_status(status, response.header("retry-after")) {
        let detail = response.snippet(BODY_SNIPPET_CHARS);
        let describe = |what: &str| {
            if detail.is_empty() {
                format!("webhook answered HTTP {status} ({what})")
            } else {
                format!("webhook answered HTTP {status} ({what}): {detail}")
            }
        };
        return Err(match err {
            SendError::Retryable(mut r) => {
                r.reason = describe("will retry");
                SendError::Retryable(r)
            }
            SendError::Permanent(_) | SendError::Unsubscribed(_) | SendError::InvalidAddress(_) => {
                SendError::Permanent(describe("rejected"))
            }
        });
    }
    let provider_message_id = id_from_body(&response.body)
        .or_else(|| herald_pdk::non_empty(response.header("x-request-id")).map(str::to_string))
        .unwrap_or_else(|| idempotency_key.to_string());
    Ok(Receipt {
        provider_message_id,
    })
}

/// The `id` field of a JSON object body, if there is one.
fn id_from_body(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("id")? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

herald_pdk::export!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{invalid_address, permanent, response, retryable, sample_message};

    #[test]
    fn payload_shape() {
        let mut message = sample_message();
        message.recipient.phone = None;
        message.recipient.wechat_openid = None;
        message.html = None;
        let body = payload_json(&message).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["idempotency_key"], "herald:42:trial-ending:created");
        assert_eq!(v["rule"], "trial-ending");
        assert_eq!(v["recipient"]["customer_id"], "c-42");
        assert_eq!(v["recipient"]["email"], "ada@example.com");
        assert!(v["recipient"]["phone"].is_null());
        assert!(v["recipient"]["wechat_openid"].is_null());
        assert_eq!(v["recipient"]["timezone"], "Europe/London");
        assert_eq!(
            v["recipient"]["push_tokens"],
            serde_json::json!([{"token": "fcm-token-ada-pixel", "platform": "android", "app": "com.acme.app"}])
        );
        assert!(v["html"].is_null());
        assert_eq!(v["sent_at"], "2024-03-01T08:30:00.123Z");
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .starts_with("{\"idempotency_key\":\"herald:42:trial-ending:created\",\"rule\":"));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn outcomes() {
        let ok = |r: Result<Receipt, SendError>| r.unwrap().provider_message_id;
        let answer = |status, body| outcome(&response(status).with_text(body), "k");
        assert_eq!(ok(answer(200, r#"{"id":"m-1"}"#)), "m-1");
        assert_eq!(ok(answer(201, r#"{"id":7}"#)), "7");
        assert_eq!(
            ok(outcome(
                &response(202)
                    .with_header("x-request-id", "req-9")
                    .with_text("accepted"),
                "k"
            )),
            "req-9"
        );
        assert_eq!(ok(answer(204, "")), "k");

        let r = retryable(outcome(
            &response(429)
                .with_header("retry-after", "30")
                .with_text("slow down"),
            "k",
        ));
        assert_eq!(r.retry_after_ms, Some(30_000));
        assert!(r.reason.contains("429") && r.reason.contains("slow down"));
        retryable(answer(503, ""));
        let long = "x".repeat(500);
        let m = permanent(answer(400, &long));
        assert!(m.contains("400"));
        assert_eq!(m.matches('x').count(), 200);
        let m = invalid_address(answer(410, "token unregistered"));
        assert!(m.contains("410") && m.contains("token unregistered"), "{m}");
    }
}
