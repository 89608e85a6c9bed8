//! The HTTP API of `herald serve`: upserts, events, deletes, and clear JSON
//! errors for bad input that change nothing.

use crate::support::*;

fn config(scratch: &Scratch) -> std::path::PathBuf {
    scratch.write(
        "herald.toml",
        r#"
[scheduler]
tick = "100ms"

[channels.inbox]
builtin = "inbox"

[attributes]
level = "string"

[[rules]]
id = "welcome"
trigger = { on = "created" }
channels = ["inbox"]
subject = "Welcome {{ customer.name }}"
text = "Hello {{ customer.name }}"

[[rules]]
id = "thanks"
trigger = { on = "event", kind = "purchase" }
channels = ["inbox"]
subject = "Thanks for buying {{ event.properties.item }}"
text = "Enjoy it."

[[rules]]
id = "vip"
trigger = { on = "updated", field = "level" }
when = "customer.level == 'vip'"
channels = ["inbox"]
subject = "You are a VIP now"
text = "Welcome to the club."
"#,
    )
}

fn inbox_subjects(config: &std::path::Path, db: &std::path::Path, customer: &str) -> Vec<String> {
    let out = run(herald()
        .args(["inbox", customer, "--json", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db));
    text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["subject"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn api_writes_plan_reminders_and_bad_input_changes_nothing() {
    let scratch = Scratch::new();
    let config = config(&scratch);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let base = &server.base;

    assert_eq!(http("GET", &format!("{base}/health"), None).0, 200);
    let (status, body) = http_as(
        &server.token,
        "POST",
        &format!("{base}/customers"),
        Some(
            r#"{"external_id":"u1","name":"Ana","timezone":"Europe/Lisbon","region":"south","attributes":{"level":"gold"}}"#,
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], true);

    // Malformed and invalid bodies: clear codes, nothing changed.
    let (status, body) = http_as(
        &server.token,
        "PUT",
        &format!("{base}/customers/u1"),
        Some(r#"{"name": "Broken"#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (status, body) = http_as(
        &server.token,
        "PUT",
        &format!("{base}/customers/u1"),
        Some(r#"{"nmae":"Typo"}"#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("nmae"));
    let (status, body) = http_as(
        &server.token,
        "PUT",
        &format!("{base}/customers/u1"),
        Some(r#"{"timezone":"Mars/Olympus"}"#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("IANA"));
    let (status, body) = http_as(&server.token, "GET", &format!("{base}/customers/u1"), None);
    assert_eq!(status, 200);
    assert_eq!(
        (body["name"].as_str(), body["timezone"].as_str()),
        (Some("Ana"), Some("Europe/Lisbon"))
    );

    // Events: unknown customer, then idempotent by event_id.
    let (status, body) = http_as(
        &server.token,
        "POST",
        &format!("{base}/events"),
        Some(r#"{"customer":"nobody","kind":"purchase"}"#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let event =
        r#"{"customer":"u1","kind":"purchase","event_id":"e-1","properties":{"item":"tea"}}"#;
    let (status, body) = http_as(
        &server.token,
        "POST",
        &format!("{base}/events"),
        Some(event),
    );
    assert_eq!((status, body["recorded"].as_bool()), (201, Some(true)));
    let (status, body) = http_as(
        &server.token,
        "POST",
        &format!("{base}/events"),
        Some(event),
    );
    assert_eq!((status, body["recorded"].as_bool()), (200, Some(false)));

    // A field-specific updated trigger with a condition.
    let (status, _) = http_as(
        &server.token,
        "PUT",
        &format!("{base}/customers/u1"),
        Some(r#"{"attributes":{"level":"vip"}}"#),
    );
    assert_eq!(status, 200);

    let subjects = wait_for(20, || {
        let s = inbox_subjects(&config, &db, "u1");
        (s.len() >= 3).then_some(s)
    })
    .unwrap_or_else(|| panic!("reminders not delivered; log: {}", server.log()));
    assert_eq!(
        subjects,
        ["Welcome Ana", "Thanks for buying tea", "You are a VIP now"]
    );

    let (status, _) = http_as(
        &server.token,
        "DELETE",
        &format!("{base}/customers/u1"),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(
        http_as(&server.token, "GET", &format!("{base}/customers/u1"), None).0,
        404
    );
    assert_eq!(
        http_as(
            &server.token,
            "DELETE",
            &format!("{base}/customers/u1"),
            None
        )
        .0,
        404
    );
}
