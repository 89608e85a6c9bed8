//! `herald-webhook`: a channel plugin that delivers each reminder by POSTing
//! it as signed JSON to an operator-configured URL.
//!
//! It owns the webhook wire format: the JSON body (`idempotency_key`, `rule`,
//! `recipient`, `subject`, `text`, `html`, `sent_at`), the request headers
//! (`Idempotency-Key`, `User-Agent`, and an HMAC-SHA256 signature of the exact
//! body bytes under the configured `signature_header`), and the mapping of
//! the receiver's answer onto a receipt or a retryable / permanent error.

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
        let signature_header = settings
            .get("signature_header")
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_SIGNATURE_HEADER);

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
    if let Err(err) = classify_http_status(status, response.header("retry-after")) {
        let detail = body_snippet(&response.body);
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
            SendError::Permanent(_) | SendError::Unsubscribed(_) => {
                SendError::Permanent(describe("rejected"))
            }
        });
    }
    let provider_message_id = id_from_body(&response.body)
        .or_else(|| {
            response
                .header("x-request-id")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
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

/// The first 200 characters of a body, on one line.
fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(BODY_SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(BODY_SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    out
}

herald_pdk::export!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::Recipient;

    fn message() -> Message {
        Message {
            idempotency_key: "k-1".into(),
            rule: "trial-ending".into(),
            recipient: Recipient {
                customer_id: "c-42".into(),
                name: Some("Ada".into()),
                email: Some("ada@example.com".into()),
                phone: None,
                wechat_openid: None,
                locale: Some("en".into()),
                timezone: "Asia/Shanghai".into(),
            },
            subject: "Your trial ends soon".into(),
            text: "Hello".into(),
            html: None,
            fields: Vec::new(),
            unsubscribe_url: None,
            callback_url: None,
            sent_at: 1_709_281_800_123,
        }
    }

    #[test]
    fn payload_shape() {
        let body = payload_json(&message()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["idempotency_key"], "k-1");
        assert_eq!(v["rule"], "trial-ending");
        assert_eq!(v["recipient"]["customer_id"], "c-42");
        assert_eq!(v["recipient"]["email"], "ada@example.com");
        assert!(v["recipient"]["phone"].is_null());
        assert!(v["recipient"]["wechat_openid"].is_null());
        assert_eq!(v["recipient"]["timezone"], "Asia/Shanghai");
        assert!(v["html"].is_null());
        assert_eq!(v["sent_at"], "2024-03-01T08:30:00.123Z");
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .starts_with("{\"idempotency_key\":\"k-1\",\"rule\":"));
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn outcomes() {
        let ok = |r: Result<Receipt, SendError>| r.unwrap().provider_message_id;
        assert_eq!(
            ok(outcome(&response(200, &[], r#"{"id":"m-1"}"#), "k")),
            "m-1"
        );
        assert_eq!(ok(outcome(&response(201, &[], r#"{"id":7}"#), "k")), "7");
        assert_eq!(
            ok(outcome(
                &response(202, &[("x-request-id", "req-9")], "accepted"),
                "k"
            )),
            "req-9"
        );
        assert_eq!(ok(outcome(&response(204, &[], ""), "k")), "k");

        match outcome(&response(429, &[("retry-after", "30")], "slow down"), "k") {
            Err(SendError::Retryable(r)) => {
                assert_eq!(r.retry_after_ms, Some(30_000));
                assert!(r.reason.contains("429") && r.reason.contains("slow down"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome(&response(503, &[], ""), "k"),
            Err(SendError::Retryable(_))
        ));
        let long = "x".repeat(500);
        match outcome(&response(400, &[], &long), "k") {
            Err(SendError::Permanent(m)) => {
                assert!(m.contains("400"));
                assert_eq!(m.matches('x').count(), 200);
            }
            other => panic!("{other:?}"),
        }
    }
}
