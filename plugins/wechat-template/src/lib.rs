//! `herald-wechat-template`: a channel plugin that sends each reminder as a
//! WeChat Official Account template message to the customer's OpenID.
//!
//! It owns the WeChat protocol: fetching the access token
//! (`GET /cgi-bin/token`) and caching it in the plugin's key-value store
//! until shortly before it expires, the template message body
//! (`POST /cgi-bin/message/template/send`: `touser`, `template_id`, `url`,
//! `data` from the rule's fields), refreshing the token once within a send
//! when WeChat says it is invalid, the mapping of WeChat's `errcode`s onto a
//! receipt or a retryable / permanent / unsubscribed error, and the parsing
//! of the signed `TEMPLATESENDJOBFINISH` event push into delivery reports
//! (a push is taken only within the freshness window and once: see
//! `herald_pdk::replay`).
//! The access token and the app secret travel in URLs; no error text this
//! plugin returns contains a URL's query string.

use herald_pdk::http::{HttpError, Request, Response};
use herald_pdk::{
    callback_reply, constant_time_eq, form, kv, log, non_empty, replay, time, AddressKind,
    CallbackError, CallbackEvent, CallbackRequest, CallbackResult, DeliveryReport, DeliveryState,
    Guest, InboundReply, Message, PluginInfo, Receipt, SendError, Setting, SettingSpec, Settings,
};
use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
/// Seconds before WeChat's own expiry at which a cached token is dropped.
const TOKEN_EXPIRY_MARGIN_SECS: u64 = 300;
/// How long a token fetch lease lasts (host-clock seconds).
const TOKEN_LEASE_SECS: u64 = 10;
/// Pause between writing the lease and reading it back.
const LEASE_SETTLE: std::time::Duration = std::time::Duration::from_millis(50);
/// How long a send waits for another send's token fetch.
const TOKEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const TOKEN_POLL: std::time::Duration = std::time::Duration::from_millis(25);
/// Fields with these names steer the send instead of filling template data.
const TEMPLATE_ID_FIELD: &str = "template_id";
const URL_FIELD: &str = "url";
/// How long after 00:00 Beijing time a message held by the daily API limit
/// (45009) is tried again.
const DAILY_RESET_SLACK_SECS: u64 = 300;

struct WechatTemplate;

impl Guest for WechatTemplate {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "wechat-template".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Wechat,
            accepts_callbacks: true,
            settings: vec![
                SettingSpec::required("app_id", "The Official Account's AppID (开发 → 基本配置)"),
                SettingSpec::required("app_secret", "The Official Account's AppSecret").secret(),
                SettingSpec::optional("template_id", "Template ID of the message template (a rule field `template_id` overrides it)"),
                SettingSpec::optional("url", "Default link opened when the customer taps the message (a rule field `url` overrides it)"),
                SettingSpec::optional("api_base", "API origin (default https://api.weixin.qq.com); must be in allowed_hosts"),
                SettingSpec::optional("callback_token", "The Token of the account's server configuration (服务器配置), to verify event pushes at /hooks/{channel}").secret(),
                replay::window_setting_spec(),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let app = App {
            app_id: settings.required("app_id")?.trim(),
            app_secret: settings.required("app_secret")?.trim(),
            api_base: settings
                .optional_or("api_base", DEFAULT_API_BASE)
                .trim_end_matches('/'),
        };
        let openid = non_empty(message.recipient.wechat_openid.as_deref()).ok_or_else(|| {
            SendError::Permanent(format!(
                "customer `{}` has no wechat_openid",
                message.recipient.customer_id
            ))
        })?;
        let body = payload(
            &message,
            openid,
            settings.optional("template_id"),
            settings.optional("url"),
        )?;
        let body = serde_json::to_vec(&body).map_err(|e| {
            SendError::Permanent(format!("cannot encode the template message: {e}"))
        })?;

        let mut token = app.token(&message.idempotency_key)?;
        // At most one refresh: a token WeChat calls invalid is dropped,
        // a new one fetched and the message sent again.
        for refreshed in [false, true] {
            let url = format!(
                "{}/cgi-bin/message/template/send?access_token={}",
                app.api_base,
                form::escape(&token)
            );
            let request = Request::post(url, body.clone())
                .header("Content-Type", "application/json; charset=utf-8")
                .header(
                    "User-Agent",
                    concat!("herald-wechat-template/", env!("CARGO_PKG_VERSION")),
                );
            let response = herald_pdk::http::send(request).map_err(transport_error)?;
            match send_outcome(&response, &token, time::unix_now_secs()) {
                SendOutcome::Sent(msgid) => {
                    return Ok(Receipt {
                        provider_message_id: msgid,
                    })
                }
                SendOutcome::TokenRejected(detail) => {
                    // Drop the cached token unless a concurrent send has
                    // already replaced it with a fresh one.
                    if kv::get_string(&app.token_key()).as_deref() == Some(token.as_str()) {
                        kv::delete(&app.token_key());
                    }
                    if refreshed {
                        return Err(SendError::retryable(
                            format!(
                                "WeChat rejected a freshly fetched access token too ({detail}); \
                                 another server using the same app_id may be fetching tokens"
                            ),
                            None,
                        ));
                    }
                    log::info(&format!(
                        "WeChat rejected the cached access token ({detail}); fetching a new one"
                    ));
                    token = app.token(&message.idempotency_key)?;
                }
                SendOutcome::Failed(err) => return Err(err),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    fn handle_callback(
        settings: Vec<Setting>,
        request: CallbackRequest,
    ) -> Result<CallbackResult, CallbackError> {
        let settings = Settings::new(&settings);
        let push = verify_push(&settings, &request, time::unix_now_secs())?;
        if !replay::first_use(&push.key, push.fresh_for) {
            return Err(CallbackError::Unauthorized(
                "this push was already received (same timestamp, nonce and signature): a replayed request is refused"
                    .to_string(),
            ));
        }
        answer_push(&request)
    }
}

/// A push whose signature and timestamp checked out.
#[derive(Debug, PartialEq, Eq)]
struct VerifiedPush {
    /// The key-value entry that marks it seen.
    key: String,
    /// Seconds it stays fresh, so how long to remember it.
    fresh_for: u64,
}

/// Checks a push's `signature` (sha1 of the sorted token, `timestamp` and
/// `nonce`) and that its timestamp is within the channel's window of `now`.
fn verify_push(
    settings: &Settings,
    request: &CallbackRequest,
    now: u64,
) -> Result<VerifiedPush, CallbackError> {
    let token = settings.optional("callback_token").ok_or_else(|| {
        CallbackError::Unauthorized(
            "this channel has no `callback_token`: set it to the Token of the account's \
             server configuration (开发 → 基本配置 → 服务器配置)"
                .to_string(),
        )
    })?;
    let window = replay::window(settings).map_err(CallbackError::Unauthorized)?;
    let params = request.query();
    let param = |k: &str| form::get(&params, k).unwrap_or_default();
    if !signature_ok(
        token,
        param("timestamp"),
        param("nonce"),
        param("signature"),
    ) {
        return Err(CallbackError::Unauthorized(
            "the `signature` query parameter does not match sha1(sort(token, timestamp, nonce)): \
             check that `callback_token` equals the Token in the server configuration"
                .to_string(),
        ));
    }
    let fresh_for =
        replay::fresh_for(param("timestamp"), now, window).map_err(CallbackError::Unauthorized)?;
    Ok(VerifiedPush {
        key: format!("push-seen:{}", param("signature").to_ascii_lowercase()),
        fresh_for,
    })
}

/// The answer to a verified push: `echostr` back for WeChat's check of the
/// server URL, else the events of the XML body.
fn answer_push(request: &CallbackRequest) -> Result<CallbackResult, CallbackError> {
    let params = request.query();
    let param = |k: &str| form::get(&params, k).unwrap_or_default();
    if request.method.eq_ignore_ascii_case("GET") || request.body.is_empty() {
        return callback_reply(
            Vec::new(),
            200,
            "text/plain; charset=utf-8",
            param("echostr"),
        );
    }
    if param("encrypt_type") == "aes" {
        return Err(CallbackError::BadRequest(
            "encrypted (安全模式) event pushes are not supported: set the server configuration's \
             message encryption to plaintext (明文模式)"
                .to_string(),
        ));
    }
    let body = String::from_utf8_lossy(&request.body);
    let events = parse_event(&body).map_err(CallbackError::BadRequest)?;
    callback_reply(events, 200, "text/plain; charset=utf-8", "success")
}

/// The Official Account a channel sends as.
struct App<'a> {
    app_id: &'a str,
    app_secret: &'a str,
    api_base: &'a str,
}

impl App<'_> {
    /// The key-value entry of this app's access token.
    fn token_key(&self) -> String {
        format!("access_token:{}", self.app_id)
    }

    /// The key-value entry that marks a token fetch in progress.
    fn lock_key(&self) -> String {
        format!("access_token_fetch:{}", self.app_id)
    }

    /// The cached access token, or a new one.
    ///
    /// Sends run concurrently, and each would fetch its own token when the
    /// cache is empty (every fetch costs daily quota and, after five
    /// minutes, invalidates the tokens fetched before it). So one send takes
    /// a lease in the key-value store and fetches; the others wait up to
    /// `TOKEN_WAIT` for its token. The store has no compare-and-set: the
    /// lease is claimed by writing `me`, pausing, and reading it back; the
    /// last writer wins. It narrows the stampede, it does not make it
    /// impossible; an extra fetch is harmless.
    fn token(&self, me: &str) -> Result<String, SendError> {
        let token_key = self.token_key();
        if let Some(token) = kv::get_string(&token_key) {
            return Ok(token);
        }
        let lock_key = self.lock_key();
        if kv::get(&lock_key).is_none() {
            kv::set(&lock_key, me.as_bytes(), Some(TOKEN_LEASE_SECS));
            std::thread::sleep(LEASE_SETTLE);
            if kv::get_string(&lock_key).as_deref() == Some(me) {
                let fetched = self.fetch_token();
                kv::delete(&lock_key);
                return fetched;
            }
        }
        let deadline = std::time::Instant::now() + TOKEN_WAIT;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(TOKEN_POLL);
            if let Some(token) = kv::get_string(&token_key) {
                return Ok(token);
            }
            if kv::get(&lock_key).is_none() {
                // The fetch in progress ended without a token (it failed):
                // try ourselves, to report the error.
                break;
            }
        }
        self.fetch_token()
    }

    /// Fetches a new access token and caches it until shortly before it expires.
    fn fetch_token(&self) -> Result<String, SendError> {
        let url = format!(
            "{}/cgi-bin/token?{}",
            self.api_base,
            form::encode(&[
                ("grant_type", "client_credential"),
                ("appid", self.app_id),
                ("secret", self.app_secret),
            ])
        );
        let response = herald_pdk::http::send(Request::get(url)).map_err(transport_error)?;
        let (token, expires_in) = token_outcome(&response, self.app_secret, time::unix_now_secs())?;
        let ttl = token_ttl(expires_in);
        kv::set(&self.token_key(), token.as_bytes(), Some(ttl));
        log::info(&format!(
            "fetched a new WeChat access token, cached for {ttl}s"
        ));
        Ok(token)
    }
}

/// How long a token valid for `expires_in` seconds is cached.
fn token_ttl(expires_in: u64) -> u64 {
    if expires_in > 2 * TOKEN_EXPIRY_MARGIN_SECS {
        expires_in - TOKEN_EXPIRY_MARGIN_SECS
    } else {
        (expires_in / 2).max(1)
    }
}

/// `scheme://host/path` of a URL: the query carries the access token or
/// the app secret and never goes into an error text.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// A transport failure, mapped as the pdk does but reported without the
/// URL's query string.
fn transport_error(err: HttpError) -> SendError {
    let safe_url = without_query(&err.url).to_string();
    SendError::from(HttpError {
        message: err.message.replace(&err.url, &safe_url),
        url: safe_url,
        ..err
    })
}

/// `text` with every occurrence of `secret` masked.
fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "[redacted]")
    }
}

/// The `(errcode, errmsg)` of a WeChat JSON answer; errcode 0 when absent.
fn wechat_error(v: &Value) -> (i64, String) {
    let code = v.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    let msg = v
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (code, msg)
}

/// A non-2xx HTTP status (WeChat answers 200 even for errors).
fn http_status_error(response: &Response, what: &str) -> SendError {
    let status = response.status;
    if status >= 500 || status == 429 || status == 408 {
        SendError::retryable(
            format!("WeChat answered HTTP {status} to {what} (will retry)"),
            response.retry_after_ms(),
        )
    } else {
        SendError::Permanent(format!(
            "WeChat answered HTTP {status} to {what}: check that api_base points at the WeChat API"
        ))
    }
}

/// Milliseconds until the daily API quota resets: 00:00 Beijing time
/// (16:00 UTC), plus a few minutes of slack.
fn until_daily_reset_ms(now_secs: u64) -> u64 {
    const DAY: u64 = 86_400;
    const RESET_UTC: u64 = 16 * 3600;
    let today = now_secs - now_secs % DAY + RESET_UTC;
    let next = if today > now_secs { today } else { today + DAY };
    (next - now_secs + DAILY_RESET_SLACK_SECS) * 1000
}

/// Maps the answer to `GET /cgi-bin/token` to `(access_token, expires_in)`.
fn token_outcome(
    response: &Response,
    app_secret: &str,
    now_secs: u64,
) -> Result<(String, u64), SendError> {
    if !response.is_success() {
        return Err(http_status_error(response, "the access token request"));
    }
    let v: Value = response.json().map_err(|_| {
        SendError::Permanent(
            "WeChat's access token answer is not JSON: check that api_base points at the WeChat API"
                .to_string(),
        )
    })?;
    if let Some(token) = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(7200);
        return Ok((token.to_string(), expires_in));
    }
    let (code, msg) = wechat_error(&v);
    let msg = scrub(&msg, app_secret);
    let detail = format!("errcode {code}: {msg}");
    Err(match code {
        40013 => SendError::Permanent(format!(
            "WeChat refused the app id while fetching the access token ({detail}): check the `app_id` setting"
        )),
        40125 | 40001 | 41004 => SendError::Permanent(format!(
            "WeChat refused the app secret while fetching the access token ({detail}): check the `app_id` and `app_secret` settings"
        )),
        40164 | 61004 => SendError::Permanent(format!(
            "WeChat refused this server's IP address while fetching the access token ({detail}): add it to the account's IP whitelist (开发 → 基本配置 → IP白名单)"
        )),
        45009 => SendError::retryable(
            format!("WeChat's daily access token quota is used up ({detail}); retrying after 00:00 Beijing time"),
            Some(until_daily_reset_ms(now_secs)),
        ),
        -1 => SendError::retryable(
            format!("WeChat is busy ({detail}) while fetching the access token"),
            None,
        ),
        _ => SendError::Permanent(format!(
            "WeChat refused the access token request ({detail})"
        )),
    })
}

/// What became of one template message send.
#[derive(Debug)]
enum SendOutcome {
    /// Accepted; the `msgid`.
    Sent(String),
    /// The access token is invalid or expired (40001, 40014, 42001).
    TokenRejected(String),
    /// Any other outcome.
    Failed(SendError),
}

/// Maps the answer to `POST /cgi-bin/message/template/send`.
fn send_outcome(response: &Response, token: &str, now_secs: u64) -> SendOutcome {
    if !response.is_success() {
        return SendOutcome::Failed(http_status_error(response, "the template message"));
    }
    let Ok(v) = response.json::<Value>() else {
        return SendOutcome::Failed(SendError::Permanent(
            "WeChat's answer to the template message is not JSON: check that api_base points at the WeChat API"
                .to_string(),
        ));
    };
    let (code, msg) = wechat_error(&v);
    let detail = format!("errcode {code}: {}", scrub(&msg, token));
    let permanent =
        |hint: &str| SendOutcome::Failed(SendError::Permanent(format!("{hint} ({detail})")));
    match code {
        0 => match v.get("msgid") {
            Some(Value::Number(n)) => SendOutcome::Sent(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => SendOutcome::Sent(s.clone()),
            _ => SendOutcome::Failed(SendError::Permanent(
                "WeChat accepted the template message but gave no msgid".to_string(),
            )),
        },
        40001 | 40014 | 42001 => SendOutcome::TokenRejected(detail),
        43004 | 43101 => SendOutcome::Failed(SendError::Unsubscribed(format!(
            "the customer does not follow the Official Account or refuses its messages ({detail})"
        ))),
        45009 => SendOutcome::Failed(SendError::retryable(
            format!(
                "WeChat's daily template message limit is reached ({detail}); retrying after 00:00 Beijing time"
            ),
            Some(until_daily_reset_ms(now_secs)),
        )),
        45047 | -1 => SendOutcome::Failed(SendError::retryable(
            format!("WeChat is busy ({detail}); will retry"),
            None,
        )),
        40003 => permanent(
            "WeChat does not know the customer's wechat_openid for this app_id: check that it was obtained through this Official Account",
        ),
        40036 | 40037 => permanent(
            "WeChat does not know the template: check the `template_id` setting (or the rule's `template_id` field) against the account's 模板消息 list",
        ),
        47003 => permanent(
            "WeChat refused the template data: check the rule's `fields` against the template's keywords",
        ),
        48001 => permanent(
            "this Official Account may not send template messages: it must be a verified service account with the template message feature",
        ),
        _ => permanent("WeChat refused the template message"),
    }
}

/// The template message body for `message` to `openid`.
///
/// `data` holds one `{"value": …}` per rule field, except the fields
/// `template_id` and `url`, which override the settings of the same name;
/// a rule without data fields sends `first` = subject and `remark` = text.
fn payload(
    message: &Message,
    openid: &str,
    default_template_id: Option<&str>,
    default_url: Option<&str>,
) -> Result<Value, SendError> {
    let template_id = non_empty(message.field(TEMPLATE_ID_FIELD))
        .or(default_template_id)
        .ok_or_else(|| {
            SendError::Permanent(
                "no template id: set the channel's `template_id` setting or give the rule a `template_id` field"
                    .to_string(),
            )
        })?;
    let url = non_empty(message.field(URL_FIELD)).or(default_url);
    let mut data = Map::new();
    for field in &message.fields {
        if field.name == TEMPLATE_ID_FIELD || field.name == URL_FIELD {
            continue;
        }
        data.insert(field.name.clone(), json!({ "value": field.value }));
    }
    if data.is_empty() {
        data.insert("first".into(), json!({ "value": message.subject }));
        data.insert("remark".into(), json!({ "value": message.text }));
    }
    let mut body = Map::new();
    body.insert("touser".into(), Value::String(openid.to_string()));
    body.insert("template_id".into(), Value::String(template_id.to_string()));
    if let Some(url) = url {
        body.insert("url".into(), Value::String(url.to_string()));
    }
    body.insert("data".into(), Value::Object(data));
    Ok(Value::Object(body))
}

/// WeChat's push signature: `sha1` of token, timestamp and nonce sorted
/// and concatenated, in lowercase hex.
fn push_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

fn signature_ok(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    if timestamp.is_empty() || nonce.is_empty() || signature.is_empty() {
        return false;
    }
    let expected = push_signature(token, timestamp, nonce);
    constant_time_eq(
        expected.as_bytes(),
        signature.to_ascii_lowercase().as_bytes(),
    )
}

/// The text of `<tag>…</tag>` in a WeChat XML push, without CDATA wrapping.
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    let inner = xml[start..end].trim();
    Some(
        inner
            .strip_prefix("<![CDATA[")
            .and_then(|s| s.strip_suffix("]]>"))
            .unwrap_or(inner),
    )
}

/// The events of one XML push: `TEMPLATESENDJOBFINISH` becomes a delivery
/// report; `unsubscribe` (the customer unfollowed) a STOP reply and
/// `subscribe` a START reply; anything else nothing.
fn parse_event(xml: &str) -> Result<Vec<CallbackEvent>, String> {
    if !xml.trim_start().starts_with("<xml") {
        return Err("the push body is not WeChat XML (<xml>…</xml>)".to_string());
    }
    let msg_type = xml_tag(xml, "MsgType").unwrap_or_default();
    if msg_type != "event" {
        return Ok(Vec::new());
    }
    let event = xml_tag(xml, "Event").unwrap_or_default();
    let from = xml_tag(xml, "FromUserName").unwrap_or_default();
    Ok(match event {
        "TEMPLATESENDJOBFINISH" => {
            let msgid = xml_tag(xml, "MsgID")
                .or_else(|| xml_tag(xml, "MsgId"))
                .filter(|m| !m.is_empty())
                .ok_or("TEMPLATESENDJOBFINISH without MsgID")?;
            let status = xml_tag(xml, "Status").unwrap_or_default();
            let (state, reason) = if status == "success" {
                (DeliveryState::Delivered, None)
            } else {
                let reason = status.strip_prefix("failed:").unwrap_or(status).trim();
                (
                    DeliveryState::Undelivered,
                    Some(if reason.is_empty() { "failed" } else { reason }.to_string()),
                )
            };
            vec![CallbackEvent::Report(DeliveryReport {
                provider_message_id: msgid.to_string(),
                state,
                reason,
            })]
        }
        "unsubscribe" | "subscribe" if !from.is_empty() => {
            vec![CallbackEvent::Reply(InboundReply {
                sender: from.to_string(),
                text: if event == "unsubscribe" {
                    "STOP"
                } else {
                    "START"
                }
                .to_string(),
            })]
        }
        _ => Vec::new(),
    })
}

herald_pdk::export!(WechatTemplate);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{
        self, callback, permanent, response, retryable, sample_message, settings,
    };

    /// The sample message in Chinese, with the rule's `fields`.
    fn message(fields: &[(&str, &str)]) -> Message {
        let mut m = sample_message();
        m.subject = "【Acme】您的试用将于4天后结束".into();
        m.text = "李雷，您好".into();
        m.fields = testing::fields(fields);
        m
    }

    #[test]
    fn payload_from_fields() {
        let m = message(&[
            ("first", "【Acme】您的试用将于4天后结束"),
            ("keyword1", "李雷"),
            ("template_id", "tpl-override"),
            ("url", "https://acme.example/billing"),
        ]);
        let v = payload(
            &m,
            "oia2",
            Some("tpl-default"),
            Some("https://acme.example"),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "touser": "oia2",
                "template_id": "tpl-override",
                "url": "https://acme.example/billing",
                "data": {
                    "first": {"value": "【Acme】您的试用将于4天后结束"},
                    "keyword1": {"value": "李雷"}
                }
            })
        );
    }

    #[test]
    fn payload_without_fields() {
        let v = payload(&message(&[]), "oia2", Some("tpl"), None).unwrap();
        assert_eq!(
            v,
            json!({
                "touser": "oia2",
                "template_id": "tpl",
                "data": {
                    "first": {"value": "【Acme】您的试用将于4天后结束"},
                    "remark": {"value": "李雷，您好"}
                }
            })
        );
        let v = payload(
            &message(&[]),
            "oia2",
            Some("tpl"),
            Some("https://a.example"),
        )
        .unwrap();
        assert_eq!(v["url"], "https://a.example");
        let m = permanent(payload(&message(&[]), "oia2", None, None));
        assert!(m.contains("template_id"), "{m}");
    }

    #[test]
    fn send_codes() {
        let now = 1_772_355_600; // 2026-03-01T09:00:00Z
        let out = |v: Value| send_outcome(&response(200).with_json(&v), "TOKEN123", now);
        assert!(
            matches!(out(json!({"errcode":0,"errmsg":"ok","msgid":200228332})), SendOutcome::Sent(id) if id == "200228332")
        );
        for code in [40001, 40014, 42001] {
            match out(
                json!({"errcode":code,"errmsg":"invalid credential, access_token is invalid or not latest rid: 1"}),
            ) {
                SendOutcome::TokenRejected(d) => assert!(d.contains(&code.to_string())),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            out(json!({"errcode":43004,"errmsg":"require subscribe rid: 2"})),
            SendOutcome::Failed(SendError::Unsubscribed(m)) if m.contains("43004")
        ));
        match out(json!({"errcode":45009,"errmsg":"reach max api daily quota limit"})) {
            // 09:00Z → 16:00Z is 7 h, plus the slack.
            SendOutcome::Failed(SendError::Retryable(r)) => assert_eq!(
                r.retry_after_ms,
                Some((7 * 3600 + DAILY_RESET_SLACK_SECS) * 1000)
            ),
            other => panic!("{other:?}"),
        }
        for code in [45047, -1] {
            assert!(matches!(
                out(json!({"errcode":code,"errmsg":"system error"})),
                SendOutcome::Failed(SendError::Retryable(_))
            ));
        }
        assert!(matches!(
            out(json!({"errcode":40003,"errmsg":"invalid openid"})),
            SendOutcome::Failed(SendError::Permanent(m)) if m.contains("wechat_openid")
        ));
        assert!(matches!(
            out(json!({"errcode":40037,"errmsg":"invalid template_id"})),
            SendOutcome::Failed(SendError::Permanent(m)) if m.contains("`template_id` setting")
        ));
        // A token echoed by the provider is masked.
        match out(json!({"errcode":99999,"errmsg":"weird TOKEN123"})) {
            SendOutcome::Failed(SendError::Permanent(m)) => {
                assert!(!m.contains("TOKEN123") && m.contains("99999"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let busy = response(502).with_text("bad gateway");
        assert!(matches!(
            send_outcome(&busy, "t", now),
            SendOutcome::Failed(SendError::Retryable(_))
        ));
    }

    #[test]
    fn token_codes() {
        let tok = |v: Value| token_outcome(&response(200).with_json(&v), "SECRET", 0);
        assert_eq!(
            tok(json!({"access_token":"ACCESS","expires_in":7200})).unwrap(),
            ("ACCESS".to_string(), 7200)
        );
        let m = permanent(tok(json!({"errcode":40013,"errmsg":"invalid appid"})));
        assert!(m.contains("`app_id`"), "{m}");
        let m = permanent(tok(
            json!({"errcode":40125,"errmsg":"invalid appsecret SECRET"}),
        ));
        assert!(m.contains("`app_secret`") && !m.contains("SECRET"), "{m}");
        retryable(tok(json!({"errcode":-1,"errmsg":"system error"})));
        assert_eq!(token_ttl(7200), 6900);
        assert_eq!(token_ttl(100), 50);
    }

    #[test]
    fn daily_reset() {
        // 15:59:00Z → one minute to 16:00Z.
        assert_eq!(
            until_daily_reset_ms(57_540),
            (60 + DAILY_RESET_SLACK_SECS) * 1000
        );
        // Exactly 16:00Z → the next day's.
        assert_eq!(
            until_daily_reset_ms(57_600),
            (86_400 + DAILY_RESET_SLACK_SECS) * 1000
        );
    }

    #[test]
    fn urls_lose_their_query() {
        assert_eq!(
            without_query("https://api.weixin.qq.com/cgi-bin/token?grant_type=x&secret=S"),
            "https://api.weixin.qq.com/cgi-bin/token"
        );
        let err = HttpError {
            url: "http://127.0.0.1:1/cgi-bin/message/template/send?access_token=TOK".into(),
            host: "127.0.0.1".into(),
            message: "connection-refused".into(),
            denied: false,
            invalid_request: false,
        };
        let r = retryable(Err::<(), _>(transport_error(err.clone())));
        assert_eq!(
            r.reason,
            "HTTP request to http://127.0.0.1:1/cgi-bin/message/template/send failed: connection-refused"
        );
        let invalid = HttpError {
            message: format!("invalid path `{}`", err.url),
            invalid_request: true,
            ..err.clone()
        };
        let m = permanent(Err::<(), _>(transport_error(invalid)));
        assert!(
            !m.contains("TOK")
                && m.ends_with("invalid path `http://127.0.0.1:1/cgi-bin/message/template/send`"),
            "{m}"
        );
        let denied = HttpError {
            denied: true,
            ..err
        };
        assert_eq!(
            permanent(Err::<(), _>(transport_error(denied))),
            "request denied by host: 127.0.0.1 is not in this channel's allowed_hosts"
        );
    }

    #[test]
    fn push_signatures_and_events() {
        // Sorted: ["1409659813", "abc", "token"] → sha1("1409659813abctoken").
        let sig = push_signature("token", "1409659813", "abc");
        assert_eq!(sig, hex::encode(Sha1::digest(b"1409659813abctoken")));
        assert!(signature_ok("token", "1409659813", "abc", &sig));
        assert!(signature_ok(
            "token",
            "1409659813",
            "abc",
            &sig.to_uppercase()
        ));
        assert!(!signature_ok("token", "1409659814", "abc", &sig));
        assert!(!signature_ok("token", "", "abc", &sig));

        let xml = "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
            <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>\
            <CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>\
            <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>\
            <Status><![CDATA[failed:user block]]></Status></xml>";
        match &parse_event(xml).unwrap()[..] {
            [CallbackEvent::Report(r)] => {
                assert_eq!(r.provider_message_id, "200163836");
                assert!(matches!(r.state, DeliveryState::Undelivered));
                assert_eq!(r.reason.as_deref(), Some("user block"));
            }
            other => panic!("{other:?}"),
        }
        let ok = xml.replace("failed:user block", "success");
        assert!(matches!(
            &parse_event(&ok).unwrap()[..],
            [CallbackEvent::Report(DeliveryReport {
                state: DeliveryState::Delivered,
                ..
            })]
        ));
        let sys = xml.replace("failed:user block", "failed: system failed");
        match &parse_event(&sys).unwrap()[..] {
            [CallbackEvent::Report(r)] => assert_eq!(r.reason.as_deref(), Some("system failed")),
            other => panic!("{other:?}"),
        }
        let unsub = xml.replace("TEMPLATESENDJOBFINISH", "unsubscribe");
        match &parse_event(&unsub).unwrap()[..] {
            [CallbackEvent::Reply(r)] => {
                assert_eq!(r.sender, "oia2TjuEGTNoeX76QEjQNrcURxG8");
                assert_eq!(r.text, "STOP");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_event("{}").is_err());
        assert!(parse_event("<xml><MsgType>text</MsgType></xml>")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn signed_callbacks_verify_the_url_and_take_pushes() {
        let token = settings(&[("callback_token", "token")]);
        let token = Settings::new(&token);
        let now = 1_409_659_813;
        let sig = push_signature("token", "1409659813", "abc");
        let url = format!(
            "https://herald.example/hooks/wechat?signature={sig}&timestamp=1409659813&nonce=abc&echostr=hello"
        );
        // WeChat's check of the server URL: `echostr` comes back.
        let check = callback("GET", &url);
        let push = verify_push(&token, &check, now).unwrap();
        assert_eq!(
            push,
            VerifiedPush {
                key: format!("push-seen:{sig}"),
                fresh_for: 300
            }
        );
        let answer = answer_push(&check).unwrap();
        assert!(answer.events.is_empty());
        assert_eq!(answer.response.body, "hello");

        let push = callback("POST", &url).with_body(
            "<xml><FromUserName><![CDATA[oia2]]></FromUserName><MsgType><![CDATA[event]]></MsgType>\
             <Event><![CDATA[unsubscribe]]></Event></xml>",
        );
        verify_push(&token, &push, now + 10).unwrap();
        let answer = answer_push(&push).unwrap();
        assert!(
            matches!(&answer.events[..], [CallbackEvent::Reply(r)] if r.sender == "oia2" && r.text == "STOP")
        );
        assert_eq!(answer.response.body, "success");

        let forged = callback("GET", &url.replace("nonce=abc", "nonce=abd"));
        assert!(matches!(
            verify_push(&token, &forged, now),
            Err(CallbackError::Unauthorized(_))
        ));
        assert!(matches!(
            verify_push(&Settings::new(&[]), &push, now),
            Err(CallbackError::Unauthorized(_))
        ));
        // Signed, but too old for the window (or the window's setting bad).
        match verify_push(&token, &push, now + 301) {
            Err(CallbackError::Unauthorized(m)) => assert!(m.contains("301 s old"), "{m}"),
            other => panic!("{other:?}"),
        }
        let narrow = settings(&[("callback_token", "token"), ("callback_window", "60")]);
        assert!(verify_push(&Settings::new(&narrow), &push, now + 61).is_err());
        let bad = settings(&[("callback_token", "token"), ("callback_window", "1d")]);
        match verify_push(&Settings::new(&bad), &push, now) {
            Err(CallbackError::Unauthorized(m)) => assert!(m.contains("callback_window"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
