//! `herald-push-jpush`: a channel plugin that sends each reminder as an app
//! push notification through JPush (极光推送) REST API v3, the common push
//! service for Android phones in China (it reaches vendors' own channels
//! where Google's are absent), iOS and HarmonyOS.
//!
//! It owns the JPush protocol: `POST /v3/push` with HTTP Basic
//! `app_key:master_secret`, one push to all of the customer's registration
//! ids (`audience.registration_id`) with the subject as title, the text as
//! alert and the rule's fields as `extras` for each platform, and the
//! mapping of JPush's error codes: 1011 (no such user) is
//! `invalid-address`, so Herald forgets the registration ids; 2002 (rate
//! limit) and 5xx are retried after `X-Rate-Limit-Reset`; bad credentials
//! (1004, 1008) and bad requests are permanent with what to fix.

use base64::Engine as _;
use herald_pdk::http::{HttpError, Request, Response};
use herald_pdk::{
    AddressKind, Guest, Message, PluginInfo, PushToken, Receipt, SendError, Setting, SettingSpec,
    Settings,
};
use serde_json::{json, Map, Value};

const DEFAULT_API_BASE: &str = "https://api.jpush.cn";
/// The longest error text of JPush kept in a reason.
const DETAIL_CHARS: usize = 200;

struct Jpush;

impl Guest for Jpush {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "push-jpush".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Push,
            accepts_callbacks: false,
            settings: vec![
                SettingSpec::required("app_key", "The app's AppKey (JPush console → 应用设置 → 应用信息)"),
                SettingSpec::required("master_secret", "The app's Master Secret").secret(),
                SettingSpec::optional("apns_production", "`true` (default) for App Store builds, `false` to reach iOS development builds"),
                SettingSpec::optional("time_to_live", "Seconds JPush keeps a message for an offline device (default 86400, at most 864000)"),
                SettingSpec::optional("api_base", "API origin (default https://api.jpush.cn); must be in allowed_hosts"),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let app_key = settings.required("app_key")?.trim();
        let secret = settings.required("master_secret")?.trim();
        let options = options(&settings)?;
        let api_base = settings
            .optional_or("api_base", DEFAULT_API_BASE)
            .trim_end_matches('/');
        let body = payload(&message, options)?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{app_key}:{secret}"));
        let request = Request::post_json(format!("{api_base}/v3/push"), &body)
            .header("Authorization", format!("Basic {auth}"))
            .header(
                "User-Agent",
                concat!("herald-push-jpush/", env!("CARGO_PKG_VERSION")),
            );
        let response = herald_pdk::http::send(request).map_err(transport_error)?;
        outcome(&response)
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        herald_pdk::no_callbacks()
    }
}

fn transport_error(err: HttpError) -> SendError {
    SendError::from(err)
}

/// `options` of the push: production APNs or not, how long to keep it.
fn options(settings: &Settings) -> Result<Value, SendError> {
    let production = match settings.optional("apns_production").map(str::trim) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(SendError::Permanent(format!(
                "apns_production must be true or false, not `{other}`"
            )))
        }
    };
    let ttl = match settings.optional("time_to_live").map(str::trim) {
        None => 86_400,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 864_000)
            .ok_or_else(|| {
                SendError::Permanent(format!(
                    "time_to_live must be a number of seconds up to 864000 (10 days), not `{text}`"
                ))
            })?,
    };
    Ok(json!({"apns_production": production, "time_to_live": ttl}))
}

/// JPush's name of a device platform; web has none.
fn platform_of(device: &PushToken) -> Option<&'static str> {
    match device.platform.as_str() {
        "android" => Some("android"),
        "ios" => Some("ios"),
        "harmony" => Some("hmos"),
        _ => None,
    }
}

/// The push to every device JPush can reach.
fn payload(message: &Message, options: Value) -> Result<Value, SendError> {
    let mut ids = Vec::new();
    let mut platforms: Vec<&str> = Vec::new();
    for device in &message.recipient.push_tokens {
        if let Some(platform) = platform_of(device) {
            ids.push(device.token.as_str());
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
    }
    if ids.is_empty() {
        return Err(SendError::Permanent(format!(
            "customer `{}` has no Android, iOS or HarmonyOS device (JPush does not reach web apps)",
            message.recipient.customer_id
        )));
    }
    let mut extras = Map::new();
    for f in &message.fields {
        extras.insert(f.name.clone(), Value::String(f.value.clone()));
    }
    extras.insert("herald_rule".into(), Value::String(message.rule.clone()));
    let (title, text) = (message.subject.as_str(), message.text.trim_end());
    Ok(json!({
        "platform": platforms,
        "audience": {"registration_id": ids},
        "notification": {
            "alert": text,
            "android": {"alert": text, "title": title, "extras": extras},
            "ios": {"alert": {"title": title, "body": text}, "sound": "default", "extras": extras},
            "hmos": {"alert": text, "title": title, "extras": extras},
        },
        "options": options,
    }))
}

/// JPush's answer as an outcome.
fn outcome(response: &Response) -> Result<Receipt, SendError> {
    let body: Value = response.json().unwrap_or(Value::Null);
    if response.is_success() {
        let id = match &body["msg_id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if id.is_empty() {
            return Err(SendError::retryable(
                format!("JPush answered {} without a msg_id", response.status),
                None,
            ));
        }
        return Ok(Receipt {
            provider_message_id: id,
        });
    }
    let code = body["error"]["code"].as_i64().unwrap_or(0);
    let detail: String = body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(DETAIL_CHARS)
        .collect();
    let what = format!(
        "JPush answered HTTP {} error {code}: {detail}",
        response.status
    );
    // X-Rate-Limit-Reset: seconds until the app's quota window resets.
    let reset_ms = response
        .header("x-rate-limit-reset")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| s.min(86_400) * 1000);
    Err(match (response.status, code) {
        (_, 1011) => SendError::InvalidAddress(format!(
            "{what} (none of the customer's registration ids is known to this app)"
        )),
        (_, 2002) | (429, _) => SendError::retryable(
            format!("{what} (over the app's rate limit; will retry)"),
            reset_ms,
        ),
        (_, 1004) | (401, _) => SendError::Permanent(format!(
            "{what}: JPush rejected the credentials; check the channel's app_key and master_secret"
        )),
        (_, 1008) => SendError::Permanent(format!("{what}: check the channel's app_key")),
        (500..=599, _) | (_, 1000) => {
            SendError::retryable(format!("{what} (will retry)"), response.retry_after_ms())
        }
        _ => SendError::Permanent(what),
    })
}

herald_pdk::export!(Jpush);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{invalid_address, permanent, response, retryable, sample_message};

    fn jpush_error(status: u16, code: i64, message: &str) -> Response {
        response(status)
            .with_text(&json!({"error": {"code": code, "message": message}}).to_string())
    }

    #[test]
    fn answers_map_to_outcomes() {
        let ok =
            outcome(&response(200).with_text(r#"{"sendno":"0","msg_id":"18100295599391745"}"#));
        assert_eq!(ok.unwrap().provider_message_id, "18100295599391745");
        let ok = outcome(&response(200).with_text(r#"{"sendno":"0","msg_id":54043195528409093}"#));
        assert_eq!(ok.unwrap().provider_message_id, "54043195528409093");
        let m = invalid_address(outcome(&jpush_error(
            400,
            1011,
            "cannot find user by this audience or has been inactive for more than 255 days",
        )));
        assert!(m.contains("1011"), "{m}");
        let r = retryable(outcome(
            &jpush_error(
                429,
                2002,
                "Request times exceed the limit of current appkey",
            )
            .with_header("x-rate-limit-reset", "30"),
        ));
        assert_eq!(r.retry_after_ms, Some(30_000));
        retryable(outcome(&jpush_error(502, 1000, "Server error")));
        let m = permanent(outcome(&jpush_error(
            401,
            1004,
            "Basic authentication failed",
        )));
        assert!(m.contains("app_key and master_secret"), "{m}");
        let m = permanent(outcome(&jpush_error(
            400,
            1003,
            "Parameter value is invalid",
        )));
        assert!(m.contains("1003"), "{m}");
    }

    #[test]
    fn the_push_carries_every_reachable_device() {
        let mut message = sample_message();
        message.recipient.push_tokens.push(PushToken {
            token: "1a0018970a8f8c2b3d".into(),
            platform: "ios".into(),
            app: "com.acme.app".into(),
        });
        message.recipient.push_tokens.push(PushToken {
            token: "web-endpoint".into(),
            platform: "web".into(),
            app: "acme.example".into(),
        });
        let v = payload(
            &message,
            json!({"apns_production": true, "time_to_live": 86400}),
        )
        .unwrap();
        assert_eq!(v["platform"], json!(["android", "ios"]));
        assert_eq!(
            v["audience"]["registration_id"],
            json!(["fcm-token-ada-pixel", "1a0018970a8f8c2b3d"])
        );
        assert_eq!(
            v["notification"]["android"]["title"],
            "Your Acme trial ends in 4 days"
        );
        assert_eq!(
            v["notification"]["ios"]["alert"]["title"],
            "Your Acme trial ends in 4 days"
        );
        assert_eq!(
            v["notification"]["android"]["extras"]["herald_rule"],
            "trial-ending"
        );
        message
            .recipient
            .push_tokens
            .retain(|t| t.platform == "web");
        assert!(permanent(payload(&message, Value::Null)).contains("web apps"));
    }
}
