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
