//! A fake Twilio Programmable Messaging API on loopback: `POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json` checked the way Twilio
//! checks it (account in the path, HTTP basic auth, form fields, E.164 `To`,
//! the account's `From` number, a non-empty `Body`), answering 201 with a
//! message resource or Twilio's real error bodies, de-duplicating on
//! `I-Twilio-Idempotency-Token`, with errors scripted per recipient number
//! (Twilio's own magic test numbers where it has them).
//! It also computes Twilio's webhook signature for the tests that post
//! callbacks.

#![allow(dead_code)]

use super::codec::{base64, form_decode, form_get, hmac_sha1};
use crate::support::{FakeProvider, Received, Reply};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The test account.
pub const ACCOUNT_SID: &str = "AC3f1c0e9b7a5d4c2e8f6a1b3c5d7e9f01";
/// The sender number of the test account.
pub const FROM: &str = "+15017122661";

/// `To` answered with 400 / 21211 (Twilio's magic "invalid number").
pub const INVALID: &str = "+15005550001";
/// `To` answered with 400 / 21610 (Twilio's magic "unsubscribed recipient").
pub const UNSUBSCRIBED: &str = "+15005550004";
/// `To` answered with 400 / 21614 (Twilio's magic "not a mobile number").
pub const NOT_MOBILE: &str = "+15005550009";
/// `To` answered 429 / 20429 with `Retry-After: 1800` on the first try of a
/// message, then accepted.
pub const THROTTLED: &str = "+15005550429";
/// `Retry-After` seconds of [`THROTTLED`].
pub const THROTTLED_RETRY_AFTER: u64 = 1800;
/// `To` always answered 500 / 20500.
pub const BROKEN: &str = "+15005550500";

/// A running fake.
pub struct FakeTwilio {
    pub provider: FakeProvider,
}

impl FakeTwilio {
    /// Starts a fake for [`ACCOUNT_SID`] with this auth token.
    pub fn start(auth_token: &str) -> FakeTwilio {
        let expected_auth = format!(
            "Basic {}",
            base64(format!("{ACCOUNT_SID}:{auth_token}").as_bytes())
        );
        let sent: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let provider = FakeProvider::start(move |req, _| handle(req, &expected_auth, &sent));
        FakeTwilio { provider }
    }

    /// The `api_base` setting for the plugin.
    pub fn api_base(&self) -> String {
        self.provider.origin()
    }

    /// Every request, with its form decoded.
    pub fn requests(&self) -> Vec<(Received, Vec<(String, String)>)> {
        self.provider
            .requests()
            .into_iter()
            .map(|r| {
                let form = form_decode(&r.body);
                (r, form)
            })
            .collect()
    }

    /// The requests for recipient `to`.
    pub fn requests_to(&self, to: &str) -> Vec<(Received, Vec<(String, String)>)> {
        self.requests()
            .into_iter()
            .filter(|(_, f)| form_get(f, "To") == Some(to))
            .collect()
    }
}

fn error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

fn handle(req: &Received, expected_auth: &str, sent: &Mutex<HashMap<String, String>>) -> Reply {
    let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    if req.method != "POST" || req.path != path {
        return error(
            404,
            20404,
            &format!("The requested resource {} was not found", req.path),
        );
    }
    if req.header("authorization") != Some(expected_auth) {
        return Reply::json(
            401,
            json!({
                "code": 20003,
                "detail": "Your AccountSid or AuthToken was incorrect.",
                "message": "Authentication Error - invalid username",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }),
        );
    }
    if !req
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/x-www-form-urlencoded")
    {
        return error(400, 21602, "Message body is required.");
    }
    let form = form_decode(&req.body);
    let Some(to) = form_get(&form, "To") else {
        return error(400, 21604, "A 'To' phone number is required.");
    };
    let e164 = to.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    });
    if !e164 {
        return error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    match (
        form_get(&form, "From"),
        form_get(&form, "MessagingServiceSid"),
    ) {
        (None, None) => return error(400, 21603, "A 'From' phone number is required."),
        (Some(from), _) if from != FROM => {
            return error(400, 21606, &format!("The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."))
        }
        _ => {}
    }
    let body = form_get(&form, "Body").unwrap_or("");
    if body.trim().is_empty() {
        return error(400, 21602, "Message body is required.");
    }
    if let Some(cb) = form_get(&form, "StatusCallback") {
        if !(cb.starts_with("https://") || cb.starts_with("http://")) {
            return error(
                400,
                21609,
                &format!("The StatusCallback URL {cb} is not a valid URL."),
            );
        }
    }
    let token = req
        .header("i-twilio-idempotency-token")
        .unwrap_or("")
        .to_string();
    let mut sent = sent.lock().unwrap();
    if let Some(resource) = sent.get(&token).filter(|_| !token.is_empty()) {
        // The same message again: Twilio answers with the message it made.
        return Reply::json_text(201, resource.clone());
    }
    match to {
        INVALID => {
            return error(
                400,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            )
        }
        UNSUBSCRIBED => return error(400, 21610, "Attempt to send to unsubscribed recipient"),
        NOT_MOBILE => return error(400, 21614, "'To' number is not a valid mobile number"),
        BROKEN => return error(500, 20500, "Internal Server Error"),
        THROTTLED if !sent.contains_key(&format!("throttled:{token}")) => {
            sent.insert(format!("throttled:{token}"), String::new());
            let mut reply = error(429, 20429, "Too Many Requests");
            reply
                .headers
                .push(("retry-after".into(), THROTTLED_RETRY_AFTER.to_string()));
            return reply;
        }
        _ => {}
    }
    let sid = format!("SM{:032x}", sent.len() as u128 * 7919 + 0x5eed);
    let resource = json!({
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": "Mon, 23 Nov 2026 10:00:00 +0000",
        "date_sent": Value::Null,
        "date_updated": "Mon, 23 Nov 2026 10:00:00 +0000",
        "direction": "outbound-api",
        "error_code": Value::Null,
        "error_message": Value::Null,
        "from": form_get(&form, "From"),
        "messaging_service_sid": form_get(&form, "MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": Value::Null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json")},
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
    })
    .to_string();
    if !token.is_empty() {
        sent.insert(token, resource.clone());
    } else {
        sent.insert(sid.clone(), resource.clone());
    }
    Reply::json_text(201, resource)
}

/// Twilio's webhook signature of a form POST to `url`.
pub fn webhook_signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    base64(&hmac_sha1(auth_token.as_bytes(), data.as_bytes()))
}

#[test]
fn webhook_signature_matches_twilios_example() {
    assert_eq!(
        webhook_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &[
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", "+14158675310"),
                ("Digits", "1234"),
                ("From", "+14158675310"),
                ("To", "+18005551212"),
            ]
        ),
        "GvWf1cFY/Q7PnoempGyD5oXAezc="
    );
}
