//! Shared helpers: locating the binary and plugins, scratch directories,
//! running commands, parsing `simulate` output, a scriptable fake HTTP
//! provider on loopback, `herald serve` as a child process, the config
//! builder ([`config`]), the one HTTP client ([`http`]) and headless
//! Chromium ([`browser`]).

#![allow(dead_code)]

pub mod browser;
pub mod config;
pub mod db;
pub mod http;

pub use browser::{chromium_dom, chromium_screenshot, file_url, Browser};
pub use config::{
    env, file, on_event, targeting, targeting_at, webhook, welcome, Channel, Config, Raw, Rule,
    ON_CREATED,
};
pub use db::{on_postgres, query_i64};
pub use http::{http, http_as, http_text, Request, Response};

use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host has a parent")
        .to_path_buf()
}

/// A plugin built by `scripts/build-plugins`.
/// A bundled plugin as it was built against the frozen `herald:plugin@0.1.0`
/// contract (`tests/fixtures/plugins-0.1.0/`, kept as vendors shipped it):
/// the host must keep loading and serving it.
pub fn plugin_built_for_0_1(name: &str) -> PathBuf {
    let path = repo_root()
        .join("tests/fixtures/plugins-0.1.0")
        .join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins (scripts/test does it for you)",
        path.display()
    );
    path
}

/// A command running the real binary with a shared compiled-plugin cache.
pub fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env(
        "HERALD_CACHE_DIR",
        repo_root().join("target/test-plugin-cache"),
    );
    cmd.env_remove("HERALD_CONFIG");
    cmd.env_remove("HERALD_DB");
    cmd.env_remove("HERALD_LOG");
    cmd
}

/// Run a command and capture everything.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run herald")
}

/// Text of a captured stream.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory for one test.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new database for this test, as `--db` takes it (see [`db`]).
    pub fn db(&self, name: &str) -> PathBuf {
        db::test_database(self.dir.path(), name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

/// One line of `herald simulate` output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attempt {
    pub at: String,
    pub customer: String,
    pub rule: String,
    pub channel: String,
    pub status: String,
    pub subject: String,
}

/// Parse simulate's stdout; every line must be a JSON object with exactly the documented keys.
pub fn parse_attempts(stdout: &str) -> Vec<Attempt> {
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            let obj = v.as_object().expect("object");
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(
                keys,
                ["at", "channel", "customer", "rule", "status", "subject"],
                "{line}"
            );
            let s = |k: &str| {
                obj[k]
                    .as_str()
                    .unwrap_or_else(|| panic!("{k} is not a string: {line}"))
                    .to_string()
            };
            Attempt {
                at: s("at"),
                customer: s("customer"),
                rule: s("rule"),
                channel: s("channel"),
                status: s("status"),
                subject: s("subject"),
            }
        })
        .collect()
}

/// Run `herald simulate` from `from` until `until` and return its attempts;
/// panics with stderr on failure.
pub fn simulate(
    config: &Path,
    timeline: &Path,
    (from, until): (&str, &str),
    extra: &[&str],
) -> (Vec<Attempt>, String) {
    let out = run(herald()
        .args(["simulate", "--config"])
        .arg(config)
        .arg("--timeline")
        .arg(timeline)
        .args(["--from", from, "--until", until])
        .args(extra));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "simulate failed: {stderr}");
    (parse_attempts(&text(&out.stdout)), stderr)
}

/// The `herald simulate` command for one day from `from`, ready for more arguments.
pub fn simulate_cmd(config: &Path, timeline: &Path, from: &str, until: &str) -> Command {
    let mut cmd = herald();
    cmd.args(["simulate", "--from", from, "--until", until, "--config"])
        .arg(config)
        .arg("--timeline")
        .arg(timeline);
    cmd
}

/// The day most tests simulate: 2026-03-01.
pub const MARCH_1: (&str, &str) = ("2026-03-01", "2026-03-02");

/// Run `herald simulate` from `from` until `until` into the database `db`,
/// with more arguments (`--live`, ...); panics with its stderr when it fails.
pub fn simulate_into(
    config: &Path,
    timeline: &Path,
    (from, until): (&str, &str),
    db: &Path,
    extra: &[&str],
) -> Output {
    let out = run(simulate_cmd(config, timeline, from, until)
        .arg("--db")
        .arg(db)
        .args(extra));
    assert!(
        out.status.success(),
        "simulate failed: {}",
        text(&out.stderr)
    );
    out
}

/// `herald simulate --live` from `from` until `until` into `db` with one more environment
/// variable (a secret the config names, a log level); panics with its
/// stderr when it fails. Its stdout and stderr.
pub fn simulate_live_with(
    config: &Path,
    timeline: &Path,
    (from, until): (&str, &str),
    db: &Path,
    (name, value): (&str, &str),
) -> [String; 2] {
    let out = run(simulate_cmd(config, timeline, from, until)
        .env(name, value)
        .args(["--live", "--db"])
        .arg(db));
    let [stdout, stderr] = [text(&out.stdout), text(&out.stderr)];
    assert!(out.status.success(), "simulate failed: {stderr}");
    [stdout, stderr]
}

/// Write `config` and start `herald simulate` on it with an empty
/// timeline: it must refuse before doing anything. Its stderr.
pub fn refusal(config: Config) -> String {
    let scratch = Scratch::new();
    let config = config.write(&scratch);
    let timeline = scratch.write("t.jsonl", "");
    expect_refusal(&mut simulate_cmd(
        &config,
        &timeline,
        "2026-01-01",
        "2026-01-02",
    ))
}

/// Run a simulate command that must fail before doing anything; returns its stderr.
pub fn expect_refusal(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "herald must refuse this input");
    assert!(
        text(&out.stdout).is_empty(),
        "nothing may run: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

/// `herald deliveries --json` rows.
pub fn deliveries(config: &Path, db: &Path) -> Vec<Value> {
    let out = run(herald()
        .args(["deliveries", "--json", "--limit", "100000", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db));
    assert!(
        out.status.success(),
        "deliveries failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// A timeline line: `id` signs up on 2026-03-01 at 09:00 with a name and
/// a phone number.
pub fn with_phone(id: &str, name: &str, phone: &str) -> String {
    serde_json::json!({"at": "2026-03-01T09:00:00Z", "op": "upsert",
           "customer": {"external_id": id, "name": name, "phone": phone}})
    .to_string()
}

/// `herald deliveries` as the table a person reads: stdout and stderr.
pub fn deliveries_table(config: &Path, db: &Path) -> [String; 2] {
    let out = run(herald()
        .args(["deliveries", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db));
    [text(&out.stdout), text(&out.stderr)]
}

/// The delivery rows of `customer`, in the order given.
pub fn customer_rows<'a>(rows: &'a [Value], customer: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["customer"] == customer).collect()
}

/// The one delivery row of `customer` (there must be exactly one).
pub fn only_row(rows: &[Value], customer: &str) -> Value {
    let mine = customer_rows(rows, customer);
    assert_eq!(mine.len(), 1, "{customer}: {mine:?}");
    mine[0].clone()
}

/// The error of the only delivery row, a failure that is not retried.
pub fn only_failure(rows: &[Value]) -> String {
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    assert!(rows[0]["retry_at"].is_null());
    rows[0]["error"].as_str().unwrap().to_string()
}

/// The first delivery row of `rule` for `customer`.
pub fn row_for<'a>(rows: &'a [Value], customer: &str, rule: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["customer"] == customer && r["rule"] == rule)
}

/// Fail if any of `secrets` is in any of `outputs`.
pub fn assert_not_leaked(secrets: &[&str], outputs: &[String]) {
    for output in outputs {
        for secret in secrets {
            assert!(!output.contains(secret), "a secret leaked: {output}");
        }
    }
}

/// Seconds from one RFC 3339 instant to another.
pub fn seconds_between(from: &str, to: &str) -> i64 {
    let at =
        |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"));
    (at(to) - at(from)).num_seconds()
}

/// A connection to a test database, for what no herald command shows,
/// and the runtime to drive it.
pub fn open_db(db: &Path) -> (tokio::runtime::Runtime, sqlx::SqliteConnection) {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let conn = runtime
        .block_on(sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            db.display()
        )))
        .expect("open the database");
    (runtime, conn)
}

/// A request the fake provider received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What the fake provider answers: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Hold the response this long before answering (simulates a hanging provider).
    pub delay: std::time::Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::json_text(status, body.to_string())
    }

    /// A JSON answer whose body is already text.
    pub fn json_text(status: u16, body: String) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
            delay: std::time::Duration::ZERO,
        }
    }
}

type Handler = dyn Fn(&Received, &[Received]) -> Reply + Send + Sync;

/// A real HTTP server on loopback whose answers a test scripts. It records
/// every request; the handler sees the request and all earlier ones.
pub struct FakeProvider {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeProvider {
    pub fn start(
        handler: impl Fn(&Received, &[Received]) -> Reply + Send + Sync + 'static,
    ) -> FakeProvider {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let log = received.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let log = log.clone();
            let handler = handler.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 16 << 20)
                    .await
                    .unwrap_or_default()
                    .to_vec();
                let request = Received {
                    method: parts.method.to_string(),
                    path: parts.uri.to_string(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect(),
                    body,
                };
                let reply = {
                    let mut seen = log.lock().unwrap();
                    let reply = handler(&request, &seen);
                    seen.push(request);
                    reply
                };
                if !reply.delay.is_zero() {
                    tokio::time::sleep(reply.delay).await;
                }
                let mut response = axum::http::Response::builder().status(reply.status);
                for (k, v) in &reply.headers {
                    response = response.header(k, v);
                }
                response.body(axum::body::Body::from(reply.body)).unwrap()
            }
        });
        runtime.spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        FakeProvider {
            addr,
            received,
            _runtime: runtime,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Wait up to `seconds` for `check` to return Some.
pub fn wait_for<T>(seconds: u64, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// A running `herald serve`, killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub base: String,
    pub stderr_log: PathBuf,
    /// An admin API token created for this server's database.
    pub token: String,
}

/// Create an API token with `herald token create`; returns the token.
pub fn create_token(config: &Path, db: &Path, role: &str, regions: &[&str]) -> String {
    let mut cmd = herald();
    cmd.args(["token", "create", "--role", role, "--config"])
        .arg(config)
        .arg("--db")
        .arg(db);
    for region in regions {
        cmd.args(["--region", region]);
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "token create failed: {}",
        text(&out.stderr)
    );
    let token = text(&out.stdout).trim().to_string();
    assert!(
        token.starts_with("hrld_"),
        "unexpected token output {token:?}"
    );
    token
}

impl Server {
    /// Start `herald serve` on a free loopback port and wait until it listens.
    pub fn start(config: &Path, db: &Path, scratch: &Scratch, log_name: &str) -> Server {
        use std::io::BufRead;
        let stderr_log = scratch.path(log_name);
        let token = create_token(config, db, "admin", &[]);
        let mut child = herald()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--db")
            .arg(db)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log).expect("log file"))
            .spawn()
            .expect("spawn herald serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "serve did not start: {line:?}; log: {}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                )
            })
            .to_string();
        Server {
            child,
            base,
            stderr_log,
            token,
        }
    }

    /// The URL of `path` (with its query) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Call the API at `path` with the admin token.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        http_as(&self.token, method, &self.url(path), body)
    }

    /// The customers suppressed on `channel` (first page of `GET /suppressions`), sorted.
    pub fn suppressed_on(&self, channel: &str) -> Vec<String> {
        let (status, list) = self.api("GET", "/suppressions", None);
        assert_eq!(status, 200, "{list}");
        let mut out: Vec<String> = list["suppressions"]
            .as_array()
            .unwrap_or_else(|| panic!("no suppressions list: {list}"))
            .iter()
            .filter(|s| s["channel"] == channel)
            .map(|s| s["customer"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    /// Sign up each `(external_id, phone)` through the API (named by its
    /// id) and wait until `rule` is delivered to all of them; the provider
    /// message id of each, in order.
    pub fn sign_up_phones<const N: usize>(
        &self,
        config: &Path,
        db: &Path,
        customers: &[(&str, &str); N],
        rule: &str,
    ) -> [String; N] {
        for (id, phone) in customers {
            let customer = serde_json::json!({"external_id": id, "name": id, "phone": phone});
            let (status, body) = self.api("POST", "/customers", Some(&customer.to_string()));
            assert_eq!(status, 200, "{body}");
        }
        let id_of = |rows: &[Value], customer: &str| {
            row_for(rows, customer, rule)
                .filter(|r| r["status"] == "delivered")
                .and_then(|r| r["provider_message_id"].as_str())
                .map(str::to_string)
        };
        let ids = wait_for(20, || {
            let rows = deliveries(config, db);
            customers
                .iter()
                .map(|(c, _)| id_of(&rows, c))
                .collect::<Option<Vec<String>>>()
        });
        let ids =
            ids.unwrap_or_else(|| panic!("`{rule}` was not sent to everyone: {}", self.log()));
        ids.try_into().expect("one id per customer")
    }

    /// Post an event of `kind` for each customer, then wait until `rule`
    /// has a delivery row for each; all the rows then.
    pub fn events_delivered(
        &self,
        config: &Path,
        db: &Path,
        customers: &[&str],
        kind: &str,
        rule: &str,
    ) -> Vec<Value> {
        for id in customers {
            let event = serde_json::json!({"customer": id, "kind": kind});
            let (status, body) = self.api("POST", "/events", Some(&event.to_string()));
            assert_eq!(status, 201, "{body}");
        }
        wait_for(20, || {
            let rows = deliveries(config, db);
            let all = customers.iter().all(|c| row_for(&rows, c, rule).is_some());
            all.then_some(rows)
        })
        .unwrap_or_else(|| panic!("`{rule}` was not sent to everyone: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
