//! A fake WeChat Official Account API on loopback: `GET /cgi-bin/token`
//! checks grant_type, appid and secret and issues access tokens (counting
//! the fetches); `POST /cgi-bin/message/template/send` checks the token
//! (unknown or invalidated → 40001 with WeChat's exact errmsg), the JSON
//! body, `touser` and `template_id`, and answers `{"errcode":0,...,"msgid"}`.
//! Openids script the answer by prefix:
//! - `unfollowed…` → 43004 (require subscribe);
//! - `quota…` → 45009 (daily limit) the first time, then success;
//! - `invalid…` → 40003 (invalid openid);
//! - `rotate…` → on its first send every issued token is invalidated
//!   first (as when another server fetched a new one), so it gets 40001.
//!
//! It also signs `TEMPLATESENDJOBFINISH` pushes (`push_query`).

#![allow(dead_code)]

use super::codec::{form_get, query_of, sha1};
use crate::support::{FakeProvider, Received, Reply};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const RID: &str = "rid: 65e1a3f2-5c0e1d7a-3b9f4e21";

#[derive(Default)]
struct State {
    valid: HashSet<String>,
    issued: usize,
    next_msgid: u64,
}

/// The fake WeChat API.
pub struct FakeWechat {
    pub provider: FakeProvider,
    state: Arc<Mutex<State>>,
}

fn errcode(code: i64, msg: &str) -> Reply {
    Reply::json(
        200,
        json!({"errcode": code, "errmsg": format!("{msg} {RID}")}),
    )
}

impl FakeWechat {
    /// Starts the fake for one app; `templates` are the template ids it knows.
    pub fn start(app_id: &str, app_secret: &str, templates: &[&str]) -> FakeWechat {
        FakeWechat::start_with_expiry(app_id, app_secret, templates, 7200)
    }

    /// [`FakeWechat::start`] issuing tokens valid for `expires_in` seconds.
    pub fn start_with_expiry(
        app_id: &str,
        app_secret: &str,
        templates: &[&str],
        expires_in: u64,
    ) -> FakeWechat {
        let state: Arc<Mutex<State>> = Arc::new(Mutex::new(State {
            next_msgid: 200_228_332,
            ..State::default()
        }));
        let (app_id, app_secret) = (app_id.to_string(), app_secret.to_string());
        let templates: HashSet<String> = templates.iter().map(|t| t.to_string()).collect();
        let shared = state.clone();
        let provider = FakeProvider::start(move |req: &Received, earlier: &[Received]| {
            let q = query_of(&req.path);
            let path = req.path.split('?').next().unwrap_or("");
            let mut st = shared.lock().unwrap();
            match (req.method.as_str(), path) {
                ("GET", "/cgi-bin/token") => {
                    if form_get(&q, "grant_type") != Some("client_credential") {
                        return errcode(40002, "invalid grant_type");
                    }
                    if form_get(&q, "appid") != Some(app_id.as_str()) {
                        return errcode(40013, "invalid appid");
                    }
                    match form_get(&q, "secret") {
                        None | Some("") => return errcode(41004, "appsecret missing"),
                        Some(s) if s != app_secret => {
                            return errcode(
                                40125,
                                "invalid appsecret, view more at http://t.cn/RAEkdVq",
                            )
                        }
                        Some(_) => {}
                    }
                    st.issued += 1;
                    let token = format!(
                        "78_{:04}Xk2fQ-mWz9hTt0pLrBv3aCqYw5NoS8dEu1GiJ6vF7",
                        st.issued
                    );
                    st.valid.insert(token.clone());
                    Reply::json(
                        200,
                        json!({"access_token": token, "expires_in": expires_in}),
                    )
                }
                ("POST", "/cgi-bin/message/template/send") => {
                    let Some(token) = form_get(&q, "access_token").filter(|t| !t.is_empty()) else {
                        return errcode(41001, "access_token missing");
                    };
                    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                        return errcode(47001, "data format error");
                    };
                    let openid = body["touser"].as_str().unwrap_or("").to_string();
                    let first_time = !earlier.iter().any(|r| {
                        r.path.starts_with("/cgi-bin/message/template/send")
                            && serde_json::from_slice::<Value>(&r.body)
                                .is_ok_and(|b| b["touser"] == openid.as_str())
                    });
                    if openid.starts_with("rotate") && first_time {
                        st.valid.clear();
                    }
                    if !st.valid.contains(token) {
                        return errcode(
                            40001,
                            "invalid credential, access_token is invalid or not latest",
                        );
                    }
                    if openid.is_empty() || openid.starts_with("invalid") {
                        return errcode(40003, "invalid openid");
                    }
                    let template = body["template_id"].as_str().unwrap_or("");
                    if !templates.contains(template) {
                        return errcode(40037, "invalid template_id");
                    }
                    let Some(data) = body["data"].as_object().filter(|d| !d.is_empty()) else {
                        return errcode(47003, "argument invalid! data is empty");
                    };
                    if let Some((k, _)) = data.iter().find(|(_, v)| !v["value"].is_string()) {
                        return errcode(
                            47003,
                            &format!("argument invalid! data.{k}.value invalid"),
                        );
                    }
                    if openid.starts_with("unfollowed") {
                        return errcode(43004, "require subscribe");
                    }
                    if openid.starts_with("quota") && first_time {
                        return errcode(45009, "reach max api daily quota limit");
                    }
                    st.next_msgid += 1;
                    Reply::json(
                        200,
                        json!({"errcode": 0, "errmsg": "ok", "msgid": st.next_msgid}),
                    )
                }
                _ => Reply::json(404, json!({"errcode": 404, "errmsg": "not found"})),
            }
        });
        FakeWechat { provider, state }
    }

    /// The API origin, for `api_base` and `allowed_hosts`.
    pub fn origin(&self) -> String {
        self.provider.origin()
    }

    /// How many access tokens were issued.
    pub fn token_fetches(&self) -> usize {
        self.state.lock().unwrap().issued
    }

    /// Invalidates every issued token: the next send with one gets 40001.
    pub fn invalidate_tokens(&self) {
        self.state.lock().unwrap().valid.clear();
    }

    /// Every request, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.provider.requests()
    }

    /// The template send requests, in order.
    pub fn sends(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/cgi-bin/message/template/send"))
            .collect()
    }
}

/// The `access_token` query parameter of a request.
pub fn access_token_of(req: &Received) -> String {
    form_get(&query_of(&req.path), "access_token")
        .unwrap_or("")
        .to_string()
}

/// The query WeChat appends to a push: `signature=sha1(sort(token,
/// timestamp, nonce))&timestamp=…&nonce=…`.
pub fn push_query(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let signature = hex::encode(sha1(parts.concat().as_bytes()));
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
}

/// A `TEMPLATESENDJOBFINISH` push for `msgid` with `status`.
pub fn job_finish_xml(openid: &str, msgid: &str, status: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
         <FromUserName><![CDATA[{openid}]]></FromUserName>\
         <CreateTime>1772357000</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>\
         <MsgID>{msgid}</MsgID>\
         <Status><![CDATA[{status}]]></Status></xml>"
    )
}
