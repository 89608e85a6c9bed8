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
    let db = scratch.db("h.db");
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let open = || async {
        Herald::open(
            &config,
            OpenOptions {
                db: Some(
                    herald::store::Location::parse(&db.to_string_lossy(), std::path::Path::new(""))
                        .unwrap(),
                ),
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

/// Four claimers, each with its own connection pool (as four nodes have),
/// claim small batches of 1,000 due reminders at the same time until none
/// is left: every row is claimed by exactly one of them, and none is left
/// behind. On PostgreSQL this is `FOR UPDATE SKIP LOCKED`'s job (a plain
/// `UPDATE ... WHERE id IN (SELECT ... LIMIT n)` lets two sessions take the
/// same rows); on SQLite, its single writer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_row_and_leave_none() {
    use herald::store::{schedule, Location, Store};
    let scratch = Scratch::new();
    let path = crate::support::Config::new()
        .inbox()
        .rule(welcome(&["inbox"]))
        .write(&scratch);
    let config = Config::load(&path).unwrap();
    let db = scratch.db("h.db");
    let location = Location::parse(&db.to_string_lossy(), std::path::Path::new("")).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
        .unwrap()
        .to_utc();
    let herald = Herald::open(
        &config,
        OpenOptions {
            db: Some(location.clone()),
            clock: Arc::new(VirtualClock::new(start)),
            http_mode: HttpMode::Live,
        },
    )
    .await
    .unwrap();
    for i in 0..1000 {
        let patch: CustomerPatch =
            serde_json::from_value(serde_json::json!({"external_id": format!("c{i}")})).unwrap();
        herald.upsert_customer(&patch).await.unwrap();
    }
    let lease = start + chrono::Duration::minutes(5);
    let mut claimers = Vec::new();
    for n in 0..4 {
        let store = Store::open(&location).await.unwrap();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for round in 0.. {
                // Unique per claim, as each tick's is.
                let token = format!("claimer-{n}-{round}");
                let rows = schedule::claim_due(&store, start, lease, 7, &token)
                    .await
                    .unwrap();
                if rows.is_empty() {
                    return mine;
                }
                assert!(rows.len() <= 7, "a claim takes at most its batch");
                mine.extend(rows.into_iter().map(|r| r.id));
            }
            unreachable!()
        }));
    }
    let mut all = Vec::new();
    let mut per_claimer = Vec::new();
    for c in claimers {
        let mine = c.await.unwrap();
        per_claimer.push(mine.len());
        all.extend(mine);
    }
    let claimed = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all.len(),
        claimed,
        "a row was claimed twice: {per_claimer:?}"
    );
    assert_eq!(claimed, 1000, "every due row was claimed: {per_claimer:?}");
    assert_eq!(count(&herald.store, Count::DueBy(start)).await.unwrap(), 0);
}
