//! What a plugin cannot exceed, with the real `chaos` plugin: a plugin
//! logging 100 MB in one send leaves a bounded log and one "log truncated"
//! line; a 10 MB failure reason or provider message id (from a send or a
//! callback) is stored cut, at a character boundary, with a marker, and the
//! outcome is still recorded; a send stalled on a slow key-value store ends
//! at its run-time budget, not at its wall-clock timeout.

use crate::support::*;
use serde_json::Value;
use std::time::Duration;

fn chaos(mode: &str) -> Channel {
    Channel::plugin("chaos").setting("mode", mode)
}

fn signup() -> &'static str {
    r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1","name":"C"}}"#
}

fn row<'a>(rows: &'a [Value], channel: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["channel"] == channel)
        .unwrap_or_else(|| panic!("no delivery on {channel}: {rows:?}"))
}

#[test]
fn a_plugin_flooding_the_log_is_cut_off_and_its_send_still_delivers() {
    let scratch = Scratch::new();
    let config = Config::new()
        .max_attempts(1)
        .channel(
            "noisy",
            // 1,000 lines of 100 kB: copying 100 MB out of the guest takes
            // longer than the default run-time budget.
            chaos("flood-log").set("cpu", "20s").set("timeout", "30s"),
        )
        .rule(Rule::new("r", ON_CREATED, &["noisy"], "s", "t"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", signup());
    let (attempts, stderr) = simulate(&config, &timeline, MARCH_1, &[]);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0].status, "delivered");
    assert!(
        stderr.len() < 200_000,
        "the log of one send is bounded: {} bytes",
        stderr.len()
    );
    assert_eq!(
        stderr.matches("log truncated").count(),
        1,
        "one line says the rest was dropped: {}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
}

/// Whether `text` is a cut 10 MB text of the chaos plugin: at most `max`
/// bytes, valid UTF-8 by construction, ending with the marker.
fn assert_cut(text: &str, max: usize) {
    assert!(
        text.len() <= max,
        "{} bytes stored; the bound is {max}",
        text.len()
    );
    assert!(text.starts_with("ab失败ab"), "{}", &text[..40]);
    assert!(text.contains("[truncated"), "a visible marker: {text}");
}

#[test]
fn huge_reasons_and_provider_ids_are_stored_bounded() {
    let scratch = Scratch::new();
    let config = Config::new()
        .max_attempts(1)
        .channel("reason", chaos("huge-reason").set("cpu", "5s"))
        .channel("id", chaos("huge-id").set("cpu", "5s"))
        .channel("ok", chaos("ok"))
        .rule(Rule::new("r-reason", ON_CREATED, &["reason"], "s", "t"))
        .rule(Rule::new("r-id", ON_CREATED, &["id"], "s", "t"))
        .rule(Rule::new("r-ok", ON_CREATED, &["ok"], "s", "t"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", signup());
    let db = scratch.path("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &[]);

    let rows = deliveries(&config, &db);
    let failed = row(&rows, "reason");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_cut(failed["error"].as_str().unwrap(), 4096);
    let delivered = row(&rows, "id");
    assert_eq!(delivered["status"], "delivered");
    let id = delivered["provider_message_id"].as_str().unwrap();
    assert_cut(id, 512);

    // Callbacks: a report naming the 10 MB id finds the delivery by its
    // stored (cut) id; a report with a 10 MB reason is stored cut.
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let hook = |channel: &str, body: &str| {
        let answer = Request::post(&server.url(&format!("/hooks/{channel}")))
            .body("text/plain", body)
            .send();
        assert_eq!(
            answer.status,
            200,
            "{}; log: {}",
            answer.text(),
            server.log()
        );
    };
    hook("id", "any id:10000000");
    let ok_id = row(&rows, "ok")["provider_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    hook("ok", &format!("{ok_id} 10000000"));
    let rows = wait_for(10, || {
        let rows = deliveries(&config, &db);
        ["id", "ok"]
            .iter()
            .all(|c| !row(&rows, c)["report"].is_null())
            .then_some(rows)
    })
    .unwrap_or_else(|| panic!("no reports recorded; log: {}", server.log()));
    assert_eq!(row(&rows, "id")["report"], "undelivered");
    let ok = row(&rows, "ok");
    assert_eq!(ok["report"], "undelivered");
    assert_cut(ok["report_reason"].as_str().unwrap(), 4096);
}

#[test]
fn a_send_stalled_on_the_key_value_store_ends_at_its_wait_allowance() {
    let scratch = Scratch::new();
    let db = scratch.path("h.db");
    // The plugin GETs this provider first; before answering, it takes the
    // database's write lock for 3 s, so the plugin's key-value write that
    // follows waits for it.
    let locked = db.clone();
    let signal = FakeProvider::start(move |_, _| {
        let (taken, lock) = std::sync::mpsc::channel();
        let db = locked.clone();
        // On a thread of its own: the handler runs on the fake's runtime.
        std::thread::spawn(move || {
            let (runtime, mut conn) = open_db(&db);
            runtime
                .block_on(sqlx::query("BEGIN IMMEDIATE").execute(&mut conn))
                .expect("take the write lock");
            taken.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(3));
            runtime
                .block_on(sqlx::query("ROLLBACK").execute(&mut conn))
                .ok();
        });
        lock.recv().expect("the lock is taken");
        Reply::json(200, serde_json::json!({}))
    });
    let config = Config::new()
        .max_attempts(1)
        .channel(
            "stall",
            chaos("kv-stall")
                .allow(&signal.origin())
                .setting("url", signal.url("/lock"))
                .set("timeout", "20s"),
        )
        .rule(Rule::new("r", ON_CREATED, &["stall"], "s", "t"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", signup());
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    assert_eq!(signal.requests().len(), 1);
    let rows = deliveries(&config, &db);
    let stalled = row(&rows, "stall");
    assert_eq!(stalled["status"], "dead", "{stalled}");
    let error = stalled["error"].as_str().unwrap();
    assert!(
        error.contains("waited more than 1s on key-value calls"),
        "{error}"
    );
}
