//! `herald preview` (what a customer would receive from a rule now) and
//! `herald explain` (every rule's state for a customer).

use super::load::deployment_at;
use super::print::{left, Column, Printer, Table};
use super::ConfigArgs;
use anyhow::Result;
use chrono::{DateTime, Utc};
use herald::explain::{DryRun, RuleState};
use std::fmt::Write;
use std::process::ExitCode;

impl Table for RuleState {
    const COLUMNS: &'static [Column] = &[
        left("RULE", 24),
        left("STATE", 14),
        left("DUE (UTC)", 21),
        left("DETAIL", 0),
    ];

    fn cells(&self) -> Vec<String> {
        let due = self
            .due
            .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into());
        let rule = if self.step > 0 {
            format!("{} (step {})", self.rule, self.step)
        } else {
            self.rule.clone()
        };
        vec![rule, self.state.clone(), due, self.detail.clone()]
    }
}

/// `herald preview`.
pub async fn preview(
    args: ConfigArgs,
    rule: String,
    customer: String,
    step: usize,
    at: Option<DateTime<Utc>>,
    json: bool,
) -> Result<ExitCode> {
    let (herald, now) = deployment_at(&args, at).await?;
    let dry_run = herald::explain::preview(&herald, &rule, &customer, step, now).await?;
    Printer::new(json).one(&dry_run, as_text)?;
    Ok(ExitCode::SUCCESS)
}

/// A dry run as `herald preview` prints it.
fn as_text(p: &DryRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "outcome:  {}", p.outcome);
    if let Some(c) = &p.channel {
        let _ = match &p.failover_from {
            Some(f) => writeln!(out, "channel:  {c} (failover from {f})"),
            None => writeln!(out, "channel:  {c}"),
        };
    }
    let lines = [
        ("reason:   ", p.reason.clone()),
        ("until:    ", p.until.map(|u| u.to_rfc3339())),
        ("subject:  ", p.subject.clone()),
    ];
    for (label, value) in lines {
        if let Some(v) = value {
            let _ = writeln!(out, "{label}{v}");
        }
    }
    for (k, v) in &p.fields {
        let _ = writeln!(out, "field:    {k} = {v}");
    }
    if let Some(u) = &p.unsubscribe_url {
        let _ = writeln!(out, "unsubscribe: {u}");
    }
    if let Some(t) = &p.text {
        let _ = writeln!(out, "\n{}", t.trim_end());
    }
    if let Some(h) = &p.html {
        let _ = writeln!(out, "\n--- html ---\n{}", h.trim_end());
    }
    out
}

/// `herald explain`.
pub async fn explain(
    args: ConfigArgs,
    customer: String,
    at: Option<DateTime<Utc>>,
    json: bool,
) -> Result<ExitCode> {
    let (herald, now) = deployment_at(&args, at).await?;
    let states = herald::explain::explain(&herald, &customer, now).await?;
    Printer::new(json).list(&states)?;
    Ok(ExitCode::SUCCESS)
}
