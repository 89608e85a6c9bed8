//! `herald simulate`: a timeline replayed through the real engine and
//! plugins on a virtual clock, one JSON line per attempt on stdout, the
//! summary as a table on stderr, and on request as JSON (`--summary`) and
//! as an HTML page (`--report`); plugin HTTP recorded, answered from
//! fixtures (`--http`) or sent (`--live`); `--from-db` and `--compare` are
//! [`what_if`]'s.

use super::sim_outputs::{self, Outputs};
use super::{what_if, ConfigArgs};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use herald::config::Config;
use herald::plugin::http_policy::{
    FixtureResult, FixtureSet, HttpFixture, HttpMode, RecordedRequest, UNMATCHED_STATUS,
};
use herald::simulate::shards;
use herald::simulate::snapshot;
use herald::simulate::summary::{self, Summary};
use herald::store::Location;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Where the simulation's plugin HTTP goes.
pub enum Network {
    /// Recorded and answered `200 {}` (the default).
    Recorded,
    /// The network (`--live`).
    Live,
    /// Answered from this file's fixtures (`--http`).
    Fixtures(PathBuf),
}

impl Network {
    /// The plugins' HTTP mode; `sink` records under [`Network::Recorded`].
    fn mode(&self, sink: &Arc<Mutex<Vec<RecordedRequest>>>) -> Result<HttpMode> {
        Ok(match self {
            Network::Recorded => HttpMode::Sink(sink.clone()),
            Network::Live => HttpMode::Live,
            Network::Fixtures(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the HTTP fixtures {}", path.display()))?;
                let fixtures: Vec<HttpFixture> = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is not a JSON list of fixtures {{method, url, body?, response: {{status, headers?, body}}}}",
                        path.display()
                    )
                })?;
                HttpMode::Fixtures(Arc::new(FixtureSet::new(fixtures, true)))
            }
        })
    }
}

/// What became of the plugins' HTTP requests, for the closing line (and a
/// warning naming the first request no fixture answered).
fn http_outcome(mode: &HttpMode, sink: &Arc<Mutex<Vec<RecordedRequest>>>) -> String {
    match mode {
        HttpMode::Live => "HTTP went to the network".into(),
        HttpMode::Sink(_) => format!(
            "{} HTTP request(s) recorded",
            sink.lock().map(|s| s.len()).unwrap_or(0)
        ),
        HttpMode::Fixtures(set) => {
            let tally = set.tally();
            if tally.unmatched > 0 {
                let first = set.exchanges().into_iter().find_map(|e| match e.result {
                    FixtureResult::Unmatched { why } => {
                        Some(format!("{} {}: {why}", e.method, e.url))
                    }
                    _ => None,
                });
                eprintln!(
                    "warning: {} HTTP request(s) matched no fixture and were answered {UNMATCHED_STATUS}; add fixtures for them (first: {})",
                    tally.unmatched,
                    first.unwrap_or_default()
                );
            }
            format!(
                "{} HTTP request(s) answered from fixtures, {} matched none, {} outside allowed_hosts",
                tally.answered, tally.unmatched, tally.denied
            )
        }
    }
}

/// Replay `timeline` from `from` to `until`; failure when any operation was
/// refused. Without `--db` or `--live` the customers are split into `shards`
/// (one per core by default) simulated at once, each on its own scratch
/// database.
pub async fn simulate(
    args: ConfigArgs,
    timeline: Option<PathBuf>,
    (from, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    scope: what_if::Scope,
    network: Network,
    shards: Option<usize>,
    outputs: Outputs,
) -> Result<ExitCode> {
    let live = matches!(network, Network::Live);
    if scope.from_db || scope.compare.is_some() {
        if matches!(network, Network::Fixtures(_)) {
            anyhow::bail!("--http answers a timeline simulation's requests; --from-db and --compare record them: drop --http");
        }
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
    let http_mode = network.mode(&sink)?;
    let plan = shards::Plan {
        config: &config,
        from,
        until,
        http_mode: http_mode.clone(),
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
        "simulated {} → {}: {} operation(s) applied, {} refused, {} after --until; {} attempt(s); {}",
        from.to_rfc3339(),
        until.to_rfc3339(),
        outcome.applied,
        outcome.refused,
        outcome.after_until,
        outcome.attempts,
        http_outcome(&http_mode, &sink)
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
