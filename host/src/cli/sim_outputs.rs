//! Where a simulation's summary goes: the table on stderr, and the JSON
//! (`--summary`) and HTML page (`--report`) files. Shared by the timeline
//! run and `--from-db`; may not run a simulation.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use herald::simulate::summary::{self, ChannelFacts, Summary, SummaryReport};
use std::collections::BTreeMap;
use std::path::PathBuf;

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

/// Print the summary of a run on stderr, and write it where `--summary` and
/// `--report` ask.
pub fn finish_summary(
    counted: Summary,
    facts: &BTreeMap<String, ChannelFacts>,
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
    pub fn any(&self) -> bool {
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
