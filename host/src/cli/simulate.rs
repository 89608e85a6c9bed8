//! `herald simulate`: a timeline replayed through the real engine and
//! plugins on a virtual clock, one JSON line per attempt on stdout, the
//! summary as a table on stderr, and on request as JSON (`--summary`) and
//! as an HTML page (`--report`).

use super::ConfigArgs;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
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

/// Replay `timeline` from `from` to `until`; failure when any operation was refused.
pub async fn simulate(
    args: ConfigArgs,
    timeline: PathBuf,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    live: bool,
    outputs: Outputs,
) -> Result<ExitCode> {
    if until < from {
        anyhow::bail!("--until ({until}) is before --from ({from})");
    }
    let config = Config::load(&args.config)?;
    let facts = summary::channel_facts(&config)?;
    let ops = herald::simulate::load_timeline(&timeline)?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let db = args
        .db()?
        .unwrap_or_else(|| Location::Embedded(scratch.path().join("simulate.db")));
    let clock = VirtualClock::new(from);
    let sink = Arc::new(Mutex::new(Vec::new()));
    let herald = Herald::open(
        &config,
        OpenOptions {
            db: Some(db),
            clock: Arc::new(clock.clone()),
            http_mode: if live {
                HttpMode::Live
            } else {
                HttpMode::Sink(sink.clone())
            },
        },
    )
    .await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut counted = Summary::new(&facts);
    let mut print = |record: &herald::tick::AttemptRecord| {
        herald::simulate::print_record(&mut out, record)?;
        counted.add(record)
    };
    let summary = herald::simulate::run(&herald, &clock, &ops, until, &mut print).await?;
    out.flush()?;
    let report = counted.report(&facts, from, until)?;
    write_outputs(&report, &outputs)?;
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
    eprint!("\n{}", summary::render_text(&report));
    Ok(if summary.refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
