//! Sends whose outcome is unknown and writes that fail: a channel either
//! sends an unanswered message again (`uncertain = "resend"`) or holds it
//! as `unknown` (`uncertain = "hold"`) for an operator to redrive or drop;
//! a customer whose tick writes cannot be recorded fails alone, and nobody
//! else is sent anything twice.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A webhook receiver that takes each customer's first message and answers
/// only after the channel's one-second timeout; later ones at once.
fn slow_first_answer() -> FakeProvider {
    FakeProvider::start(|req, seen| {
        let customer = req.json()["recipient"]["customer_id"].clone();
        let earlier = seen
            .iter()
            .any(|r| r.json()["recipient"]["customer_id"] == customer);
        let mut reply = Reply::json(200, json!({"id": format!("m-{}", seen.len())}));
        if !earlier {
            reply.delay = Duration::from_secs(3);
        }
        reply
    })
}

fn config_with(provider: &FakeProvider, uncertain: &str, scratch: &Scratch) -> std::path::PathBuf {
    Config::new()
        .retry(3, "10m", "1h")
        .channel(
            "hook",
            webhook(provider, "/hook", "s3cret")
                .set("timeout", "1s")
                .set("uncertain", uncertain),
        )
        .rule(welcome(&["hook"]))
        .write(scratch)
}

fn signups(scratch: &Scratch, ids: &[&str]) -> std::path::PathBuf {
    let lines: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(r#"{{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{{"external_id":"{id}","name":"N"}}}}"#)
        })
        .collect();
    scratch.write("t.jsonl", &(lines.join("\n") + "\n"))
}

/// The idempotency keys the provider received for `customer`, in order.
fn keys_sent_to(provider: &FakeProvider, customer: &str) -> Vec<String> {
    provider
        .requests()
        .iter()
        .filter(|r| r.json()["recipient"]["customer_id"] == customer)
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_string())
        .collect()
}

/// `herald held --json` rows.
fn held(config: &std::path::Path, db: &std::path::Path) -> Vec<Value> {
    let out = run(herald()
        .args(["held", "--json", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db));
    assert!(out.status.success(), "held failed: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// On a channel that re-sends, an unanswered send goes again with the same
/// idempotency key (the receiver can drop the repeat).
#[test]
fn an_unanswered_send_goes_again_on_a_resend_channel() {
    let provider = slow_first_answer();
    let scratch = Scratch::new();
    let config = config_with(&provider, "resend", &scratch);
    let timeline = signups(&scratch, &["ada"]);
    let db = scratch.db("h.db");
    simulate_into(
        &config,
        &timeline,
        ("2026-03-01", "2026-03-01T10:00:00Z"),
        &db,
        &["--live"],
    );
    let keys = keys_sent_to(&provider, "ada");
    assert_eq!(
        keys.len(),
        2,
        "sent again after the unanswered send: {keys:?}"
    );
    assert_eq!(keys[0], keys[1], "with the same idempotency key");
    let rows = deliveries(&config, &db);
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "delivered"], "{rows:?}");
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{rows:?}"
    );
    assert!(held(&config, &db).is_empty());
}

/// On a channel that holds, an unanswered send is kept as `unknown` and
/// never sent again on its own; an operator redrives one (it goes again,
/// same key) and drops the other (it never goes again).
#[test]
fn an_unanswered_send_is_held_until_an_operator_redrives_or_drops_it() {
    let provider = slow_first_answer();
    let scratch = Scratch::new();
    let config = config_with(&provider, "hold", &scratch);
    let timeline = signups(&scratch, &["ada", "bob"]);
    let db = scratch.db("h.db");
    simulate_into(
        &config,
        &timeline,
        ("2026-03-01", "2026-03-01T12:00:00Z"),
        &db,
        &["--live"],
    );
    assert_eq!(keys_sent_to(&provider, "ada").len(), 1);
    assert_eq!(keys_sent_to(&provider, "bob").len(), 1);
    let rows = held(&config, &db);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["status"], "unknown", "{row}");
        assert_eq!(row["channel"], "hook", "{row}");
        assert!(
            row["reason"].as_str().unwrap().contains("outcome unknown"),
            "{row}"
        );
    }
    let id_of =
        |customer: &str| rows.iter().find(|r| r["customer"] == customer).unwrap()["id"].to_string();
    let act = |verb: &str, id: &str| {
        run(herald()
            .arg(verb)
            .arg(id)
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(&db))
    };
    let out = run(herald()
        .args([
            "redrive",
            &id_of("ada"),
            "--at",
            "2026-03-01T12:00:00Z",
            "--config",
        ])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("redriven"),
        "{}",
        text(&out.stdout)
    );
    let out = act("drop", &id_of("bob"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = act("drop", &id_of("ada"));
    assert!(!out.status.success(), "a redriven row is no longer unknown");
    assert!(
        text(&out.stderr).contains("not held as unknown"),
        "{}",
        text(&out.stderr)
    );

    let quiet = scratch.write("quiet.jsonl", "");
    simulate_into(
        &config,
        &quiet,
        ("2026-03-01T12:00:00Z", "2026-03-01T13:00:00Z"),
        &db,
        &["--live"],
    );
    let ada = keys_sent_to(&provider, "ada");
    assert_eq!(ada.len(), 2, "the redriven send went again: {ada:?}");
    assert_eq!(ada[0], ada[1], "keeping its occurrence key");
    assert_eq!(
        keys_sent_to(&provider, "bob").len(),
        1,
        "the dropped one never goes again"
    );
    assert!(held(&config, &db).is_empty());
}

/// A customer whose writes fail (here a trigger refusing their delivery
/// row, as a full disk or a corrupt page would) used to abandon the whole
/// tick's record, so everybody's message was sent again when the claims
/// ran out. Now the others are recorded once and that customer's send is
/// held as unknown.
#[test]
fn a_customer_whose_writes_fail_fails_alone() {
    let provider =
        FakeProvider::start(|_, seen| Reply::json(200, json!({"id": format!("m-{}", seen.len())})));
    let scratch = Scratch::new();
    let config = Config::new()
        .retry(3, "10m", "1h")
        .channel(
            "hook",
            webhook(&provider, "/hook", "s3cret").set("uncertain", "hold"),
        )
        .rule(Rule::new(
            "welcome",
            r#"{ on = "created", delay = "1h" }"#,
            &["hook"],
            "Welcome",
            "Hello.",
        ))
        .write(&scratch);
    let timeline = signups(&scratch, &["good1", "bad", "good2"]);
    // SQLite on either pass: the failure is injected with a SQLite trigger.
    let db = scratch.path("h.db");
    simulate_into(
        &config,
        &timeline,
        ("2026-03-01", "2026-03-01T09:30:00Z"),
        &db,
        &["--live"],
    );
    let (runtime, mut conn) = open_db(&db);
    runtime
        .block_on(
            sqlx::query(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON deliveries
                 WHEN NEW.customer_id = (SELECT id FROM customers WHERE external_id = 'bad')
                 BEGIN SELECT RAISE(ABORT, 'injected: database or disk is full'); END",
            )
            .execute(&mut conn),
        )
        .expect("install the trigger");
    drop(conn);
    let quiet = scratch.write("quiet.jsonl", "");
    simulate_into(
        &config,
        &quiet,
        ("2026-03-01T09:30:00Z", "2026-03-02T12:00:00Z"),
        &db,
        &["--live"],
    );
    for customer in ["good1", "good2", "bad"] {
        assert_eq!(
            keys_sent_to(&provider, customer).len(),
            1,
            "{customer} got exactly one message"
        );
    }
    let rows = deliveries(&config, &db);
    let delivered: Vec<&str> = rows
        .iter()
        .filter(|r| r["status"] == "delivered")
        .map(|r| r["customer"].as_str().unwrap())
        .collect();
    assert_eq!(delivered.len(), 2, "{rows:?}");
    let held = held(&config, &db);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["customer"], "bad");
    assert!(
        held[0]["reason"]
            .as_str()
            .unwrap()
            .contains("could not be recorded"),
        "{held:?}"
    );
}

/// The same through the API: `GET /held` lists the unknown send,
/// `POST /held/drop` lets it go, a bad body is a 400 that says what to give.
#[test]
fn the_api_lists_and_drops_held_sends() {
    let provider = slow_first_answer();
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("100ms")
        .channel(
            "hook",
            webhook(&provider, "/hook", "s3cret")
                .set("timeout", "1s")
                .set("uncertain", "hold"),
        )
        .rule(welcome(&["hook"]))
        .write(&scratch);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let (status, body) = server.api("PUT", "/customers/ada", Some(r#"{"name":"Ada"}"#));
    assert_eq!(status, 200, "{body}");
    let page = wait_for(30, || {
        let (_, page) = server.api("GET", "/held?status=unknown", None);
        (page["held"].as_array().map_or(0, Vec::len) == 1).then_some(page)
    })
    .unwrap_or_else(|| panic!("never held; log: {}", server.log()));
    let id = page["held"][0]["id"].as_i64().unwrap();
    assert_eq!(page["held"][0]["customer"], "ada");
    let (status, body) = server.api("POST", "/held/drop", Some(r#"{"ids": []}"#));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{body}"
    );
    let (status, body) = server.api(
        "POST",
        "/held/drop",
        Some(&format!(r#"{{"ids": [{id}, 999999]}}"#)),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"changed": [id], "not_held": [999999]}));
    let (_, page) = server.api("GET", "/held", None);
    assert_eq!(page["held"], json!([]), "{page}");
    assert_eq!(keys_sent_to(&provider, "ada").len(), 1);
}
