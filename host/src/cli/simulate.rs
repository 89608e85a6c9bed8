//! `herald simulate`: a timeline replayed through the real engine and
//! plugins on a virtual clock, one JSON line per attempt on stdout, the
//! summary as a table on stderr, and on request as JSON (`--summary`) and
//! as an HTML page (`--report`); `--from-db` and `--compare` are
//! [`what_if`]'s.

use super::{what_if, ConfigArgs};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use herald::config::Config;
use herald::plugin::http_policy::HttpMode;
use herald::simulate::shards;
use herald::simulate::snapshot;
use herald::simulate::summary::{self, Summary, SummaryReport};
use herald::store::Location;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Where the summary goes besides stderr.
#[derive(Debug, Args)]
pub struct Outputs {
    /// Also write the summary as JSON to this file (fields in the README).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Also write the summary as one self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
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
    finish_summary(counted, &facts, (from, until), &outputs)?;
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

/// Print the summary of a run on stderr, and write it where `--summary` and
/// `--report` ask.
pub(super) fn finish_summary(
    counted: Summary,
    facts: &std::collections::BTreeMap<String, summary::ChannelFacts>,
    (from, until): (DateTime<Utc>, DateTime<Utc>),
    outputs: &Outputs,
) -> Result<()> {
    let report = counted.report(facts, from, until)?;
    write_outputs(&report, outputs)?;
    eprint!("\n{}", summary::render_text(&report));
    Ok(())
}

impl Outputs {
    /// Whether a summary file or page was asked for.
    pub(super) fn any(&self) -> bool {
        self.summary.is_some() || self.report.is_some()
    }
}

/// Write the JSON summary and the HTML page where `--summary` and `--report` ask.
fn write_outputs(report: &SummaryReport, outputs: &Outputs) -> Result<()> {
    if let Some(path) = &outputs.summary {
        let json = serde_json::to_string_pretty(report).context("cannot serialise the summary")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write --summary {}", path.display()))?;
    }
    if let Some(path) = &outputs.report {
        std::fs::write(path, herald::simulate::report::render_html(report))
            .with_context(|| format!("cannot write --report {}", path.display()))?;
    }
    Ok(())
}
