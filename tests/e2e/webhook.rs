//! The webhook plugin against a loopback provider that checks the HMAC
//! signature: delivered, retried after a 500, failed at once on a 400, and
//! the secret never printed.

use crate::fakes::codec::hmac_sha256_hex;
use crate::support::*;
use serde_json::json;

const SECRET: &str = "whsec-3f9a7c0e-do-not-print";

fn config(provider: &FakeProvider, max_attempts: u32) -> Config {
    Config::new()
        .retry(max_attempts, "10m", "1h")
        .channel(
            "hook",
            webhook(provider, "/hook", env("TEST_HOOK_SECRET")).set("timeout", "5s"),
        )
        .rule(
            welcome(&["hook"])
                .set("subject", "Welcome, {{ customer.name }}")
                .set("text", "Hello {{ customer.name }}, 欢迎!")
                .set("html", "<p>Hello {{ customer.name }}</p>"),
        )
}

fn provider() -> FakeProvider {
    FakeProvider::start(|req, earlier| {
        let signature = req.header("x-herald-signature").unwrap_or("");
        if signature != format!("sha256={}", hmac_sha256_hex(SECRET, &req.body)) {
            return Reply::json(401, json!({"error": "bad signature"}));
        }
        let body = req.json();
        let customer = body["recipient"]["customer_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let key = req.header("idempotency-key").unwrap_or("").to_string();
        if customer.starts_with("bad") {
            return Reply::json(400, json!({"error": "recipient rejected"}));
        }
        let tries = earlier
            .iter()
            .filter(|r| r.header("idempotency-key") == Some(key.as_str()))
            .count();
        if customer.starts_with("flaky") && tries == 0 {
            return Reply::json(500, json!({"error": "upstream exploded"}));
        }
        Reply::json(200, json!({"id": format!("msg-{customer}")}))
    })
}

/// `herald simulate --live` from 2026-03-01 with the webhook secret in the environment.
fn live(
    config: &std::path::Path,
    timeline: &std::path::Path,
    until: &str,
) -> std::process::Command {
    let mut cmd = simulate_cmd(config, timeline, "2026-03-01", until);
    cmd.env("TEST_HOOK_SECRET", SECRET).arg("--live");
    cmd
}

const TIMELINE: &str = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"ok-1","name":"Zoë <script>alert(1)</script>","email":"z@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"flaky-1","name":"李雷"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"bad-1","name":"Bad"}}
"#;

#[test]
fn webhook_signs_retries_and_classifies() {
    let provider = provider();
    let scratch = Scratch::new();
    let config = config(&provider, 3).write(&scratch);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.db("h.db");
    let out = run(live(&config, &timeline, "2026-03-02").arg("--db").arg(&db));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let attempts = parse_attempts(&stdout);
    let line = |c: &str| -> Vec<(String, String)> {
        attempts
            .iter()
            .filter(|a| a.customer == c)
            .map(|a| (a.at.clone(), a.status.clone()))
            .collect()
    };
    assert_eq!(
        line("ok-1"),
        [("2026-03-01T09:00:00Z".to_string(), "delivered".to_string())]
    );
    assert_eq!(
        line("bad-1"),
        [("2026-03-01T09:00:00Z".to_string(), "failed".to_string())],
        "a 400 is not retried"
    );
    let flaky = line("flaky-1");
    assert_eq!(flaky.len(), 2, "{flaky:?}");
    assert_eq!(
        flaky[0],
        ("2026-03-01T09:00:00Z".to_string(), "failed".to_string())
    );
    assert_eq!(flaky[1].1, "delivered");
    // Retried after the configured 10 minutes, ±20% jitter.
    let gap = seconds_between("2026-03-01T09:00:00Z", &flaky[1].0);
    assert!((480..=720).contains(&gap), "retry after {gap}s");

    // What the provider saw: every request signed, one idempotency key per occurrence.
    let requests = provider.requests();
    assert_eq!(requests.len(), 4, "ok, bad, flaky twice");
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hook");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r
            .header("x-herald-signature")
            .unwrap()
            .starts_with("sha256="));
    }
    let flaky_keys: Vec<_> = requests
        .iter()
        .filter(|r| r.json()["recipient"]["customer_id"] == "flaky-1")
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(flaky_keys.len(), 2);
    assert_eq!(
        flaky_keys[0], flaky_keys[1],
        "a retry reuses the idempotency key"
    );
    let ok = requests
        .iter()
        .find(|r| r.json()["recipient"]["customer_id"] == "ok-1")
        .unwrap()
        .json();
    assert_eq!(ok["subject"], "Welcome, Zoë <script>alert(1)</script>");
    assert_eq!(
        ok["html"], "<p>Hello Zoë &lt;script&gt;alert(1)&lt;&#x2f;script&gt;</p>",
        "HTML bodies escape values"
    );
    assert_eq!(ok["recipient"]["email"], "z@example.com");
    assert_eq!(ok["rule"], "welcome");
    let flaky_body = requests
        .iter()
        .find(|r| r.json()["recipient"]["customer_id"] == "flaky-1")
        .unwrap()
        .json();
    assert_eq!(flaky_body["text"], "Hello 李雷, 欢迎!");

    // The deliveries list says why each attempt ended as it did, with no secret anywhere.
    let rows = deliveries(&config, &db);
    let bad = rows.iter().find(|r| r["customer"] == "bad-1").unwrap();
    assert_eq!(bad["status"], "failed");
    assert!(bad["error"].as_str().unwrap().contains("400"), "{bad}");
    let retried = rows
        .iter()
        .find(|r| r["customer"] == "flaky-1" && r["attempt"] == 1)
        .unwrap();
    assert!(
        retried["error"].as_str().unwrap().contains("500"),
        "{retried}"
    );
    assert!(retried["retry_at"].is_string());
    let delivered = rows.iter().find(|r| r["customer"] == "ok-1").unwrap();
    assert_eq!(delivered["provider_message_id"], "msg-ok-1");
    assert_eq!(delivered["provider"], "webhook");
    let [table, table_err] = deliveries_table(&config, &db);
    assert_not_leaked(
        &[SECRET],
        &[stdout, stderr, table, table_err, json!(rows).to_string()],
    );
}

#[test]
fn retries_stop_at_max_attempts_and_the_reminder_is_dead() {
    let provider = FakeProvider::start(|_, _| Reply::json(503, json!({"error": "maintenance"})));
    let scratch = Scratch::new();
    let config = config(&provider, 3).write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1","name":"C"}}"#,
    );
    let (attempts, _) = {
        let out = run(&mut live(&config, &timeline, "2026-03-03"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        (parse_attempts(&text(&out.stdout)), ())
    };
    let statuses: Vec<&str> = attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "failed", "dead"]);
    assert_eq!(provider.requests().len(), 3);
}

#[test]
fn a_missing_secret_stops_herald_with_a_clear_error() {
    let provider = provider();
    let scratch = Scratch::new();
    let config = config(&provider, 3).write(&scratch);
    let timeline = scratch.write("t.jsonl", "");
    let stderr = expect_refusal(
        simulate_cmd(&config, &timeline, "2026-03-01", "2026-03-02").env_remove("TEST_HOOK_SECRET"),
    );
    assert!(
        stderr.contains("TEST_HOOK_SECRET") && stderr.contains("[channels.hook"),
        "{stderr}"
    );
}

/// `allowed_hosts` names hosts; what a name resolves to is checked too. A
/// loopback, private or link-local address (the cloud metadata service at
/// 169.254.169.254) is refused unless the channel says
/// `allow_private_network = true`, which `herald check` warns about.
#[test]
fn private_and_loopback_addresses_need_the_operators_say_so() {
    let provider = provider();
    let scratch = Scratch::new();
    let port = provider.addr.port();
    // `localhost` is a name: it is allowed, and resolves to loopback.
    let by_name = |allow_private: bool| {
        Channel::plugin("webhook")
            .allow(&format!("http://localhost:{port}"))
            .set("allow_private_network", allow_private)
            .setting("url", format!("http://localhost:{port}/hook"))
            .setting("secret", SECRET)
    };
    let metadata = Channel::plugin("webhook")
        .allow("http://169.254.169.254")
        .setting("url", "http://169.254.169.254/latest/meta-data/")
        .setting("secret", SECRET)
        .set("timeout", "2s");
    let rule = |id: &str, channel: &str| Rule::new(id, ON_CREATED, &[channel], "s", "t");
    let config = Config::new()
        .max_attempts(1)
        .channel("public-only", by_name(false))
        .channel("metadata", metadata)
        .channel("trusted", by_name(true))
        .rule(rule("r-public-only", "public-only"))
        .rule(rule("r-metadata", "metadata"))
        .rule(rule("r-trusted", "trusted"))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1","name":"C"}}"#,
    );
    let db = scratch.path("h.db");
    let out = simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let stderr = text(&out.stderr);
    let rows = deliveries(&config, &db);
    let row = |rule: &str| rows.iter().find(|r| r["rule"] == rule).unwrap();
    for refused in ["r-public-only", "r-metadata"] {
        let r = row(refused);
        assert_eq!(r["status"], "failed", "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("private") && error.contains("allow_private_network"),
            "{error}"
        );
    }
    assert_eq!(row("r-trusted")["status"], "delivered", "{stderr}");
    assert_eq!(
        provider.requests().len(),
        1,
        "only the trusted channel's request went out"
    );
    assert!(
        stderr.contains("169.254.169.254"),
        "the refusal is logged: {stderr}"
    );

    let out = run(herald().args(["check", "--config"]).arg(&config));
    let checked = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "warnings alone pass: {checked}");
    assert!(
        checked.contains("trusted") && checked.contains("allow_private_network = true"),
        "{checked}"
    );
}
