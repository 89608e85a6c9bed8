//! Outside inputs that must not stop delivery: a provider's absurd
//! `Retry-After`, instants at the ends of the calendar in events, customers
//! and date attributes. Each came from a review of the code.

use crate::fakes::wechat::FakeWechat;
use crate::support::*;
use serde_json::json;

/// A webhook receiver that answers 503 with `Retry-After: 10000000000000`
/// (317,000 years) for one customer used to panic the tick, so another
/// customer's inbox reminder an hour later was never sent. Now the hint is
/// honoured up to a day and everything else goes on.
#[test]
fn an_absurd_retry_after_waits_a_day_and_stops_nothing() {
    let provider = FakeProvider::start(|req, _| {
        if req.json()["recipient"]["customer_id"] == "huge" {
            let mut reply = Reply::json(503, json!({"error": "come back much later"}));
            reply
                .headers
                .push(("Retry-After".into(), "10000000000000".into()));
            return reply;
        }
        Reply::json(200, json!({"id": "ok"}))
    });
    let scratch = Scratch::new();
    let config = Config::new()
        .retry(5, "10m", "1h")
        .inbox()
        .channel("hook", webhook(&provider, "/hook", "s3cret"))
        .rule(welcome(&["hook"]))
        .rule(Rule::new(
            "checkin",
            r#"{ on = "created", delay = "1h" }"#,
            &["inbox"],
            "How is it going?",
            "Tell us.",
        ))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"huge","name":"H"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"calm","name":"C"}}
"#,
    );
    let db = scratch.db("h.db");
    let out = run(
        simulate_cmd(&config, &timeline, "2026-03-01", "2026-03-02T08:00:00Z")
            .arg("--live")
            .arg("--db")
            .arg(&db),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let attempts = parse_attempts(&text(&out.stdout));
    let calm_checkin = attempts
        .iter()
        .find(|a| a.customer == "calm" && a.rule == "checkin")
        .unwrap_or_else(|| panic!("the other customer's reminder was sent: {attempts:?}"));
    assert_eq!(calm_checkin.status, "delivered");
    assert_eq!(calm_checkin.at, "2026-03-01T10:00:00Z");
    let rows = deliveries(&config, &db);
    let huge = row_for(&rows, "huge", "welcome").expect("huge's attempt recorded");
    assert_eq!(huge["status"], "failed", "{huge}");
    assert_eq!(
        huge["retry_at"], "2026-03-02T09:00:00Z",
        "the provider's hint is honoured up to a day: {huge}"
    );
}

/// A serve with a date attribute, for the API tests of instants.
fn serve(scratch: &Scratch) -> (std::path::PathBuf, std::path::PathBuf, Server) {
    let config = Config::new()
        .tick("100ms")
        .inbox()
        .attribute("renews_on", "date")
        .rule(welcome(&["inbox"]))
        .rule(Rule::new(
            "thanks",
            &on_event("purchase"),
            &["inbox"],
            "Thanks",
            "Enjoy it.",
        ))
        .write(scratch);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, scratch, "serve.log");
    (config, db, server)
}

/// Instants at the ends of the calendar are refused at the edge with a 422
/// that names the accepted years; nothing is written, and the server goes
/// on answering and sending.
#[test]
fn instants_outside_the_calendar_are_refused_at_the_edge() {
    let scratch = Scratch::new();
    let (config, db, server) = serve(&scratch);
    let (status, _) = server.api(
        "POST",
        "/customers",
        Some(r#"{"external_id":"c1","name":"C"}"#),
    );
    assert_eq!(status, 200);
    for at in [
        "+262142-12-31T23:59:59Z",
        "-262143-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
    ] {
        let body = json!({"customer": "c1", "kind": "purchase", "at": at}).to_string();
        let (status, answer) = server.api("POST", "/events", Some(&body));
        if status == 400 {
            // serde itself could not read it as an instant: still a clear refusal.
            assert!(answer.to_string().contains("at"), "{at}: {answer}");
            continue;
        }
        assert_eq!(status, 422, "{at}: {answer}");
        assert!(answer.to_string().contains("1900–9999"), "{at}: {answer}");
    }
    let refusals = [
        json!({"external_id": "c2", "created_at": "0000-01-01T00:00:00Z"}),
        json!({"external_id": "c3", "attributes": {"renews_on": "0001-01-01"}}),
        json!({"external_id": "c4", "attributes": {"renews_on": "1899-12-31T00:00:00Z"}}),
    ];
    for body in refusals {
        let (status, answer) = server.api("POST", "/customers", Some(&body.to_string()));
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer.to_string().contains("1900–9999"), "{body}: {answer}");
    }
    // Sizes and lossy numbers: a 422 naming the limit, not a stored megabyte.
    let too_big = [
        (
            json!({"external_id": "c5", "name": "x".repeat(100_000)}),
            "the limit is 1024",
        ),
        (
            json!({"external_id": "c6", "attributes": {"note": "n".repeat(5000)}}),
            "the limit is 4096",
        ),
    ];
    for (body, says) in too_big {
        let (status, answer) = server.api("POST", "/customers", Some(&body.to_string()));
        assert_eq!(status, 422, "{answer}");
        assert!(answer.to_string().contains(says), "{answer}");
    }
    // Nothing of the refused writes is stored, and delivery goes on.
    let body = json!({"customer": "c1", "kind": "purchase", "at": "2026-03-01T09:00:00Z"});
    let (status, answer) = server.api("POST", "/events", Some(&body.to_string()));
    assert_eq!(status, 201, "{answer}");
    let thanks = wait_for(30, || {
        let rows = deliveries(&config, &db);
        row_for(&rows, "c1", "thanks").cloned()
    });
    assert!(thanks.is_some(), "the good event is still delivered");
    let rows = deliveries(&config, &db);
    assert!(
        ["c2", "c3", "c4", "c5", "c6"]
            .iter()
            .all(|c| customer_rows(&rows, c).is_empty()),
        "refused customers were not stored: {rows:?}"
    );
    let (status, _) = server.api("GET", "/customers/c2", None);
    assert_eq!(status, 404);
}

/// The same bounds hold for a simulate timeline and for the command line.
#[test]
fn timelines_and_commands_refuse_instants_outside_the_calendar() {
    let scratch = Scratch::new();
    let config = Config::new()
        .inbox()
        .rule(welcome(&["inbox"]))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"0000-01-01T00:00:00Z","op":"upsert","customer":{"external_id":"c1"}}"#,
    );
    let stderr = expect_refusal(&mut simulate_cmd(
        &config,
        &timeline,
        "2026-03-01",
        "2026-03-02",
    ));
    assert!(
        stderr.contains("t.jsonl:1:") && stderr.contains("1900–9999"),
        "{stderr}"
    );
    let empty = scratch.write("empty.jsonl", "");
    let stderr = expect_refusal(&mut simulate_cmd(
        &config,
        &empty,
        "2026-03-01",
        "0000-01-01T00:00:00Z",
    ));
    assert!(stderr.contains("1900–9999"), "{stderr}");
}

/// A token endpoint answering `expires_in: 18446744073709551615` used to
/// overflow the key-value store's expiry and panic the send. The plugin's
/// cache keeps the token a year at most, and both customers get their
/// message with one token fetch.
#[test]
fn an_absurd_token_lifetime_is_cached_a_year_at_most() {
    let (app, secret, template) = ("wx0123456789abcdef", "s3cret-app", "tmpl-1");
    let fake = FakeWechat::start_with_expiry(app, secret, &[template], u64::MAX);
    let scratch = Scratch::new();
    let config = Config::new()
        .set("scheduler", "concurrency", 1)
        .retry(2, "10m", "1h")
        .channel(
            "wechat",
            Channel::plugin("wechat-template")
                .allow(&fake.origin())
                .set("timeout", "5s")
                .setting("app_id", app)
                .setting("app_secret", secret)
                .setting("template_id", template)
                .setting("api_base", fake.origin()),
        )
        .rule(welcome(&["wechat"]).set("fields", Raw("{ first = \"Hi\" }".into())))
        .write(&scratch);
    let mut timeline = String::new();
    for (id, at) in [("a", "2026-03-01T09:00:00Z"), ("b", "2026-03-01T10:00:00Z")] {
        timeline += &json!({"at": at, "op": "upsert", "customer": {"external_id": id, "wechat_openid": format!("o-{id}")}}).to_string();
        timeline += "\n";
    }
    let timeline = scratch.write("t.jsonl", &timeline);
    let out = run(simulate_cmd(&config, &timeline, "2026-03-01", "2026-03-02").arg("--live"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let statuses: Vec<(String, String)> = parse_attempts(&text(&out.stdout))
        .into_iter()
        .map(|a| (a.customer, a.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("a".into(), "delivered".into()),
            ("b".into(), "delivered".into())
        ]
    );
    let fetches = fake
        .provider
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/cgi-bin/token"))
        .count();
    assert_eq!(fetches, 1, "the token is cached");
}

/// A feeding system's ingest token may not bring back a customer an
/// operator deleted, and one given `--region` writes only that region.
#[test]
fn ingest_tokens_never_revive_and_keep_to_their_regions() {
    let scratch = Scratch::new();
    let (config, db, server) = serve(&scratch);
    let feed = create_token(&config, &db, "ingest", &[]);
    let north_feed = create_token(&config, &db, "ingest", &["north"]);
    let post = |token: &str, body: serde_json::Value| {
        http_as(
            token,
            "POST",
            &server.url("/customers"),
            Some(&body.to_string()),
        )
    };
    assert_eq!(
        post(&feed, json!({"external_id": "gone", "region": "south"})).0,
        200
    );
    assert_eq!(server.api("DELETE", "/customers/gone", None).0, 204);
    let (status, answer) = post(&feed, json!({"external_id": "gone", "name": "Back"}));
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("was deleted"), "{answer}");
    assert_eq!(
        server.api("GET", "/customers/gone", None).0,
        404,
        "still deleted"
    );
    // An admin may bring them back.
    assert_eq!(
        server
            .api("POST", "/customers", Some(r#"{"external_id":"gone"}"#))
            .0,
        200
    );

    assert_eq!(
        post(&feed, json!({"external_id": "s1", "region": "south"})).0,
        200
    );
    assert_eq!(
        post(&north_feed, json!({"external_id": "n1", "region": "north"})).0,
        200
    );
    let (status, _) = post(&north_feed, json!({"external_id": "s1", "name": "Hijack"}));
    assert_eq!(status, 404, "another region's customer is not there for it");
    let (status, _) = post(&north_feed, json!({"external_id": "s2", "region": "south"}));
    assert_eq!(status, 422, "nor may it create one elsewhere");
    let event = json!({"customer": "s1", "kind": "purchase"}).to_string();
    assert_eq!(
        http_as(&north_feed, "POST", &server.url("/events"), Some(&event)).0,
        404
    );
    let (_, s1) = server.api("GET", "/customers/s1", None);
    assert_eq!(s1["name"], serde_json::Value::Null, "unchanged: {s1}");
}

/// One rule for `date` attributes: a calendar date `YYYY-MM-DD`, or an
/// RFC 3339 timestamp (date, `T` or a space, time with seconds, `Z` or an
/// offset `±hh:mm`), in the years 1900–9999. Anything else is a 422 that
/// names both forms; nothing is stored. Strings of a `string` attribute
/// are kept exactly as sent.
#[test]
fn date_attributes_follow_one_rule_and_say_it() {
    let scratch = Scratch::new();
    let (_config, _db, server) = serve(&scratch);
    let accepted = [
        ("2026-03-05", "2026-03-05"),
        ("2026-03-05T10:00:00Z", "2026-03-05T10:00:00+00:00"),
        (
            "2026-03-05T10:00:00.250+08:00",
            "2026-03-05T02:00:00.250+00:00",
        ),
        ("2026-03-05 10:00:00Z", "2026-03-05T10:00:00+00:00"),
        ("2026-03-05t10:00:00z", "2026-03-05T10:00:00+00:00"),
        ("2026-03-05T10:00:00-00:00", "2026-03-05T10:00:00+00:00"),
    ];
    for (i, (sent, stored)) in accepted.iter().enumerate() {
        let id = format!("ok{i}");
        let body = json!({"external_id": id, "attributes": {"renews_on": sent}});
        let (status, answer) = server.api("POST", "/customers", Some(&body.to_string()));
        assert_eq!(status, 200, "{sent}: {answer}");
        assert_eq!(
            answer["customer"]["attributes"]["renews_on"], *stored,
            "{sent}: {answer}"
        );
    }
    let refused = [
        json!("2026-3-5"),
        json!("+2026-03-05"),
        json!("02026-03-05"),
        json!("2026-02-30"),
        json!("2026-03-05T10:00"),
        json!("2026-03-05T10:00:00"),
        json!("2026-03-05T10:00:00+0800"),
        json!("2026-03-05T10:00:00 +08:00"),
        json!("20260305"),
        json!("5 March 2026"),
        json!(20260305),
    ];
    for (i, sent) in refused.iter().enumerate() {
        let id = format!("bad{i}");
        let body = json!({"external_id": id, "attributes": {"renews_on": sent}});
        let (status, answer) = server.api("POST", "/customers", Some(&body.to_string()));
        assert_eq!(status, 422, "{sent}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("renews_on")
                && message.contains("YYYY-MM-DD")
                && message.contains("RFC 3339")
                && message.contains("1900–9999"),
            "{sent}: {message}"
        );
        assert_eq!(server.api("GET", &format!("/customers/{id}"), None).0, 404);
    }
    let body = json!({"external_id": "s", "attributes": {"note": "  as sent\t", "code": "007"}});
    let (status, answer) = server.api("POST", "/customers", Some(&body.to_string()));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["customer"]["attributes"]["note"], "  as sent\t");
    assert_eq!(answer["customer"]["attributes"]["code"], "007");
}
