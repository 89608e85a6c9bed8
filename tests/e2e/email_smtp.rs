//! The email-smtp plugin against a real SMTP server the project did not
//! write: Python's aiosmtpd (tests/e2e/smtp_server.py, installed into
//! target/pyenv by scripts/test). Covers a full MIME message checked by
//! Python's `email` parser (Chinese subject, names and bodies, text + HTML,
//! Message-ID, Date on the virtual clock, no defects), greylisting (451 then
//! accepted on retry), an unknown mailbox (550), a wrong password (535, never
//! printed), AUTH LOGIN, a port missing from allowed_hosts, and a relay that
//! demands STARTTLS from a channel set to `tls = "none"`. Over TLS (the
//! host's `tls` capability, aiosmtpd's STARTTLS and implicit TLS with the
//! test CA of tests/fixtures/smtp-tls): delivery with a login, untrusted and
//! misnamed certificates, a relay without STARTTLS, and `herald check`.

use crate::support::*;
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const USER: &str = "herald@acme.example";
const PASSWORD: &str = "smtp-pw-7d1e94b2-do-not-print";
const WRONG_PASSWORD: &str = "wrong-pw-0c55aa31-do-not-print";

/// The Python interpreter that has aiosmtpd: `HERALD_TEST_PYTHON`, else
/// target/pyenv/bin/python, else python3 with target/pydeps on PYTHONPATH.
fn python() -> (PathBuf, Option<PathBuf>) {
    if let Some(p) = std::env::var_os("HERALD_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return (PathBuf::from(p), None);
    }
    let venv = repo_root().join("target/pyenv/bin/python");
    if venv.exists() {
        return (venv, None);
    }
    let deps = repo_root().join("target/pydeps");
    if deps.join("aiosmtpd").exists() {
        return (PathBuf::from("python3"), Some(deps));
    }
    panic!(
        "no Python with aiosmtpd for the SMTP test: run scripts/test (it creates target/pyenv with aiosmtpd), or set HERALD_TEST_PYTHON to a python that has it"
    );
}

/// A running aiosmtpd, killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    out: PathBuf,
    stderr_log: PathBuf,
}

impl SmtpServer {
    fn start(scratch: &Scratch, name: &str, extra: &[&str]) -> SmtpServer {
        let (python, pythonpath) = python();
        let out = scratch.path(name);
        let stderr_log = scratch.path(&format!("{name}.stderr"));
        let mut cmd = Command::new(&python);
        cmd.arg(repo_root().join("tests/e2e/smtp_server.py"))
            .arg("--out")
            .arg(&out)
            .args(["--user", USER, "--password", PASSWORD])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"));
        if let Some(path) = pythonpath {
            cmd.env("PYTHONPATH", path);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run scripts/test to set up the Python test environment",
                python.display()
            )
        });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read smtp_server.py stdout");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok());
        let mut server = SmtpServer {
            child,
            port: 0,
            out,
            stderr_log,
        };
        match port {
            Some(port) => server.port = port,
            None => panic!(
                "smtp_server.py did not start (stdout {line:?}); run scripts/test to install aiosmtpd. stderr:\n{}",
                server.log()
            ),
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The messages received, in arrival order.
    fn messages(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        files.retain(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("message-") && name.ends_with(".json")
        });
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).expect("message json"))
            .collect()
    }

    /// Connections and command outcomes, in order.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.out.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("event json"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The plugin pointed at `port`, allowed to reach `allowed_port`, in clear
/// text (`tls = "none"`: these servers have no TLS).
fn smtp(port: u16, allowed_port: u16) -> Channel {
    Channel::plugin("email-smtp")
        .allow(&format!("tcp://127.0.0.1:{allowed_port}"))
        .set("timeout", "10s")
        .setting("host", "127.0.0.1")
        .setting("port", port)
        .setting("tls", "none")
        .setting("from_email", "noreply@acme.example")
        .setting("from_name", "Acme 团队")
        .setting("reply_to", "help@acme.example")
}

/// [`smtp`] logging in as USER with the password from the environment,
/// over the plugin's clear-text connection (the relay is on loopback).
fn smtp_login(port: u16, allowed_port: u16) -> Channel {
    smtp(port, allowed_port)
        .setting("username", USER)
        .setting("password", env("TEST_SMTP_PASSWORD"))
        .setting("allow_plaintext_auth", true)
}

/// Up to three attempts, 10 minutes apart at first.
fn retrying() -> Config {
    Config::new().retry(3, "10m", "1h")
}

/// A rule sending through `channel`; the subject, text and HTML carry Chinese.
fn rule(id: &str, channel: &str) -> Rule {
    Rule::new(
        id,
        ON_CREATED,
        &[channel],
        "【Acme】您的试用将于4天后结束",
        "您好 {{ customer.name }}，\n您的试用将于4天后结束。\n.这一行以点开头\n",
    )
    .set("html", "<p>您好 {{ customer.name }}</p>")
}

fn live(
    config: &Path,
    timeline: &Path,
    db: &Path,
    password: &str,
) -> (Vec<Attempt>, String, String) {
    let out = run(simulate_cmd(config, timeline, "2026-03-01", "2026-03-02")
        .env("TEST_SMTP_PASSWORD", password)
        .arg("--live")
        .arg("--db")
        .arg(db));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "simulate failed: {stderr}");
    (parse_attempts(&stdout), stdout, stderr)
}

fn statuses(attempts: &[Attempt], customer: &str) -> Vec<(String, String)> {
    attempts
        .iter()
        .filter(|a| a.customer == customer)
        .map(|a| (a.at.clone(), a.status.clone()))
        .collect()
}

fn statuses_of_rule(attempts: &[Attempt], rule: &str) -> Vec<String> {
    attempts
        .iter()
        .filter(|a| a.rule == rule)
        .map(|a| a.status.clone())
        .collect()
}

fn row<'a>(rows: &'a [Value], customer: &str, attempt: u64) -> &'a Value {
    rows.iter()
        .find(|r| r["customer"] == customer && r["attempt"] == attempt)
        .unwrap_or_else(|| panic!("no attempt {attempt} of {customer} in {rows:#?}"))
}

fn customer(id: &str, name: &str, email: &str) -> String {
    format!(
        r#"{{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{{"external_id":"{id}","name":"{name}","email":"{email}"}}}}"#
    ) + "\n"
}

#[test]
fn smtp_delivers_mime_that_python_parses_and_classifies_replies() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &[]);
    let config = retrying()
        .channel("mail", smtp_login(server.port, server.port))
        .rule(rule("trial-ending", "mail"))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        &[
            customer("li-1", "李雷", "li@example.com"),
            customer("grey-1", "Zoë Grey", "greylist@example.com"),
            customer("gone-1", "Gone", "nouser@example.com"),
        ]
        .concat(),
    );
    let db = scratch.path("h.db");
    let (attempts, stdout, stderr) = live(&config, &timeline, &db, PASSWORD);

    assert_eq!(
        statuses(&attempts, "li-1"),
        [("2026-03-01T09:00:00Z".to_string(), "delivered".to_string())],
        "{stderr}\n{}",
        server.log()
    );
    assert_eq!(
        statuses(&attempts, "gone-1"),
        [("2026-03-01T09:00:00Z".to_string(), "failed".to_string())],
        "550 is not retried"
    );
    let grey = statuses(&attempts, "grey-1");
    assert_eq!(grey.len(), 2, "{grey:?}");
    assert_eq!(
        grey[0],
        ("2026-03-01T09:00:00Z".to_string(), "failed".to_string())
    );
    assert_eq!(grey[1].1, "delivered");
    let retry_at = chrono::DateTime::parse_from_rfc3339(&grey[1].0).unwrap();
    let gap = seconds_between("2026-03-01T09:00:00Z", &grey[1].0);
    assert!((480..=720).contains(&gap), "retried after {gap}s, not ~10m");

    // What aiosmtpd received and Python's email package made of it.
    let messages = server.messages();
    assert_eq!(messages.len(), 2, "li-1 and grey-1's retry: {messages:#?}");
    let li = messages
        .iter()
        .find(|m| m["rcpt_tos"][0] == "li@example.com")
        .expect("li's message");
    assert_eq!(li["mail_from"], "noreply@acme.example");
    assert_eq!(li["rcpt_tos"], serde_json::json!(["li@example.com"]));
    assert_eq!(li["login"], USER, "AUTH PLAIN logged in");
    assert_eq!(
        li["helo"], "acme.example",
        "EHLO with the from_email domain"
    );
    let p = &li["parsed"];
    assert!(li.get("parse_error").is_none(), "{li}");
    assert_eq!(p["subject"], "【Acme】您的试用将于4天后结束");
    assert_eq!(p["from"][0]["display_name"], "Acme 团队");
    assert_eq!(p["from"][0]["addr_spec"], "noreply@acme.example");
    assert_eq!(p["to"][0]["display_name"], "李雷");
    assert_eq!(p["to"][0]["addr_spec"], "li@example.com");
    assert_eq!(p["reply_to"][0]["addr_spec"], "help@acme.example");
    assert_eq!(
        p["date"], "Sun, 01 Mar 2026 09:00:00 +0000",
        "the virtual clock"
    );
    assert_eq!(p["date_iso"], "2026-03-01T09:00:00+00:00");
    assert_eq!(p["mime_version"], "1.0");
    assert_eq!(p["x_herald_rule"], "trial-ending");
    assert_eq!(p["content_type"], "multipart/alternative");
    assert_eq!(p["defects"], serde_json::json!([]), "{p:#}");
    let types: Vec<&str> = p["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| part["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["multipart/alternative", "text/plain", "text/html"]);
    for part in p["parts"].as_array().unwrap() {
        assert_eq!(part["defects"], serde_json::json!([]), "{part}");
        if part["content_type"] != "multipart/alternative" {
            assert_eq!(part["charset"], "utf-8");
            assert_eq!(part["transfer_encoding"], "base64");
        }
    }
    assert_eq!(
        p["text"].as_str().unwrap().replace("\r\n", "\n"),
        "您好 李雷，\n您的试用将于4天后结束。\n.这一行以点开头\n"
    );
    assert_eq!(
        p["html"].as_str().unwrap().replace("\r\n", "\n"),
        "<p>您好 李雷</p>"
    );
    assert_eq!(p["list_unsubscribe"], Value::Null, "no unsubscribe URL yet");
    // Message-ID: <32 hex digits @ the sender's domain>, and it is the receipt.
    let message_id = p["message_id"].as_str().unwrap();
    let inner = message_id
        .strip_prefix('<')
        .and_then(|m| m.strip_suffix("@acme.example>"))
        .unwrap_or_else(|| panic!("Message-ID {message_id}"));
    assert!(
        inner.len() == 32 && inner.bytes().all(|b| b.is_ascii_hexdigit()),
        "{message_id}"
    );
    // The raw message is 7-bit, CRLF, with header lines of at most 78 characters.
    let raw = li["raw_ascii"].as_str().unwrap();
    assert!(!raw.contains("\\x"), "non-ASCII bytes on the wire");
    let head = raw.split("\r\n\r\n").next().unwrap();
    for line in head.split("\r\n") {
        assert!(line.len() <= 78, "header line too long: {line:?}");
    }
    assert!(!raw.contains(PASSWORD));

    let grey_msg = messages
        .iter()
        .find(|m| m["rcpt_tos"][0] == "greylist@example.com")
        .expect("the greylisted message, on retry");
    assert_eq!(grey_msg["parsed"]["to"][0]["display_name"], "Zoë Grey");
    assert_eq!(
        grey_msg["parsed"]["date_iso"].as_str().unwrap(),
        retry_at.to_rfc3339(),
        "Date is the virtual time of the retry"
    );
    assert_ne!(grey_msg["parsed"]["message_id"], p["message_id"]);

    // The server saw: greylist refused once then accepted, nouser refused.
    let rcpts: Vec<(String, u64)> = server
        .events()
        .iter()
        .filter(|e| e["event"] == "rcpt")
        .map(|e| {
            (
                e["address"].as_str().unwrap().to_string(),
                e["reply"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        rcpts.contains(&("greylist@example.com".into(), 451)),
        "{rcpts:?}"
    );
    assert!(
        rcpts.contains(&("greylist@example.com".into(), 250)),
        "{rcpts:?}"
    );
    assert!(
        rcpts.contains(&("nouser@example.com".into(), 550)),
        "{rcpts:?}"
    );

    // The deliveries list explains each outcome; the password is nowhere.
    let rows = deliveries(&config, &db);
    let ok = row(&rows, "li-1", 1);
    assert_eq!(ok["status"], "delivered");
    assert_eq!(
        ok["provider_message_id"],
        message_id.trim_matches(['<', '>'])
    );
    let greylisted = row(&rows, "grey-1", 1);
    assert_eq!(greylisted["status"], "failed");
    assert!(
        greylisted["error"]
            .as_str()
            .unwrap()
            .contains("451 4.7.1 Greylisted, try again later"),
        "{greylisted}"
    );
    assert!(greylisted["retry_at"].is_string(), "{greylisted}");
    assert_eq!(row(&rows, "grey-1", 2)["status"], "delivered");
    let gone = row(&rows, "gone-1", 1);
    assert_eq!(gone["status"], "failed");
    assert!(
        gone["error"]
            .as_str()
            .unwrap()
            .contains("550 5.1.1 User unknown"),
        "{gone}"
    );
    assert!(gone["retry_at"].is_null(), "a 550 is permanent: {gone}");
    assert_not_leaked(
        &[PASSWORD],
        &[stdout, stderr, serde_json::json!(rows).to_string()],
    );
}

#[test]
fn smtp_wrong_password_fails_clearly_and_auth_login_works() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &[]);
    // `badpw` logs in with AUTH PLAIN and the wrong password; `login` uses
    // AUTH LOGIN with the right one (given inline, marked secret by the plugin).
    let config = retrying()
        .channel("badpw", smtp_login(server.port, server.port))
        .channel(
            "login",
            smtp(server.port, server.port)
                .setting("username", USER)
                .setting("password", PASSWORD)
                .setting("auth", "login")
                .setting("allow_plaintext_auth", true)
                .setting("helo_name", "login.acme.example"),
        )
        .rule(rule("via-plain", "badpw"))
        .rule(rule("via-login", "login"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, stdout, stderr) = live(&config, &timeline, &db, WRONG_PASSWORD);

    let by_rule = |r: &str| statuses_of_rule(&attempts, r);
    assert_eq!(by_rule("via-plain"), ["failed"], "535 is not retried");
    assert_eq!(
        by_rule("via-login"),
        ["delivered"],
        "{stderr}\n{}",
        server.log()
    );

    let rows = deliveries(&config, &db);
    let bad = rows.iter().find(|r| r["rule"] == "via-plain").unwrap();
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("535 5.7.8 Authentication credentials invalid"),
        "{error}"
    );
    assert!(error.contains("check `username` and `password`"), "{error}");
    assert!(bad["retry_at"].is_null(), "{bad}");

    let auths: Vec<(String, bool)> = server
        .events()
        .iter()
        .filter(|e| e["event"] == "auth")
        .map(|e| {
            (
                e["mechanism"].as_str().unwrap().to_string(),
                e["success"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(auths.contains(&("PLAIN".into(), false)), "{auths:?}");
    assert!(auths.contains(&("LOGIN".into(), true)), "{auths:?}");
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["helo"], "login.acme.example");
    assert_eq!(messages[0]["login"], USER);

    let [table, table_err] = deliveries_table(&config, &db);
    assert_not_leaked(
        &[PASSWORD, WRONG_PASSWORD],
        &[
            stdout,
            stderr,
            table,
            table_err,
            serde_json::json!(rows).to_string(),
        ],
    );
}

/// The plugin has no TLS, so a login would cross the network readable by
/// anyone on the path: without `allow_plaintext_auth` the send fails before
/// connecting, saying why and what to set; with it, `herald check` warns.
#[test]
fn smtp_login_in_clear_text_needs_the_operators_say_so() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &[]);
    let guarded = smtp(server.port, server.port)
        .setting("username", USER)
        .setting("password", env("TEST_SMTP_PASSWORD"));
    let config = retrying()
        .channel("mail", guarded)
        .rule(rule("trial-ending", "mail"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, stdout, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(
        statuses_of_rule(&attempts, "trial-ending"),
        ["failed"],
        "a configuration problem is not retried: {stderr}"
    );
    let rows = deliveries(&config, &db);
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.contains("clear text") && error.contains("allow_plaintext_auth = \"true\""),
        "{error}"
    );
    assert!(
        server.events().iter().all(|e| e["event"] != "auth"),
        "no login was sent: {:?}",
        server.events()
    );
    assert!(server.messages().is_empty());
    assert_not_leaked(
        &[PASSWORD],
        &[stdout, stderr, serde_json::json!(rows).to_string()],
    );

    let allowed = retrying()
        .channel("mail", smtp_login(server.port, server.port))
        .rule(rule("trial-ending", "mail"))
        .write_as(&scratch, "allowed.toml");
    let out = run(herald()
        .args(["check", "--config"])
        .arg(&allowed)
        .env("TEST_SMTP_PASSWORD", PASSWORD));
    let checked = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "a warning alone passes: {checked}");
    assert!(
        checked.contains("allow_plaintext_auth") && checked.contains("clear text"),
        "{checked}"
    );
}

/// A TCP plugin resolves names itself: `tcp://localhost:PORT` names the
/// relay, but it resolves to loopback, refused without
/// `allow_private_network = true`.
#[test]
fn smtp_to_a_name_resolving_to_loopback_needs_the_operators_say_so() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &[]);
    let channel = |allow_private: bool| {
        Channel::plugin("email-smtp")
            .allow(&format!("tcp://localhost:{}", server.port))
            .set("allow_private_network", allow_private)
            .set("timeout", "10s")
            .setting("host", "localhost")
            .setting("port", server.port)
            .setting("tls", "none")
            .setting("username", USER)
            .setting("password", env("TEST_SMTP_PASSWORD"))
            .setting("allow_plaintext_auth", true)
            .setting("from_email", "noreply@acme.example")
    };
    let config = retrying()
        .channel("public", channel(false))
        .channel("trusted", channel(true))
        .rule(rule("via-public", "public"))
        .rule(rule("via-trusted", "trusted"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, _, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(
        statuses_of_rule(&attempts, "via-public"),
        ["failed"],
        "{stderr}"
    );
    assert_eq!(
        statuses_of_rule(&attempts, "via-trusted"),
        ["delivered"],
        "{:?}\n{}",
        deliveries(&config, &db),
        server.log()
    );
    assert!(
        stderr.contains("127.0.0.1 is a loopback address")
            && stderr.contains("allow_private_network"),
        "the refusal is logged, saying what to set: {stderr}"
    );
    let rows = deliveries(&config, &db);
    let refused = rows.iter().find(|r| r["rule"] == "via-public").unwrap();
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("allow_private_network"), "{error}");
    let connects = server
        .events()
        .iter()
        .filter(|e| e["event"] == "connect")
        .count();
    assert_eq!(
        connects,
        1,
        "only the trusted channel connected: {:?}",
        server.events()
    );
}

#[test]
fn smtp_port_missing_from_allowed_hosts_is_refused_and_a_dead_relay_is_retried() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &[]);
    // `mail` may reach the same IP on another port only: it must not get through.
    let other_port = if server.port == 65535 {
        1
    } else {
        server.port + 1
    };
    // `down` may reach a port where nothing listens: refused by the OS, retried.
    let dead_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = retrying()
        .channel("mail", smtp_login(server.port, other_port))
        .channel("down", smtp_login(dead_port, dead_port))
        .rule(rule("trial-ending", "mail"))
        .rule(rule("via-down", "down"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, _, stderr) = live(&config, &timeline, &db, PASSWORD);
    let by_rule = |r: &str| statuses_of_rule(&attempts, r);
    assert_eq!(by_rule("trial-ending"), ["failed"], "not retried: {stderr}");
    assert_eq!(
        by_rule("via-down"),
        ["failed", "failed", "dead"],
        "retried up to max_attempts"
    );
    let rows = deliveries(&config, &db);
    let denied = rows.iter().find(|r| r["rule"] == "trial-ending").unwrap();
    let error = denied["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("add \"tcp://127.0.0.1:{}\"", server.port))
            && error.contains("allowed_hosts"),
        "{error}"
    );
    assert!(denied["retry_at"].is_null(), "{denied}");
    let down = rows
        .iter()
        .find(|r| r["rule"] == "via-down" && r["attempt"] == 1)
        .unwrap();
    let error = down["error"].as_str().unwrap();
    assert!(error.contains("refused the connection"), "{error}");
    assert!(down["retry_at"].is_string(), "{down}");
    assert!(
        server.events().iter().all(|e| e["event"] != "connect"),
        "the server must see no connection: {:?}",
        server.events()
    );
    assert!(server.messages().is_empty());
}

#[test]
fn smtp_relay_demanding_starttls_fails_in_plain_words() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &["--tls", "starttls"]);
    let config = retrying()
        .channel(
            "open",
            smtp(server.port, server.port).setting("auth", "none"),
        )
        .channel("authed", smtp_login(server.port, server.port))
        .rule(rule("via-open", "open"))
        .rule(rule("via-authed", "authed"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, _, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(
        attempts.len(),
        2,
        "one permanent failure each: {attempts:?}\n{stderr}"
    );
    assert!(
        attempts.iter().all(|a| a.status == "failed"),
        "{attempts:?}"
    );

    let rows = deliveries(&config, &db);
    for (rule, server_said) in [
        // Without a login the relay answers MAIL FROM with 530.
        ("via-open", "530 Must issue a STARTTLS command first"),
        // With one, the plugin sees AUTH is only offered after STARTTLS.
        ("via-authed", "offers AUTH only after STARTTLS"),
    ] {
        let r = rows.iter().find(|r| r["rule"] == rule).unwrap();
        let error = r["error"].as_str().unwrap();
        assert!(error.contains(server_said), "{rule}: {error}");
        assert!(error.contains("tls = \"starttls\""), "{rule}: {error}");
        assert!(r["retry_at"].is_null(), "{r}");
    }
    assert!(server.messages().is_empty());
    assert!(
        server.events().iter().all(|e| e["event"] != "auth"),
        "no credentials were offered to a server that wants TLS first"
    );
}

/// A test-only file of tests/fixtures/smtp-tls.
fn tls_fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/smtp-tls")
        .join(name)
        .display()
        .to_string()
}

/// The plugin logging in to 127.0.0.1:`port` over TLS (its `tls` setting
/// left to the default), trusting the test CA.
fn smtp_tls(port: u16) -> Channel {
    smtp_tls_trusting(port, Some("ca.pem"))
}

/// [`smtp_tls`] trusting the fixture `ca` besides the webpki roots, or
/// only them.
fn smtp_tls_trusting(port: u16, ca: Option<&str>) -> Channel {
    let channel = Channel::plugin("email-smtp")
        .allow(&format!("tcp://127.0.0.1:{port}"))
        .set("timeout", "10s");
    let channel = match ca {
        Some(ca) => channel.set("tls_ca_file", tls_fixture(ca)),
        None => channel,
    };
    channel
        .setting("host", "127.0.0.1")
        .setting("port", port)
        .setting("username", USER)
        .setting("password", env("TEST_SMTP_PASSWORD"))
        .setting("from_email", "noreply@acme.example")
}

/// `(event, tls)` of the server's EHLO, AUTH and MAIL events, in order.
fn tls_trail(server: &SmtpServer) -> Vec<(String, bool)> {
    server
        .events()
        .iter()
        .filter(|e| matches!(e["event"].as_str(), Some("ehlo" | "auth" | "mail")))
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["tls"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// STARTTLS by default (the port is neither 465 nor set otherwise): EHLO in
/// clear text, STARTTLS, the certificate verified against `tls_ca_file`,
/// EHLO again, and only then the login and the mail, all over TLS.
#[test]
fn smtp_starttls_delivers_with_a_login_over_a_verified_connection() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &["--tls", "starttls"]);
    let config = retrying()
        .channel("mail", smtp_tls(server.port))
        .rule(rule("trial-ending", "mail"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, stdout, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(
        statuses_of_rule(&attempts, "trial-ending"),
        ["delivered"],
        "{:?}\n{stderr}\n{}",
        deliveries(&config, &db),
        server.log()
    );
    let trail = tls_trail(&server);
    let at = |s: &str, tls: bool| (s.to_string(), tls);
    assert_eq!(
        trail,
        [
            at("ehlo", false),
            at("ehlo", true),
            at("auth", true),
            at("mail", true)
        ],
        "{:#?}",
        server.events()
    );
    let cleartext_ehlo = &server.events()[1];
    assert!(
        !cleartext_ehlo["offered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str().unwrap().starts_with("AUTH")),
        "the relay offers no login before TLS: {cleartext_ehlo}"
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["login"], USER);
    assert_eq!(
        messages[0]["parsed"]["subject"],
        "【Acme】您的试用将于4天后结束"
    );
    assert_not_leaked(&[PASSWORD], &[stdout, stderr]);

    // herald check names the TLS mode and whom the channel trusts.
    let out = run(herald()
        .args(["check", "--config"])
        .arg(&config)
        .env("TEST_SMTP_PASSWORD", PASSWORD));
    let checked = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "{checked}");
    assert!(
        checked.contains("tls: starttls") && checked.contains("ca.pem (1 certificate)"),
        "{checked}"
    );
    assert!(!checked.contains("clear text"), "{checked}");
}

/// `tls = "implicit"`: TLS from the first byte (SMTPS, port 465 style).
#[test]
fn smtp_implicit_tls_delivers() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &["--tls", "implicit"]);
    let config = retrying()
        .channel("mail", smtp_tls(server.port).setting("tls", "implicit"))
        .rule(rule("trial-ending", "mail"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, _, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(
        statuses_of_rule(&attempts, "trial-ending"),
        ["delivered"],
        "{:?}\n{stderr}\n{}",
        deliveries(&config, &db),
        server.log()
    );
    let at = |s: &str| (s.to_string(), true);
    assert_eq!(tls_trail(&server), [at("ehlo"), at("auth"), at("mail")]);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["tls"], true);
    assert_eq!(messages[0]["login"], USER);
}

/// A certificate no trusted CA signed (no tls_ca_file, or an unrelated CA),
/// and one for another name, fail permanently, saying so, before any login.
#[test]
fn smtp_tls_refuses_untrusted_and_misnamed_certificates() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &["--tls", "starttls"]);
    let misnamed = SmtpServer::start(
        &scratch,
        "misnamed",
        &[
            "--tls",
            "implicit",
            "--cert",
            &tls_fixture("wrong-name.pem"),
        ],
    );
    let config = retrying()
        .channel("no-ca", smtp_tls_trusting(server.port, None))
        .channel(
            "other-ca",
            smtp_tls_trusting(server.port, Some("other-ca.pem")),
        )
        .channel(
            "misnamed",
            smtp_tls(misnamed.port).setting("tls", "implicit"),
        )
        .rule(rule("via-no-ca", "no-ca"))
        .rule(rule("via-other-ca", "other-ca"))
        .rule(rule("via-misnamed", "misnamed"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, stdout, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(attempts.len(), 3, "{attempts:?}\n{stderr}");
    assert!(
        attempts.iter().all(|a| a.status == "failed"),
        "not retried: {attempts:?}"
    );
    let rows = deliveries(&config, &db);
    let error = |rule: &str| {
        let r = rows.iter().find(|r| r["rule"] == rule).unwrap();
        assert!(r["retry_at"].is_null(), "permanent: {r}");
        r["error"].as_str().unwrap().to_string()
    };
    let e = error("via-no-ca");
    assert!(
        e.contains("is not trusted") && e.contains("webpki roots)") && e.contains("tls_ca_file"),
        "{e}"
    );
    let e = error("via-other-ca");
    assert!(
        e.contains("is not trusted") && e.contains("other-ca.pem (1 certificate)"),
        "{e}"
    );
    let e = error("via-misnamed");
    assert!(e.contains("is not valid for the name 127.0.0.1"), "{e}");
    for s in [&server, &misnamed] {
        assert!(s.messages().is_empty());
        assert!(
            s.events().iter().all(|e| e["event"] != "auth"),
            "no login went to an unverified server: {:?}",
            s.events()
        );
    }
    assert_not_leaked(
        &[PASSWORD],
        &[stdout, stderr, serde_json::json!(rows).to_string()],
    );
}

/// With TLS required (the default) a relay that does not offer STARTTLS is
/// a permanent failure, not a quiet fall back to clear text; and a bad
/// `tls_ca_file` stops the deployment at `herald check`.
#[test]
fn smtp_without_starttls_is_refused_when_tls_is_required() {
    let scratch = Scratch::new();
    let server = SmtpServer::start(&scratch, "smtp", &[]);
    let config = retrying()
        .channel("mail", smtp_tls(server.port))
        .rule(rule("trial-ending", "mail"))
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", &customer("li-1", "李雷", "li@example.com"));
    let db = scratch.path("h.db");
    let (attempts, _, stderr) = live(&config, &timeline, &db, PASSWORD);
    assert_eq!(
        statuses_of_rule(&attempts, "trial-ending"),
        ["failed"],
        "{stderr}"
    );
    let rows = deliveries(&config, &db);
    let error = rows[0]["error"].as_str().unwrap();
    assert!(
        error.contains("does not offer STARTTLS") && error.contains("tls = \"starttls\""),
        "{error}"
    );
    assert!(rows[0]["retry_at"].is_null(), "{}", rows[0]);
    assert!(
        server
            .events()
            .iter()
            .all(|e| !matches!(e["event"].as_str(), Some("auth" | "mail"))),
        "neither the login nor the mail went out in clear text: {:?}",
        server.events()
    );

    let bad = retrying()
        .channel("mail", smtp_tls_trusting(server.port, Some("server.key")))
        .rule(rule("trial-ending", "mail"))
        .write_as(&scratch, "bad.toml");
    let out = run(herald()
        .args(["check", "--config"])
        .arg(&bad)
        .env("TEST_SMTP_PASSWORD", PASSWORD));
    let checked = text(&out.stdout) + &text(&out.stderr);
    assert!(!out.status.success(), "{checked}");
    assert!(
        checked.contains("tls_ca_file") && checked.contains("server.key holds no"),
        "{checked}"
    );
}
