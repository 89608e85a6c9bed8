//! A fake JPush REST API v3 on loopback: `POST /v3/push` checks HTTP Basic
//! `app_key:master_secret` (else 401 with error 1004), the body's
//! `platform`, `audience.registration_id`, notification and options (else
//! 400 with error 1003), and answers `{"sendno": "0", "msg_id": …}` or
//! JPush's error. Registration ids script the answer by prefix:
//! - every id `dead…` → 400 with error 1011 (cannot find user by this
//!   audience);
//! - an id `busy…` → 429 with error 2002 and `X-Rate-Limit-Reset: 30` the
//!   first time, then success.

use super::codec::base64;
use crate::support::{FakeProvider, Reply};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const APP_KEY: &str = "25b0f8c7a39e4d1f6a7b8c90";
pub const MASTER_SECRET: &str = "d4e5f6a7b8c9d0e1f2a3b4c5";

fn error(status: u16, code: i64, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

/// Start the fake.
pub fn start() -> FakeProvider {
    let next = Arc::new(AtomicU64::new(18_100_295_599_391_745));
    FakeProvider::start(move |req, earlier| {
        let basic = format!(
            "Basic {}",
            base64(format!("{APP_KEY}:{MASTER_SECRET}").as_bytes())
        );
        if req.header("authorization") != Some(basic.as_str()) {
            return error(401, 1004, "Basic authentication failed");
        }
        if req.method != "POST" || req.path != "/v3/push" {
            return error(404, 1003, "Unknown API");
        }
        let body = req.json();
        let ids: Vec<&str> = body["audience"]["registration_id"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let platforms_ok = body["platform"].as_array().is_some_and(|p| {
            !p.is_empty()
                && p.iter()
                    .all(|x| ["android", "ios", "hmos"].contains(&x.as_str().unwrap_or("")))
        });
        if ids.is_empty()
            || !platforms_ok
            || body["notification"]["android"]["alert"]
                .as_str()
                .is_none_or(str::is_empty)
            || !body["options"]["time_to_live"].is_u64()
        {
            return error(400, 1003, "Parameter value is invalid");
        }
        if ids.iter().all(|id| id.starts_with("dead")) {
            return error(
                400,
                1011,
                "cannot find user by this audience or has been inactive for more than 255 days",
            );
        }
        let busy_before = earlier.iter().any(|r| {
            r.json()["audience"]["registration_id"] == body["audience"]["registration_id"]
        });
        if ids.iter().any(|id| id.starts_with("busy")) && !busy_before {
            let mut reply = error(
                429,
                2002,
                "Request times exceed the limit of current appkey",
            );
            reply
                .headers
                .push(("x-rate-limit-reset".into(), "30".into()));
            return reply;
        }
        let msg_id = next.fetch_add(1, Ordering::Relaxed);
        Reply::json(200, json!({"sendno": "0", "msg_id": msg_id.to_string()}))
    })
}
