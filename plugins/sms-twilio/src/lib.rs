//! `herald-sms-twilio`: a channel plugin that sends each reminder as an SMS
//! through Twilio Programmable Messaging and parses Twilio's webhooks.
//!
//! It owns the Twilio wire protocol: the `POST
//! {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json` request (form
//! fields `To`, `From` or `MessagingServiceSid`, `Body`, `StatusCallback`;
//! HTTP basic auth; the `I-Twilio-Idempotency-Token` header), the mapping of
//! Twilio's answers and error codes onto a receipt or a retryable /
//! permanent / unsubscribed error, the `X-Twilio-Signature` check of
//! incoming webhooks, and the parsing of status callbacks (delivery reports)
//! and inbound messages (replies such as STOP).

use base64::Engine as _;
use herald_pdk::http::{Request, Response};
use herald_pdk::{
    callback_reply, constant_time_eq, AddressKind, CallbackError, CallbackEvent, CallbackRequest,
    CallbackResult, DeliveryReport, DeliveryState, Guest, InboundReply, Message, PluginInfo,
    Receipt, SendError, Setting, SettingSpec, Settings,
};
use hmac::{Hmac, Mac};
use sha1::Sha1;

const DEFAULT_API_BASE: &str = "https://api.twilio.com";

/// The empty TwiML document Twilio expects in answer to a webhook.
const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#;

/// Twilio's longest message body, in characters.
const MAX_BODY_CHARS: usize = 1600;

struct Twilio;

impl Guest for Twilio {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sms-twilio".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Phone,
            accepts_callbacks: true,
            settings: vec![
                SettingSpec::required("account_sid", "Twilio Account SID (starts with `AC`), from the Twilio console"),
                SettingSpec::required("auth_token", "Twilio Auth Token of that account; signs API requests and verifies webhooks").secret(),
                SettingSpec::optional("from", "Sender phone number in E.164 form (+15017122661); or set messaging_service_sid"),
                SettingSpec::optional("messaging_service_sid", "Messaging Service SID (starts with `MG`), used instead of `from` when set"),
                SettingSpec::optional("api_base", "Twilio API origin (default https://api.twilio.com); must be in allowed_hosts"),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let account_sid = settings.required("account_sid")?.trim();
        let auth_token = settings.required("auth_token")?.trim();
        let sender = sender(&settings)?;
        let api_base = settings
            .optional_or("api_base", DEFAULT_API_BASE)
            .trim_end_matches('/');

        let phone = message.recipient.phone.as_deref().unwrap_or_default();
        let to = normalize_e164(phone).map_err(|why| {
            SendError::Permanent(format!(
                "customer `{}` has phone `{phone}`, which Twilio cannot take: {why}",
                message.recipient.customer_id
            ))
        })?;
        let body = message.text.trim();
        if body.is_empty() {
            return Err(SendError::Permanent(format!(
                "rule `{}` rendered an empty text; Twilio needs a message body",
                message.rule
            )));
        }
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(SendError::Permanent(format!(
                "rule `{}` rendered {} characters; Twilio takes at most {MAX_BODY_CHARS} (error 21617): shorten the rule's text",
                message.rule,
                body.chars().count()
            )));
        }

        let form = form_fields(&to, &sender, body, message.callback_url.as_deref());
        let url = format!("{api_base}/2010-04-01/Accounts/{account_sid}/Messages.json");
        let request = Request::post(url, herald_pdk::form::encode(&form))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("Authorization", basic_auth(account_sid, auth_token))
            .header(
                "I-Twilio-Idempotency-Token",
                message.idempotency_key.as_str(),
            )
            .header(
                "User-Agent",
                concat!("herald-sms-twilio/", env!("CARGO_PKG_VERSION")),
            );
        let response = herald_pdk::http::send(request)?;
        outcome(&response)
    }

    fn handle_callback(
        settings: Vec<Setting>,
        request: CallbackRequest,
    ) -> Result<CallbackResult, CallbackError> {
        let settings = Settings::new(&settings);
        let Some(auth_token) = settings.get("auth_token").map(str::trim) else {
            return Err(CallbackError::Unauthorized(
                "the channel has no auth_token to verify Twilio's signature with".into(),
            ));
        };
        let params = herald_pdk::form::decode(&request.body);
        let Some(signature) = request.header("x-twilio-signature") else {
            return Err(CallbackError::Unauthorized(
                "missing X-Twilio-Signature header".into(),
            ));
        };
        if !signature_matches(auth_token, &request.url, &params, signature) {
            return Err(CallbackError::Unauthorized(format!(
                "X-Twilio-Signature does not match the request for {}: check that [server] public_url is the URL configured at Twilio and that auth_token is this account's",
                request.url
            )));
        }
        let events = parse_webhook(&params)?;
        callback_reply(events, 200, "text/xml", EMPTY_TWIML)
    }
}

/// Who the message comes from: a Messaging Service or a phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sender {
    Number(String),
    Service(String),
}

fn sender(settings: &Settings<'_>) -> Result<Sender, SendError> {
    if let Some(service) = settings.optional("messaging_service_sid") {
        return Ok(Sender::Service(service.to_string()));
    }
    match settings.optional("from") {
        Some(from) => Ok(Sender::Number(from.to_string())),
        None => Err(SendError::Permanent(
            "missing setting `from` (a Twilio phone number such as +15017122661) or `messaging_service_sid`: add one under [channels.NAME.settings]".into(),
        )),
    }
}

/// The form fields of the Messages request, in the order they are sent.
fn form_fields(
    to: &str,
    sender: &Sender,
    body: &str,
    callback_url: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut form = vec![("To", to.to_string())];
    match sender {
        Sender::Number(n) => form.push(("From", n.clone())),
        Sender::Service(s) => form.push(("MessagingServiceSid", s.clone())),
    }
    form.push(("Body", body.to_string()));
    if let Some(url) = callback_url {
        form.push(("StatusCallback", url.to_string()));
    }
    form
}

/// Normalises a stored phone number to E.164: drops spaces, dashes, dots and
/// brackets, turns a leading `00` into `+`, and insists on `+` and 8 to 15
/// digits (Twilio has no default country to guess one from).
fn normalize_e164(phone: &str) -> Result<String, String> {
    let compact: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    if compact.is_empty() {
        return Err("the number is empty".into());
    }
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest.to_string()
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest.to_string()
    } else {
        return Err("it must be in E.164 form with the country code, like +8613800138000".into());
    };
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("it must contain only digits after the `+`".into());
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(format!(
            "E.164 numbers have 8 to 15 digits, this one has {}",
            digits.len()
        ));
    }
    Ok(format!("+{digits}"))
}

/// `Basic base64(account_sid:auth_token)`.
fn basic_auth(account_sid: &str, auth_token: &str) -> String {
    let raw = format!("{account_sid}:{auth_token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A Twilio REST error body.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TwilioError {
    code: Option<u64>,
    message: String,
    more_info: Option<String>,
}

fn parse_error(body: &[u8]) -> TwilioError {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        let text = String::from_utf8_lossy(body);
        return TwilioError {
            message: text.trim().chars().take(200).collect(),
            ..TwilioError::default()
        };
    };
    TwilioError {
        code: v.get("code").and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        }),
        message: v
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect(),
        more_info: v
            .get("more_info")
            .and_then(|m| m.as_str())
            .map(str::to_string),
    }
}

/// Maps Twilio's answer to a receipt or an error.
fn outcome(response: &Response) -> Result<Receipt, SendError> {
    let status = response.status;
    if (200..300).contains(&status) {
        let sid = response
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_string))
            .filter(|s| !s.is_empty());
        return match sid {
            Some(provider_message_id) => Ok(Receipt {
                provider_message_id,
            }),
            None => Err(SendError::Permanent(format!(
                "Twilio answered HTTP {status} without a message sid; the message may have been sent, so it is not retried"
            ))),
        };
    }
    let err = parse_error(&response.body);
    Err(classify(status, &err, response.retry_after_ms()))
}

/// The error of a non-2xx answer from Twilio.
fn classify(status: u16, err: &TwilioError, retry_after_ms: Option<u64>) -> SendError {
    let what = describe(status, err);
    let retryable = |reason: String| SendError::retryable(reason, retry_after_ms);
    match (status, err.code) {
        (_, Some(21610)) => SendError::Unsubscribed(format!(
            "{what} (the recipient replied STOP to this sender)"
        )),
        (401, _) | (_, Some(20003)) => SendError::Permanent(format!(
            "{what}: Twilio rejected the credentials; check the channel's account_sid and auth_token settings"
        )),
        (_, Some(20404)) if status == 404 => SendError::Permanent(format!(
            "{what}: check the channel's account_sid setting (and api_base)"
        )),
        (429, _) | (_, Some(20429)) => retryable(format!("{what} (rate limited; will retry)")),
        (408, _) | (500..=599, _) => retryable(format!("{what} (will retry)")),
        (_, Some(21606 | 21659 | 21212 | 21603)) => SendError::Permanent(format!(
            "{what}: check the channel's `from` setting (a number of this Twilio account) or use messaging_service_sid"
        )),
        // The number does not exist, or cannot take SMS (a landline).
        (_, Some(21211 | 21614)) => SendError::InvalidAddress(what),
        (_, Some(21408)) => SendError::Permanent(format!(
            "{what}: enable this country in the Twilio console under Messaging > Settings > Geo permissions"
        )),
        _ => SendError::Permanent(what),
    }
}

fn describe(status: u16, err: &TwilioError) -> String {
    let mut out = format!("Twilio answered HTTP {status}");
    if let Some(code) = err.code {
        out.push_str(&format!(" error {code}"));
    }
    if !err.message.is_empty() {
        out.push_str(&format!(": {}", err.message));
    }
    if let Some(info) = &err.more_info {
        out.push_str(&format!(" ({info})"));
    }
    out
}

/// Twilio's signature: Base64(HMAC-SHA1(auth_token, url + each POST
/// parameter's name immediately followed by its value, sorted by name)).
fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's for this request. Like Twilio's own
/// validators it also accepts the URL with the default port added or
/// removed, since proxies differ in whether they keep `:443`.
fn signature_matches(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let signature = signature.trim().as_bytes();
    url_variants(url).iter().any(|candidate| {
        constant_time_eq(
            compute_signature(auth_token, candidate, params).as_bytes(),
            signature,
        )
    })
}

/// `url` as given, and with its default port toggled.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    match authority.rsplit_once(':') {
        Some((host, port)) if port == default_port => {
            out.push(format!("{scheme}://{host}{tail}"));
        }
        Some(_) => {}
        None => out.push(format!("{scheme}://{authority}:{default_port}{tail}")),
    }
    out
}

/// Parses a verified webhook: a status callback (has `MessageStatus`) or an
/// inbound message (has `Body`).
fn parse_webhook(params: &[(String, String)]) -> Result<Vec<CallbackEvent>, CallbackError> {
    let get = |k: &str| herald_pdk::form::get(params, k);
    if let Some(status) = get("MessageStatus") {
        let Some(sid) = get("MessageSid")
            .or_else(|| get("SmsSid"))
            .filter(|s| !s.is_empty())
        else {
            return Err(CallbackError::BadRequest(
                "status callback without MessageSid".into(),
            ));
        };
        // 30005 (unknown destination handset) and 30006 (landline or
        // unreachable carrier): the number cannot take SMS, for good.
        let gone = matches!(get("ErrorCode"), Some("30005" | "30006"));
        let state = match status {
            "delivered" => DeliveryState::Delivered,
            "undelivered" | "failed" if gone => DeliveryState::Bounced,
            "undelivered" | "failed" => DeliveryState::Undelivered,
            // queued, accepted, sending, sent, receiving, received, read, scheduled, canceled...
            _ => return Ok(Vec::new()),
        };
        let reason = match state {
            DeliveryState::Delivered => None,
            DeliveryState::Undelivered | DeliveryState::Bounced => {
                Some(match (get("ErrorCode"), get("ErrorMessage")) {
                    (Some(code), Some(msg)) if !msg.is_empty() => {
                        format!("Twilio {status}, error {code}: {msg}")
                    }
                    (Some(code), _) if !code.is_empty() => format!(
                        "Twilio {status}, error {code} (https://www.twilio.com/docs/errors/{code})"
                    ),
                    _ => format!("Twilio {status}"),
                })
            }
        };
        return Ok(vec![CallbackEvent::Report(DeliveryReport {
            provider_message_id: sid.to_string(),
            state,
            reason,
        })]);
    }
    match (get("From"), get("Body")) {
        (Some(from), Some(body)) if !from.is_empty() => {
            Ok(vec![CallbackEvent::Reply(InboundReply {
                sender: from.to_string(),
                text: body.to_string(),
            })])
        }
        _ => Ok(Vec::new()),
    }
}

herald_pdk::export!(Twilio);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{
        callback, invalid_address, pairs, permanent, response, retryable, settings, unsubscribed,
    };

    #[test]
    fn signature_matches_twilios_documented_example() {
        // https://www.twilio.com/docs/usage/webhooks/webhooks-security
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = pairs(&[
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("From", "+14158675310"),
            ("Caller", "+14158675310"),
            ("CallSid", "CA1234567890ABCDE"),
        ]);
        assert_eq!(
            compute_signature("12345", url, &params),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
        assert!(signature_matches(
            "12345",
            url,
            &params,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
        assert!(!signature_matches(
            "12346",
            url,
            &params,
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        ));
        // The same example as the older docs gave it.
        let old = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            compute_signature("12345", url, &old),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // A proxy that adds :443 does not break the check.
        let sig = compute_signature("12345", url, &params);
        assert!(signature_matches(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &params,
            &sig
        ));
        assert!(!signature_matches(
            "12345",
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            &params,
            &sig
        ));
    }

    #[test]
    fn phone_normalisation() {
        assert_eq!(
            normalize_e164("+86 138-0013-8000").unwrap(),
            "+8613800138000"
        );
        assert_eq!(
            normalize_e164("0044 (20) 7946.0958").unwrap(),
            "+442079460958"
        );
        assert!(normalize_e164("13800138000").is_err());
        assert!(normalize_e164("+1 800 FLOWERS").is_err());
        assert!(normalize_e164("+123").is_err());
        assert!(normalize_e164("").is_err());
    }

    #[test]
    fn form_uses_sender_and_callback() {
        let f = form_fields(
            "+15005550006",
            &Sender::Number("+15017122661".into()),
            "您好",
            Some("https://h.example/hooks/sms"),
        );
        assert_eq!(
            herald_pdk::form::encode(&f),
            "To=%2B15005550006&From=%2B15017122661&Body=%E6%82%A8%E5%A5%BD&StatusCallback=https%3A%2F%2Fh.example%2Fhooks%2Fsms"
        );
        let f = form_fields("+1", &Sender::Service("MG1".into()), "x", None);
        assert_eq!(
            herald_pdk::form::encode(&f),
            "To=%2B1&MessagingServiceSid=MG1&Body=x"
        );
        assert_eq!(
            basic_auth("ACxx", "tok"),
            "Basic QUN4eDp0b2s=",
            "base64 of ACxx:tok"
        );
    }

    fn twilio_error(code: u32, status: u16, message: &str) -> String {
        serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        })
        .to_string()
    }

    #[test]
    fn error_codes_map_to_outcomes() {
        let answer = |status, body: &str| outcome(&response(status).with_text(body));
        let ok = answer(
            201,
            r#"{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}"#,
        )
        .unwrap();
        assert_eq!(ok.provider_message_id, "SM0123456789abcdef0123456789abcdef");
        permanent(answer(201, "{}"));

        let perm = |code, status, msg| permanent(answer(status, &twilio_error(code, status, msg)));
        let invalid =
            |code, status, msg| invalid_address(answer(status, &twilio_error(code, status, msg)));
        let m = invalid(
            21211,
            400,
            "The 'To' number +15005550001 is not a valid phone number.",
        );
        assert!(
            m.contains("21211") && m.contains("not a valid phone number"),
            "{m}"
        );
        assert!(
            m.contains("https://www.twilio.com/docs/errors/21211"),
            "{m}"
        );
        invalid(21614, 400, "'To' number is not a valid mobile number");
        assert!(perm(21408, 400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number").contains("Geo permissions"));
        assert!(perm(21606, 400, "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination.").contains("`from`"));
        let m = perm(20003, 401, "Authentication Error - invalid username");
        assert!(m.contains("account_sid") && m.contains("auth_token"), "{m}");
        assert!(permanent(answer(401, "Unauthorized")).contains("auth_token"));

        let m = unsubscribed(answer(
            400,
            &twilio_error(21610, 400, "Attempt to send to unsubscribed recipient"),
        ));
        assert!(m.contains("21610"), "{m}");

        for (status, code, retry_after, want) in [
            (429, 20429, Some("30"), Some(30_000)),
            (429, 20429, None, None),
            (500, 20500, Some("2"), Some(2000)),
            (503, 20503, None, None),
        ] {
            let mut answer = response(status).with_text(&twilio_error(code, status, "x"));
            if let Some(v) = retry_after {
                answer = answer.with_header("retry-after", v);
            }
            let r = retryable(outcome(&answer));
            assert_eq!(r.retry_after_ms, want, "{status}");
            assert!(r.reason.contains(&status.to_string()));
        }
        // Code 20429 with an unusual status is still a rate limit.
        retryable(answer(400, &twilio_error(20429, 400, "Too Many Requests")));
        retryable(answer(502, "<html>bad gateway</html>"));
    }

    #[test]
    fn signed_webhooks_are_answered_with_empty_twiml() {
        let url = "https://herald.example/hooks/sms";
        let form = [
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
            ("To", "+15551234567"),
        ];
        let signature = compute_signature("12345", url, &pairs(&form));
        let request = callback("POST", url)
            .with_header("X-Twilio-Signature", &signature)
            .with_form(&form);
        let token = settings(&[("auth_token", " 12345 ")]);
        let result = Twilio::handle_callback(token.clone(), request.clone()).unwrap();
        assert!(
            matches!(&result.events[..], [CallbackEvent::Report(r)] if r.provider_message_id == "SM1")
        );
        assert_eq!(
            (
                result.response.status,
                result.response.content_type.as_str()
            ),
            (200, "text/xml")
        );
        assert_eq!(result.response.body, EMPTY_TWIML);

        let unauthorized = |settings: Vec<Setting>, request| {
            matches!(
                Twilio::handle_callback(settings, request),
                Err(CallbackError::Unauthorized(_))
            )
        };
        assert!(unauthorized(
            settings(&[("auth_token", "54321")]),
            request.clone()
        ));
        assert!(unauthorized(Vec::new(), request));
        assert!(unauthorized(token, callback("POST", url).with_form(&form)));
    }

    #[test]
    fn webhooks_parse_into_events() {
        let ev = parse_webhook(&pairs(&[
            ("MessageSid", "SM1"),
            ("MessageStatus", "delivered"),
            ("SmsStatus", "delivered"),
        ]))
        .unwrap();
        assert!(
            matches!(&ev[..], [CallbackEvent::Report(DeliveryReport { provider_message_id, state: DeliveryState::Delivered, reason: None })] if provider_message_id == "SM1")
        );

        let ev = parse_webhook(&pairs(&[
            ("MessageSid", "SM2"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
        ]))
        .unwrap();
        match &ev[..] {
            [CallbackEvent::Report(r)] => {
                assert!(matches!(r.state, DeliveryState::Undelivered));
                assert!(r.reason.as_deref().unwrap().contains("30003"));
            }
            other => panic!("{other:?}"),
        }
        // 30005 / 30006: the number cannot take SMS at all.
        for code in ["30005", "30006"] {
            let ev = parse_webhook(&pairs(&[
                ("MessageSid", "SM3"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", code),
            ]))
            .unwrap();
            match &ev[..] {
                [CallbackEvent::Report(r)] => {
                    assert!(matches!(r.state, DeliveryState::Bounced), "{code}");
                    assert!(r.reason.as_deref().unwrap().contains(code));
                }
                other => panic!("{other:?}"),
            }
        }
        for s in ["queued", "sent", "sending", "accepted"] {
            assert!(
                parse_webhook(&pairs(&[("MessageSid", "SM3"), ("MessageStatus", s)]))
                    .unwrap()
                    .is_empty()
            );
        }
        assert!(matches!(
            parse_webhook(&pairs(&[("MessageStatus", "delivered")])),
            Err(CallbackError::BadRequest(_))
        ));

        let ev = parse_webhook(&pairs(&[
            ("MessageSid", "SM4"),
            ("SmsStatus", "received"),
            ("From", "+14155550100"),
            ("To", "+15017122661"),
            ("Body", "STOP"),
        ]))
        .unwrap();
        assert!(
            matches!(&ev[..], [CallbackEvent::Reply(InboundReply { sender, text })] if sender == "+14155550100" && text == "STOP")
        );
    }
}
