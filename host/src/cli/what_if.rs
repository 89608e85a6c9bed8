//! `herald simulate --from-db` and `--compare`: the command-line edge of
//! the library's `simulate::snapshot` and `simulate::compare` — which
//! database, which period (the present is read here), which customers —
//! and their results printed: attempts as JSON lines, or the comparison.
//! Owns no simulation logic.

use super::ConfigArgs;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use herald::config::Config;
use herald::simulate::{compare, snapshot, Summary};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where a simulation starts and what it prints besides attempts
/// (`--for`, `--from-db`, `--compare`); see README, "Simulating over your own customers".
#[derive(Args, Clone)]
pub struct Scope {
    /// The period's length instead of --until: 90d, 12w, 3mo.
    #[arg(long = "for", value_name = "SPAN")]
    pub length: Option<String>,
    /// Start from the deployment's own database (the config's, or --db) as
    /// it is now: a read-only copy, never written; plugin HTTP is recorded,
    /// never sent. SQLite only.
    #[arg(long)]
    pub from_db: bool,
    /// Also run this config's strategy over the same customers and print
    /// what changes (per rule, channel and month, with sample customers)
    /// instead of the attempts.
    #[arg(long, value_name = "OTHER.toml")]
    pub compare: Option<PathBuf>,
    /// With --compare: print the comparison as one JSON object.
    #[arg(long, requires = "compare")]
    pub json: bool,
    /// With --compare: sample customers per changed rule and channel, of
    /// those who gain and of those who lose.
    #[arg(long, default_value_t = 3, requires = "compare")]
    pub samples: usize,
}

/// `--from-db` and `--compare`: on copies and scratch databases only.
pub async fn run(
    args: ConfigArgs,
    timeline: Option<PathBuf>,
    (from, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    scope: Scope,
    live: bool,
    outputs: &super::sim_outputs::Outputs,
) -> Result<ExitCode> {
    if scope.compare.is_some() && outputs.any() {
        bail!("--summary and --report describe one strategy's run: leave them out with --compare (run each strategy with --from-db or --timeline for its own summary)");
    }
    if live {
        bail!("--live sends for real, and --from-db and --compare only simulate: drop --live (plugin HTTP goes to the recording sink)");
    }
    let config = Config::load(&args.config)?;
    let live_db = match (scope.from_db, args.db()?) {
        (true, Some(db)) => Some(db),
        (true, None) => Some(config.database()?),
        (false, Some(_)) => bail!("--compare runs each strategy on a scratch database of its own; --db names the database to start from only with --from-db"),
        (false, None) => None,
    };
    // The present, read here at the edge, is where --from-db starts by default.
    let present = scope.from_db.then(Utc::now);
    let period = snapshot::period(from, until, scope.length.as_deref(), present)?;
    let ops = match &timeline {
        Some(path) => herald::simulate::load_timeline(path)?,
        None if scope.from_db => Vec::new(),
        None => bail!("--compare needs the customers to compare over: --timeline, or --from-db"),
    };
    let Some(other_path) = &scope.compare else {
        let live_db = live_db.context("--from-db names the database")?;
        let facts = herald::simulate::summary::channel_facts(&config)?;
        let mut counted = herald::simulate::summary::Summary::new(&facts);
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut print = |r: &herald::tick::AttemptRecord| {
            herald::simulate::print_record(&mut out, r)?;
            counted.add(r)
        };
        let (summary, requests) =
            snapshot::from_db(&config, &live_db, period, &ops, &mut print).await?;
        out.flush()?;
        eprintln!(
            "simulated {} → {} from a copy of {live_db}: {} operation(s) applied, {} refused, {} after --until; {} attempt(s); {requests} HTTP request(s) recorded",
            period.0.to_rfc3339(), period.1.to_rfc3339(), summary.applied, summary.refused, summary.after_until, summary.attempts
        );
        super::sim_outputs::finish_summary(counted, &facts, period, outputs)?;
        return Ok(exit(&summary));
    };
    let other = Config::load(other_path)?;
    let start = match &live_db {
        Some(db) => compare::Start::Snapshot(db),
        None => compare::Start::Empty,
    };
    let (comparison, [a, b]) =
        compare::run((&config, &other), start, period, &ops, scope.samples).await?;
    let mut out = std::io::stdout().lock();
    if scope.json {
        writeln!(out, "{}", serde_json::to_string(&comparison)?)?;
    } else {
        write!(out, "{}", comparison.text())?;
    }
    out.flush()?;
    eprintln!(
        "compared {} → {}: {} attempt(s) with {}, {} with {}",
        period.0.to_rfc3339(),
        period.1.to_rfc3339(),
        a.attempts,
        comparison.base,
        b.attempts,
        comparison.other
    );
    Ok(exit(&Summary {
        refused: a.refused.saturating_add(b.refused),
        ..Summary::default()
    }))
}

/// Success unless an operation of the timeline was refused.
fn exit(summary: &Summary) -> ExitCode {
    if summary.refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
