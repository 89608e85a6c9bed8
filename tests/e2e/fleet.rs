//! Several nodes on one PostgreSQL database (these tests always run on the
//! test server, whatever HERALD_TEST_DB says): what must hold for the
//! fleet, not per node.

use crate::support::db::fresh_postgres_database;
use crate::support::{welcome, Scratch};
use chrono::{DateTime, Duration, Utc};
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::customer::CustomerPatch;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
use herald::store::Location;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A node: a deployment of `config` on `url` with a virtual clock of its own.
async fn node(config: &Config, url: &str, start: DateTime<Utc>) -> (Herald, VirtualClock) {
    let clock = VirtualClock::new(start);
    let herald = Herald::open(
        config,
        OpenOptions {
            db: Some(Location::Server(url.to_string())),
            clock: Arc::new(clock.clone()),
            http_mode: HttpMode::Live,
        },
    )
    .await
    .unwrap();
    (herald, clock)
}

/// Two nodes of `config` on a fresh database with `customers` signed up
/// (c0, c1, ...), ticking together every `step_ms` virtual milliseconds
/// for `steps` steps; the delivered attempts of both.
async fn two_nodes_ticking(
    config: &Config,
    customers: usize,
    step_ms: i64,
    steps: i64,
) -> Vec<herald::tick::AttemptRecord> {
    let url = fresh_postgres_database();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let (a, clock_a) = node(config, &url, start).await;
    let (b, clock_b) = node(config, &url, start).await;
    for i in 0..customers {
        let patch: CustomerPatch =
            serde_json::from_value(serde_json::json!({"external_id": format!("c{i}")})).unwrap();
        a.upsert_customer(&patch).await.unwrap();
    }
    let mut delivered = Vec::new();
    for step in 0..steps {
        let now = start + Duration::milliseconds(step_ms * step);
        clock_a.set(now);
        clock_b.set(now);
        let (ra, rb) = tokio::join!(herald::tick::run(&a), herald::tick::run(&b));
        delivered.extend(
            ra.unwrap()
                .into_iter()
                .chain(rb.unwrap())
                .filter(|r| r.status == "delivered"),
        );
    }
    delivered
}

/// Two nodes tick at the same virtual instants over 60 due reminders on a
/// channel limited to 5/s: together they deliver at most 5 in any second
/// (each node alone would allow 5), and deliver all 60.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_rate_limit_holds_for_the_fleet() {
    let scratch = Scratch::new();
    let path = crate::support::Config::new()
        .set("scheduler", "batch", 50)
        .lines("channels.inbox", "builtin = \"inbox\"\nrate = \"5/s\"")
        .rule(welcome(&["inbox"]))
        .write(&scratch);
    let config = Config::load(&path).unwrap();
    let delivered = two_nodes_ticking(&config, 60, 100, 200).await;
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &delivered {
        *per_second.entry(r.at.timestamp()).or_default() += 1;
    }
    assert_eq!(
        delivered.len(),
        60,
        "every reminder went out: {per_second:?}"
    );
    assert!(
        per_second.values().all(|&n| n <= 5),
        "over 5 in a second: {per_second:?}"
    );
}

/// A config with a welcome rule and, if `renewal_days` is given, a date
/// rule that reminds that many days before `renews_on`.
fn strategy(scratch: &Scratch, name: &str, renewal_days: Option<u32>) -> Config {
    let mut builder = crate::support::Config::new()
        .inbox()
        .attribute("renews_on", "date")
        .rule(welcome(&["inbox"]));
    if let Some(days) = renewal_days {
        builder = builder.rule(crate::support::Rule::new(
            "renewal",
            &format!(
                r#"{{ on = "date", attribute = "renews_on", before = "{days}d", at = "09:00" }}"#
            ),
            &["inbox"],
            "Renewal",
            "Soon.",
        ));
    }
    Config::load(&builder.write_as(scratch, name)).unwrap()
}

async fn load(config: &Config, url: &str, start: DateTime<Utc>) -> Herald {
    Herald::load(
        config,
        OpenOptions {
            db: Some(Location::Server(url.to_string())),
            clock: Arc::new(VirtualClock::new(start)),
            http_mode: HttpMode::Live,
        },
    )
    .await
    .unwrap()
}

/// Three nodes start with the same new strategy at once: one of them plans
/// it for every customer (under the re-plan lock), the others find it done.
/// Then a node still running the earlier strategy cannot roll it back: it
/// is refused at start, and a running one stops claiming.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_changed_strategy_is_planned_once_and_never_rolled_back() {
    use herald::engine::StrategyState;
    let scratch = Scratch::new();
    let url = fresh_postgres_database();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let v1 = strategy(&scratch, "v1.toml", None);
    let v2 = strategy(&scratch, "v2.toml", Some(7));
    let first = node(&v1, &url, start).await.0;
    for i in 0..300 {
        let patch: CustomerPatch = serde_json::from_value(
            serde_json::json!({"external_id": format!("c{i}"), "attributes": {"renews_on": "2026-09-01"}}),
        )
        .unwrap();
        first.upsert_customer(&patch).await.unwrap();
    }
    let old = first;
    let nodes = [
        load(&v2, &url, start).await,
        load(&v2, &url, start).await,
        load(&v2, &url, start).await,
    ];
    let (a, b, c) = tokio::join!(
        nodes[0].replan_if_strategy_changed(),
        nodes[1].replan_if_strategy_changed(),
        nodes[2].replan_if_strategy_changed()
    );
    let mut states = [a.unwrap(), b.unwrap(), c.unwrap()];
    states.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        states,
        [
            StrategyState::InForce,
            StrategyState::InForce,
            StrategyState::Planned(300)
        ]
    );
    let pending = herald::store::probe::count(
        &old.store,
        herald::store::probe::Count::PendingOf("renewal"),
    )
    .await
    .unwrap();
    assert_eq!(pending, 300, "each customer has one renewal reminder");

    // The v1 node, still running: superseded, and it stops claiming.
    let v2_fingerprint = nodes[0].strategy_fingerprint.clone();
    assert_eq!(
        old.strategy_state().await.unwrap(),
        Some(StrategyState::Superseded(v2_fingerprint.clone()))
    );
    let why = herald::live::scheduler::fleet_problem(&old)
        .await
        .unwrap_or_default();
    assert!(why.contains("newer strategy"), "{why}");
    // A v1 node starting now is refused, and v2 stays in force.
    let refused = Herald::open(
        &v1,
        OpenOptions {
            db: Some(Location::Server(url.clone())),
            clock: Arc::new(VirtualClock::new(start)),
            http_mode: HttpMode::Live,
        },
    )
    .await
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap_or_default();
    assert!(refused.contains("roll the fleet back"), "{refused}");
    assert_eq!(
        nodes[1].strategy_state().await.unwrap(),
        Some(StrategyState::InForce)
    );
}

/// A node whose clock is an hour off the database server's refuses to
/// claim, saying why; one in step claims.
#[tokio::test]
async fn a_node_with_a_wrong_clock_does_not_claim() {
    let scratch = Scratch::new();
    let url = fresh_postgres_database();
    let config = strategy(&scratch, "h.toml", None);
    let in_step = node(&config, &url, Utc::now()).await.0;
    assert_eq!(herald::live::scheduler::fleet_problem(&in_step).await, None);
    let ahead = load(&config, &url, Utc::now() + Duration::hours(1)).await;
    let why = herald::live::scheduler::fleet_problem(&ahead)
        .await
        .unwrap_or_default();
    assert!(
        why.contains("clock is") && why.contains("off the database server's"),
        "{why}"
    );
}

/// Two nodes write events and customer changes for the same customers at
/// once, in opposite orders: every write is answered and stored. (A lost
/// race — deadlock, serialization failure — would be run again by
/// `store::retry`; this load did not provoke one on PostgreSQL 15.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_from_two_nodes_all_land() {
    use herald::engine::EventInput;
    let scratch = Scratch::new();
    let url = fresh_postgres_database();
    let config = strategy(&scratch, "h.toml", Some(7));
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let a = Arc::new(node(&config, &url, start).await.0);
    let b = Arc::new(load(&config, &url, start).await);
    let ids: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    for id in &ids {
        let patch: CustomerPatch =
            serde_json::from_value(serde_json::json!({"external_id": id})).unwrap();
        a.upsert_customer(&patch).await.unwrap();
    }
    let mut writers = Vec::new();
    for (n, herald) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let mut order = ids.clone();
        if n % 2 == 1 {
            order.reverse();
        }
        writers.push(tokio::spawn(async move {
            for round in 0..15 {
                let events: Vec<EventInput> = order
                    .iter()
                    .map(|id| {
                        serde_json::from_value(serde_json::json!({
                            "customer": id, "kind": "visit", "event_id": format!("{n}-{round}-{id}")
                        }))
                        .unwrap()
                    })
                    .collect();
                let items: Vec<_> = events.iter().map(|e| (e, None)).collect();
                for result in herald.record_events(&items).await.expect("a batch of events") {
                    result.expect("each event");
                }
                for id in &order {
                    let patch: CustomerPatch = serde_json::from_value(serde_json::json!({
                        "external_id": id, "attributes": {"renews_on": format!("2026-{:02}-01", 4 + round % 8)}
                    }))
                    .unwrap();
                    herald.upsert_customer(&patch).await.expect("a customer write");
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let events = herald::store::probe::count(&a.store, herald::store::probe::Count::Events)
        .await
        .unwrap();
    assert_eq!(events, 4 * 15 * 20, "every event was stored");
}

/// Each customer has three reminders due at once and a cap of one message a
/// day; two nodes claim in small batches at the same instants: every
/// customer gets exactly one message (each node alone would respect the
/// cap, but only for the rows it claimed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frequency_cap_holds_for_the_fleet() {
    let scratch = Scratch::new();
    let path = crate::support::Config::new()
        .set("scheduler", "batch", 4)
        .lines("strategy", r#"caps = [{ max = 1, per = "1d" }]"#)
        .inbox()
        .rule(welcome(&["inbox"]))
        .rule(crate::support::Rule::new(
            "tips",
            crate::support::ON_CREATED,
            &["inbox"],
            "Tips",
            "T",
        ))
        .rule(crate::support::Rule::new(
            "news",
            crate::support::ON_CREATED,
            &["inbox"],
            "News",
            "N",
        ))
        .write(&scratch);
    let config = Config::load(&path).unwrap();
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for r in two_nodes_ticking(&config, 30, 50, 60).await {
        *delivered.entry(r.customer).or_default() += 1;
    }
    assert_eq!(
        delivered.len(),
        30,
        "every customer got a message: {delivered:?}"
    );
    assert!(
        delivered.values().all(|&n| n == 1),
        "a customer got more than the cap: {delivered:?}"
    );
}

/// `ci` by default, `full` under `HERALD_FLEET_FULL=1`.
fn scale<T>(ci: T, full: T) -> T {
    if std::env::var("HERALD_FLEET_FULL").is_ok_and(|v| v.trim() == "1") {
        full
    } else {
        ci
    }
}

/// What the fleet's provider saw: each request's arrival and key.
#[derive(Default)]
struct Seen {
    arrivals: Vec<(std::time::SystemTime, String, String)>,
    ids: std::collections::HashMap<String, String>,
}

/// Three `herald serve` nodes on one PostgreSQL database; customers posted
/// to one of them, each with two reminders due at once under a cap of one
/// message a day, through a webhook limited to 60/s (200/s full size) whose receiver
/// honours idempotency keys. Two nodes are SIGKILLed mid-send and
/// restarted. Afterwards every customer has exactly one delivered
/// reminder and one delivered row, the receiver saw every key, and no
/// second saw more than the rate. CI size 600 customers;
/// `HERALD_FLEET_FULL=1` runs 10,000.
#[test]
fn three_nodes_deliver_everything_once_through_kills() {
    use crate::support::{query_i64, webhook, Reply, Server};
    let customers: usize = scale(600, 10_000);
    let rate = scale(60, 200);
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    let provider = crate::support::FakeProvider::start(move |req, _| {
        let key = req.header("idempotency-key").unwrap_or("").to_string();
        let customer = req.json()["recipient"]["customer_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut seen = log.lock().unwrap();
        seen.arrivals
            .push((std::time::SystemTime::now(), key.clone(), customer));
        let next = format!("msg-{}", seen.ids.len() + 1);
        let id = seen.ids.entry(key).or_insert(next).clone();
        Reply::json(200, serde_json::json!({"id": id}))
    });
    let scratch = Scratch::new();
    let config = crate::support::Config::new()
        .tick("100ms")
        .set("scheduler", "lease", "3s")
        .set("scheduler", "batch", 50)
        .lines("strategy", r#"caps = [{ max = 1, per = "1d" }]"#)
        .channel(
            "hook",
            webhook(&provider, "/hook", "fleet-secret").set("rate", format!("{rate}/s").as_str()),
        )
        .rule(welcome(&["hook"]))
        .rule(crate::support::Rule::new(
            "tips",
            crate::support::ON_CREATED,
            &["hook"],
            "Tips",
            "T",
        ))
        .write(&scratch);
    let db = std::path::PathBuf::from(fresh_postgres_database());
    let mut nodes: Vec<Server> = (0..3)
        .map(|n| Server::start(&config, &db, &scratch, &format!("node{n}.log")))
        .collect();
    let ids: Vec<String> = (0..customers).map(|i| format!("c{i:05}")).collect();
    for chunk in ids.chunks(500) {
        let body: Vec<_> = chunk
            .iter()
            .map(|id| serde_json::json!({"external_id": id}))
            .collect();
        let (status, answer) = nodes[0].api(
            "POST",
            "/customers",
            Some(&serde_json::Value::from(body).to_string()),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let distinct = || seen.lock().unwrap().ids.len();
    for (victim, at) in [(1, customers / 4), (2, customers / 2)] {
        crate::support::wait_for(120, || (distinct() >= at).then_some(()))
            .unwrap_or_else(|| panic!("the fleet stalled before {at} sends"));
        nodes[victim].child.kill().expect("SIGKILL a node");
        nodes[victim].child.wait().ok();
        nodes[victim] = Server::start(&config, &db, &scratch, &format!("node{victim}-again.log"));
    }
    let delivered = || {
        query_i64(
            &db,
            "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
        )
        .unwrap_or(0)
    };
    crate::support::wait_for(180, || (delivered() >= customers as i64).then_some(()))
        .unwrap_or_else(|| panic!("only {} of {customers} delivered", delivered()));
    std::thread::sleep(std::time::Duration::from_secs(1));
    drop(nodes);

    let twice = query_i64(
        &db,
        "SELECT COUNT(*) FROM (SELECT schedule_id FROM deliveries WHERE status = 'delivered'
                               GROUP BY schedule_id HAVING COUNT(*) > 1) AS twice",
    );
    assert_eq!(twice, Some(0), "an occurrence has two delivered rows");
    let over_cap = query_i64(
        &db,
        "SELECT COUNT(*) FROM (SELECT customer_id FROM deliveries WHERE status = 'delivered'
                               GROUP BY customer_id HAVING COUNT(*) > 1) AS over",
    );
    assert_eq!(over_cap, Some(0), "a customer got more than the cap");
    assert_eq!(
        delivered(),
        customers as i64,
        "one delivered row per customer"
    );
    let seen = seen.lock().unwrap();
    let mut keys_per_customer: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for (at, key, customer) in &seen.arrivals {
        keys_per_customer.entry(customer).or_default().insert(key);
        let second = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        *per_second.entry(second).or_default() += 1;
    }
    assert_eq!(seen.ids.len(), customers, "the receiver saw every key");
    assert!(
        keys_per_customer.values().all(|keys| keys.len() == 1),
        "a customer was sent two different reminders"
    );
    // The limiter spaces grants evenly; the time between a grant and the
    // request's arrival moves a few requests across a second's boundary.
    let ceiling = rate + rate / 20;
    assert!(
        per_second.values().all(|&n| n <= ceiling),
        "over {rate}/s (+5% for arrival jitter): {per_second:?}"
    );
    eprintln!(
        "fleet: {customers} customers, {} requests, busiest second {}",
        seen.arrivals.len(),
        per_second.values().max().unwrap_or(&0)
    );
}
