//! The sms-aliyun plugin through the real binary against the fake Alibaba
//! Cloud SMS API: the signed SendSms request checked parameter by parameter
//! (signature, Timestamp on the host's clock, unique nonces, template
//! params, the Chinese text byte for byte), each `Code` class (accepted,
//! illegal number, blacklisted, per-number flow control retried after an
//! hour, system errors and 503 retried) as `herald deliveries` shows it,
//! a wrong secret failing with a fix-it message, the secret never printed,
//! and Alibaba Cloud's pushes through `herald serve` (SmsReport updates
//! reports, SmsUp `退订` / `TD` suppresses, the callback token guards both).

use crate::fakes::aliyun::{self, Clock, FakeAliyun, ACCESS_KEY_ID, SIGN_NAME, TEMPLATE};
use crate::fakes::codec::{base64, form_get, hmac_sha1};
use crate::support::*;
use chrono::TimeZone;
use serde_json::{json, Value};

const SECRET: &str = "q7VfH3kLw9XzR2mN8bT4cY6pJ1sD5gA0";
const TEXT: &str = "您好，李雷：您的试用将于4天后结束";
const CALLBACK_TOKEN: &str = "cbTok3n0fTheAliyunPush";

/// The sms-aliyun channel against `fake` (secret and more settings given by
/// the test), the inbox behind it, and two rules.
fn config(fake: &FakeAliyun, sms: Channel) -> Config {
    Config::new()
        .tick("100ms")
        .retry(3, "1m", "6h")
        .channel(
            "sms",
            sms.allow(&fake.provider.origin())
                .set("timeout", "5s")
                .setting("access_key_id", ACCESS_KEY_ID)
                .setting("sign_name", SIGN_NAME)
                .setting("template_code", TEMPLATE)
                .setting("endpoint", fake.endpoint()),
        )
        .inbox()
        .rule(
            Rule::new(
                "trial-ending",
                ON_CREATED,
                &["sms", "inbox"],
                "Your trial ends in 4 days",
                TEXT_TEMPLATE,
            )
            .set(
                "fields",
                Raw(r#"{ name = "{{ customer.name }}", days = "4" }"#.into()),
            ),
        )
        .rule(
            Rule::new(
                "notice",
                &on_event("notice"),
                &["sms", "inbox"],
                "Notice",
                TEXT_TEMPLATE,
            )
            .set(
                "fields",
                Raw(format!(
                    r#"{{ template_code = "{}" }}"#,
                    aliyun::CONTENT_TEMPLATE
                )),
            ),
        )
}

const TEXT_TEMPLATE: &str = "您好，{{ customer.name }}：您的试用将于4天后结束";

/// The plugin with its secret from the environment.
fn secret_from_env() -> Channel {
    Channel::plugin("sms-aliyun").setting("access_key_secret", env("TEST_ALIYUN_SECRET"))
}

fn rows_of<'a>(rows: &'a [Value], customer: &str, rule: &str) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = rows
        .iter()
        .filter(|r| r["customer"] == customer && r["rule"] == rule)
        .collect();
    out.sort_by_key(|r| r["id"].as_i64());
    out
}

fn simulation_window() -> Clock {
    Clock::Window(
        chrono::Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
        chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(),
    )
}

#[test]
fn aliyun_sends_and_classifies_every_answer() {
    let fake = FakeAliyun::start(SECRET, simulation_window());
    let scratch = Scratch::new();
    let config = config(&fake, secret_from_env()).write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &[
            with_phone("ok", "李雷", "+86 138 0013 8000"),
            with_phone("illegal", "I", aliyun::ILLEGAL),
            with_phone("blacklisted", "B", aliyun::BLACKLISTED),
            with_phone("limited", "L", aliyun::LIMITED),
            with_phone("syserr", "S", aliyun::SYSTEM_ERROR),
            with_phone("unavailable", "U", aliyun::UNAVAILABLE),
            json!({"at": "2026-03-01T10:00:00Z", "op": "event", "customer": "ok", "kind": "notice"})
                .to_string(),
        ]
        .join("\n"),
    );
    let db = scratch.path("h.db");
    let secret = ("TEST_ALIYUN_SECRET", SECRET);
    let [stdout, stderr] = simulate_live_with(&config, &timeline, MARCH_1, &db, secret);

    // Every parameter of the good request, as the provider decoded it.
    let ok = fake.requests_to("13800138000");
    assert_eq!(ok.len(), 2, "welcome and notice");
    let (req, p) = &ok[0];
    assert_eq!(req.method, "GET");
    let mut names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "AccessKeyId",
            "Action",
            "Format",
            "OutId",
            "PhoneNumbers",
            "RegionId",
            "SignName",
            "Signature",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "TemplateCode",
            "TemplateParam",
            "Timestamp",
            "Version"
        ]
    );
    let get = |k: &str| form_get(p, k).unwrap();
    assert_eq!(get("AccessKeyId"), ACCESS_KEY_ID);
    assert_eq!(get("Action"), "SendSms");
    assert_eq!(get("Format"), "JSON");
    assert_eq!(get("RegionId"), "cn-hangzhou");
    assert_eq!(get("SignName"), SIGN_NAME);
    assert_eq!(get("SignatureMethod"), "HMAC-SHA1");
    assert_eq!(get("SignatureVersion"), "1.0");
    assert_eq!(get("Version"), "2017-05-25");
    assert_eq!(get("TemplateCode"), TEMPLATE);
    assert_eq!(
        get("Timestamp"),
        "2026-03-01T09:00:00Z",
        "the host's (virtual) clock"
    );
    let param: Value = serde_json::from_str(get("TemplateParam")).unwrap();
    assert_eq!(param, json!({"name": "李雷", "days": "4"}));
    assert!(!get("OutId").is_empty());
    // The signature is over exactly these parameters.
    let expected = base64(&hmac_sha1(
        format!("{SECRET}&").as_bytes(),
        aliyun::string_to_sign("GET", p).as_bytes(),
    ));
    assert_eq!(get("Signature"), expected);

    // The notice: a `template_code` field overrides the setting and the
    // text goes as `content`, byte for byte.
    let (_, notice) = &ok[1];
    assert_eq!(
        form_get(notice, "TemplateCode"),
        Some(aliyun::CONTENT_TEMPLATE)
    );
    let param: Value = serde_json::from_str(form_get(notice, "TemplateParam").unwrap()).unwrap();
    assert_eq!(param.as_object().unwrap().len(), 1);
    assert_eq!(
        param["content"].as_str().unwrap().as_bytes(),
        TEXT.as_bytes()
    );
    let nonces: std::collections::HashSet<String> = fake
        .requests()
        .iter()
        .map(|(_, p)| form_get(p, "SignatureNonce").unwrap().to_string())
        .collect();
    assert_eq!(nonces.len(), fake.requests().len(), "every nonce is unique");

    let rows = deliveries(&config, &db);
    for rule in ["trial-ending", "notice"] {
        let r = rows_of(&rows, "ok", rule);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0]["status"], "delivered");
        assert_eq!(r[0]["channel"], "sms");
        assert_eq!(r[0]["provider"], "sms-aliyun");
        assert!(r[0]["provider_message_id"]
            .as_str()
            .unwrap()
            .ends_with("^0"));
    }

    for (customer, code) in [
        ("illegal", "isv.MOBILE_NUMBER_ILLEGAL"),
        ("blacklisted", "isv.BLACK_KEY_CONTROL_LIMIT"),
    ] {
        let r = rows_of(&rows, customer, "trial-ending");
        assert_eq!(r.len(), 1, "{customer}: {r:?}");
        assert_eq!(r[0]["status"], "failed");
        assert!(r[0]["retry_at"].is_null());
        assert!(r[0]["error"].as_str().unwrap().contains(code), "{:?}", r[0]);
    }

    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    for (customer, code, min_wait) in [
        ("limited", "isv.BUSINESS_LIMIT_CONTROL", 3600),
        ("syserr", "isp.SYSTEM_ERROR", 1),
        ("unavailable", "503", 1),
    ] {
        let r = rows_of(&rows, customer, "trial-ending");
        assert_eq!(r.len(), 2, "{customer}: {r:?}");
        assert_eq!(r[0]["status"], "failed");
        assert!(r[0]["error"].as_str().unwrap().contains(code), "{:?}", r[0]);
        let wait = (at(&r[0]["retry_at"]) - at(&r[0]["at"])).num_seconds();
        assert!(wait >= min_wait, "{customer} retried after {wait}s");
        assert_eq!(r[1]["status"], "delivered", "{customer}");
        // The retry is a new request (new nonce, new Timestamp), same OutId.
        let sent = fake.requests_to(match customer {
            "limited" => aliyun::LIMITED,
            "syserr" => aliyun::SYSTEM_ERROR,
            _ => aliyun::UNAVAILABLE,
        });
        assert_eq!(sent.len(), 2);
        assert_eq!(form_get(&sent[0].1, "OutId"), form_get(&sent[1].1, "OutId"));
    }
    // Flow control waits an hour (Alibaba Cloud's hour-level window).
    let limited = rows_of(&rows, "limited", "trial-ending");
    let wait = (at(&limited[0]["retry_at"]) - at(&limited[0]["at"])).num_seconds();
    assert!((3600..=3600 * 2).contains(&wait), "{wait}");

    let [table, table_err] = deliveries_table(&config, &db);
    assert_not_leaked(
        &[SECRET],
        &[stdout, stderr, table, table_err, json!(rows).to_string()],
    );
}

#[test]
fn aliyun_wrong_secret_fails_with_a_fix_it_message() {
    let fake = FakeAliyun::start(SECRET, simulation_window());
    let scratch = Scratch::new();
    let wrong = "WrongSecretWrongSecretWrongSecret";
    let config = config(&fake, secret_from_env()).write(&scratch);
    let timeline = scratch.write("t.jsonl", &with_phone("ok", "李雷", "13800138000"));
    let db = scratch.path("h.db");
    let secret = ("TEST_ALIYUN_SECRET", wrong);
    let [stdout, stderr] = simulate_live_with(&config, &timeline, MARCH_1, &db, secret);
    let rows = deliveries(&config, &db);
    let error = only_failure(&rows);
    assert!(
        error.contains("SignatureDoesNotMatch") && error.contains("access_key_secret"),
        "{error}"
    );
    assert_not_leaked(&[wrong], &[stdout, stderr, json!(rows).to_string()]);
}

#[test]
fn aliyun_pushes_report_and_unsubscribe_through_serve() {
    let fake = FakeAliyun::start(SECRET, Clock::Wall);
    let scratch = Scratch::new();
    let secret_file = scratch.write("aliyun-secret", SECRET);
    let token_file = scratch.write("aliyun-token", CALLBACK_TOKEN);
    let sms = Channel::plugin("sms-aliyun")
        .setting("access_key_secret", file(&secret_file))
        .setting("callback_token", file(&token_file));
    let config = config(&fake, sms).write(&scratch);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let base = server.base.clone();
    let customers = [
        ("amy", "+8613800138000"),
        ("bo", "+86 139 0013 9000"),
        ("cy", "13700137000"),
    ];
    let [amy, bo, cy] = server.sign_up_phones(&config, &db, &customers, "trial-ending");
    let report = |phone: &str, biz_id: &str, success: bool, code: &str, msg: &str| {
        json!({"phone_number": phone, "send_time": "2026-11-23 17:00:00",
               "report_time": "2026-11-23 17:00:05", "success": success,
               "err_code": code, "err_msg": msg, "sms_size": "1",
               "biz_id": biz_id, "out_id": "x"})
    };
    let hook = format!("{base}/hooks/sms?token={CALLBACK_TOKEN}");

    // Forged pushes (no token, wrong token) are refused and change nothing.
    let forged = json!([report(
        "13700137000",
        &cy,
        true,
        "DELIVERED",
        "用户接收成功"
    )])
    .to_string();
    assert_eq!(
        http("POST", &format!("{base}/hooks/sms"), Some(&forged)).0,
        403
    );
    assert_eq!(
        http(
            "POST",
            &format!("{base}/hooks/sms?token=guess"),
            Some(&forged)
        )
        .0,
        403
    );

    // One SmsReport batch with a success and a failure.
    let push = json!([
        report("13800138000", &amy, true, "DELIVERED", "用户接收成功"),
        report("13900139000", &bo, false, "MK:0001", "空号"),
    ])
    .to_string();
    let (status, body) = http("POST", &hook, Some(&push));
    assert_eq!((status, body), (200, json!({"code": 0, "msg": "成功"})));
    let (status, body) = http("POST", &hook, Some("{not json"));
    assert_eq!(status, 400, "{body}");

    let rows = deliveries(&config, &db);
    let state = |c: &str| {
        let r = row_for(&rows, c, "trial-ending").unwrap();
        (r["report"].clone(), r["report_reason"].clone())
    };
    assert_eq!(state("amy"), (json!("delivered"), Value::Null));
    assert_eq!(state("bo"), (json!("undelivered"), json!("MK:0001: 空号")));
    assert_eq!(state("cy"), (Value::Null, Value::Null));

    // SmsUp: Bo (stored in E.164) answers TD, Cy (stored bare) 退订.
    let up = json!([
        {"phone_number": "13900139000", "send_time": "2026-11-23 17:01:00", "content": "TD",
         "sign_name": SIGN_NAME, "dest_code": "1234", "sequence_id": 1_234_567},
        {"phone_number": "13700137000", "send_time": "2026-11-23 17:01:02", "content": "退订",
         "sign_name": SIGN_NAME, "dest_code": "1234", "sequence_id": 1_234_568},
    ])
    .to_string();
    let (status, body) = http("POST", &hook, Some(&up));
    assert_eq!((status, body), (200, json!({"code": 0, "msg": "成功"})));

    let rows = server.events_delivered(&config, &db, &["amy", "bo", "cy"], "notice", "notice");
    let notice = |c: &str| {
        let r = row_for(&rows, c, "notice").unwrap();
        (r["channel"].clone(), r["status"].clone())
    };
    assert_eq!(notice("amy"), (json!("sms"), json!("delivered")));
    assert_eq!(notice("bo"), (json!("inbox"), json!("delivered")));
    assert_eq!(notice("cy"), (json!("inbox"), json!("delivered")));
    assert_eq!(fake.requests_to("13900139000").len(), 1);
    assert_eq!(fake.requests_to("13700137000").len(), 1);
    assert_eq!(fake.requests_to("13800138000").len(), 2);
    assert!(!server.log().contains(SECRET), "the secret leaked");
}

/// An SmsUp push: `content` from `phone`.
fn reply_push(phone: &str, content: &str) -> String {
    json!([{"phone_number": phone, "send_time": "2026-11-23 17:01:00", "content": content,
            "sign_name": SIGN_NAME, "dest_code": "1234", "sequence_id": 1_234_569}])
    .to_string()
}

/// (customer, source) of every suppression on the `sms` channel, sorted.
fn sms_suppressions(server: &Server) -> Vec<(String, String)> {
    let (status, list) = server.api("GET", "/suppressions", None);
    assert_eq!(status, 200, "{list}");
    let mut out: Vec<(String, String)> = list["suppressions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["channel"] == "sms")
        .map(|s| {
            (
                s["customer"].as_str().unwrap().into(),
                s["source"].as_str().unwrap().into(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Without a `callback_token` anyone who found the hook URL could forge a
/// TD (suppressing any number) or a 订阅 (lifting any opt-out): `herald
/// check` warns and every push is refused. With one, a reply speaks for
/// every customer with that number, and 订阅 lifts only what a reply
/// suppressed, never an operator's (or a link's, or an import's) opt-out.
#[test]
fn aliyun_replies_need_the_token_and_resubscribe_only_undoes_a_reply() {
    let fake = FakeAliyun::start(SECRET, Clock::Wall);
    let scratch = Scratch::new();
    let secret_file = scratch.write("aliyun-secret", SECRET);
    let open = config(
        &fake,
        Channel::plugin("sms-aliyun").setting("access_key_secret", file(&secret_file)),
    )
    .write_as(&scratch, "open.toml");
    let out = run(herald().args(["check", "--config"]).arg(&open));
    let checked = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "a warning alone passes: {checked}");
    assert!(
        checked.contains("callback_token") && checked.contains("/hooks/sms"),
        "{checked}"
    );
    let db = scratch.path("open.db");
    let server = Server::start(&open, &db, &scratch, "open.log");
    let (status, _) = server.api(
        "POST",
        "/customers",
        Some(r#"{"external_id":"amy","phone":"+8613800138000"}"#),
    );
    assert_eq!(status, 200);
    let (status, _) = http(
        "POST",
        &server.url("/hooks/sms"),
        Some(&reply_push("13800138000", "TD")),
    );
    assert_eq!(status, 403, "a push without a configured token is refused");
    assert_eq!(sms_suppressions(&server), []);
    drop(server);

    let token_file = scratch.write("aliyun-token", CALLBACK_TOKEN);
    let guarded = config(
        &fake,
        Channel::plugin("sms-aliyun")
            .setting("access_key_secret", file(&secret_file))
            .setting("callback_token", file(&token_file)),
    )
    .write_as(&scratch, "guarded.toml");
    let db = scratch.path("guarded.db");
    let server = Server::start(&guarded, &db, &scratch, "guarded.log");
    for (id, phone) in [
        ("amy", "+8613800138000"),
        ("amy-work", "+86 138 0013 8000"),
        ("lin", "+8613700137000"),
    ] {
        let body = json!({"external_id": id, "phone": phone}).to_string();
        assert_eq!(server.api("POST", "/customers", Some(&body)).0, 200);
    }
    let body =
        json!({"customer": "lin", "channel": "sms", "reason": "asked the call centre"}).to_string();
    assert_eq!(server.api("POST", "/suppressions", Some(&body)).0, 201);
    let hook = server.url(&format!("/hooks/sms?token={CALLBACK_TOKEN}"));
    let reply = |phone: &str, content: &str| {
        let (status, body) = http("POST", &hook, Some(&reply_push(phone, content)));
        assert_eq!(status, 200, "{body}");
    };
    // 取消订单 ("cancel the order") is not an opt-out; TD from a shared number covers both.
    reply("13800138000", "取消订单");
    assert_eq!(
        sms_suppressions(&server),
        [("lin".to_string(), "api".to_string())]
    );
    reply("13800138000", "TD");
    let both = [
        ("amy".to_string(), "reply".to_string()),
        ("amy-work".to_string(), "reply".to_string()),
        ("lin".to_string(), "api".to_string()),
    ];
    assert_eq!(sms_suppressions(&server), both);
    // 订阅 from Lin does not undo the operator's suppression; from Amy it undoes her TD.
    reply("13700137000", "订阅");
    assert_eq!(sms_suppressions(&server), both);
    reply("13800138000", "订阅");
    assert_eq!(
        sms_suppressions(&server),
        [("lin".to_string(), "api".to_string())]
    );
}
