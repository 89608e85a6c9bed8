//! The HTTP edge under load and at its bounds: a flood of provider
//! callbacks or of link hits is answered 429 with `Retry-After` (and
//! counted) while due reminders still go out; suppressions and the inbox
//! are listed a page at a time; a large event batch lets a small post
//! through before it is done.

use crate::support::*;
use serde_json::{json, Value};

/// Whether a writer holds SQLite's write lock on `db` right now.
fn write_locked(runtime: &tokio::runtime::Runtime, conn: &mut sqlx::SqliteConnection) -> bool {
    use sqlx::Executor;
    runtime.block_on(async {
        match conn.execute("BEGIN IMMEDIATE").await {
            Ok(_) => {
                conn.execute("ROLLBACK").await.expect("rollback");
                false
            }
            Err(e) => {
                assert!(e.to_string().contains("locked"), "{e}");
                true
            }
        }
    })
}

/// A large array of events is written in parts: a single event posted
/// while the array is being written is answered before the array is, and
/// the array's answer still says `recorded` once for each of its events,
/// each stored once.
#[test]
fn a_small_event_post_is_answered_before_a_large_batch() {
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("1h")
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["inbox"],
            "Ping",
            "Ping",
        ))
        .write(&scratch);
    // SQLite: the test watches its write lock.
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    for id in ["big", "small"] {
        let body = json!({"external_id": id}).to_string();
        assert_eq!(server.api("POST", "/customers", Some(&body)).0, 200);
    }
    let (runtime, mut conn) = open_db(&db);
    runtime
        .block_on(sqlx::Executor::execute(
            &mut conn,
            "PRAGMA busy_timeout = 0",
        ))
        .expect("busy timeout");

    const EVENTS: usize = 2000;
    let batch: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"customer": "big", "kind": "ping", "event_id": format!("big-{i}")}))
        .collect();
    let batch = Value::Array(batch).to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(&str, u16, Value)>();
    let (url, token) = (server.url("/events"), server.token.clone());
    let big = {
        let (done, url, token) = (done_tx.clone(), url.clone(), token.clone());
        std::thread::spawn(move || {
            let (status, answer) = http_as(&token, "POST", &url, Some(&batch));
            done.send(("big", status, answer)).unwrap();
        })
    };
    assert!(
        wait_for(60, || write_locked(&runtime, &mut conn).then_some(())).is_some(),
        "the batch never began writing; log: {}",
        server.log()
    );
    let small = std::thread::spawn(move || {
        let body = json!({"customer": "small", "kind": "ping"}).to_string();
        let (status, answer) = http_as(&token, "POST", &url, Some(&body));
        done_tx.send(("small", status, answer)).unwrap();
    });
    let first = done_rx.recv().unwrap();
    let second = done_rx.recv().unwrap();
    big.join().unwrap();
    small.join().unwrap();
    assert_eq!(
        (first.0, second.0),
        ("small", "big"),
        "the small post waited for the whole batch"
    );
    assert_eq!(first.1, 201, "{}", first.2);
    assert_eq!(second.1, 200, "{}", second.2);
    let results = second.2["results"].as_array().expect("results");
    assert_eq!(results.len(), EVENTS);
    assert!(
        results.iter().all(|r| r == &json!({"recorded": true})),
        "every event recorded once: {:?}",
        results.iter().find(|r| *r != &json!({"recorded": true}))
    );
    let mut count = |sql: &str| {
        runtime
            .block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn))
            .unwrap()
    };
    assert_eq!(
        (
            count("SELECT COUNT(*) FROM events"),
            count("SELECT COUNT(DISTINCT event_id) FROM events")
        ),
        (EVENTS as i64 + 1, EVENTS as i64),
        "each event stored once"
    );
}
