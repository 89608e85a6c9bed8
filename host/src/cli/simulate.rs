//! `herald simulate`: a timeline replayed through the real engine and
//! plugins on a virtual clock, one JSON line per attempt on stdout
//! (`--from-db` and `--compare` are [`what_if`]'s).

use super::{what_if, ConfigArgs};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
use herald::simulate::snapshot;
use herald::store::Location;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Replay `timeline` from `from` to `until`; failure when any operation was refused.
pub async fn simulate(
    args: ConfigArgs,
    timeline: Option<PathBuf>,
    (from, until): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    scope: what_if::Scope,
    live: bool,
) -> Result<ExitCode> {
    if scope.from_db || scope.compare.is_some() {
        return what_if::run(args, timeline, (from, until), scope, live).await;
    }
    let (from, until) = snapshot::period(from, until, scope.length.as_deref(), None)?;
    let timeline = timeline.context("give --timeline (a JSON-lines file of operations), or --from-db to start from the deployment's database")?;
    let config = Config::load(&args.config)?;
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
    let mut print =
        |record: &herald::tick::AttemptRecord| herald::simulate::print_record(&mut out, record);
    let summary = herald::simulate::run(&herald, &clock, &ops, until, &mut print).await?;
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
