//! `herald-sms-aliyun`: a channel plugin that sends each reminder as an SMS
//! through Alibaba Cloud SMS (`dysmsapi`, action `SendSms`, API version
//! 2017-05-25) and parses Alibaba Cloud's HTTP batch pushes.
//!
//! It owns the Alibaba Cloud wire protocol: the RPC-style signed `GET`
//! (common parameters, signature version 1.0 with HMAC-SHA1 over the
//! RFC 3986 canonicalised query), the template parameters built from the
//! rule's `fields`, the phone number form Alibaba Cloud expects, the mapping
//! of its `Code`s onto a receipt or a retryable / permanent error, and the
//! parsing of `SmsReport` (delivery reports) and `SmsUp` (replies such as
//! TD / 退订) pushes, taken only with the channel's `callback_token`.

use base64::Engine as _;
use herald_pdk::http::{Request, Response};
use herald_pdk::{
    callback_reply, classify_http_status, constant_time_eq, form, non_empty, time, AddressKind,
    CallbackError, CallbackEvent, CallbackRequest, CallbackResult, DeliveryReport, DeliveryState,
    Guest, InboundReply, Message, PluginInfo, Receipt, SendError, Setting, SettingSpec, Settings,
};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::{Digest, Sha1};

const DEFAULT_ENDPOINT: &str = "https://dysmsapi.aliyuncs.com/";
const DEFAULT_REGION: &str = "cn-hangzhou";
const API_VERSION: &str = "2017-05-25";

/// The field of a rule that overrides the `template_code` setting.
const TEMPLATE_CODE_FIELD: &str = "template_code";

/// What Alibaba Cloud expects in answer to a push.
const PUSH_ANSWER: &str = r#"{"code":0,"msg":"成功"}"#;

struct Aliyun;

impl Guest for Aliyun {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sms-aliyun".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Phone,
            accepts_callbacks: true,
            settings: vec![
                SettingSpec::required("access_key_id", "AccessKey ID of a RAM user allowed to call dysmsapi SendSms"),
                SettingSpec::required("access_key_secret", "AccessKey secret of that RAM user; signs every request").secret(),
                SettingSpec::required("sign_name", "Approved SMS signature name (签名), e.g. 阿里云短信测试"),
                SettingSpec::optional("template_code", "Approved template code (SMS_xxxxxxxx); a rule field `template_code` overrides it"),
                SettingSpec::optional("endpoint", "API endpoint (default https://dysmsapi.aliyuncs.com/; dysmsapi.ap-southeast-1.aliyuncs.com for international); must be in allowed_hosts"),
                SettingSpec::optional("region_id", "RegionId parameter (default cn-hangzhou)"),
                SettingSpec::optional("callback_token", "Pushes (delivery reports, TD/退订 replies) must call the hook URL with ?token=<this value>; without it every push is refused").secret(),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let access_key_id = settings.required("access_key_id")?.trim();
        let secret = settings.required("access_key_secret")?.trim();
        let sign_name = settings.required("sign_name")?.trim();
        let template_code = non_empty(message.field(TEMPLATE_CODE_FIELD))
            .or_else(|| settings.optional("template_code"))
            .ok_or_else(|| {
                SendError::Permanent(format!(
                    "no SMS template for rule `{}`: set `template_code` under [channels.NAME.settings] or a `template_code` field in the rule",
                    message.rule
                ))
            })?;
        let endpoint = settings.optional_or("endpoint", DEFAULT_ENDPOINT);
        let region = settings.optional_or("region_id", DEFAULT_REGION);

        let phone = message.recipient.phone.as_deref().unwrap_or_default();
        let phone_number = normalize_phone(phone).map_err(|why| {
            SendError::Permanent(format!(
                "customer `{}` has phone `{phone}`, which Alibaba Cloud SMS cannot take: {why}",
                message.recipient.customer_id
            ))
        })?;
        let template_param = template_param(&message);

        let now_ms = time::unix_now_millis();
        let counter = next_counter();
        let nonce = signature_nonce(&message.idempotency_key, now_ms, counter);
        let timestamp = time::iso8601_secs(now_ms.div_euclid(1000));
        let params = vec![
            ("AccessKeyId", access_key_id.to_string()),
            ("Action", "SendSms".to_string()),
            ("Format", "JSON".to_string()),
            ("OutId", message.idempotency_key.clone()),
            ("PhoneNumbers", phone_number),
            ("RegionId", region.to_string()),
            ("SignName", sign_name.to_string()),
            ("SignatureMethod", "HMAC-SHA1".to_string()),
            ("SignatureNonce", nonce),
            ("SignatureVersion", "1.0".to_string()),
            ("TemplateCode", template_code.to_string()),
            ("TemplateParam", template_param),
            ("Timestamp", timestamp),
            ("Version", API_VERSION.to_string()),
        ];
        let url = signed_url(endpoint, &params, secret)?;
        let request = Request::get(url)
            .header("Accept", "application/json")
            .header(
                "User-Agent",
                concat!("herald-sms-aliyun/", env!("CARGO_PKG_VERSION")),
            );
        let response = herald_pdk::http::send(request)?;
        outcome(&response)
    }

    fn handle_callback(
        settings: Vec<Setting>,
        request: CallbackRequest,
    ) -> Result<CallbackResult, CallbackError> {
        let settings = Settings::new(&settings);
        // Without a token anyone who finds the hook URL could forge a TD
        // (suppressing any number) or a 订阅 (lifting an opt-out): refuse.
        let Some(expected) = settings.optional("callback_token") else {
            return Err(CallbackError::Unauthorized(
                "pushes are refused: this channel has no callback_token; set one under [channels.NAME.settings] and configure the push URL at Alibaba Cloud as .../hooks/CHANNEL?token=<callback_token>".into(),
            ));
        };
        match form::get(&request.query(), "token") {
            Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {}
            Some(_) => {
                return Err(CallbackError::Unauthorized(
                    "the `token` query parameter does not match the channel's callback_token".into(),
                ))
            }
            None => {
                return Err(CallbackError::Unauthorized(
                    "missing `token` query parameter: configure the push URL at Alibaba Cloud as .../hooks/CHANNEL?token=<callback_token>".into(),
                ))
            }
        }
        let events = parse_push(&request.body)?;
        callback_reply(events, 200, "application/json", PUSH_ANSWER)
    }
}

/// A per-channel counter kept in the plugin's key-value store (and in this
/// instance), so two requests at the same millisecond still differ.
fn next_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LOCAL: AtomicU64 = AtomicU64::new(0);
    let local = LOCAL.fetch_add(1, Ordering::Relaxed);
    let stored = herald_pdk::kv::get_string("nonce-counter")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .wrapping_add(1);
    herald_pdk::kv::set("nonce-counter", stored.to_string().as_bytes(), None);
    stored.wrapping_mul(1 << 20).wrapping_add(local)
}

/// A unique `SignatureNonce`: SHA-1 of the idempotency key, the time and a
/// counter, as 32 hex digits.
fn signature_nonce(idempotency_key: &str, now_ms: i64, counter: u64) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("{idempotency_key}\n{now_ms}\n{counter}").as_bytes());
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The `TemplateParam` JSON: the rule's fields (but `template_code`), or
/// `{"content": text}` when the rule has none.
fn template_param(message: &Message) -> String {
    let mut map = serde_json::Map::new();
    for f in &message.fields {
        if f.name != TEMPLATE_CODE_FIELD {
            map.insert(f.name.clone(), Value::String(f.value.clone()));
        }
    }
    if map.is_empty() {
        map.insert(
            "content".into(),
            Value::String(message.text.trim().to_string()),
        );
    }
    Value::Object(map).to_string()
}

/// The number as `PhoneNumbers` wants it: mainland China numbers as 11
/// digits without `+86`/`0086`; other countries as country code and
/// number, digits only (`85212345678`). Spaces, dashes, dots and brackets
/// are dropped; a number without a country code is taken as written.
fn normalize_phone(phone: &str) -> Result<String, String> {
    let compact: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
        .collect();
    if compact.is_empty() {
        return Err("the number is empty".into());
    }
    let digits = compact
        .strip_prefix('+')
        .or_else(|| compact.strip_prefix("00"))
        .unwrap_or(&compact);
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err("it must contain only digits (and an optional leading +)".into());
    }
    let international = digits.len() != compact.len();
    if international {
        if let Some(mainland) = digits.strip_prefix("86") {
            if mainland.len() == 11 && mainland.starts_with('1') {
                return Ok(mainland.to_string());
            }
        }
    }
    if !(5..=15).contains(&digits.len()) {
        return Err(format!(
            "phone numbers have 5 to 15 digits, this one has {}",
            digits.len()
        ));
    }
    Ok(digits.to_string())
}

/// RFC 3986 percent-encoding as Alibaba Cloud's signature wants it:
/// unreserved `A-Z a-z 0-9 - _ . ~` kept, everything else `%XY` (so space
/// is `%20` and `*` is `%2A`).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonicalised query: parameters sorted by name, `k=v` encoded, `&`-joined.
fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (percent_encode(k.as_ref()), percent_encode(v.as_ref())))
        .collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET&%2F&` + the encoded canonicalised query.
fn string_to_sign(canonical: &str) -> String {
    format!("GET&{}&{}", percent_encode("/"), percent_encode(canonical))
}

/// Base64(HMAC-SHA1(secret + "&", string_to_sign)).
fn sign(secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{secret}&").as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The request URL: endpoint, canonical query and `Signature`.
fn signed_url(
    endpoint: &str,
    params: &[(&str, String)],
    secret: &str,
) -> Result<String, SendError> {
    if endpoint.contains('?') {
        return Err(SendError::Permanent(format!(
            "setting `endpoint` ({endpoint}) must not contain a query string"
        )));
    }
    let canonical = canonical_query(params);
    let signature = sign(secret, &string_to_sign(&canonical));
    let base = match endpoint.split_once("://") {
        Some((_, rest)) if !rest.contains('/') => format!("{endpoint}/"),
        Some(_) => endpoint.to_string(),
        None => {
            return Err(SendError::Permanent(format!(
                "setting `endpoint` ({endpoint}) must be an absolute https:// URL"
            )))
        }
    };
    Ok(format!(
        "{base}?Signature={}&{canonical}",
        percent_encode(&signature)
    ))
}

/// Maps Alibaba Cloud's answer to a receipt or an error.
fn outcome(response: &Response) -> Result<Receipt, SendError> {
    let status = response.status;
    let body: Option<Value> = response.json().ok();
    let text = |k: &str| {
        body.as_ref()
            .and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match (text("Code"), status) {
        (Some(code), 200..=299) if code == "OK" => match text("BizId").filter(|b| !b.is_empty()) {
            Some(provider_message_id) => Ok(Receipt {
                provider_message_id,
            }),
            None => Err(SendError::Permanent(
                "Alibaba Cloud answered Code OK without a BizId; the message may have been sent, so it is not retried".into(),
            )),
        },
        (Some(code), _) => {
            let message = text("Message").unwrap_or_default();
            Err(classify(status, &code, &message, response.retry_after_ms()))
        }
        (None, _) => {
            let snippet: String = String::from_utf8_lossy(&response.body)
                .trim()
                .chars()
                .take(200)
                .collect();
            match classify_http_status(status, response.header("retry-after")) {
                Err(SendError::Retryable(mut r)) => {
                    r.reason = format!("Alibaba Cloud answered HTTP {status} (will retry): {snippet}");
                    Err(SendError::Retryable(r))
                }
                _ => Err(SendError::Permanent(format!(
                    "Alibaba Cloud answered HTTP {status} without a Code: {snippet}"
                ))),
            }
        }
    }
}

/// How long to wait after `isv.BUSINESS_LIMIT_CONTROL`, the per-number flow
/// control (by default 1 message a minute, 5 an hour, 10 a day to one
/// number): the message says which window was hit ("触发分钟级流控",
/// "触发小时级流控", "触发天级流控"); when it does not, an hour.
fn business_limit_wait_ms(message: &str) -> u64 {
    let lower = message.to_lowercase();
    if message.contains("分钟") || lower.contains("minute") {
        60_000
    } else if message.contains("天") || message.contains("日") || lower.contains("day") {
        24 * 3_600_000
    } else {
        3_600_000
    }
}

/// The error for an Alibaba Cloud `Code` other than `OK`.
fn classify(status: u16, code: &str, message: &str, retry_after_ms: Option<u64>) -> SendError {
    let what = if message.is_empty() {
        format!("Alibaba Cloud answered HTTP {status} {code}")
    } else {
        format!("Alibaba Cloud answered HTTP {status} {code}: {message}")
    };
    let retry =
        |reason: String, wait: Option<u64>| SendError::retryable(reason, retry_after_ms.or(wait));
    let fix = |hint: &str| SendError::Permanent(format!("{what}: {hint}"));
    match code {
        "isv.BUSINESS_LIMIT_CONTROL" | "isv.DAY_LIMIT_CONTROL" => retry(
            format!("{what} (per-number flow control; will retry)"),
            Some(business_limit_wait_ms(message)),
        ),
        "isv.AMOUNT_NOT_ENOUGH" | "isv.OUT_OF_SERVICE" => retry(
            format!("{what} (top up the Alibaba Cloud account; will retry)"),
            Some(3_600_000),
        ),
        "isp.SYSTEM_ERROR" | "isp.RAM_PERMISSION_DENY_TEMP" | "ServiceUnavailable"
        | "InternalError" => retry(format!("{what} (will retry)"), None),
        c if c.starts_with("Throttling") => retry(format!("{what} (throttled; will retry)"), Some(1000)),
        "SignatureDoesNotMatch" | "IncompleteSignature" => {
            fix("check the channel's access_key_secret setting (it must belong to access_key_id)")
        }
        "InvalidAccessKeyId.NotFound" | "InvalidAccessKeyId" | "InvalidAccessKeyId.Inactive" => {
            fix("check the channel's access_key_id setting (the AccessKey must exist and be enabled)")
        }
        "Forbidden.RAM" | "isp.RAM_PERMISSION_DENY" | "Forbidden" => {
            fix("grant the RAM user the AliyunDysmsFullAccess policy (or dysms:SendSms)")
        }
        "InvalidTimeStamp.Expired" => fix("the host's clock is more than 15 minutes off; sync it (NTP)"),
        "isv.SMS_SIGNATURE_ILLEGAL" | "isv.SIGN_NAME_ILLEGAL" => {
            fix("check the channel's sign_name setting: it must be an approved signature of this account")
        }
        "isv.SMS_TEMPLATE_ILLEGAL" | "isv.TEMPLATE_PARAMS_ILLEGAL" => {
            fix("check template_code (setting or rule field): it must be an approved template of this account matching sign_name")
        }
        "isv.TEMPLATE_MISSING_PARAMETERS" => fix(
            "the rule's `fields` must provide every ${variable} of the template (a rule without fields sends only `content`)",
        ),
        "isv.INVALID_JSON_PARAM" | "isv.PARAM_LENGTH_LIMIT" | "isv.INVALID_PARAMETERS" => {
            fix("check the rule's `fields` against the template's variables and their length limits")
        }
        _ if status >= 500 || status == 408 || status == 429 => {
            retry(format!("{what} (will retry)"), None)
        }
        _ => SendError::Permanent(what),
    }
}

/// Parses a batch push: an array of `SmsReport` items (delivery reports,
/// matched by `biz_id`) or `SmsUp` items (replies).
fn parse_push(body: &[u8]) -> Result<Vec<CallbackEvent>, CallbackError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| CallbackError::BadRequest(format!("the push body is not JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => {
            return Err(CallbackError::BadRequest(
                "the push body must be a JSON array of SmsReport or SmsUp items".into(),
            ))
        }
    };
    let mut events = Vec::new();
    for item in &items {
        let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::trim);
        if let Some(biz_id) = s("biz_id").filter(|b| !b.is_empty()) {
            let success = match item.get("success") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(t)) => t.eq_ignore_ascii_case("true"),
                _ => {
                    return Err(CallbackError::BadRequest(format!(
                        "SmsReport item for biz_id {biz_id} has no `success`"
                    )))
                }
            };
            let reason = (!success).then(|| {
                let code = s("err_code").unwrap_or("");
                match s("err_msg").filter(|m| !m.is_empty() && *m != code) {
                    Some(msg) => format!("{code}: {msg}"),
                    None => code.to_string(),
                }
            });
            events.push(CallbackEvent::Report(DeliveryReport {
                provider_message_id: biz_id.to_string(),
                state: if success {
                    DeliveryState::Delivered
                } else {
                    DeliveryState::Undelivered
                },
                reason,
            }));
        } else if let (Some(phone), Some(content)) = (
            s("phone_number"),
            item.get("content").and_then(Value::as_str),
        ) {
            for sender in reply_senders(phone) {
                events.push(CallbackEvent::Reply(InboundReply {
                    sender,
                    text: content.to_string(),
                }));
            }
        }
    }
    Ok(events)
}

/// The addresses a reply's `phone_number` may be stored under: Alibaba
/// Cloud sends mainland numbers as 11 digits, while customers may be stored
/// in E.164; both forms are reported (the host ignores one that matches
/// nobody).
fn reply_senders(phone: &str) -> Vec<String> {
    let digits = phone.trim_start_matches('+');
    if phone.starts_with('+') || !digits.chars().all(|c| c.is_ascii_digit()) {
        return vec![phone.to_string()];
    }
    if digits.len() == 11 && digits.starts_with('1') {
        vec![format!("+86{digits}"), digits.to_string()]
    } else {
        vec![format!("+{digits}"), digits.to_string()]
    }
}

herald_pdk::export!(Aliyun);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{
        self, callback, permanent, response, retryable, sample_message, settings,
    };

    #[test]
    fn signature_matches_the_documented_example() {
        // The worked example of Alibaba Cloud SMS's signature documentation.
        let params = vec![
            ("SignatureMethod", "HMAC-SHA1".to_string()),
            (
                "SignatureNonce",
                "45e25e9b-0a6f-4070-8c85-2956eda1b466".to_string(),
            ),
            ("AccessKeyId", "testId".to_string()),
            ("SignatureVersion", "1.0".to_string()),
            ("Timestamp", "2017-07-12T02:42:19Z".to_string()),
            ("Format", "XML".to_string()),
            ("Action", "SendSms".to_string()),
            ("Version", "2017-05-25".to_string()),
            ("RegionId", "cn-hangzhou".to_string()),
            ("PhoneNumbers", "15300000001".to_string()),
            ("SignName", "阿里云短信测试专用".to_string()),
            ("TemplateParam", r#"{"customer":"test"}"#.to_string()),
            ("TemplateCode", "SMS_71390007".to_string()),
            ("OutId", "123".to_string()),
        ];
        let sts = string_to_sign(&canonical_query(&params));
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123%26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1%25E6%25B5%258B%25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0%26TemplateCode%3DSMS_71390007%26TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25"
        );
        assert_eq!(sign("testSecret", &sts), "zJDF+Lrzhj/ThnlvIToysFRq6t4=");
        let url = signed_url("https://dysmsapi.aliyuncs.com", &params, "testSecret").unwrap();
        assert!(url.starts_with(
            "https://dysmsapi.aliyuncs.com/?Signature=zJDF%2BLrzhj%2FThnlvIToysFRq6t4%3D&AccessKeyId=testId&"
        ), "{url}");
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d+e/é"), "a%20b%2Ac~d%2Be%2F%C3%A9");
    }

    #[test]
    fn phone_forms() {
        assert_eq!(normalize_phone("+86 138-0013-8000").unwrap(), "13800138000");
        assert_eq!(normalize_phone("008613800138000").unwrap(), "13800138000");
        assert_eq!(normalize_phone("13800138000").unwrap(), "13800138000");
        assert_eq!(normalize_phone("+852 6123 4567").unwrap(), "85261234567");
        assert_eq!(normalize_phone("+1 (415) 555-0100").unwrap(), "14155550100");
        assert!(normalize_phone("138oo138000").is_err());
        assert!(normalize_phone("").is_err());
        assert_eq!(
            reply_senders("13800138000"),
            ["+8613800138000", "13800138000"]
        );
        assert_eq!(
            reply_senders("85261234567"),
            ["+85261234567", "85261234567"]
        );
    }

    #[test]
    fn timestamps_and_nonces() {
        // The Timestamp of the documented example.
        assert_eq!(time::iso8601_secs(1_499_827_339), "2017-07-12T02:42:19Z");
        let a = signature_nonce("k", 1, 1);
        assert_eq!(a.len(), 32);
        assert_ne!(a, signature_nonce("k", 1, 2));
        assert_ne!(a, signature_nonce("k", 2, 1));
        assert_ne!(a, signature_nonce("j", 1, 1));
    }

    /// The sample message with the rule's `fields` and a padded Chinese text.
    fn message(fields: &[(&str, &str)]) -> Message {
        let mut m = sample_message();
        m.text = " 您好 ".into();
        m.fields = testing::fields(fields);
        m
    }

    #[test]
    fn template_params() {
        let v: Value = serde_json::from_str(&template_param(&message(&[]))).unwrap();
        assert_eq!(v, serde_json::json!({"content": "您好"}));
        let v: Value = serde_json::from_str(&template_param(&message(&[
            ("name", "李雷"),
            ("template_code", "SMS_1"),
            ("days", "4"),
        ])))
        .unwrap();
        assert_eq!(v, serde_json::json!({"name": "李雷", "days": "4"}));
        let v: Value =
            serde_json::from_str(&template_param(&message(&[("template_code", "SMS_1")]))).unwrap();
        assert_eq!(v, serde_json::json!({"content": "您好"}));
    }

    #[test]
    fn codes_map_to_outcomes() {
        let ok = outcome(&response(200).with_json(
            &serde_json::json!({"Code":"OK","Message":"OK","BizId":"900619746936498440^0","RequestId":"F655A8D5-B967-440B-8683-DAD6FF8DE990"}),
        ))
        .unwrap();
        assert_eq!(ok.provider_message_id, "900619746936498440^0");

        let err =
            |status, code: &str, msg: &str| {
                outcome(&response(status).with_json(
                    &serde_json::json!({"Code": code, "Message": msg, "RequestId": "x"}),
                ))
            };
        for (msg, want) in [
            ("触发分钟级流控Permits:1", 60_000),
            ("触发小时级流控Permits:5", 3_600_000),
            ("触发天级流控Permits:10", 86_400_000),
            ("", 3_600_000),
        ] {
            let r = retryable(err(200, "isv.BUSINESS_LIMIT_CONTROL", msg));
            assert_eq!(r.retry_after_ms, Some(want), "{msg}");
        }
        for code in [
            "isv.AMOUNT_NOT_ENOUGH",
            "isp.SYSTEM_ERROR",
            "Throttling.User",
        ] {
            retryable(err(200, code, "x"));
        }
        for (code, hint) in [
            ("SignatureDoesNotMatch", "access_key_secret"),
            ("InvalidAccessKeyId.NotFound", "access_key_id"),
            ("isv.SMS_SIGNATURE_ILLEGAL", "sign_name"),
            ("isv.SMS_TEMPLATE_ILLEGAL", "template_code"),
            ("isv.TEMPLATE_MISSING_PARAMETERS", "fields"),
            ("isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_NUMBER_ILLEGAL"),
            ("isv.BLACK_KEY_CONTROL_LIMIT", "isv.BLACK_KEY_CONTROL_LIMIT"),
            ("isv.SOMETHING_NEW", "isv.SOMETHING_NEW"),
        ] {
            let m = permanent(err(400, code, "msg"));
            assert!(m.contains(hint), "{code}: {m}");
        }
        let raw = |status, body: &str| {
            outcome(
                &response(status)
                    .with_header("retry-after", "5")
                    .with_text(body),
            )
        };
        assert_eq!(retryable(raw(503, "<html>")).retry_after_ms, Some(5000));
        permanent(raw(403, "nope"));
        retryable(err(502, "SomethingNew", "x"));
    }

    #[test]
    fn pushes_need_the_callback_token() {
        let report = r#"[{"phone_number":"13800138000","success":true,"err_code":"DELIVERED","biz_id":"12345^0"}]"#;
        let push = |url: &str| callback("POST", url).with_body(report);
        let token = settings(&[("callback_token", "s3cret")]);
        let result = Aliyun::handle_callback(
            token.clone(),
            push("https://h.example/hooks/sms?token=s3cret"),
        )
        .unwrap();
        assert_eq!(result.events.len(), 1);
        assert_eq!(
            (result.response.status, result.response.body.as_str()),
            (200, PUSH_ANSWER)
        );
        for url in [
            "https://h.example/hooks/sms?token=other",
            "https://h.example/hooks/sms",
        ] {
            assert!(matches!(
                Aliyun::handle_callback(token.clone(), push(url)),
                Err(CallbackError::Unauthorized(_))
            ));
        }
        // Without a callback_token every push is refused, saying what to set.
        for url in [
            "https://h.example/hooks/sms",
            "https://h.example/hooks/sms?token=",
        ] {
            match Aliyun::handle_callback(Vec::new(), push(url)) {
                Err(CallbackError::Unauthorized(why)) => {
                    assert!(why.contains("callback_token"), "{why}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn pushes_parse_into_events() {
        let report = r#"[{"phone_number":"13800138000","send_time":"2026-03-01 17:00:00","report_time":"2026-03-01 17:00:05","success":true,"err_code":"DELIVERED","err_msg":"用户接收成功","sms_size":"1","biz_id":"12345^0","out_id":"k1"},
            {"phone_number":"13900139000","send_time":"2026-03-01 17:00:00","report_time":"2026-03-01 17:00:05","success":false,"err_code":"MK:0001","err_msg":"MK:0001","sms_size":"1","biz_id":"12346^0","out_id":"k2"}]"#;
        let ev = parse_push(report.as_bytes()).unwrap();
        assert_eq!(ev.len(), 2);
        assert!(
            matches!(&ev[0], CallbackEvent::Report(r) if r.provider_message_id == "12345^0" && matches!(r.state, DeliveryState::Delivered) && r.reason.is_none())
        );
        assert!(
            matches!(&ev[1], CallbackEvent::Report(r) if matches!(r.state, DeliveryState::Undelivered) && r.reason.as_deref() == Some("MK:0001"))
        );

        let up = r#"[{"phone_number":"13800138000","send_time":"2026-03-01 17:01:00","content":"退订","sign_name":"阿里云短信测试","dest_code":"1234","sequence_id":1234567}]"#;
        let ev = parse_push(up.as_bytes()).unwrap();
        assert_eq!(ev.len(), 2);
        assert!(
            matches!(&ev[0], CallbackEvent::Reply(r) if r.sender == "+8613800138000" && r.text == "退订")
        );
        assert!(matches!(&ev[1], CallbackEvent::Reply(r) if r.sender == "13800138000"));

        assert!(matches!(
            parse_push(b"nope"),
            Err(CallbackError::BadRequest(_))
        ));
        assert!(matches!(
            parse_push(b"42"),
            Err(CallbackError::BadRequest(_))
        ));
        assert!(parse_push(b"[]").unwrap().is_empty());
    }
}
