//! A fake Alibaba Cloud SMS API (`dysmsapi`, `SendSms`, version 2017-05-25)
//! on loopback. It checks what the real endpoint checks: the common
//! parameters, the AccessKeyId, the signature (recomputed from the query,
//! answering HTTP 400 `SignatureDoesNotMatch` with the server's string to
//! sign), the Timestamp's format and freshness (15 minutes), that no
//! SignatureNonce is used twice, the sign name, the template code and the
//! template's variables, and the phone number; it answers with
//! `{"Code":"OK","BizId":...}` or the real error bodies, with business
//! errors scripted per phone number.

#![allow(dead_code)]

use super::codec::{base64, form_decode, form_get, hmac_sha1, percent_encode, query_of};
use crate::support::{FakeProvider, Received, Reply};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub const ACCESS_KEY_ID: &str = "LTAI5tHeraldTestKey01";
pub const SIGN_NAME: &str = "赫拉德";
/// The template of the tests: `您好，${name}：您的试用将于${days}天后结束`.
pub const TEMPLATE: &str = "SMS_462035001";
/// A template without variables other than `${content}`.
pub const CONTENT_TEMPLATE: &str = "SMS_462035002";

/// Answered `isv.MOBILE_NUMBER_ILLEGAL`.
pub const ILLEGAL: &str = "13800000001";
/// Answered `isv.BUSINESS_LIMIT_CONTROL` (hour level) on the first try of a
/// message (by OutId), then accepted.
pub const LIMITED: &str = "13800000002";
/// Answered `isp.SYSTEM_ERROR` on the first try, then accepted.
pub const SYSTEM_ERROR: &str = "13800000003";
/// Answered `isv.BLACK_KEY_CONTROL_LIMIT`.
pub const BLACKLISTED: &str = "13800000004";
/// Answered HTTP 503 on the first try, then accepted.
pub const UNAVAILABLE: &str = "13800000005";

/// Which instants the fake takes as "now" for the Timestamp check.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The wall clock (`herald serve`).
    Wall,
    /// Any instant in this window (`herald simulate`'s virtual clock).
    Window(DateTime<Utc>, DateTime<Utc>),
}

pub struct FakeAliyun {
    pub provider: FakeProvider,
}

#[derive(Default)]
struct State {
    nonces: HashSet<String>,
    tries: HashMap<String, u32>,
    next_biz: u64,
}

impl FakeAliyun {
    pub fn start(secret: &str, clock: Clock) -> FakeAliyun {
        let secret = secret.to_string();
        let state: Arc<Mutex<State>> = Arc::default();
        let provider = FakeProvider::start(move |req, _| handle(req, &secret, clock, &state));
        FakeAliyun { provider }
    }

    /// The `endpoint` setting.
    pub fn endpoint(&self) -> String {
        self.provider.url("/")
    }

    /// Every request with its parameters decoded.
    pub fn requests(&self) -> Vec<(Received, Vec<(String, String)>)> {
        self.provider
            .requests()
            .into_iter()
            .map(|r| {
                let params = params_of(&r);
                (r, params)
            })
            .collect()
    }

    /// The requests for this `PhoneNumbers`.
    pub fn requests_to(&self, phone: &str) -> Vec<(Received, Vec<(String, String)>)> {
        self.requests()
            .into_iter()
            .filter(|(_, p)| form_get(p, "PhoneNumbers") == Some(phone))
            .collect()
    }
}

fn params_of(req: &Received) -> Vec<(String, String)> {
    if req.method == "POST" {
        form_decode(&req.body)
    } else {
        query_of(&req.path)
    }
}

/// The string Alibaba Cloud signs for these parameters (all but `Signature`).
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (percent_encode(k), percent_encode(v)))
        .collect();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}&%2F&{}", percent_encode(&canonical))
}

fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "F655A8D5-B967-440B-8683-{:012X}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An RPC-level error (HTTP 4xx/5xx) as the API gateway words it.
fn rpc_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "RequestId": request_id(),
            "HostId": "dysmsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi"),
        }),
    )
}

/// A business error (HTTP 200 with a Code) as SendSms words it.
fn biz_error(code: &str, message: &str) -> Reply {
    Reply::json(
        200,
        json!({"RequestId": request_id(), "Code": code, "Message": message}),
    )
}

fn handle(req: &Received, secret: &str, clock: Clock, state: &Mutex<State>) -> Reply {
    let path = req.path.split('?').next().unwrap_or("");
    if path != "/" || !(req.method == "GET" || req.method == "POST") {
        return rpc_error(
            404,
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    let params = params_of(req);
    let get = |k: &str| form_get(&params, k);
    for name in [
        "AccessKeyId",
        "Action",
        "Format",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
        "Signature",
    ] {
        if get(name).is_none_or(str::is_empty) {
            return rpc_error(
                400,
                &format!("Missing{name}"),
                &format!("{name} is mandatory for this action."),
            );
        }
    }
    if get("Version") != Some("2017-05-25") || get("Action") != Some("SendSms") {
        return rpc_error(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    if get("SignatureMethod") != Some("HMAC-SHA1") || get("SignatureVersion") != Some("1.0") {
        return rpc_error(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        );
    }
    if get("AccessKeyId") != Some(ACCESS_KEY_ID) {
        return rpc_error(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    let sts = string_to_sign(&req.method, &params);
    let expected = base64(&hmac_sha1(format!("{secret}&").as_bytes(), sts.as_bytes()));
    if get("Signature") != Some(expected.as_str()) {
        return rpc_error(
            400,
            "SignatureDoesNotMatch",
            &format!("Specified signature does not match our calculation. server string to sign is:{sts}"),
        );
    }
    let timestamp = get("Timestamp").unwrap_or("");
    let Ok(at) = NaiveDateTime::parse_from_str(timestamp, "%Y-%m-%dT%H:%M:%SZ") else {
        return rpc_error(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        );
    };
    let at = at.and_utc();
    let skew = chrono::Duration::minutes(15);
    let fresh = match clock {
        Clock::Wall => (Utc::now() - at).abs() <= skew,
        Clock::Window(from, until) => at >= from - skew && at <= until + skew,
    };
    if !fresh {
        return rpc_error(
            400,
            "InvalidTimeStamp.Expired",
            &format!("Specified time stamp or date value is expired. {timestamp}"),
        );
    }
    let mut state = state.lock().unwrap();
    if !state
        .nonces
        .insert(get("SignatureNonce").unwrap_or("").to_string())
    {
        return rpc_error(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    let Some(phone) = get("PhoneNumbers").filter(|p| !p.is_empty()) else {
        return rpc_error(
            400,
            "MissingPhoneNumbers",
            "PhoneNumbers is mandatory for this action.",
        );
    };
    let Some(sign_name) = get("SignName").filter(|p| !p.is_empty()) else {
        return rpc_error(
            400,
            "MissingSignName",
            "SignName is mandatory for this action.",
        );
    };
    let Some(template) = get("TemplateCode").filter(|p| !p.is_empty()) else {
        return rpc_error(
            400,
            "MissingTemplateCode",
            "TemplateCode is mandatory for this action.",
        );
    };
    if sign_name != SIGN_NAME {
        return biz_error("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名");
    }
    let variables: &[&str] = match template {
        TEMPLATE => &["name", "days"],
        CONTENT_TEMPLATE => &["content"],
        _ => return biz_error("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板"),
    };
    let param: Value = match get("TemplateParam").map(serde_json::from_str::<Value>) {
        Some(Ok(v @ Value::Object(_))) => v,
        None => json!({}),
        _ => return biz_error("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值"),
    };
    if variables.iter().any(|v| !param[v].is_string()) {
        return biz_error("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量");
    }
    let mainland = phone.len() == 11 && phone.starts_with('1');
    let international = phone.len() > 11 && !phone.starts_with("86");
    if !phone.chars().all(|c| c.is_ascii_digit()) || !(mainland || international) {
        return biz_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号");
    }
    let out_id = get("OutId").unwrap_or("").to_string();
    let tries = {
        let n = state.tries.entry(format!("{phone}/{out_id}")).or_default();
        *n += 1;
        *n
    };
    match phone {
        ILLEGAL => return biz_error("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
        BLACKLISTED => return biz_error("isv.BLACK_KEY_CONTROL_LIMIT", "黑名单管控"),
        LIMITED if tries == 1 => {
            return biz_error("isv.BUSINESS_LIMIT_CONTROL", "触发小时级流控Permits:5")
        }
        SYSTEM_ERROR if tries == 1 => {
            return biz_error(
                "isp.SYSTEM_ERROR",
                "请重试接口调用，如仍存在此情况请创建工单反馈工程师查看。",
            )
        }
        UNAVAILABLE if tries == 1 => {
            return rpc_error(
                503,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            )
        }
        _ => {}
    }
    state.next_biz += 1;
    let biz_id = format!("{}^0", 900_619_746_936_498_000u64 + state.next_biz);
    Reply::json(
        200,
        json!({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": request_id()}),
    )
}
