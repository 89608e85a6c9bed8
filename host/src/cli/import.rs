//! `herald import` (customers) and `herald suppressions --import` (a
//! suppression list): bad rows are reported by line and skipped; the exit
//! code is non-zero if any row failed.

use super::{load, ConfigArgs};
use anyhow::{Context, Result};
use herald::clock::SystemClock;
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::import::ImportReport;
use herald::plugin::http_policy::HttpMode;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Import customers from a CSV file (`-` for stdin).
pub async fn customers(args: ConfigArgs, file: PathBuf) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let herald = Herald::open(
        &config,
        OpenOptions {
            db: args.db()?,
            clock: Arc::new(SystemClock),
            http_mode: HttpMode::Live,
        },
    )
    .await?;
    let report = if file.as_os_str() == "-" {
        herald::import::import_csv(&herald, std::io::stdin().lock()).await?
    } else {
        let f = std::fs::File::open(&file)
            .with_context(|| format!("cannot open {}", file.display()))?;
        herald::import::import_csv(&herald, std::io::BufReader::new(f)).await?
    };
    Ok(summary(&report, "customer(s)"))
}

/// Import a suppression list.
pub async fn suppressions(args: ConfigArgs, file: PathBuf) -> Result<ExitCode> {
    let (herald, _) = load::deployment_at(&args, None).await?;
    let f =
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let report =
        herald::import::suppressions::import_csv(&herald, std::io::BufReader::new(f)).await?;
    for (line, why) in &report.failed {
        eprintln!("{}:{line}: {why}; row skipped", file.display());
    }
    if report.unknown > 0 {
        eprintln!(
            "{} address(es) belong to no customer yet: they are on the do-not-contact list for whoever has them later",
            report.unknown
        );
    }
    Ok(summary(&report, "suppression(s)"))
}

/// Print what an import did; failure when any row failed.
fn summary(report: &ImportReport, what: &str) -> ExitCode {
    eprintln!(
        "imported {} {what}; {} row(s) failed",
        report.imported,
        report.failed.len()
    );
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
