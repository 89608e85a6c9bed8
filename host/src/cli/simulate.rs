//! `herald simulate`: a timeline replayed through the real engine and
//! plugins on a virtual clock, one JSON line per attempt on stdout.

use super::ConfigArgs;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use herald::config::Config;
use herald::plugin::http_policy::HttpMode;
use herald::simulate::shards;
use herald::store::Location;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Replay `timeline` from `from` to `until`; failure when any operation was
/// refused. Without `--db` the customers are split into `shards` (one per
/// core by default) simulated at once, each on its own scratch database.
pub async fn simulate(
    args: ConfigArgs,
    timeline: PathBuf,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    live: bool,
    shards: Option<usize>,
) -> Result<ExitCode> {
    if until < from {
        anyhow::bail!("--until ({until}) is before --from ({from})");
    }
    let config = Config::load(&args.config)?;
    let ops = herald::simulate::load_timeline(&timeline)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let customers = ops
        .iter()
        .map(herald::simulate::shards::customer_of)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let databases = databases(&args, shards, live, customers, scratch.path())?;
    let sink = Arc::new(Mutex::new(Vec::new()));
    let plan = shards::Plan {
        config: &config,
        from,
        until,
        http_mode: if live {
            HttpMode::Live
        } else {
            HttpMode::Sink(sink.clone())
        },
        databases,
    };
    let timelines = shards::split(ops, plan.databases.len());
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut print =
        |record: &herald::tick::AttemptRecord| herald::simulate::print_record(&mut out, record);
    let mut bar = herald::simulate::progress::Bar::new(customers, from, until);
    let summary = tokio::task::block_in_place(|| {
        shards::run(plan, timelines, &mut print, &mut |p| bar.update(p))
    });
    bar.finish();
    let summary = summary?;
    out.flush()?;
    eprintln!(
        "simulated {} → {}: {} operation(s) applied, {} refused, {} after --until; {} attempt(s); {} HTTP request(s) recorded",
        from.to_rfc3339(),
        until.to_rfc3339(),
        summary.applied,
        summary.refused,
        summary.after_until,
        summary.attempts,
        sink.lock().map(|s| s.len()).unwrap_or(0)
    );
    Ok(if summary.refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The database of each shard: the one `--db` names (one shard), or a
/// scratch file per shard. A `--live` run is one shard: its plugins reach
/// real providers and must share their key-value state (access tokens, say)
/// as they do in a deployment.
fn databases(
    args: &ConfigArgs,
    shards: Option<usize>,
    live: bool,
    customers: usize,
    scratch: &std::path::Path,
) -> Result<Vec<Location>> {
    let many = shards.is_some_and(|n| n > 1);
    if let Some(db) = args.db()? {
        if many {
            anyhow::bail!("--db keeps the whole simulation in that one database: leave out --shards (or give --shards 1)");
        }
        return Ok(vec![db]);
    }
    if live {
        if many {
            anyhow::bail!("--live runs in one shard (its plugins talk to real providers and share their key-value state, such as access tokens, as in a deployment): leave out --shards");
        }
        return Ok(vec![Location::Embedded(scratch.join("simulate.db"))]);
    }
    let count = match shards {
        Some(0) => anyhow::bail!("--shards must be at least 1"),
        Some(n) => n.min(customers.max(1)),
        None => shards::default_shards(customers),
    };
    Ok((0..count)
        .map(|i| Location::Embedded(scratch.join(format!("shard-{i}.db"))))
        .collect())
}
