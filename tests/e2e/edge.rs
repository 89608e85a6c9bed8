//! The HTTP edge under load and at its bounds: a flood of provider
//! callbacks or of link hits is answered 429 with `Retry-After` (and
//! counted) while due reminders still go out; suppressions and the inbox
//! are listed a page at a time and the report counts a period as its rows
//! stream by; a large event batch lets a small post through before it is
//! done.

use crate::fakes::codec::form_encode;
use crate::fakes::twilio::{self, FakeTwilio, ACCOUNT_SID, FROM};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const TOKEN: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const PUBLIC_URL: &str = "https://herald.example.com";

/// The status and `Retry-After` of each answer.
type Answers = Vec<(u16, Option<String>)>;

fn refusals(answers: &Answers) -> usize {
    answers.iter().filter(|(s, _)| *s == 429).count()
}

/// `herald_inbound_refused_total` summed over the series whose labels
/// contain `label` (e.g. `route="callback"`).
fn refused_metric(server: &Server, label: &str) -> u64 {
    let answer = Request::get(&server.url("/metrics"))
        .bearer(&server.token)
        .send();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer
        .text()
        .lines()
        .filter(|l| l.starts_with("herald_inbound_refused_total{") && l.contains(label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Every 429 says when to come back: whole seconds, at least one.
fn assert_retry_after(answers: &Answers) {
    for (status, retry_after) in answers {
        if *status == 429 {
            let seconds: u64 = retry_after
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("a 429 without Retry-After seconds: {retry_after:?}"));
            assert!(seconds >= 1, "{retry_after:?}");
        }
    }
}

/// A provider (or someone pretending to be one) floods `/hooks/sms` with
/// signed status callbacks from 32 connections at once while ten
/// customers' welcome texts are due on the same plugin. The callbacks get
/// their own slots and the channel's rate (here 10 at once, then 1 an
/// hour), so the flood is answered 429 with `Retry-After` beyond that, the
/// refusals are counted in `/metrics`, and every text is still sent.
#[test]
fn a_callback_flood_is_refused_while_reminders_still_go_out() {
    let fake = FakeTwilio::start(TOKEN);
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("100ms")
        .public_url(PUBLIC_URL)
        .set("server.inbound", "callbacks", 4)
        .set("server.inbound", "callback_rate", "1/h")
        .set("server.inbound", "callback_burst", 10)
        .channel(
            "sms",
            Channel::plugin("sms-twilio")
                .allow(&fake.api_base())
                .set("timeout", "5s")
                .setting("account_sid", ACCOUNT_SID)
                .setting("auth_token", TOKEN)
                .setting("from", FROM)
                .setting("api_base", fake.api_base()),
        )
        .rule(Rule::new(
            "hello",
            ON_CREATED,
            &["sms"],
            "Hello",
            "Hello {{ customer.name }}",
        ))
        .write(&scratch);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");

    let params = [
        ("AccountSid", ACCOUNT_SID),
        ("MessageSid", "SM00000000000000000000000000000000"),
        ("MessageStatus", "delivered"),
    ];
    let signature = twilio::webhook_signature(TOKEN, &format!("{PUBLIC_URL}/hooks/sms"), &params);
    let body = form_encode(&params);
    let hook = server.url("/hooks/sms");
    let flood: Vec<_> = (0..32)
        .map(|_| {
            let (hook, body, signature) = (hook.clone(), body.clone(), signature.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let answer = Request::post(&hook)
                            .body("application/x-www-form-urlencoded", &body)
                            .header("X-Twilio-Signature", &signature)
                            .send();
                        (
                            answer.status,
                            answer.header("retry-after").map(str::to_string),
                        )
                    })
                    .collect::<Answers>()
            })
        })
        .collect();
    // Reminders come due while the flood runs.
    let customers: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for (i, id) in customers.iter().enumerate() {
        let customer = json!({"external_id": id, "name": id, "phone": format!("+1415555010{i}")});
        let (status, answer) = server.api("POST", "/customers", Some(&customer.to_string()));
        assert_eq!(status, 200, "{answer}");
    }
    let answers: Answers = flood
        .into_iter()
        .flat_map(|t| t.join().expect("flood thread"))
        .collect();

    let taken = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused = refusals(&answers);
    assert_eq!(
        taken + refused,
        answers.len(),
        "each callback was taken or refused: {answers:?}"
    );
    assert!(
        taken <= 10,
        "at most the burst of 10 callbacks got through, not {taken}"
    );
    assert!(refused >= answers.len() - 10, "{refused} refused");
    assert_retry_after(&answers);
    assert_eq!(
        refused_metric(&server, "route=\"callback\""),
        refused as u64,
        "every refusal is counted"
    );

    let delivered = wait_for(30, || {
        let rows = deliveries(&config, &db);
        let ok = customers
            .iter()
            .all(|c| row_for(&rows, c, "hello").is_some_and(|r| r["status"] == "delivered"));
        ok.then_some(rows)
    });
    assert!(
        delivered.is_some(),
        "every due text was sent during the flood: {:?}; log: {}",
        deliveries(&config, &db),
        server.log()
    );
}

/// Tracking links and unsubscribe pages are limited per client address:
/// past the burst one address gets 429 with `Retry-After` on every link
/// route, while the API, `/health` and the scheduler are untouched.
#[test]
fn link_hits_are_limited_per_client_address() {
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("100ms")
        .public_url("http://herald.test")
        .set("server.inbound", "link_rate", "1/h")
        .set("server.inbound", "link_burst", 5)
        .inbox()
        .rule(welcome(&["inbox"]))
        .write(&scratch);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let hit = |path: &str| {
        let answer = Request::get(&server.url(path)).send();
        (
            answer.status,
            answer.header("retry-after").map(str::to_string),
        )
    };
    let answers: Answers = (0..12)
        .map(|i| match i % 3 {
            0 => hit("/t/o/not-a-token.gif"),
            1 => hit("/t/c/not-a-token"),
            _ => hit("/unsubscribe?c=x&ch=inbox&s=bad"),
        })
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses[..5],
        [400, 400, 403, 400, 400],
        "the burst is answered as usual: {answers:?}"
    );
    assert!(
        statuses[5..].iter().all(|s| *s == 429),
        "then refused: {answers:?}"
    );
    assert_retry_after(&answers);
    assert_eq!(refused_metric(&server, "route=\"link\""), 7);
    assert_eq!(http("GET", &server.url("/health"), None).0, 200);
    let (status, answer) = server.api(
        "POST",
        "/customers",
        Some(r#"{"external_id":"after","name":"A"}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(
        wait_for(20, || row_for(
            &deliveries(&config, &db),
            "after",
            "welcome"
        )
        .cloned())
        .is_some(),
        "the scheduler goes on"
    );
}

/// Walk a listing page by page; every page's items, in order.
fn walk(server: &Server, path: &str, items: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(cursor) = &after {
            url += &format!("&after={}", &form_encode(&[("", cursor)])[1..]);
        }
        let (status, page) = server.api("GET", &url, None);
        assert_eq!(status, 200, "{url}: {page}");
        let list = page[items].as_array().unwrap_or_else(|| panic!("{page}"));
        assert!(list.len() <= limit, "{url}: {page}");
        out.extend(list.iter().cloned());
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return out,
        }
    }
    panic!("{path}: more than 100 pages")
}

/// `GET /suppressions` and a customer's inbox come a page at a time: a
/// walk with `limit` and `next_after` sees every row exactly once, in the
/// order of one big page; a limit past 1000 (or below 1) and a cursor that
/// was not made by the server are refused with 400.
#[test]
fn suppressions_and_the_inbox_are_paged_every_row_once() {
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("100ms")
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["inbox"],
            "Ping",
            "Ping {{ customer.name }}",
        ))
        .write(&scratch);
    let mut timeline = vec![
        json!({"at": "2026-03-01T08:00:00Z", "op": "upsert", "customer": {"external_id": "c1", "name": "C"}}),
    ];
    for i in 0..23 {
        timeline.push(
            json!({"at": format!("2026-03-01T09:{i:02}:00Z"), "op": "event",
            "customer": "c1", "kind": "ping"}),
        );
    }
    for i in 0..25 {
        timeline.push(json!({"at": "2026-03-01T08:00:00Z", "op": "upsert",
            "customer": {"external_id": format!("s{i:02}")}}));
    }
    let lines: Vec<String> = timeline.iter().map(Value::to_string).collect();
    let timeline = scratch.write("t.jsonl", &lines.join("\n"));
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &[]);
    let server = Server::start(&config, &db, &scratch, "serve.log");
    // Suppressions of 25 customers, several in the same millisecond.
    for i in (0..25).rev() {
        let body = json!({"customer": format!("s{i:02}"), "channel": "inbox"}).to_string();
        let (status, answer) = server.api("POST", "/suppressions", Some(&body));
        assert_eq!(status, 201, "{answer}");
    }

    let (status, all) = server.api("GET", "/suppressions?limit=1000", None);
    assert_eq!(status, 200, "{all}");
    let all = all["suppressions"].as_array().cloned().unwrap_or_default();
    assert_eq!(all.len(), 25, "{all:?}");
    let walked = walk(&server, "/suppressions", "suppressions", 10);
    assert_eq!(
        walked, all,
        "pages of 10 give the same rows in the same order"
    );
    let customers: BTreeSet<&str> = walked
        .iter()
        .map(|s| s["customer"].as_str().unwrap())
        .collect();
    assert_eq!(customers.len(), 25, "each once");
    assert_eq!(
        walk(&server, "/suppressions?customer=s07", "suppressions", 10).len(),
        1
    );

    let messages = walk(&server, "/customers/c1/inbox", "messages", 10);
    assert_eq!(messages.len(), 23, "{messages:?}");
    let ids: BTreeSet<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 23, "each message once");
    let times: Vec<&str> = messages
        .iter()
        .map(|m| m["created_at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {times:?}"
    );
    assert_eq!(
        walk(&server, "/customers/c1/inbox", "messages", 1).len(),
        23
    );

    for path in [
        "/suppressions?limit=1001",
        "/suppressions?limit=0",
        "/customers/c1/inbox?limit=1001",
        "/suppressions?after=not-a-cursor",
        "/customers/c1/inbox?after=not-a-cursor",
    ] {
        let (status, answer) = server.api("GET", path, None);
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_query", "{path}: {answer}");
    }
    let (_, answer) = server.api("GET", "/suppressions?limit=1001", None);
    assert!(
        answer.to_string().contains("between 1 and 1000"),
        "{answer}"
    );
}

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

/// The peak resident memory (KiB) of `herald report --json` over
/// `[since, until)` on `db`, as a Python parent measures its child
/// (getrusage), and the report.
fn report_peak_kib(
    config: &std::path::Path,
    db: &std::path::Path,
    period: (&str, &str),
) -> (u64, Value) {
    let python = std::env::var("HERALD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], capture_output=True)\n\
                  assert r.returncode == 0, r.stderr.decode()\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  print(r.stdout.decode())";
    let out = std::process::Command::new(python)
        .args([
            "-c",
            script,
            env!("CARGO_BIN_EXE_herald"),
            "report",
            "--json",
            "--config",
        ])
        .arg(config)
        .arg("--db")
        .arg(db)
        .args(["--since", period.0, "--until", period.1])
        .output()
        .expect("run python3");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let (peak, report) = stdout.split_once('\n').expect("two parts");
    (
        peak.trim().parse().expect("KiB"),
        serde_json::from_str(report).expect("JSON report"),
    )
}

/// `herald report` (and `/report`) count a period as its rows stream by:
/// 300,000 attempts in the period cost the process little more memory than
/// an empty period, and are all counted.
#[test]
fn the_report_counts_a_large_period_without_holding_its_rows() {
    let scratch = Scratch::new();
    let config = Config::new()
        .inbox()
        .rule(welcome(&["inbox"]))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1"}}"#,
    );
    // SQLite: the rows are written straight into the file.
    let db = scratch.path("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &[]);
    const ROWS: i64 = 300_000;
    let (runtime, mut conn) = open_db(&db);
    for statement in [
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
             INSERT INTO schedule (id, customer_id, rule_id, occurrence_key, occurs_at, due_at, status, created_at, updated_at)
             SELECT 1000000 + i, (SELECT MIN(id) FROM customers), 'bulk', 'bulk:' || i,
                    1772528400000 + i, 1772528400000 + i, 'done', 1772528400000, 1772528400000 FROM n"
        ),
        "INSERT INTO deliveries (schedule_id, customer_id, rule_id, channel, attempt, status, at)
         SELECT id, customer_id, rule_id, 'inbox', 1, 'delivered', occurs_at FROM schedule
         WHERE rule_id = 'bulk'"
            .to_string(),
    ] {
        runtime
            .block_on(sqlx::Executor::execute(&mut conn, statement.as_str()))
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    drop(conn);
    let (empty, _) = report_peak_kib(&config, &db, ("2020-01-01", "2020-01-02"));
    let (full, report) = report_peak_kib(&config, &db, ("2026-03-03", "2026-03-10"));
    let bulk = report["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["name"] == "bulk"))
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(
        (bulk["sent"].as_i64(), bulk["delivered"].as_i64()),
        (Some(ROWS), Some(ROWS)),
        "{bulk}"
    );
    let grown = full.saturating_sub(empty);
    assert!(
        grown < 80 * 1024,
        "counting {ROWS} attempts took {} MiB more than an empty period ({} → {} KiB)",
        grown / 1024,
        empty,
        full
    );
}
