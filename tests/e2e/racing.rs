//! Two schedulers on one database, ticking at the same moment: every
//! occurrence is claimed by exactly one of them and delivered once.

use crate::support::{welcome, Scratch};
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::customer::CustomerPatch;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
use herald::store::probe::{count, Count};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_ticks_deliver_each_occurrence_once() {
    let scratch = Scratch::new();
    // (`Config` here is the host's; the test's builder goes by its path.)
    let path = crate::support::Config::new()
        .set("scheduler", "batch", 25)
        .inbox()
        .rule(welcome(&["inbox"]).set("subject", "Welcome {{ customer.name }}"))
        .write(&scratch);
    let config = Config::load(&path).unwrap();
    let db = scratch.path("h.db");
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let open = || async {
        Herald::open(
            &config,
            OpenOptions {
                db: Some(herald::store::Location::Embedded(db.clone())),
                clock: Arc::new(VirtualClock::new(start)),
                http_mode: HttpMode::Live,
            },
        )
        .await
        .unwrap()
    };
    std::env::set_var(
        "HERALD_CACHE_DIR",
        crate::support::repo_root().join("target/test-plugin-cache"),
    );
    let a = open().await;
    let b = open().await;
    for i in 0..400 {
        let patch: CustomerPatch = serde_json::from_value(
            serde_json::json!({"external_id": format!("c{i}"), "name": format!("N{i}")}),
        )
        .unwrap();
        a.upsert_customer(&patch).await.unwrap();
    }
    let (from_a, from_b) = tokio::join!(herald::tick::drain(&a), herald::tick::drain(&b));
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(
        from_a.len() + from_b.len(),
        400,
        "a: {}, b: {}",
        from_a.len(),
        from_b.len()
    );
    let mut customers: Vec<String> = from_a
        .iter()
        .chain(&from_b)
        .map(|r| r.customer.clone())
        .collect();
    customers.sort();
    customers.dedup();
    assert_eq!(customers.len(), 400, "no customer got two welcomes");
    let inbox = count(&a.store, Count::InboxMessages).await.unwrap();
    let delivered = count(&a.store, Count::Delivered(None)).await.unwrap();
    assert_eq!((inbox, delivered), (400, 400));
}
