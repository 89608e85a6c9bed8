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
    let url = fresh_postgres_database();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let (a, clock_a) = node(&config, &url, start).await;
    let (b, clock_b) = node(&config, &url, start).await;
    for i in 0..60 {
        let patch: CustomerPatch =
            serde_json::from_value(serde_json::json!({"external_id": format!("c{i}")})).unwrap();
        a.upsert_customer(&patch).await.unwrap();
    }
    let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
    let mut delivered = 0;
    for step in 0..200 {
        let now = start + Duration::milliseconds(100 * step);
        clock_a.set(now);
        clock_b.set(now);
        let (ra, rb) = tokio::join!(herald::tick::run(&a), herald::tick::run(&b));
        for r in ra.unwrap().into_iter().chain(rb.unwrap()) {
            if r.status == "delivered" {
                *per_second.entry(r.at.timestamp()).or_default() += 1;
                delivered += 1;
            }
        }
    }
    assert_eq!(delivered, 60, "every reminder went out: {per_second:?}");
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
    let url = fresh_postgres_database();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let (a, clock_a) = node(&config, &url, start).await;
    let (b, clock_b) = node(&config, &url, start).await;
    for i in 0..30 {
        let patch: CustomerPatch =
            serde_json::from_value(serde_json::json!({"external_id": format!("c{i}")})).unwrap();
        a.upsert_customer(&patch).await.unwrap();
    }
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    for step in 0..60 {
        let now = start + Duration::milliseconds(50 * step);
        clock_a.set(now);
        clock_b.set(now);
        let (ra, rb) = tokio::join!(herald::tick::run(&a), herald::tick::run(&b));
        for r in ra.unwrap().into_iter().chain(rb.unwrap()) {
            if r.status == "delivered" {
                *delivered.entry(r.customer).or_default() += 1;
            }
        }
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
