//! Proof under load and faults: chaos tests that stop by themselves and talk
//! to loopback only. They own three claims about the real `herald` binary and
//! the real plugins:
//!
//! - `sigkill_storm`: `herald serve` killed with SIGKILL at seeded
//!   pseudo-random moments (while a send hangs at the provider, or a random
//!   delay after a start, possibly mid-ingestion) and restarted on the same
//!   database still delivers every reminder exactly once as far as a provider
//!   that honours `Idempotency-Key` can tell, records each once, and leaves
//!   an intact SQLite file;
//! - `provider_outages`: a provider that is down (503), throttles (429 with
//!   `Retry-After`) or hangs past the channel timeout loses nothing; retries
//!   are spaced in virtual time by the configured backoff (±20% jitter, never
//!   sooner than `Retry-After`) and a reminder is dead only after its last
//!   attempt;
//! - `plugin_faults_at_volume`: about 1% of sends go to plugins that trap,
//!   loop forever or exhaust memory; those fail with the reason and every
//!   other send is delivered.
//!
//! Each test runs at a small scale by default (seconds in a debug build). The
//! full scale (10,000 reminders, 20 kills, ...) is:
//!
//! ```text
//! HERALD_CHAOS_FULL=1 cargo test -p herald --release --test e2e chaos -- --test-threads=1 --nocapture
//! ```
//!
//! `HERALD_CHAOS_SEED=<u64>` replays a storm's kill schedule (the seed in use
//! is printed).

use crate::fakes::codec::hmac_sha256_hex;
use crate::support::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether `HERALD_CHAOS_FULL=1` asks for the full scale.
fn full_scale() -> bool {
    std::env::var("HERALD_CHAOS_FULL").is_ok_and(|v| v.trim() == "1")
}

/// `ci` by default, `full` under `HERALD_CHAOS_FULL=1`.
fn scale<T>(ci: T, full: T) -> T {
    if full_scale() {
        full
    } else {
        ci
    }
}

/// A small deterministic generator (SplitMix64), so a seed replays a storm.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `PRAGMA integrity_check` of a database file, through the sqlx the host uses.
fn integrity_check(db: &Path) -> String {
    let (runtime, mut conn) = open_db(db);
    let rows: Vec<String> = runtime
        .block_on(sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut conn))
        .expect("PRAGMA integrity_check");
    rows.join("; ")
}

/// Parse an RFC 3339 timestamp from `herald deliveries --json`.
fn instant(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad timestamp {text}: {e}"))
        .to_utc()
}

/// `herald deliveries` rows grouped by occurrence key, each group in attempt order.
fn by_occurrence(rows: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for row in rows {
        let key = row["occurrence_key"]
            .as_str()
            .unwrap_or_else(|| panic!("row without occurrence_key: {row}"))
            .to_string();
        groups.entry(key).or_default().push(row.clone());
    }
    for group in groups.values_mut() {
        group.sort_by_key(|r| r["attempt"].as_i64().unwrap_or(0));
    }
    groups
}

// ---------------------------------------------------------------------------
// sigkill_storm
// ---------------------------------------------------------------------------

const STORM_SECRET: &str = "whsec-storm-7d1e";

/// What the storm's provider has accepted, by idempotency key.
#[derive(Default)]
struct Ledger {
    accepted: HashMap<String, Accepted>,
    /// Hang (and count as accepted) the request whose new key brings the
    /// number of distinct keys to at least this; the test then kills herald
    /// while it waits for the answer.
    hang_at: Option<usize>,
    hung: bool,
    /// Requests refused for a bad signature, key or body.
    refused: Vec<String>,
}

struct Accepted {
    customer: String,
    name: String,
    message_id: String,
    requests: usize,
}

/// A webhook receiver that checks the HMAC signature, accepts each
/// idempotency key once and answers a repeated key with the original message
/// id (as Stripe-style receivers do), and hangs on cue.
fn storm_provider(ledger: Arc<Mutex<Ledger>>) -> FakeProvider {
    FakeProvider::start(move |req, _| {
        let mut ledger = ledger.lock().unwrap();
        let signature = req.header("x-herald-signature").unwrap_or("");
        if req.method != "POST" || req.path != "/hook" {
            ledger.refused.push(format!("{} {}", req.method, req.path));
            return Reply::json(404, json!({"error": "no such endpoint"}));
        }
        if signature != format!("sha256={}", hmac_sha256_hex(STORM_SECRET, &req.body)) {
            ledger.refused.push(format!("bad signature {signature}"));
            return Reply::json(401, json!({"error": "bad signature"}));
        }
        let Some(key) = req.header("idempotency-key").map(str::to_string) else {
            ledger.refused.push("no Idempotency-Key".into());
            return Reply::json(400, json!({"error": "Idempotency-Key is required"}));
        };
        let body = req.json();
        if body["idempotency_key"] != key.as_str() {
            ledger.refused.push(format!("body key differs from {key}"));
            return Reply::json(400, json!({"error": "idempotency_key mismatch"}));
        }
        let next_id = format!("evt_{}", ledger.accepted.len() + 1);
        let entry = ledger.accepted.entry(key).or_insert_with(|| Accepted {
            customer: body["recipient"]["customer_id"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: body["recipient"]["name"].as_str().unwrap_or("").to_string(),
            message_id: next_id,
            requests: 0,
        });
        entry.requests += 1;
        let fresh = entry.requests == 1;
        let mut reply = Reply::json(200, json!({"id": entry.message_id}));
        if fresh && ledger.hang_at.is_some_and(|t| ledger.accepted.len() >= t) {
            ledger.hang_at = None;
            ledger.hung = true;
            reply.delay = Duration::from_secs(300);
        }
        reply
    })
}

/// How one kill of the storm is timed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Once the provider has accepted this many distinct reminders, hang the
    /// next new one and kill herald while it waits (between send and record).
    WhileSending(usize),
    /// Once the provider has accepted this many distinct reminders, this much
    /// later (mid-batch: some answers in, nothing recorded yet, or between
    /// batches).
    AfterProgress(usize, Duration),
    /// This long after the server started listening (mid-start-up,
    /// mid-ingestion, mid-claim).
    AtStart(Duration),
}

/// POSTs the remaining customer batches to `base` until done or the server
/// dies; `posted` counts the batches herald confirmed.
fn spawn_poster(
    base: String,
    token: String,
    batches: Arc<Vec<String>>,
    posted: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let url = format!("{base}/customers");
        loop {
            let next = posted.load(Ordering::SeqCst);
            let Some(batch) = batches.get(next) else {
                return Ok(());
            };
            // A dead server is an `Err`, not a panic: this thread expects its
            // server to be killed under it.
            let answer = Request::post(&url)
                .bearer(&token)
                .json(batch)
                .read_timeout(Duration::from_secs(120))
                .try_send()
                .map(|a| (a.status, a.text()));
            match answer {
                Ok((200, body)) => {
                    // An answer cut off by the kill is no confirmation: the
                    // batch is posted again after the restart (the final
                    // round reports batches that never get confirmed).
                    let Ok(v) = serde_json::from_str::<Value>(&body) else {
                        return Ok(());
                    };
                    let results = v["results"].as_array().cloned().unwrap_or_default();
                    if let Some(bad) = results.iter().find(|r| r.get("ok").is_none()) {
                        return Err(format!("batch {next}: a customer was refused: {bad}"));
                    }
                    posted.store(next + 1, Ordering::SeqCst);
                }
                Ok((status, body)) => {
                    return Err(format!("batch {next}: HTTP {status}: {body}"));
                }
                // Killed under us: the batch is posted again after the restart.
                Err(_) => return Ok(()),
            }
        }
    })
}

#[test]
fn sigkill_storm() {
    let n: usize = scale(300, 10_000);
    let kills: usize = scale(5, 20);
    let per_batch: usize = scale(50, 500);
    let seed: u64 = std::env::var("HERALD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(20_260_301);
    let mut rng = Rng(seed);
    let mut thresholds: Vec<usize> = (0..kills)
        .map(|_| 1 + rng.below(n as u64 - 1) as usize)
        .collect();
    thresholds.sort_unstable();
    let mut plan: Vec<Kill> = thresholds
        .into_iter()
        .map(|t| match rng.below(3) {
            0 => Kill::WhileSending(t),
            1 => Kill::AfterProgress(t, Duration::from_millis(rng.below(50))),
            _ => Kill::AtStart(Duration::from_millis(rng.below(300))),
        })
        .collect();
    // At least one kill lands between a send and its record.
    if !plan.iter().any(|k| matches!(k, Kill::WhileSending(_))) {
        let middle = kills / 2;
        if let Kill::AfterProgress(t, _) = plan[middle] {
            plan[middle] = Kill::WhileSending(t);
        } else {
            plan[middle] = Kill::WhileSending(n / 2);
        }
    }
    eprintln!(
        "sigkill_storm: seed {seed} (HERALD_CHAOS_SEED={seed} replays it), {n} customers, {kills} kills: {plan:?}"
    );

    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let provider = storm_provider(ledger.clone());
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("100ms")
        .set("scheduler", "lease", "2s")
        .set("scheduler", "batch", 100)
        .retry(20, "1s", "5s")
        .channel(
            "hook",
            webhook(&provider, "/hook", STORM_SECRET).set("timeout", "10s"),
        )
        .rule(
            welcome(&["hook"])
                .set("subject", "Welcome {{ customer.name }}")
                .set("text", "Hello {{ customer.name }}"),
        )
        .write(&scratch);
    let db = scratch.db("herald.db");
    let name_of = |i: usize| format!("客户 {i} Ünï");
    let customers: Vec<Value> = (0..n)
        .map(|i| json!({"external_id": format!("c{i:05}"), "name": name_of(i)}))
        .collect();
    let batches: Arc<Vec<String>> = Arc::new(
        customers
            .chunks(per_batch)
            .map(|c| Value::Array(c.to_vec()).to_string())
            .collect(),
    );
    let posted = Arc::new(AtomicUsize::new(0));
    let distinct = || ledger.lock().unwrap().accepted.len();
    let started = Instant::now();
    let mut logs: Vec<std::path::PathBuf> = Vec::new();
    // Start herald on the database and a poster of the remaining batches.
    let start = |log: &str, logs: &mut Vec<std::path::PathBuf>| {
        let server = Server::start(&config, &db, &scratch, log);
        logs.push(server.stderr_log.clone());
        let poster = spawn_poster(
            server.base.clone(),
            server.token.clone(),
            batches.clone(),
            posted.clone(),
        );
        (server, poster)
    };
    let mut kills_mid_send = 0;

    for (round, kill) in plan.iter().enumerate() {
        let (mut server, poster) = start(&format!("serve{round}.log"), &mut logs);
        // Tight polls: the kill should land at the moment chosen.
        let reach = |threshold: usize, hang: bool| {
            {
                let mut l = ledger.lock().unwrap();
                l.hang_at = hang.then_some(threshold);
                l.hung = false;
            }
            let deadline = Instant::now() + Duration::from_secs(scale(120, 600));
            loop {
                let (hung, seen) = {
                    let l = ledger.lock().unwrap();
                    (l.hung, l.accepted.len())
                };
                if hung || seen >= n || (!hang && seen >= threshold) {
                    return hung;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the provider never reached {threshold} reminders (has {seen}); log: {}",
                    server.log()
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        match *kill {
            Kill::WhileSending(threshold) => {
                if reach(threshold, true) {
                    kills_mid_send += 1;
                }
            }
            Kill::AfterProgress(threshold, delay) => {
                reach(threshold, false);
                std::thread::sleep(delay);
            }
            Kill::AtStart(delay) => std::thread::sleep(delay),
        }
        server.child.kill().expect("SIGKILL herald serve");
        server.child.wait().expect("reap herald serve");
        ledger.lock().unwrap().hang_at = None;
        let log = server.log();
        drop(server);
        poster
            .join()
            .expect("poster thread")
            .unwrap_or_else(|e| panic!("round {round}: {e}; log: {log}"));
        eprintln!(
            "sigkill_storm: kill {} ({kill:?}) at {:?}: {} batches posted, {} reminders at the provider",
            round + 1,
            started.elapsed(),
            posted.load(Ordering::SeqCst),
            distinct()
        );
    }

    // The last start runs to completion.
    let (server, poster) = start("serve-final.log", &mut logs);
    let recorded = wait_for(scale(120, 900), || {
        if posted.load(Ordering::SeqCst) < batches.len() || distinct() < n {
            return None;
        }
        let rows = deliveries(&config, &db);
        (rows.iter().filter(|r| r["status"] == "delivered").count() >= n).then_some(())
    });
    if recorded.is_none() {
        panic!(
            "not everything was delivered: {} of {} batches posted, {} of {n} at the provider, {} delivered rows; log: {}",
            posted.load(Ordering::SeqCst),
            batches.len(),
            distinct(),
            deliveries(&config, &db)
                .iter()
                .filter(|r| r["status"] == "delivered")
                .count(),
            server.log()
        );
    }
    poster
        .join()
        .expect("poster thread")
        .unwrap_or_else(|e| panic!("final round: {e}"));
    // A last SIGKILL, then look at what is on disk.
    drop(server);
    let elapsed = started.elapsed();

    // The provider: one distinct delivery per customer; repeats only as
    // requests with an already accepted key.
    let ledger = ledger.lock().unwrap();
    assert!(ledger.refused.is_empty(), "{:?}", ledger.refused);
    let mut keys_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, accepted) in &ledger.accepted {
        keys_of
            .entry(accepted.customer.as_str())
            .or_default()
            .push(key);
    }
    for (i, customer) in customers.iter().enumerate() {
        let id = customer["external_id"].as_str().unwrap();
        let keys = keys_of.get(id).cloned().unwrap_or_default();
        assert_eq!(keys.len(), 1, "{id} got {} distinct deliveries", keys.len());
        assert_eq!(ledger.accepted[keys[0]].name, name_of(i), "{id}");
    }
    assert_eq!(keys_of.len(), n, "deliveries to unknown customers");
    let requests: usize = ledger.accepted.values().map(|a| a.requests).sum();
    let repeated = ledger.accepted.values().filter(|a| a.requests > 1).count();
    if kills_mid_send > 0 {
        assert!(
            repeated > 0,
            "{kills_mid_send} kills landed while a send hung: those reminders must have been sent again"
        );
    }

    // herald's own record: each occurrence delivered once, nothing else.
    let rows = deliveries(&config, &db);
    let others: Vec<&Value> = rows.iter().filter(|r| r["status"] != "delivered").collect();
    assert!(
        others.is_empty(),
        "attempts that did not deliver: {others:?}"
    );
    let groups = by_occurrence(&rows);
    assert_eq!(groups.len(), n, "one occurrence per customer");
    for (occurrence, group) in &groups {
        assert_eq!(group.len(), 1, "{occurrence} recorded twice: {group:?}");
        let key = format!("herald:{occurrence}");
        let accepted = ledger.accepted.get(&key).unwrap_or_else(|| {
            panic!("{key} recorded as delivered but never reached the provider")
        });
        assert_eq!(group[0]["customer"], accepted.customer.as_str());
        assert_eq!(
            group[0]["provider_message_id"],
            accepted.message_id.as_str(),
            "{key}: the recorded id is the one the provider issued"
        );
    }
    if !on_postgres() {
        // SQLite's file survived the kills; PostgreSQL's own recovery is its business.
        assert_eq!(integrity_check(&db), "ok");
    }
    for log in &logs {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(!log.contains("panicked"), "herald panicked: {log}");
    }
    eprintln!(
        "sigkill_storm: {n} reminders, {kills} SIGKILLs ({kills_mid_send} while a send hung), {requests} provider requests ({} repeated with a known idempotency key, over {repeated} reminders), {elapsed:?}",
        requests - n
    );
}

// ---------------------------------------------------------------------------
// provider_outages
// ---------------------------------------------------------------------------

const OUTAGE_SECRET: &str = "whsec-outage-0b5c";
/// `Retry-After` of the throttled group, longer than any backoff.
const THROTTLE_RETRY_AFTER: u64 = 5400;
/// The channel timeout, and how long the slow group's first answer takes.
const TIMEOUT: Duration = Duration::from_secs(1);
const HANG: Duration = Duration::from_secs(4);
const BASE: Duration = Duration::from_secs(600);
const MAX: Duration = Duration::from_secs(3600);

/// Requests per idempotency key, and the `down` group's running count.
#[derive(Default)]
struct OutageState {
    tries: HashMap<String, usize>,
    down_requests: usize,
}

/// A webhook receiver with a scripted bad day, by customer group:
/// - `down-*`: the first `outage` requests of the group get 503;
/// - `throttled-*`: the first try of a key gets 429 with `Retry-After: 5400`;
/// - `nudge-*`: the first try gets 429 with `Retry-After: 1` (less than the backoff);
/// - `slow-*`: the first try is accepted but answered after the channel timeout;
/// - everything else: 200. A repeated key gets the same message id.
fn outage_provider(outage: usize, state: Arc<Mutex<OutageState>>) -> FakeProvider {
    FakeProvider::start(move |req, _| {
        let signature = req.header("x-herald-signature").unwrap_or("");
        if signature != format!("sha256={}", hmac_sha256_hex(OUTAGE_SECRET, &req.body)) {
            return Reply::json(401, json!({"error": "bad signature"}));
        }
        let key = req.header("idempotency-key").unwrap_or("").to_string();
        let body = req.json();
        let customer = body["recipient"]["customer_id"].as_str().unwrap_or("");
        let mut state = state.lock().unwrap();
        let tries = {
            let t = state.tries.entry(key.clone()).or_default();
            *t += 1;
            *t
        };
        let ok = Reply::json(200, json!({"id": format!("msg-{key}")}));
        let throttle = |secs: u64| {
            let mut r = Reply::json(
                429,
                json!({"error": "rate_limited", "message": "slow down"}),
            );
            r.headers.push(("retry-after".into(), secs.to_string()));
            r
        };
        match customer.split('-').next().unwrap_or("") {
            "down" => {
                state.down_requests += 1;
                if state.down_requests <= outage {
                    return Reply::json(
                        503,
                        json!({"error": "service_unavailable", "message": "maintenance"}),
                    );
                }
                ok
            }
            "throttled" if tries == 1 => throttle(THROTTLE_RETRY_AFTER),
            "nudge" if tries == 1 => throttle(1),
            "slow" if tries == 1 => Reply { delay: HANG, ..ok },
            _ => ok,
        }
    })
}

struct Groups {
    down: usize,
    throttled: usize,
    nudge: usize,
    slow: usize,
}

/// What one outage day left behind: the delivery rows by occurrence, the
/// provider's requests per idempotency key, and simulate's lines.
struct OutageDay {
    occurrences: BTreeMap<String, Vec<Value>>,
    tries: HashMap<String, usize>,
    attempts: Vec<Attempt>,
}

/// One `herald simulate --live` day against a fresh outage provider.
fn outage_day(groups: &Groups, outage: usize, max_attempts: u32) -> OutageDay {
    let state: Arc<Mutex<OutageState>> = Arc::default();
    let provider = outage_provider(outage, state.clone());
    let scratch = Scratch::new();
    let seconds = |d: Duration| format!("{}s", d.as_secs());
    let config = Config::new()
        .retry(max_attempts, &seconds(BASE), &seconds(MAX))
        .channel(
            "hook",
            webhook(&provider, "/hook", OUTAGE_SECRET).set("timeout", seconds(TIMEOUT)),
        )
        .rule(welcome(&["hook"]).set("subject", "Welcome {{ customer.name }}"))
        .write(&scratch);
    let mut timeline = String::new();
    for (group, count) in [
        ("down", groups.down),
        ("throttled", groups.throttled),
        ("nudge", groups.nudge),
        ("slow", groups.slow),
    ] {
        for i in 0..count {
            timeline.push_str(
                &json!({"at": "2026-03-01T09:00:00Z", "op": "upsert",
                        "customer": {"external_id": format!("{group}-{i}"), "name": format!("{group} {i}")}})
                .to_string(),
            );
            timeline.push('\n');
        }
    }
    let timeline = scratch.write("t.jsonl", &timeline);
    let db = scratch.db("h.db");
    let out = run(simulate_cmd(&config, &timeline, "2026-03-01", "2026-03-03")
        .arg("--live")
        .arg("--db")
        .arg(&db));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "simulate failed: {stderr}");
    let attempts = parse_attempts(&text(&out.stdout));
    let rows = deliveries(&config, &db);
    assert_eq!(
        attempts.len(),
        rows.len(),
        "simulate printed every recorded attempt"
    );
    let tries = state.lock().unwrap().tries.clone();
    OutageDay {
        occurrences: by_occurrence(&rows),
        tries,
        attempts,
    }
}

/// Checks one occurrence's attempts against the retry policy; returns its
/// final status.
fn check_retries(
    occurrence: &str,
    group: &[Value],
    max_attempts: u32,
    retry_after: Option<Duration>,
) -> String {
    let ms = |d: chrono::TimeDelta| d.num_milliseconds();
    for (i, row) in group.iter().enumerate() {
        let attempt = i as u32 + 1;
        assert_eq!(
            row["attempt"], attempt,
            "{occurrence}: attempts numbered 1.. : {group:?}"
        );
        let last = i + 1 == group.len();
        let status = row["status"].as_str().unwrap_or("");
        if !last {
            assert_eq!(
                status, "failed",
                "{occurrence}: only the last attempt may end it: {group:?}"
            );
            let at = instant(&row["at"]);
            let retry_at = instant(&row["retry_at"]);
            let next_at = instant(&group[i + 1]["at"]);
            assert_eq!(
                next_at,
                retry_at,
                "{occurrence}: attempt {} runs exactly at the planned retry time",
                attempt + 1
            );
            let raw = BASE.saturating_mul(1 << (attempt - 1)).min(MAX);
            let low = (raw.as_millis() as i64) * 8 / 10;
            let high = ((raw.as_millis() as i64) * 12 / 10).min(MAX.as_millis() as i64);
            let delay = ms(retry_at - at);
            match retry_after {
                Some(hint) if hint.as_millis() as i64 > high => assert_eq!(
                    delay,
                    hint.as_millis() as i64,
                    "{occurrence}: a Retry-After longer than the backoff is the delay: {row}"
                ),
                _ => assert!(
                    (low - 1..=high + 1).contains(&delay),
                    "{occurrence}: retry {attempt} after {delay} ms, outside {low}..={high} ms (base {BASE:?} doubled, max {MAX:?}, ±20%): {row}"
                ),
            }
            if let Some(hint) = retry_after {
                assert!(
                    delay >= hint.as_millis() as i64,
                    "{occurrence}: retried {delay} ms after a Retry-After of {hint:?}"
                );
            }
        } else {
            match status {
                "delivered" => {}
                "dead" => {
                    assert_eq!(
                        attempt, max_attempts,
                        "{occurrence}: dead before its last attempt: {group:?}"
                    );
                    let error = row["error"].as_str().unwrap_or("");
                    assert!(
                        error.contains("giving up") && error.contains("503"),
                        "{occurrence}: the dead letter says why: {error}"
                    );
                }
                other => {
                    panic!("{occurrence}: ends {other}, neither delivered nor dead: {group:?}")
                }
            }
        }
        assert!(attempt <= max_attempts, "{occurrence}: {group:?}");
    }
    group.last().unwrap()["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn provider_outages() {
    let groups = Groups {
        down: scale(40, 2_000),
        throttled: scale(4, 200),
        nudge: scale(4, 200),
        slow: scale(3, 32),
    };
    // The outage outlasts everyone's first two attempts and half of the
    // third ones (retries are jittered by ±20%, so the waves do not overlap:
    // the 2nd attempts fall in 8..12 min, the 3rd in 24..36 min).
    let outage = groups.down * 5 / 2;
    let half = outage - 2 * groups.down;
    let total = groups.down + groups.throttled + groups.nudge + groups.slow;

    for max_attempts in [4u32, 3] {
        let started = Instant::now();
        let OutageDay {
            occurrences,
            tries,
            attempts,
        } = outage_day(&groups, outage, max_attempts);
        assert_eq!(occurrences.len(), total, "every reminder was attempted");
        let mut finals: BTreeMap<String, usize> = BTreeMap::new();
        let mut third_failed = 0;
        for (occurrence, group) in &occurrences {
            let customer = group[0]["customer"].as_str().unwrap().to_string();
            let kind = customer.split('-').next().unwrap();
            let retry_after = match kind {
                "throttled" => Some(Duration::from_secs(THROTTLE_RETRY_AFTER)),
                "nudge" => Some(Duration::from_secs(1)),
                _ => None,
            };
            let status = check_retries(occurrence, group, max_attempts, retry_after);
            // Every attempt reached the provider, and nothing else did.
            let key = format!("herald:{occurrence}");
            assert_eq!(
                tries.get(&key).copied().unwrap_or(0),
                group.len(),
                "{occurrence}: provider requests vs recorded attempts"
            );
            let last = group.last().unwrap();
            if status == "delivered" {
                assert_eq!(last["provider_message_id"], format!("msg-{key}"));
            }
            match kind {
                "down" => {
                    assert!(
                        group.len() >= 3,
                        "{occurrence}: the outage covers two waves"
                    );
                    if group[2]["status"] != "delivered" {
                        third_failed += 1;
                    }
                }
                "throttled" | "nudge" => {
                    assert_eq!(group.len(), 2, "{occurrence}: {group:?}");
                    assert!(group[0]["error"].as_str().unwrap_or("").contains("429"));
                }
                "slow" => {
                    assert_eq!(group.len(), 2, "{occurrence}: {group:?}");
                    let error = group[0]["error"].as_str().unwrap_or("");
                    assert!(
                        error.contains("timed out") || error.contains("timeout"),
                        "{occurrence}: a hanging provider times out: {error}"
                    );
                }
                other => panic!("unexpected customer group {other}"),
            }
            *finals.entry(status).or_default() += 1;
        }
        // The third wave is exactly half failing: with 4 attempts those need
        // the fourth and get through; with 3 they are dead, nobody else is.
        assert_eq!(
            third_failed, half,
            "max_attempts {max_attempts}: {finals:?}"
        );
        let dead = finals.get("dead").copied().unwrap_or(0);
        if max_attempts == 4 {
            assert_eq!(dead, 0, "nothing lost: {finals:?}");
        } else {
            assert_eq!(dead, half, "{finals:?}");
        }
        assert_eq!(finals.get("delivered").copied().unwrap_or(0), total - dead);
        let dead_lines = attempts.iter().filter(|a| a.status == "dead").count();
        assert_eq!(dead_lines, dead, "simulate prints each dead letter once");
        eprintln!(
            "provider_outages: max_attempts {max_attempts}: {total} reminders, {} attempts, {finals:?}, {:?}",
            attempts.len(),
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------
// plugin_faults_at_volume
// ---------------------------------------------------------------------------

/// The fault a customer's reminder is routed to, ~1% of customers.
fn fault_of(i: usize) -> &'static str {
    if i % 100 != 50 {
        return "none";
    }
    ["trap", "loop", "oom"][(i / 100) % 3]
}

fn faults_config() -> Config {
    let chaos = |mode: &str| Channel::plugin("chaos").setting("mode", mode);
    let mut config = Config::new()
        .retry(2, "1m", "1m")
        .attribute("fault", "string")
        .channel("ok", chaos("ok"))
        .channel("trap", chaos("trap"))
        .channel("loop", chaos("loop").set("timeout", "1s"))
        // Its memory cap must end it, not the run-time budget: allocating
        // 32 MiB can take longer than the default 50 ms on a loaded machine.
        .channel("oom", chaos("oom").set("memory", "32MiB").set("cpu", "5s"));
    for (rule, fault, channel) in [
        ("r-ok", "none", "ok"),
        ("r-trap", "trap", "trap"),
        ("r-loop", "loop", "loop"),
        ("r-oom", "oom", "oom"),
    ] {
        config = config.rule(
            Rule::new(rule, ON_CREATED, &[channel], "Hi {{ customer.name }}", "t")
                .set("when", format!("customer.fault == '{fault}'")),
        );
    }
    config
}

/// Simulates one day of `n` new customers with the given faults; returns the
/// delivery rows by occurrence and the wall time.
fn faults_day(n: usize, fault: impl Fn(usize) -> &'static str) -> (Vec<Value>, Duration) {
    let scratch = Scratch::new();
    let config = faults_config().write(&scratch);
    let mut timeline = String::new();
    for i in 0..n {
        timeline.push_str(
            &json!({"at": "2026-03-01T09:00:00Z", "op": "upsert",
                    "customer": {"external_id": format!("c{i:05}"), "name": format!("N{i}"),
                                 "attributes": {"fault": fault(i)}}})
            .to_string(),
        );
        timeline.push('\n');
    }
    let timeline = scratch.write("t.jsonl", &timeline);
    let db = scratch.db("h.db");
    let started = Instant::now();
    let (attempts, stderr) = simulate(&config, &timeline, MARCH_1, &["--db", db.to_str().unwrap()]);
    let elapsed = started.elapsed();
    let rows = deliveries(&config, &db);
    assert_eq!(attempts.len(), rows.len(), "{stderr}");
    (rows, elapsed)
}

#[test]
fn plugin_faults_at_volume() {
    let n = scale(300, 10_000);
    let (clean, clean_time) = faults_day(n, |_| "none");
    assert_eq!(clean.len(), n, "one attempt each");
    assert!(
        clean
            .iter()
            .all(|r| r["status"] == "delivered" && r["rule"] == "r-ok"),
        "{:?}",
        clean.iter().find(|r| r["status"] != "delivered")
    );

    let (faulty, faulty_time) = faults_day(n, fault_of);
    let occurrences = by_occurrence(&faulty);
    assert_eq!(
        occurrences.len(),
        n,
        "every customer's reminder was attempted"
    );
    let mut faulted = 0;
    for group in occurrences.values() {
        let customer = group[0]["customer"].as_str().unwrap();
        let i: usize = customer[1..].parse().unwrap();
        match fault_of(i) {
            "none" => {
                assert_eq!(group.len(), 1, "{customer}: {group:?}");
                assert_eq!(group[0]["status"], "delivered", "{customer}: {group:?}");
                assert_eq!(group[0]["channel"], "ok");
                assert_eq!(
                    group[0]["provider_message_id"],
                    format!(
                        "chaos-herald:{}",
                        group[0]["occurrence_key"].as_str().unwrap()
                    )
                );
            }
            fault => {
                faulted += 1;
                let statuses: Vec<&str> = group
                    .iter()
                    .map(|r| r["status"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    statuses,
                    ["failed", "dead"],
                    "{customer} ({fault}): retried once, then dead: {group:?}"
                );
                // A loop ends at its run-time budget, or at its wall-clock
                // timeout when many loops share the cores and none gets
                // through its budget in time.
                let reasons: &[&str] = match fault {
                    "trap" => &["trapped"],
                    "loop" => &["of run time", "timed out"],
                    _ => &["memory"],
                };
                for row in group {
                    assert_eq!(row["channel"], fault);
                    let error = row["error"].as_str().unwrap_or("");
                    assert!(
                        reasons.iter().any(|r| error.contains(r)),
                        "{customer} ({fault}): the error names the fault ({reasons:?}): {error}"
                    );
                }
            }
        }
    }
    assert_eq!(faulted, (0..n).filter(|&i| fault_of(i) != "none").count());
    let by_budget = faulty
        .iter()
        .filter(|r| r["error"].as_str().unwrap_or("").contains("of run time"))
        .count();
    eprintln!(
        "plugin_faults_at_volume: {n} sends; clean run {clean_time:?}; with {faulted} faulty (trap/loop/oom) {faulty_time:?} (throughput ratio {:.2}); {by_budget} loop attempts ended by their run-time budget, the others by their timeout",
        clean_time.as_secs_f64() / faulty_time.as_secs_f64()
    );
}
