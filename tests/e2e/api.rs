//! The HTTP API of `herald serve`: upserts, events, deletes, and clear JSON
//! errors for bad input that change nothing.

use crate::support::*;

fn config(scratch: &Scratch) -> std::path::PathBuf {
    Config::new()
        .tick("100ms")
        .inbox()
        .attribute("level", "string")
        .rule(
            welcome(&["inbox"])
                .set("subject", "Welcome {{ customer.name }}")
                .set("text", "Hello {{ customer.name }}"),
        )
        .rule(Rule::new(
            "thanks",
            &on_event("purchase"),
            &["inbox"],
            "Thanks for buying {{ event.properties.item }}",
            "Enjoy it.",
        ))
        .rule(
            Rule::new(
                "vip",
                r#"{ on = "updated", field = "level" }"#,
                &["inbox"],
                "You are a VIP now",
                "Welcome to the club.",
            )
            .set("when", "customer.level == 'vip'"),
        )
        .write(scratch)
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
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");

    assert_eq!(http("GET", &server.url("/health"), None).0, 200);
    let (status, body) = server.api("POST", "/customers",
        Some(
            r#"{"external_id":"u1","name":"Ana","timezone":"Europe/Lisbon","region":"south","attributes":{"level":"gold"}}"#,
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], true);

    // Malformed and invalid bodies: clear codes, nothing changed.
    let (status, body) = server.api("PUT", "/customers/u1", Some(r#"{"name": "Broken"#));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{body}"
    );
    let (status, body) = server.api("PUT", "/customers/u1", Some(r#"{"nmae":"Typo"}"#));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("nmae"));
    let (status, body) = server.api(
        "PUT",
        "/customers/u1",
        Some(r#"{"timezone":"Mars/Olympus"}"#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("IANA"));
    let (status, body) = server.api("GET", "/customers/u1", None);
    assert_eq!(status, 200);
    assert_eq!(
        (body["name"].as_str(), body["timezone"].as_str()),
        (Some("Ana"), Some("Europe/Lisbon"))
    );

    // Events: unknown customer, then idempotent by event_id.
    let (status, body) = server.api(
        "POST",
        "/events",
        Some(r#"{"customer":"nobody","kind":"purchase"}"#),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let event =
        r#"{"customer":"u1","kind":"purchase","event_id":"e-1","properties":{"item":"tea"}}"#;
    let (status, body) = server.api("POST", "/events", Some(event));
    assert_eq!((status, body["recorded"].as_bool()), (201, Some(true)));
    let (status, body) = server.api("POST", "/events", Some(event));
    assert_eq!((status, body["recorded"].as_bool()), (200, Some(false)));

    // A field-specific updated trigger with a condition.
    let (status, _) = server.api(
        "PUT",
        "/customers/u1",
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

    let (status, _) = server.api("DELETE", "/customers/u1", None);
    assert_eq!(status, 204);
    assert_eq!(server.api("GET", "/customers/u1", None).0, 404);
    assert_eq!(server.api("DELETE", "/customers/u1", None).0, 404);
}

/// Concurrent single-event posts share write transactions (group commit);
/// each request must still get its own answer: recorded, a repeat of an
/// event id, or a 404 for an unknown customer that writes nothing.
#[test]
fn concurrent_event_posts_are_each_answered_for_themselves() {
    let scratch = Scratch::new();
    let config = config(&scratch);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    for id in ["c0", "c1", "c2", "c3"] {
        let (status, body) = server.api(
            "POST",
            "/customers",
            Some(&format!(r#"{{"external_id": "{id}", "name": "{id}"}}"#)),
        );
        assert_eq!(status, 200, "{body}");
    }
    // 8 threads x 50 posts: every 5th names a missing customer, every 7th
    // repeats the event id of the post before it in the same thread.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let base = server.base.clone();
            let token = server.token.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for i in 0..50 {
                    let customer = if i % 5 == 4 { "nobody".to_string() } else { format!("c{}", i % 4) };
                    let n = if i % 7 == 6 { i - 1 } else { i };
                    let body = format!(
                        r#"{{"customer": "{customer}", "kind": "purchase", "event_id": "t{t}-{n}", "properties": {{"item": "i{t}-{n}"}}}}"#
                    );
                    let (status, answer) = http_as(&token, "POST", &format!("{base}/events"), Some(&body));
                    answers.push((i, customer, status, answer));
                }
                answers
            })
        })
        .collect();
    let mut recorded = 0;
    for thread in threads {
        for (i, customer, status, answer) in thread.join().expect("poster thread") {
            if customer == "nobody" {
                assert_eq!(status, 404, "post {i}: {answer}");
                assert_eq!(answer["error"]["code"], "not_found");
            } else if i % 7 == 6 && (i - 1) % 5 != 4 {
                assert_eq!(
                    (status, answer["recorded"].clone()),
                    (200, serde_json::json!(false)),
                    "post {i}"
                );
            } else {
                assert_eq!(
                    (status, answer["recorded"].clone()),
                    (201, serde_json::json!(true)),
                    "post {i}: {answer}"
                );
                recorded += 1;
            }
        }
    }
    // Each recorded purchase planned exactly one "thanks" message.
    let delivered = wait_for(30, || {
        let total: usize = ["c0", "c1", "c2", "c3"]
            .iter()
            .map(|c| {
                inbox_subjects(&config, &db, c)
                    .iter()
                    .filter(|s| s.starts_with("Thanks"))
                    .count()
            })
            .sum();
        (total == recorded).then_some(total)
    });
    assert_eq!(
        delivered,
        Some(recorded),
        "every recorded event planned its reminder once; log: {}",
        server.log()
    );
}
