//! `herald bench --db postgres://...`: the tick on PostgreSQL, beside the
//! SQLite figures of the same run. On fresh databases of that server (named
//! `herald_bench_*`, dropped and made again each run), with the tick
//! bench's seed: one tick over the due rows (`pg_plan_rows_per_s`, and its
//! ratio to SQLite's), the claim + release floor on the same seed, and the
//! drain of the due reminders by one node and by three nodes at once
//! (`fleet_drain_ratio`: one node's time over three nodes'). Nodes and the
//! server share this machine's cores.

use super::{bench_config, figure, RULE};
use anyhow::{Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
use herald::store::{probe, probe_pg, Location};
use std::sync::Arc;
use std::time::Instant;

/// The moment the seeded reminders are due, and when they were planned.
fn t0() -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let t0 = Utc
        .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .context("bad start time")?;
    Ok((t0, t0 - ChronoDuration::days(90)))
}

/// A node on a fresh, seeded database `name` (the first node seeds it).
async fn seeded(
    server: &str,
    name: &str,
    customers: u64,
    due: u64,
    config: &Config,
) -> Result<(Herald, String)> {
    let (t0, planned_at) = t0()?;
    let url = probe_pg::create_database(server, name).await?;
    let herald = node(config, &url, t0).await?;
    let started = Instant::now();
    probe_pg::seed_renewals(&herald.store, customers, due, t0, planned_at, RULE).await?;
    eprintln!(
        "postgres: {name}: {customers} customers seeded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((herald, url))
}

async fn node(config: &Config, url: &str, t0: DateTime<Utc>) -> Result<Herald> {
    Herald::open(
        config,
        OpenOptions {
            db: Some(Location::Server(url.to_string())),
            clock: Arc::new(VirtualClock::new(t0)),
            http_mode: HttpMode::Live,
        },
    )
    .await
}

/// Run the PostgreSQL figures; `sqlite_rows_per_s` is this run's SQLite tick.
pub async fn postgres_bench(
    server: &str,
    customers: u64,
    due: u64,
    sqlite_rows_per_s: f64,
) -> Result<()> {
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let path = scratch.path().join("herald.toml");
    std::fs::write(&path, bench_config(due, None))?;
    let config = Config::load(&path)?;
    let (t0, _) = t0()?;

    let (tick_node, _) = seeded(server, "herald_bench_tick", customers, due, &config).await?;
    let started = Instant::now();
    let records = herald::tick::run(&tick_node).await?;
    let secs = started.elapsed().as_secs_f64();
    let rows_per_s = due as f64 / secs;
    figure!("pg_tick_seconds", "{secs:.3}");
    figure!("pg_plan_rows_per_s", "{rows_per_s:.0}");
    figure!(
        "pg_sqlite_ratio",
        "{:.3}",
        rows_per_s / sqlite_rows_per_s.max(1e-9)
    );
    if records.len() as u64 != due {
        eprintln!(
            "error=the PostgreSQL tick made {} attempts; expected {due}",
            records.len()
        );
    }

    let (floor_node, _) = seeded(server, "herald_bench_floor", customers, due, &config).await?;
    let started = Instant::now();
    let released = probe_pg::claim_release_floor(&floor_node.store, t0, due).await?;
    let floor_secs = started.elapsed().as_secs_f64();
    figure!(
        "pg_claim_release_floor_rows_per_s",
        "{:.0}",
        released as f64 / floor_secs
    );
    figure!("pg_plan_floor_ratio", "{:.3}", floor_secs / secs);

    let one = drain(server, "herald_bench_one", customers, due, &config, 1).await?;
    let three = drain(server, "herald_bench_three", customers, due, &config, 3).await?;
    figure!("pg_drain_1_node_seconds", "{one:.3}");
    figure!("pg_drain_3_nodes_seconds", "{three:.3}");
    figure!("fleet_drain_ratio", "{:.3}", one / three.max(1e-9));
    Ok(())
}

/// Seconds for `nodes` nodes, draining at once, to leave nothing due.
async fn drain(
    server: &str,
    name: &str,
    customers: u64,
    due: u64,
    config: &Config,
    nodes: usize,
) -> Result<f64> {
    let (first, url) = seeded(server, name, customers, due, config).await?;
    let (t0, _) = t0()?;
    let mut fleet = vec![first];
    for _ in 1..nodes {
        fleet.push(node(config, &url, t0).await?);
    }
    let started = Instant::now();
    let drains = fleet.iter().map(herald::tick::drain);
    let sent: usize = futures::future::try_join_all(drains)
        .await?
        .iter()
        .map(Vec::len)
        .sum();
    let secs = started.elapsed().as_secs_f64();
    let left = probe::count(&fleet[0].store, probe::Count::DueBy(t0)).await?;
    if sent as u64 != due || left != 0 {
        eprintln!("error={nodes} node(s) sent {sent} of {due}; {left} still due");
    }
    Ok(secs)
}
