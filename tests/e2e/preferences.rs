//! Preferences: rules belong to topics; the signed `{{ preferences_url }}`
//! page lets a customer turn topics and channels off and on in their
//! language without JavaScript (driven in a real headless Chromium with
//! scripts switched off); the API reads and writes the same preferences
//! with the same checks; the tick skips a turned-off topic but never a
//! transactional rule, and passes over a turned-off channel.

use crate::support::*;
use serde_json::{json, Value};

const TOPICS: &[(&str, &str)] = &[
    (
        "topics.service",
        r#"label = { en = "Service updates", "zh-CN" = "服务通知" }"#,
    ),
    (
        "topics.marketing",
        r#"label = { en = "Offers and events", "zh-CN" = "优惠与活动" }
description = { en = "New products and holiday events", "zh-CN" = "新产品与节日活动" }"#,
    ),
    (
        "topics.billing",
        r#"label = { en = "Receipts", "zh-CN" = "回执" }"#,
    ),
];

/// Mail and SMS through the webhook plugin, the inbox, three topics; a
/// welcome (service) carrying the page link, a promotion (marketing) by SMS
/// then mail, and a receipt (billing, transactional) by mail then inbox.
fn config(provider: &FakeProvider) -> Config {
    let mut config = Config::new()
        .public_url("https://herald.example/")
        .channel(
            "mail",
            webhook(provider, "/mail", "k3y").set("address", "email"),
        )
        .channel(
            "sms",
            webhook(provider, "/sms", "k3y").set("address", "phone"),
        )
        .inbox();
    for (table, lines) in TOPICS {
        config = config.lines(table, lines);
    }
    config
        .rule(welcome(&["mail", "inbox"]).set("topic", "service").set(
            "text",
            "Hello. Choose what you hear about: {{ preferences_url }}",
        ))
        .rule(
            Rule::new(
                "promo",
                &on_event("promo"),
                &["sms", "mail"],
                "Sale",
                "Sale today",
            )
            .set("topic", "marketing"),
        )
        .rule(
            Rule::new(
                "receipt",
                &on_event("paid"),
                &["mail", "inbox"],
                "Receipt",
                "Paid",
            )
            .set("topic", "billing")
            .set("transactional", true),
        )
}

const CUSTOMER: &str = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"王 1","email":"w@example.com","phone":"+8613800000001","locale":"zh-CN"}}"#;

/// Sign the customer up in a simulation against the fake provider; the
/// preference link from the welcome message.
fn signed_up(
    scratch: &Scratch,
    config: &std::path::Path,
    provider: &FakeProvider,
) -> (std::path::PathBuf, String) {
    let timeline = scratch.write("t.jsonl", CUSTOMER);
    let db = scratch.db("h.db");
    simulate_into(config, &timeline, MARCH_1, &db, &["--live"]);
    let sent = provider.requests();
    assert_eq!(sent.len(), 1, "only the welcome");
    let text = sent[0].json()["text"].as_str().unwrap().to_string();
    let link = text.rsplit(": ").next().unwrap().trim().to_string();
    assert!(
        link.starts_with("https://herald.example/preferences?c=%E7%8E%8B%201&s="),
        "{link}"
    );
    (
        db,
        link.strip_prefix("https://herald.example")
            .unwrap()
            .to_string(),
    )
}

/// Wait for the delivery of `rule` and return it.
fn delivery_of(config: &std::path::Path, db: &std::path::Path, rule: &str) -> Value {
    wait_for(10, || {
        deliveries(config, db)
            .into_iter()
            .find(|r| r["rule"] == rule)
    })
    .unwrap_or_else(|| panic!("no delivery of {rule}"))
}

fn has(html: &str, needle: &str) -> bool {
    html.contains(needle)
}

#[test]
fn a_customer_turns_a_topic_and_a_channel_off_on_their_page_without_javascript() {
    let provider = FakeProvider::start(|_, _| Reply::json(200, json!({"id": "m1"})));
    let scratch = Scratch::new();
    let config = config(&provider).write(&scratch);
    let (db, link) = signed_up(&scratch, &config, &provider);
    let server = Server::start(&config, &db, &scratch, "serve.log");

    let mut browser = Browser::open();
    browser.navigate(&server.url(&link));
    let page = browser.html();
    // In the customer's language, every topic and channel on.
    assert!(
        has(&page, "lang=\"zh-CN\"") && has(&page, "通知偏好设置"),
        "{page}"
    );
    for label in [
        "服务通知",
        "优惠与活动",
        "新产品与节日活动",
        "短信",
        "电子邮件",
        "App 内消息",
    ] {
        assert!(has(&page, label), "{label}: {page}");
    }
    assert!(has(&page, r#"id="topic-marketing" checked="""#), "{page}");
    // The receipt topic is transactional only: shown, always on, not changeable.
    assert!(
        has(&page, r#"id="topic-billing" checked="" disabled="""#) && has(&page, "始终发送"),
        "{page}"
    );
    assert!(!has(&page, "<script"), "the page needs no script");

    // Untick marketing and mail, save: the page comes back saying so.
    browser.click("#topic-marketing");
    browser.click("#channel-mail");
    browser.submit("#save");
    let saved = browser.html();
    assert!(has(&saved, "您的偏好设置已保存"), "{saved}");
    assert!(
        has(&saved, r#"id="topic-marketing">"#),
        "marketing is off: {saved}"
    );
    assert!(has(&saved, r#"id="channel-mail">"#), "mail is off: {saved}");
    assert!(has(&saved, r#"id="topic-service" checked="""#), "{saved}");
    assert!(has(&saved, r#"id="channel-sms" checked="""#), "{saved}");

    // The API reads the same preferences.
    let (status, prefs) = server.api("GET", "/customers/%E7%8E%8B%201/preferences", None);
    assert_eq!(status, 200, "{prefs}");
    let topic = |name: &str| {
        prefs["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["topic"] == name)
            .cloned()
            .unwrap()
    };
    let channel = |name: &str| {
        prefs["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(topic("marketing")["subscribed"], false);
    assert_eq!(topic("service")["subscribed"], true);
    assert_eq!(topic("billing")["always_sent"], true);
    assert_eq!(channel("mail")["enabled"], false);
    assert_eq!(channel("sms")["enabled"], true);
    assert_eq!(prefs["page_url"], format!("https://herald.example{link}"));

    // The promotion is skipped; the receipt still goes, past the mail channel.
    for kind in ["promo", "paid"] {
        let (status, body) = server.api(
            "POST",
            "/events",
            Some(&json!({"customer": "王 1", "kind": kind}).to_string()),
        );
        assert!(status < 300, "{status} {body}");
    }
    let promo = delivery_of(&config, &db, "promo");
    assert_eq!(promo["status"], "skipped", "{promo}");
    assert!(
        promo["error"]
            .as_str()
            .unwrap_or("")
            .contains("turned off `marketing`"),
        "{promo}"
    );
    let receipt = delivery_of(&config, &db, "receipt");
    assert_eq!(
        (&receipt["status"], &receipt["channel"]),
        (&json!("delivered"), &json!("inbox")),
        "{receipt}"
    );
    assert_eq!(
        provider.requests().len(),
        1,
        "nothing more went out by SMS or mail"
    );

    // The same page in English, then marketing back on.
    browser.submit("#language");
    let english = browser.html();
    assert!(
        has(&english, "Offers and events") && has(&english, "Text messages (SMS)"),
        "{english}"
    );
    browser.click("#topic-marketing");
    browser.submit("#save");
    assert!(has(&browser.html(), "Your preferences are saved."));
    let (_, body) = server.api(
        "POST",
        "/events",
        Some(&json!({"customer": "王 1", "kind": "promo"}).to_string()),
    );
    assert!(body.is_object(), "{body}");
    wait_for(10, || (provider.requests().len() == 2).then_some(()))
        .expect("the next promotion goes out");
    assert_eq!(provider.requests()[1].path, "/sms");
}

#[test]
fn a_tampered_or_foreign_link_changes_nothing() {
    let provider = FakeProvider::start(|_, _| Reply::json(200, json!({"id": "m1"})));
    let scratch = Scratch::new();
    let config = config(&provider).write(&scratch);
    let (db, link) = signed_up(&scratch, &config, &provider);
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let tampered = format!(
        "{}0",
        server
            .url(&link)
            .trim_end_matches(|c: char| c.is_ascii_hexdigit())
    );
    let (status, page) = http_text("GET", &tampered, None);
    assert_eq!(status, 403, "{page}");
    let (status, _) = http_text("POST", &tampered, Some(""));
    assert_eq!(status, 403);
    // Another customer's id under this signature.
    let other = server.url(&link).replace("c=%E7%8E%8B%201", "c=x");
    assert_eq!(http_text("POST", &other, Some("")).0, 403);
    let (_, prefs) = server.api("GET", "/customers/%E7%8E%8B%201/preferences", None);
    assert!(
        prefs["topics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["subscribed"] == true),
        "{prefs}"
    );
    assert!(
        prefs["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["enabled"] == true),
        "{prefs}"
    );
}

#[test]
fn the_api_changes_the_same_preferences_with_the_same_checks() {
    let provider = FakeProvider::start(|_, _| Reply::json(200, json!({"id": "m1"})));
    let scratch = Scratch::new();
    let config = config(&provider).write(&scratch);
    let (db, _) = signed_up(&scratch, &config, &provider);
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let path = "/customers/%E7%8E%8B%201/preferences";
    let put = |token: &str, body: Value| {
        http_as(token, "PUT", &server.url(path), Some(&body.to_string()))
    };
    let refused = |body: Value, says: &str| {
        let (status, answer) = put(&server.token, body);
        assert_eq!(status, 422, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{message}");
    };
    refused(
        json!({"topics": {"news": false}}),
        "no topic `news`; topics: billing, marketing, service",
    );
    refused(
        json!({"topics": {"billing": false}}),
        "only transactional reminders",
    );
    refused(
        json!({"channels": {"calls": false}}),
        "does not reach this customer",
    );
    // An operator's suppression cannot be lifted through preferences.
    let (status, body) = server.api(
        "POST",
        "/suppressions",
        Some(&json!({"customer": "王 1", "channel": "sms", "reason": "complaint"}).to_string()),
    );
    assert!(status < 300, "{status} {body}");
    refused(
        json!({"channels": {"sms": true}}),
        "turned off by the operator",
    );
    assert_eq!(put(&server.token, json!({"bad": 1})).0, 400);

    // The operator's app (an ingest token) may change them, not read them.
    let ingest = create_token(&config, &db, "ingest", &[]);
    let (status, after) = put(
        &ingest,
        json!({"topics": {"marketing": false}, "channels": {"mail": false}}),
    );
    assert_eq!(status, 200, "{after}");
    assert_eq!(http_as(&ingest, "GET", &server.url(path), None).0, 403);
    let (_, prefs) = server.api("GET", path, None);
    assert_eq!(prefs["topics"][1]["subscribed"], false, "{prefs}");
    let sms = prefs["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "sms")
        .unwrap()
        .clone();
    assert_eq!(
        (&sms["enabled"], &sms["locked"]),
        (&json!(false), &json!("api")),
        "{prefs}"
    );
    // Staff of another region do not see the customer.
    let staff = create_token(&config, &db, "staff", &["north"]);
    assert_eq!(http_as(&staff, "GET", &server.url(path), None).0, 404);
    // Mail back on through the API: lifted, since the customer's own choice put it there.
    let (status, after) = put(&server.token, json!({"channels": {"mail": true}}));
    assert_eq!(status, 200, "{after}");
    assert!(
        after["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["channel"] == "mail" && c["enabled"] == true),
        "{after}"
    );
}

#[test]
fn check_refuses_an_undeclared_topic_and_warns_about_rules_without_one() {
    let provider = FakeProvider::start(|_, _| Reply::json(200, json!({})));
    let bad = config(&provider)
        .rule(Rule::new("news", &on_event("news"), &["mail"], "N", "N").set("topic", "newsletter"));
    let refused = refusal(bad);
    assert!(refused.contains("rule `news`: topic `newsletter` is not declared; declared topics: billing, marketing, service"), "{refused}");

    let scratch = Scratch::new();
    let loose = config(&provider)
        .rule(Rule::new("news", &on_event("news"), &["mail"], "N", "N"))
        .write(&scratch);
    let out = run(herald().args(["check", "--config"]).arg(&loose));
    let report = text(&out.stdout) + &text(&out.stderr);
    assert!(
        report.contains("no topic: customers can turn its reminders off only channel by channel"),
        "{report}"
    );
}
