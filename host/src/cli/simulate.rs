//! `herald simulate`: a timeline replayed through the real engine and
//! plugins on a virtual clock, one JSON line per attempt on stdout, the
//! summary as a table on stderr, and on request as JSON (`--summary`) and
//! as an HTML page (`--report`); `--from-db` and `--compare` are
//! [`what_if`]'s.

use super::sim_outputs::{self, Outputs};
use super::{what_if, ConfigArgs};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use herald::config::Config;
use herald::plugin::http_policy::HttpMode;
use herald::simulate::shards;
use herald::simulate::snapshot;
use herald::simulate::summary::{self, Summary};
use herald::store::Location;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Replay `timeline` from `from` to `until`; failure when any operation was
/// refused. Without `--db` or `--live` the customers are split into `shards`
/// (one per core by default) simulated at once, each on its own scratch
/// database.
pub async fn simulate(
    args: ConfigArgs,
    timeline: Option<PathBuf>,
    (from, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    scope: what_if::Scope,
    live: bool,
    shards: Option<usize>,
    outputs: Outputs,
) -> Result<ExitCode> {
    if scope.from_db || scope.compare.is_some() {
        return what_if::run(args, timeline, (from, until), scope, live, &outputs).await;
    }
    let (from, until) = snapshot::period(from, until, scope.length.as_deref(), None)?;
    let timeline = timeline.context("give --timeline (a JSON-lines file of operations), or --from-db to start from the deployment's database")?;
    let config = Config::load(&args.config)?;
    let facts = summary::channel_facts(&config)?;
    let ops = herald::simulate::load_timeline(&timeline)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let customers = ops
        .iter()
        .map(herald::simulate::shards::customer_of)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let databases = databases(&args, &config, shards, live, customers, scratch.path())?;
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
    let mut counted = Summary::new(&facts);
    let mut print = |record: &herald::tick::AttemptRecord| {
        herald::simulate::print_record(&mut out, record)?;
        counted.add(record)
    };
    let mut bar = herald::simulate::progress::Bar::new(customers, from, until);
    let outcome = tokio::task::block_in_place(|| {
        shards::run(plan, timelines, &mut print, &mut |p| bar.update(p))
    });
    bar.finish();
    let outcome = outcome?;
    out.flush()?;
    eprintln!(
        "simulated {} → {}: {} operation(s) applied, {} refused, {} after --until; {} attempt(s); {} HTTP request(s) recorded",
        from.to_rfc3339(),
        until.to_rfc3339(),
        outcome.applied,
        outcome.refused,
        outcome.after_until,
        outcome.attempts,
        sink.lock().map(|s| s.len()).unwrap_or(0)
    );
    sim_outputs::finish_summary(counted, &facts, (from, until), &outputs)?;
    Ok(if outcome.refused == 0 {
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
    config: &Config,
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
        None => shards::default_shards(config, customers),
    };
    Ok((0..count)
        .map(|i| Location::Embedded(scratch.join(format!("shard-{i}.db"))))
        .collect())
}
