//! `herald-push-fcm`: a channel plugin that sends each reminder as an app
//! push notification through Firebase Cloud Messaging's HTTP v1 API to every
//! device the customer has registered.
//!
//! It owns the FCM protocol: the OAuth2 access token of a service account
//! (a JWT signed with the account's RSA key, exchanged at its `token_uri`
//! and cached in the plugin's key-value store until shortly before it
//! expires; Google's endpoint does not invalidate earlier tokens, so two
//! sends fetching at once cost nothing but a request), one
//! `projects/{project}/messages:send` per device token with the subject as
//! title, the text as body and the rule's fields as `data`, one refresh of
//! the access token when FCM answers 401, and the mapping of FCM's error
//! codes: `UNREGISTERED`, `SENDER_ID_MISMATCH` and a token FCM calls invalid
//! make that token dead; `QUOTA_EXCEEDED`, `UNAVAILABLE` and `INTERNAL` are
//! retried; the rest are permanent with what to fix. A message reaching any
//! device is delivered; when every token is dead the answer is
//! `invalid-address`, and Herald forgets them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use herald_pdk::http::{HttpError, Request, Response};
use herald_pdk::{
    form, kv, log, time, AddressKind, Guest, Message, PluginInfo, PushToken, Receipt, SendError,
    Setting, SettingSpec, Settings,
};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde::Deserialize;
use serde_json::{json, Map, Value};

const DEFAULT_API_BASE: &str = "https://fcm.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long the signed assertion is valid (Google's maximum).
const ASSERTION_SECS: u64 = 3600;
/// Seconds before Google's expiry at which a cached token is dropped.
const TOKEN_MARGIN_SECS: u64 = 300;
/// The longest error text of FCM kept in a reason.
const DETAIL_CHARS: usize = 200;

struct Fcm;

impl Guest for Fcm {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "push-fcm".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Push,
            accepts_callbacks: false,
            settings: vec![
                SettingSpec::required("service_account", "The service account key, as downloaded from the Firebase console (Project settings → Service accounts → Generate new private key); write it as { file = \"…json\" }").secret(),
                SettingSpec::optional("project_id", "The Firebase project (default: the service account's project_id)"),
                SettingSpec::optional("api_base", "FCM API origin (default https://fcm.googleapis.com); it and the account's token_uri must be in allowed_hosts"),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let account = ServiceAccount::parse(settings.required("service_account")?)?;
        let project = settings
            .optional("project_id")
            .unwrap_or(&account.project_id)
            .trim();
        let api_base = settings
            .optional_or("api_base", DEFAULT_API_BASE)
            .trim_end_matches('/');
        let tokens = &message.recipient.push_tokens;
        if tokens.is_empty() {
            return Err(SendError::Permanent(format!(
                "customer `{}` has no registered device",
                message.recipient.customer_id
            )));
        }
        let url = format!(
            "{api_base}/v1/projects/{}/messages:send",
            form::escape(project)
        );
        let mut access = account.access_token()?;
        let mut results = Vec::with_capacity(tokens.len());
        for device in tokens {
            let body = payload(&message, device);
            let mut result = send_one(&url, &access, &body)?;
            if matches!(result, Delivery::Unauthenticated) {
                // An access token FCM no longer takes: drop it, fetch one,
                // send this device again; a second 401 is the account's.
                account.forget(&access);
                access = account.access_token()?;
                result = send_one(&url, &access, &body)?;
            }
            results.push((device.token.as_str(), result));
        }
        let dead = results
            .iter()
            .filter(|(_, d)| matches!(d, Delivery::Dead(_)))
            .count();
        if dead > 0 && dead < results.len() {
            log::warn(&format!(
                "{dead} of {} device tokens are dead (the others are sent to)",
                results.len()
            ));
        }
        outcome(results)
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        herald_pdk::no_callbacks()
    }
}

/// The fields of a service account key file this plugin uses.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key_id: String,
    private_key: String,
    client_email: String,
    token_uri: String,
}

impl ServiceAccount {
    fn parse(text: &str) -> Result<ServiceAccount, SendError> {
        serde_json::from_str(text).map_err(|e| {
            SendError::Permanent(format!(
                "service_account is not a service account key file ({e}): download one from the Firebase console (Project settings → Service accounts → Generate new private key)"
            ))
        })
    }

    fn cache_key(&self) -> String {
        format!("access_token:{}", self.client_email)
    }

    /// The cached access token, or a new one.
    fn access_token(&self) -> Result<String, SendError> {
        if let Some(token) = kv::get_string(&self.cache_key()) {
            return Ok(token);
        }
        let assertion = self.assertion(time::unix_now_secs())?;
        let body = form::encode(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ]);
        let request = Request::post(self.token_uri.clone(), body)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", user_agent());
        let response = herald_pdk::http::send(request).map_err(transport_error)?;
        let (token, expires_in) = token_outcome(&response)?;
        let ttl = expires_in
            .saturating_sub(TOKEN_MARGIN_SECS)
            .max(expires_in / 2)
            .max(1);
        kv::set(&self.cache_key(), token.as_bytes(), Some(ttl));
        log::info(&format!(
            "fetched an FCM access token for {}, cached for {ttl}s",
            self.client_email
        ));
        Ok(token)
    }

    /// Drop `token` from the cache unless another send already replaced it.
    fn forget(&self, token: &str) {
        if kv::get_string(&self.cache_key()).as_deref() == Some(token) {
            kv::delete(&self.cache_key());
        }
    }

    /// The signed JWT that asks for an access token at `now`.
    fn assertion(&self, now: u64) -> Result<String, SendError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(&self.private_key).map_err(|e| {
            SendError::Permanent(format!(
                "the service account's private_key is not a PKCS#8 PEM RSA key ({e}); use the key file exactly as downloaded"
            ))
        })?;
        let signature = SigningKey::<sha2::Sha256>::new(key).sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

fn user_agent() -> &'static str {
    concat!("herald-push-fcm/", env!("CARGO_PKG_VERSION"))
}

fn transport_error(err: HttpError) -> SendError {
    SendError::from(err)
}

/// The access token and its lifetime from the token endpoint's answer.
fn token_outcome(response: &Response) -> Result<(String, u64), SendError> {
    #[derive(Deserialize)]
    struct Granted {
        access_token: String,
        expires_in: u64,
    }
    if response.is_success() {
        return match response.json::<Granted>() {
            Ok(g) if !g.access_token.is_empty() => Ok((g.access_token, g.expires_in)),
            _ => Err(SendError::retryable(
                format!(
                    "the token endpoint answered {} without an access token",
                    response.status
                ),
                None,
            )),
        };
    }
    let detail = response.snippet(DETAIL_CHARS);
    match response.status {
        400 | 401 | 403 => Err(SendError::Permanent(format!(
            "the token endpoint refused the service account (HTTP {}: {detail}); check that service_account is a current key of an account that may send with FCM",
            response.status
        ))),
        _ => Err(SendError::retryable(
            format!("the token endpoint answered HTTP {}: {detail}", response.status),
            response.retry_after_ms(),
        )),
    }
}

/// What became of the message to one device.
#[derive(Debug, Clone)]
enum Delivery {
    /// FCM accepted it: the message's name.
    Sent(String),
    /// The token does not exist for this project.
    Dead(String),
    /// The access token was not accepted.
    Unauthenticated,
    /// Any other failure.
    Failed(SendError),
}

/// The FCM v1 message to one device.
fn payload(message: &Message, device: &PushToken) -> Value {
    let mut data = Map::new();
    for f in &message.fields {
        data.insert(f.name.clone(), Value::String(f.value.clone()));
    }
    data.insert("herald_rule".into(), Value::String(message.rule.clone()));
    json!({
        "message": {
            "token": device.token,
            "notification": {"title": message.subject, "body": message.text.trim_end()},
            "data": data,
        }
    })
}

fn send_one(url: &str, access: &str, body: &Value) -> Result<Delivery, SendError> {
    let request = Request::post_json(url.to_string(), body)
        .header("Authorization", format!("Bearer {access}"))
        .header("User-Agent", user_agent());
    let response = herald_pdk::http::send(request).map_err(transport_error)?;
    Ok(delivery(&response))
}

/// FCM's answer for one device.
fn delivery(response: &Response) -> Delivery {
    if response.is_success() {
        let name = response
            .json::<Value>()
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string));
        return match name {
            Some(name) if !name.is_empty() => Delivery::Sent(name),
            _ => Delivery::Failed(SendError::retryable(
                format!("FCM answered {} without a message name", response.status),
                None,
            )),
        };
    }
    let error: Value = response.json().unwrap_or(Value::Null);
    let status = error["error"]["status"].as_str().unwrap_or("");
    let code = fcm_error_code(&error).unwrap_or(status);
    let message: String = error["error"]["message"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(DETAIL_CHARS)
        .collect();
    let what = format!("FCM answered HTTP {} {code}: {message}", response.status);
    match (response.status, code) {
        // APNs refused the project's credentials (FCM answers 401 for it).
        (_, "THIRD_PARTY_AUTH_ERROR") => Delivery::Failed(SendError::Permanent(format!(
            "{what}: the APNs certificate or key of this Firebase project is missing or invalid (Project settings → Cloud Messaging)"
        ))),
        (401, _) | (_, "UNAUTHENTICATED") => Delivery::Unauthenticated,
        (_, "UNREGISTERED") => Delivery::Dead(format!("{what} (the app was uninstalled or the token expired)")),
        (_, "SENDER_ID_MISMATCH") => Delivery::Dead(format!("{what} (the token belongs to another Firebase project)")),
        (400, "INVALID_ARGUMENT") if message.to_ascii_lowercase().contains("registration token") => {
            Delivery::Dead(what)
        }
        (429, _) | (_, "QUOTA_EXCEEDED") => Delivery::Failed(SendError::retryable(
            format!("{what} (over the project's quota; will retry)"),
            response.retry_after_ms(),
        )),
        (500..=599, _) | (_, "UNAVAILABLE" | "INTERNAL") => Delivery::Failed(SendError::retryable(
            format!("{what} (will retry)"),
            response.retry_after_ms(),
        )),
        (403, _) | (_, "PERMISSION_DENIED") => Delivery::Failed(SendError::Permanent(format!(
            "{what}: the service account may not send with FCM in this project; check project_id and the account's roles"
        ))),
        _ => Delivery::Failed(SendError::Permanent(what)),
    }
}

/// The `errorCode` of FCM's own error detail, if the answer has one.
fn fcm_error_code(error: &Value) -> Option<&str> {
    error["error"]["details"].as_array()?.iter().find(|d| {
        d["@type"]
            .as_str()
            .is_some_and(|t| t.ends_with("google.firebase.fcm.v1.FcmError"))
    })?["errorCode"]
        .as_str()
}

/// One answer for the whole message: delivered when any device got it;
/// `invalid-address` when every token is dead; else the first retryable
/// failure (so the reminder is tried again), else the first failure.
fn outcome(results: Vec<(&str, Delivery)>) -> Result<Receipt, SendError> {
    let dead = results
        .iter()
        .filter(|(_, d)| matches!(d, Delivery::Dead(_)))
        .count();
    if let Some(name) = results.iter().find_map(|(_, d)| match d {
        Delivery::Sent(name) => Some(name.clone()),
        _ => None,
    }) {
        return Ok(Receipt {
            provider_message_id: name,
        });
    }
    if dead == results.len() {
        let reasons: Vec<String> = results
            .into_iter()
            .filter_map(|(_, d)| match d {
                Delivery::Dead(why) => Some(why),
                _ => None,
            })
            .collect();
        return Err(SendError::InvalidAddress(reasons.join("; ")));
    }
    let failures: Vec<SendError> = results
        .into_iter()
        .filter_map(|(_, d)| match d {
            Delivery::Failed(e) => Some(e),
            Delivery::Unauthenticated => Some(SendError::Permanent(
                "FCM refused a freshly fetched access token (401): check that the service account may send with FCM".into(),
            )),
            _ => None,
        })
        .collect();
    let first_retryable = failures
        .iter()
        .position(|e| matches!(e, SendError::Retryable(_)));
    let index = first_retryable.unwrap_or(0);
    Err(failures
        .into_iter()
        .nth(index)
        .unwrap_or_else(|| SendError::Permanent("no device answered".into())))
}

herald_pdk::export!(Fcm);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{invalid_address, permanent, response, retryable};

    fn fcm_error(status: u16, code: Option<&str>, grpc: &str, message: &str) -> Response {
        let mut details = Vec::new();
        if let Some(code) = code {
            details.push(json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}));
        }
        response(status).with_text(
            &json!({"error": {"code": status, "message": message, "status": grpc, "details": details}})
                .to_string(),
        )
    }

    #[test]
    fn fcm_answers_map_to_deliveries() {
        assert!(matches!(
            delivery(&response(200).with_text(r#"{"name":"projects/p/messages/0:1"}"#)),
            Delivery::Sent(name) if name == "projects/p/messages/0:1"
        ));
        let dead = |r| matches!(delivery(&r), Delivery::Dead(_));
        assert!(dead(fcm_error(
            404,
            Some("UNREGISTERED"),
            "NOT_FOUND",
            "Requested entity was not found."
        )));
        assert!(dead(fcm_error(
            403,
            Some("SENDER_ID_MISMATCH"),
            "PERMISSION_DENIED",
            "SenderId mismatch"
        )));
        assert!(dead(fcm_error(
            400,
            Some("INVALID_ARGUMENT"),
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token"
        )));
        assert!(matches!(
            delivery(&fcm_error(
                401,
                None,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials."
            )),
            Delivery::Unauthenticated
        ));
        let failed = |r| match delivery(&r) {
            Delivery::Failed(e) => e,
            other => panic!("{other:?}"),
        };
        let r = retryable(Err::<(), _>(failed(
            fcm_error(
                429,
                Some("QUOTA_EXCEEDED"),
                "RESOURCE_EXHAUSTED",
                "Quota exceeded",
            )
            .with_header("retry-after", "30"),
        )));
        assert_eq!(r.retry_after_ms, Some(30_000));
        retryable(Err::<(), _>(failed(fcm_error(
            503,
            Some("UNAVAILABLE"),
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ))));
        let m = permanent(Err::<(), _>(failed(fcm_error(
            400,
            Some("INVALID_ARGUMENT"),
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
        ))));
        assert!(m.contains("Invalid JSON payload"), "{m}");
        let m = permanent(Err::<(), _>(failed(fcm_error(
            401,
            Some("THIRD_PARTY_AUTH_ERROR"),
            "UNAUTHENTICATED",
            "Auth error from APNS or Web Push Service",
        ))));
        assert!(m.contains("APNs"), "{m}");
    }

    #[test]
    fn one_answer_for_all_devices() {
        let sent = |n: &str| Delivery::Sent(n.into());
        let dead = || Delivery::Dead("gone".into());
        let busy = || Delivery::Failed(SendError::retryable("busy", Some(1000)));
        let bad = || Delivery::Failed(SendError::Permanent("bad".into()));
        assert_eq!(
            outcome(vec![("a", dead()), ("b", sent("m-b"))])
                .unwrap()
                .provider_message_id,
            "m-b"
        );
        assert!(invalid_address(outcome(vec![("a", dead()), ("b", dead())])).contains("gone"));
        assert_eq!(
            retryable(outcome(vec![("a", bad()), ("b", busy())])).reason,
            "busy"
        );
        assert_eq!(permanent(outcome(vec![("a", dead()), ("b", bad())])), "bad");
    }

    #[test]
    fn the_payload_has_title_body_and_data() {
        let mut message = herald_pdk::testing::sample_message();
        message.fields = herald_pdk::testing::fields(&[("deep_link", "acme://trial")]);
        let device = &message.recipient.push_tokens[0];
        let v = payload(&message, device);
        assert_eq!(v["message"]["token"], "fcm-token-ada-pixel");
        assert_eq!(
            v["message"]["notification"]["title"],
            "Your Acme trial ends in 4 days"
        );
        assert_eq!(v["message"]["data"]["deep_link"], "acme://trial");
        assert_eq!(v["message"]["data"]["herald_rule"], "trial-ending");
    }
}
