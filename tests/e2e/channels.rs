//! Channel behaviour the host owns, whatever the plugin: a send rate limit
//! that spaces sends in virtual time and drops nothing, failover to a backup
//! provider while the primary keeps failing, secrets masked even when a
//! provider echoes them back, and the sandbox refusing sockets, files and
//! environment to a plugin that reaches for them.

use crate::support::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn at(row: &Value) -> DateTime<Utc> {
    row["at"].as_str().unwrap().parse().unwrap()
}

/// The webhook plugin pointed at a port where nothing listens (these
/// tests never send through it).
fn unreachable_hook() -> Channel {
    Channel::plugin("webhook")
        .setting("url", "http://127.0.0.1:9/x")
        .setting("secret", "k")
}

fn customers_at(instant: &str, ids: impl Iterator<Item = String>) -> String {
    ids.map(|id| {
        json!({"at": instant, "op": "upsert", "customer": {"external_id": id, "name": "Test"}})
            .to_string()
    })
    .collect::<Vec<_>>()
    .join("\n")
}

#[test]
fn rate_limit_spreads_fifty_sends_over_ten_virtual_seconds() {
    let provider = FakeProvider::start(|req, _| {
        let id = req.json()["recipient"]["customer_id"].clone();
        Reply::json(200, json!({ "id": id }))
    });
    let scratch = Scratch::new();
    let config = Config::new()
        .channel(
            "sms",
            webhook(&provider, "/send", "s3cret-for-signing").set("rate", "5/s"),
        )
        .rule(welcome(&["sms"]).set("text", "Hello {{ customer.name }}"))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &customers_at("2026-03-01T09:00:00Z", (0..50).map(|i| format!("c{i:02}"))),
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);

    let rows = deliveries(&config, &db);
    assert_eq!(rows.len(), 50, "one attempt each, none lost: {rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "delivered"), "{rows:?}");
    let mut times: Vec<DateTime<Utc>> = rows.iter().map(at).collect();
    times.sort();
    let start: DateTime<Utc> = "2026-03-01T09:00:00Z".parse().unwrap();
    for (i, t) in times.iter().enumerate() {
        assert_eq!(
            *t,
            start + chrono::Duration::milliseconds(200 * i as i64),
            "send {i} goes at its 200 ms slot"
        );
    }
    assert_eq!(
        times[49] - times[0],
        chrono::Duration::milliseconds(9800),
        "50 sends at 5/s take ten seconds"
    );
    let mut seen: Vec<String> = provider
        .requests()
        .iter()
        .map(|r| {
            r.json()["recipient"]["customer_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 50, "every customer reached the provider once");
    assert_eq!(provider.requests().len(), 50);
}

#[test]
fn failover_moves_sends_to_the_backup_while_the_primary_fails() {
    let primary = FakeProvider::start(|_, _| Reply::json(503, json!({"error": "down"})));
    let backup = FakeProvider::start(|req, _| {
        let id = req.json()["recipient"]["customer_id"].clone();
        Reply::json(200, json!({ "id": format!("b-{}", id.as_str().unwrap()) }))
    });
    let scratch = Scratch::new();
    let config = Config::new()
        .retry(6, "1m", "1m")
        .channel(
            "primary",
            webhook(&primary, "/send", "primary-secret")
                .set("failover", "backup")
                .set("failover_after", 2)
                .set("failover_cooldown", "10m"),
        )
        .channel("backup", webhook(&backup, "/send", "backup-secret"))
        .rule(welcome(&["primary"]))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &[
            customers_at("2026-03-01T09:00:00Z", ["first".to_string()].into_iter()),
            customers_at("2026-03-01T09:05:00Z", ["second".to_string()].into_iter()),
            customers_at("2026-03-01T10:00:00Z", ["third".to_string()].into_iter()),
        ]
        .join("\n"),
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let rows = deliveries(&config, &db);
    let of = |c: &str| -> Vec<(String, String, Value)> {
        rows.iter()
            .filter(|r| r["customer"] == c)
            .map(|r| {
                (
                    r["channel"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                    r["failover_from"].clone(),
                )
            })
            .collect()
    };
    // Two failures on the primary, then the backup carries it.
    assert_eq!(
        of("first"),
        [
            ("primary".into(), "failed".into(), Value::Null),
            ("primary".into(), "failed".into(), Value::Null),
            ("backup".into(), "delivered".into(), json!("primary")),
        ]
    );
    // While the circuit is open a new reminder goes straight to the backup.
    assert_eq!(
        of("second"),
        [("backup".into(), "delivered".into(), json!("primary"))]
    );
    // After the cooldown the primary is tried again; it still fails, so the
    // circuit re-opens and the retry goes to the backup.
    assert_eq!(
        of("third"),
        [
            ("primary".into(), "failed".into(), Value::Null),
            ("backup".into(), "delivered".into(), json!("primary")),
        ]
    );
    let delivered = rows
        .iter()
        .find(|r| r["customer"] == "second")
        .expect("second delivered");
    assert_eq!(delivered["provider_message_id"], "b-second");
    // The same idempotency key went to both providers for one reminder.
    let key_of = |p: &FakeProvider, c: &str| -> Vec<String> {
        p.requests()
            .iter()
            .filter(|r| r.json()["recipient"]["customer_id"] == c)
            .map(|r| r.header("idempotency-key").unwrap().to_string())
            .collect()
    };
    let at_primary = key_of(&primary, "first");
    let at_backup = key_of(&backup, "first");
    assert_eq!(at_primary.len(), 2);
    assert_eq!(at_backup.len(), 1);
    assert_eq!(at_primary[0], at_backup[0]);
}

#[test]
fn bad_rate_and_failover_settings_are_refused_with_a_fix() {
    for (extra, expected) in [
        ("rate = \"5 per second\"", "e.g. \"10/s\""),
        (
            "failover = \"nowhere\"",
            "failover = \"nowhere\" is not a configured channel",
        ),
        (
            "failover = \"inbox\"",
            "a backup must reach customers by the same kind of address",
        ),
        ("failover_after = 2", "need `failover = \"backup-channel\"`"),
        ("burst = 3", "`burst` needs a `rate`"),
    ] {
        let stderr = refusal(
            Config::new()
                .channel(
                    "hook",
                    unreachable_hook().set("address", "email").line(extra),
                )
                .inbox()
                .rule(welcome(&["hook"])),
        );
        assert!(stderr.contains(expected), "{extra}: {stderr}");
        assert!(stderr.contains("[channels.hook]"), "{extra}: {stderr}");
    }
}

#[test]
fn a_secret_echoed_by_the_provider_is_masked_everywhere() {
    const SECRET: &str = "tok-8d1f0c2a-never-print-me";
    let provider = FakeProvider::start(|_, _| {
        Reply::json(
            400,
            json!({"error": format!("invalid signature for key {SECRET}")}),
        )
    });
    let scratch = Scratch::new();
    let secret_file = scratch.write("secret.txt", &format!("{SECRET}\n"));
    let config = Config::new()
        .channel("hook", webhook(&provider, "/send", file(&secret_file)))
        .rule(welcome(&["hook"]))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &customers_at("2026-03-01T09:00:00Z", ["c1".to_string()].into_iter()),
    );
    let db = scratch.db("h.db");
    let [stdout, stderr] =
        simulate_live_with(&config, &timeline, MARCH_1, &db, ("HERALD_LOG", "debug"));
    assert_eq!(provider.requests().len(), 1, "the request went out");
    let rows = deliveries(&config, &db);
    let error = rows[0]["error"].as_str().unwrap();
    assert!(error.contains("[redacted]"), "{error}");
    let [table, _] = deliveries_table(&config, &db);
    assert_not_leaked(&[SECRET], &[stdout, stderr, table, json!(rows).to_string()]);
}

#[test]
fn the_sandbox_refuses_sockets_files_and_environment() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let scratch = Scratch::new();
    let channel = |mode: &str, allowed: &[&str]| {
        Channel::plugin("chaos")
            .allowed_hosts(allowed)
            .setting("mode", mode)
            .setting("address", format!("127.0.0.1:{port}"))
    };
    let rule = |id: &str, ch: &str| Rule::new(id, ON_CREATED, &[ch], "x", "x");
    let config = Config::new()
        .channel("nosocket", channel("socket", &["http://127.0.0.1:1"]))
        .channel("file", channel("file", &[]))
        .channel("env", channel("env", &[]))
        .rule(rule("r-socket", "nosocket"))
        .rule(rule("r-file", "file"))
        .rule(rule("r-env", "env"))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &customers_at("2026-03-01T09:00:00Z", ["c1".to_string()].into_iter()),
    );
    let db = scratch.db("h.db");
    let canary = ("HERALD_CANARY", "visible-to-plugins?");
    simulate_live_with(&config, &timeline, MARCH_1, &db, canary);
    let rows = deliveries(&config, &db);
    // The rule's attempt failed, and its error says why.
    let failed_with = |rule: &str, reason: &str| {
        let row = rows.iter().find(|r| r["rule"] == rule).unwrap();
        assert_eq!(row["status"], "failed", "{row}");
        let error = row["error"].as_str().unwrap();
        assert!(error.contains(reason), "{row}");
    };
    failed_with("r-socket", "refused");
    assert!(
        listener.accept().is_err(),
        "nothing connected to the listener"
    );
    failed_with("r-file", "/etc/passwd refused");
    failed_with("r-env", "environment is empty");

    // Listed as tcp://host:port (and loopback allowed), the same
    // connection is allowed.
    let scratch = Scratch::new();
    let config = Config::new()
        .channel(
            "socket",
            channel("socket", &[&format!("tcp://127.0.0.1:{port}")])
                .set("allow_private_network", true),
        )
        .rule(rule("r-socket", "socket"))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &customers_at("2026-03-01T09:00:00Z", ["c1".to_string()].into_iter()),
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let rows = deliveries(&config, &db);
    assert_eq!(rows[0]["status"], "delivered", "{:?}", rows);
    assert!(
        wait_for(5, || listener.accept().ok()).is_some(),
        "the allowed connection arrived"
    );
}

#[test]
fn hooks_for_unknown_channels_and_plugins_without_callbacks_are_404() {
    let scratch = Scratch::new();
    let config = Config::new()
        .channel("hook", unreachable_hook())
        .inbox()
        .rule(welcome(&["hook"]))
        .write(&scratch);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    for (path, code) in [
        ("/hooks/nope", "unknown_channel"),
        ("/hooks/hook", "no_callbacks"),
        ("/hooks/inbox", "no_callbacks"),
    ] {
        let (status, body) = http("POST", &format!("{}{path}", server.base), Some("{}"));
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
}
