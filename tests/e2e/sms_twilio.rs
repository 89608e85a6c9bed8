//! The sms-twilio plugin through the real binary against the fake Twilio
//! API: every request field checked on the provider side, each answer class
//! (accepted, invalid number, not mobile, unsubscribed → suppressed and the
//! next channel, rate limited with Retry-After, server errors until dead,
//! bad credentials) as `herald deliveries` shows it, the auth token never
//! printed, and Twilio webhooks through `herald serve` (signed status
//! callbacks update reports, bad signatures are refused, an inbound STOP
//! moves the customer's next reminder to the next channel).

use crate::fakes::codec::{base64, form_encode, form_get};
use crate::fakes::twilio::{self, FakeTwilio, ACCOUNT_SID, FROM};
use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;

const TOKEN: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const PUBLIC_URL: &str = "https://herald.example.com";
const TEXT: &str = "您好，李雷：您的试用将于4天后结束";

fn config(fake: &FakeTwilio, auth_token: Raw) -> Config {
    config_for(&plugin("sms-twilio"), fake, auth_token)
}

/// [`config`] with the plugin file at `plugin` (the current build, or the
/// one built against contract 0.1.0).
fn config_for(plugin: &Path, fake: &FakeTwilio, auth_token: Raw) -> Config {
    Config::new()
        .tick("100ms")
        .retry(3, "1m", "6h")
        .public_url(PUBLIC_URL)
        .channel(
            "sms",
            Channel::plugin_at(plugin)
                .allow(&fake.api_base())
                .set("timeout", "5s")
                .setting("account_sid", ACCOUNT_SID)
                .setting("auth_token", auth_token)
                .setting("from", FROM)
                .setting("api_base", fake.api_base()),
        )
        .inbox()
        .rule(Rule::new(
            "trial-ending",
            ON_CREATED,
            &["sms", "inbox"],
            "Your trial ends in 4 days",
            "您好，{{ customer.name }}：您的试用将于4天后结束",
        ))
}

fn rows_of<'a>(rows: &'a [Value], customer: &str) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = rows.iter().filter(|r| r["customer"] == customer).collect();
    out.sort_by_key(|r| r["id"].as_i64());
    out
}

#[test]
fn twilio_sends_and_classifies_every_answer() {
    sends_and_classifies_every_answer(&plugin("sms-twilio"), true);
}

/// The plugin as a vendor built it against contract 0.1.0 gets the same
/// requests out and the same answers classified.
#[test]
fn twilio_built_for_contract_0_1_sends_and_classifies_every_answer() {
    sends_and_classifies_every_answer(&plugin_built_for_0_1("sms-twilio"), false);
}

/// `invalid_address`: the plugin answers 0.2.0's `invalid-address` for a
/// number that does not exist (0.1.0 has only `permanent`).
fn sends_and_classifies_every_answer(plugin: &Path, invalid_address: bool) {
    let fake = FakeTwilio::start(TOKEN);
    let scratch = Scratch::new();
    let config = config_for(plugin, &fake, env("TEST_TWILIO_TOKEN")).write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &[
            with_phone("ok", "李雷", "+86 138 0013 8000"),
            with_phone("invalid", "I", twilio::INVALID),
            with_phone("landline", "L", twilio::NOT_MOBILE),
            with_phone("stopped", "S", twilio::UNSUBSCRIBED),
            with_phone("throttled", "T", twilio::THROTTLED),
            with_phone("broken", "B", twilio::BROKEN),
        ]
        .join("\n"),
    );
    let db = scratch.path("h.db");
    let secret = ("TEST_TWILIO_TOKEN", TOKEN);
    let [stdout, stderr] = simulate_live_with(&config, &timeline, MARCH_1, &db, secret);

    // What Twilio saw for the good message: every field.
    let ok = fake.requests_to("+8613800138000");
    assert_eq!(ok.len(), 1, "one request for the good number");
    let (req, form) = &ok[0];
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(
        req.header("authorization").unwrap(),
        format!(
            "Basic {}",
            base64(format!("{ACCOUNT_SID}:{TOKEN}").as_bytes())
        )
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["To", "From", "Body", "StatusCallback"]);
    assert_eq!(form_get(form, "To"), Some("+8613800138000"));
    assert_eq!(form_get(form, "From"), Some(FROM));
    assert_eq!(
        form_get(form, "Body").unwrap().as_bytes(),
        TEXT.as_bytes(),
        "the Chinese body round-trips byte for byte"
    );
    assert_eq!(
        form_get(form, "StatusCallback"),
        Some("https://herald.example.com/hooks/sms")
    );
    assert!(!req
        .header("i-twilio-idempotency-token")
        .unwrap_or("")
        .is_empty());

    let rows = deliveries(&config, &db);
    let delivered = rows_of(&rows, "ok");
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["status"], "delivered");
    assert_eq!(delivered[0]["channel"], "sms");
    assert_eq!(delivered[0]["provider"], "sms-twilio");
    assert!(delivered[0]["provider_message_id"]
        .as_str()
        .unwrap()
        .starts_with("SM"));

    // Invalid and landline numbers: failed once, not retried, no fallback.
    for (customer, code) in [("invalid", "21211"), ("landline", "21614")] {
        let r = rows_of(&rows, customer);
        assert_eq!(r.len(), 1, "{customer}: {r:?}");
        assert_eq!(r[0]["status"], "failed");
        assert!(r[0]["retry_at"].is_null(), "{customer} is not retried");
        let error = r[0]["error"].as_str().unwrap();
        assert!(error.contains(code), "{customer}: {error}");
        assert_eq!(
            error.starts_with("invalid address: "),
            invalid_address,
            "{customer}: {error}"
        );
        assert!(
            error.contains(&format!("https://www.twilio.com/docs/errors/{code}")),
            "{error}"
        );
    }
    assert_eq!(fake.requests_to(twilio::INVALID).len(), 1);

    // Unsubscribed: suppressed on sms, then the rule's next channel at once.
    let stopped = rows_of(&rows, "stopped");
    assert_eq!(stopped.len(), 2, "{stopped:?}");
    assert_eq!(
        (&stopped[0]["channel"], &stopped[0]["status"]),
        (&json!("sms"), &json!("suppressed"))
    );
    assert!(stopped[0]["error"].as_str().unwrap().contains("21610"));
    assert_eq!(
        (&stopped[1]["channel"], &stopped[1]["status"]),
        (&json!("inbox"), &json!("delivered"))
    );
    assert_eq!(stopped[0]["at"], stopped[1]["at"]);

    // Rate limited: retried no sooner than Retry-After, with the same token.
    let throttled = rows_of(&rows, "throttled");
    assert_eq!(throttled.len(), 2, "{throttled:?}");
    assert_eq!(throttled[0]["status"], "failed");
    assert!(throttled[0]["error"].as_str().unwrap().contains("20429"));
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let wait = (at(&throttled[0]["retry_at"]) - at(&throttled[0]["at"])).num_seconds();
    assert!(
        wait >= twilio::THROTTLED_RETRY_AFTER as i64,
        "retry after {wait}s, before Retry-After"
    );
    assert_eq!(throttled[1]["status"], "delivered");
    let tokens: Vec<String> = fake
        .requests_to(twilio::THROTTLED)
        .iter()
        .map(|(r, _)| r.header("i-twilio-idempotency-token").unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0], tokens[1], "a retry reuses the idempotency token");

    // 500s: retried with backoff until max_attempts, then dead.
    let broken = rows_of(&rows, "broken");
    let statuses: Vec<&str> = broken
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "dead"]);
    assert!(broken[0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(fake.requests_to(twilio::BROKEN).len(), 3);

    // The auth token is printed nowhere.
    let [table, table_err] = deliveries_table(&config, &db);
    assert_not_leaked(
        &[TOKEN],
        &[stdout, stderr, table, table_err, json!(rows).to_string()],
    );
}

#[test]
fn twilio_wrong_credentials_fail_with_a_fix_it_message() {
    let fake = FakeTwilio::start(TOKEN);
    let scratch = Scratch::new();
    let wrong = "00000000000000000000000000000bad";
    let config = config(&fake, env("TEST_TWILIO_TOKEN")).write(&scratch);
    let timeline = scratch.write("t.jsonl", &with_phone("ok", "李雷", "+8613800138000"));
    let db = scratch.path("h.db");
    let secret = ("TEST_TWILIO_TOKEN", wrong);
    let [stdout, stderr] = simulate_live_with(&config, &timeline, MARCH_1, &db, secret);
    let rows = deliveries(&config, &db);
    let error = only_failure(&rows);
    assert!(
        error.contains("20003") && error.contains("account_sid") && error.contains("auth_token"),
        "{error}"
    );
    assert_not_leaked(&[wrong], &[stdout, stderr, json!(rows).to_string()]);
}

/// POSTs a form body to `url` (on `herald serve`) as Twilio does; returns
/// status, content type and body.
fn post_form(url: &str, signature: Option<&str>, body: &str) -> (u16, String, String) {
    let mut request = Request::post(url)
        .body("application/x-www-form-urlencoded", body)
        .header("User-Agent", "TwilioProxy/1.1");
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    let answer = request.send();
    let content_type = answer
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    (answer.status, content_type, answer.text())
}

/// Posts a Twilio webhook with these params, signed with `token`.
fn webhook(base: &str, token: Option<&str>, params: &[(&str, &str)]) -> (u16, String, String) {
    let signature =
        token.map(|t| twilio::webhook_signature(t, &format!("{PUBLIC_URL}/hooks/sms"), params));
    post_form(
        &format!("{base}/hooks/sms"),
        signature.as_deref(),
        &form_encode(params),
    )
}

#[test]
fn twilio_callbacks_report_refuse_forgeries_and_honour_stop() {
    callbacks_report_refuse_forgeries_and_honour_stop(&plugin("sms-twilio"));
}

/// Callbacks through a plugin built against contract 0.1.0.
#[test]
fn twilio_built_for_contract_0_1_handles_callbacks() {
    callbacks_report_refuse_forgeries_and_honour_stop(&plugin_built_for_0_1("sms-twilio"));
}

fn callbacks_report_refuse_forgeries_and_honour_stop(plugin: &Path) {
    let fake = FakeTwilio::start(TOKEN);
    let scratch = Scratch::new();
    let token_file = scratch.write("twilio-token", &format!("{TOKEN}\n"));
    let config = config_for(plugin, &fake, file(&token_file))
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["sms", "inbox"],
            "Ping",
            "Ping {{ customer.name }}",
        ))
        .write(&scratch);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let base = server.base.clone();
    let customers = [
        ("amy", "+14155550100"),
        ("bo", "+14155550101"),
        ("cy", "+14155550102"),
    ];
    let [amy, bo, cy] = server.sign_up_phones(&config, &db, &customers, "trial-ending");

    // A signed "delivered" status callback.
    let (status, content_type, body) = webhook(
        &base,
        Some(TOKEN),
        &[
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("From", FROM),
            ("MessageSid", &amy),
            ("MessageStatus", "delivered"),
            ("SmsSid", &amy),
            ("SmsStatus", "delivered"),
            ("To", "+14155550100"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert_eq!(
        body,
        r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#
    );
    // A signed "undelivered" one with Twilio's error code.
    let (status, _, body) = webhook(
        &base,
        Some(TOKEN),
        &[
            ("AccountSid", ACCOUNT_SID),
            ("ErrorCode", "30003"),
            ("From", FROM),
            ("MessageSid", &bo),
            ("MessageStatus", "undelivered"),
            ("To", "+14155550101"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    // Forged: signed with another token, tampered after signing, unsigned.
    let forged = [
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", cy.as_str()),
        ("MessageStatus", "delivered"),
    ];
    assert_eq!(webhook(&base, Some("not-the-token"), &forged).0, 403);
    assert_eq!(webhook(&base, None, &forged).0, 403);
    let signature = twilio::webhook_signature(
        TOKEN,
        &format!("{PUBLIC_URL}/hooks/sms"),
        &[
            ("AccountSid", ACCOUNT_SID),
            ("MessageSid", &cy),
            ("MessageStatus", "sent"),
        ],
    );
    let (status, _, body) = post_form(
        &format!("{base}/hooks/sms"),
        Some(&signature),
        &form_encode(&forged),
    );
    assert_eq!(status, 403, "a tampered callback is refused: {body}");

    let rows = deliveries(&config, &db);
    let report = |c: &str| {
        let r = row_for(&rows, c, "trial-ending").unwrap();
        (r["report"].clone(), r["report_reason"].clone())
    };
    assert_eq!(report("amy"), (json!("delivered"), Value::Null));
    let (state, reason) = report("bo");
    assert_eq!(state, "undelivered");
    assert!(reason.as_str().unwrap().contains("30003"), "{reason}");
    assert_eq!(
        report("cy"),
        (Value::Null, Value::Null),
        "forged callbacks change nothing"
    );

    // Cy replies STOP (Twilio forwards the inbound message, signed).
    let (status, _, body) = webhook(
        &base,
        Some(TOKEN),
        &[
            ("AccountSid", ACCOUNT_SID),
            ("ApiVersion", "2010-04-01"),
            ("Body", "STOP"),
            ("From", "+14155550102"),
            ("MessageSid", "SM7a1c0c9e0b2f4d6a8c0e2f4a6b8d0f12"),
            ("NumMedia", "0"),
            ("NumSegments", "1"),
            ("OptOutType", "STOP"),
            ("SmsStatus", "received"),
            ("To", FROM),
        ],
    );
    assert_eq!(status, 200, "{body}");

    // The next reminder: Amy still gets SMS, Cy goes to the inbox.
    let rows = server.events_delivered(&config, &db, &["amy", "cy"], "ping", "ping");
    let ping = |c: &str| {
        let r = row_for(&rows, c, "ping").unwrap();
        (r["channel"].clone(), r["status"].clone())
    };
    assert_eq!(ping("amy"), (json!("sms"), json!("delivered")));
    assert_eq!(ping("cy"), (json!("inbox"), json!("delivered")));
    assert_eq!(
        fake.requests_to("+14155550102").len(),
        1,
        "no SMS to Cy after STOP"
    );
    assert_eq!(fake.requests_to("+14155550100").len(), 2);
    assert!(!server.log().contains(TOKEN), "the auth token leaked");
}
