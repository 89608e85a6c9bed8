//! Unsubscribe links: `{{ unsubscribe_url }}` in a reminder is a signed link
//! to `herald serve`; following it shows a confirmation page, confirming
//! suppresses the customer on that channel (no login), a tampered link is
//! refused, and the customer's next reminder goes to the rule's next channel.

use crate::support::*;
use serde_json::json;

#[test]
fn a_signed_link_unsubscribes_from_that_channel_only() {
    let provider = FakeProvider::start(|_, _| Reply::json(200, json!({"id": "m1"})));
    let scratch = Scratch::new();
    let config = Config::new()
        .public_url("https://herald.example/")
        .channel(
            "mail",
            webhook(&provider, "/mail", "k3y").set("address", "email"),
        )
        .inbox()
        .rule(welcome(&["mail", "inbox"]).set("text", "Hello. Unsubscribe: {{ unsubscribe_url }}"))
        .rule(Rule::new(
            "nudge",
            &on_event("nudge"),
            &["mail", "inbox"],
            "Nudge",
            "Still there?",
        ))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"张 3","email":"z@example.com"}}"#,
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let sent = provider.requests();
    assert_eq!(sent.len(), 1);
    let body = sent[0].json()["text"].as_str().unwrap().to_string();
    let link = body
        .split("Unsubscribe: ")
        .nth(1)
        .expect("the text carries the link")
        .trim()
        .to_string();
    assert!(
        link.starts_with("https://herald.example/unsubscribe?c=%E5%BC%A0%203&ch=mail&s="),
        "{link}"
    );
    let path_and_query = link.strip_prefix("https://herald.example").unwrap();

    let server = Server::start(&config, &db, &scratch, "serve.log");
    let url = format!("{}{path_and_query}", server.base);
    // Following the link only shows a page; nothing changes yet.
    let (status, page) = http_text("GET", &url, None);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("<form method=\"post\">") && page.contains("<b>mail</b>"),
        "{page}"
    );
    let listed = |config: &std::path::Path| {
        text(
            &run(herald()
                .args(["suppressions", "--json", "--config"])
                .arg(config)
                .arg("--db")
                .arg(&db))
            .stdout,
        )
    };
    assert_eq!(listed(&config), "");
    // A tampered link, or one for another channel, is refused.
    let tampered = format!("{}0", url.trim_end_matches(|c: char| c.is_ascii_hexdigit()));
    assert_eq!(http_text("POST", &tampered, Some("")).0, 403);
    let other_channel = url.replace("ch=mail", "ch=inbox");
    assert_eq!(http_text("POST", &other_channel, Some("")).0, 403);
    assert_eq!(listed(&config), "");
    // Confirming (or a mail client's one-click POST) unsubscribes.
    let (status, page) = http_text("POST", &url, Some("List-Unsubscribe=One-Click"));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("no more reminders by <b>mail</b>"), "{page}");
    let rows: Vec<serde_json::Value> = listed(&config)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["customer"], "张 3");
    assert_eq!(rows[0]["channel"], "mail");
    assert_eq!(rows[0]["source"], "unsubscribe");

    // The next reminder skips the mail channel and lands in the inbox.
    let (status, body) = server.api(
        "POST",
        "/events",
        Some(&json!({"customer": "张 3", "kind": "nudge"}).to_string()),
    );
    assert!(status < 300, "{status} {body}");
    let nudge = wait_for(10, || {
        deliveries(&config, &db)
            .into_iter()
            .find(|r| r["rule"] == "nudge")
    })
    .expect("the nudge was sent");
    assert_eq!(nudge["channel"], "inbox", "{nudge}");
    assert_eq!(nudge["status"], "delivered", "{nudge}");
    assert_eq!(provider.requests().len(), 1, "nothing more by mail");
}
