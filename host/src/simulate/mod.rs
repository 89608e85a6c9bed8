//! `herald simulate`: replay a timeline of customer operations through the
//! real engine and plugins on a virtual clock, jumping from one due time or
//! operation to the next, and hand every delivery attempt to the caller's
//! sink (one JSON line each on stdout, a summary, a report).
//!
//! Owns the simulation loop; parsing lives in [`timeline`]. May not send for
//! real: the caller opens the engine with the HTTP mode it wants.

pub mod compare;
pub mod progress;
pub mod report;
pub mod shards;
pub mod snapshot;
pub mod summary;
pub mod tally;
pub mod timeline;

pub use timeline::{load_timeline, parse_timeline, Op, TimelineOp};

use crate::engine::{Herald, WriteError};
use crate::store::schedule;
use crate::tick::{self, AttemptRecord};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use std::io::Write;

/// Summary of a simulation run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Operations applied.
    pub applied: usize,
    /// Operations refused (each reported on stderr).
    pub refused: usize,
    /// Operations after `until`, not applied.
    pub after_until: usize,
    /// Attempts printed.
    pub attempts: usize,
    /// Distinct instants the virtual clock stopped at.
    pub instants: usize,
    /// Ticks that claimed something.
    pub ticks: usize,
}

impl Summary {
    /// Add the counts of another run (a shard's) to these.
    pub fn add(&mut self, other: &Summary) {
        self.applied += other.applied;
        self.refused += other.refused;
        self.after_until += other.after_until;
        self.attempts += other.attempts;
        self.instants += other.instants;
        self.ticks += other.ticks;
    }
}

/// Where a simulation's attempts go, in the order they were made.
pub type AttemptSink<'a> = dyn FnMut(&AttemptRecord) -> Result<()> + 'a;

/// Run the simulation, handing every attempt to `sink`.
pub async fn run(
    herald: &Herald,
    clock: &crate::clock::VirtualClock,
    ops: &[TimelineOp],
    until: DateTime<Utc>,
    sink: &mut AttemptSink<'_>,
) -> Result<Summary> {
    let mut summary = Summary::default();
    let from = herald.clock.now();
    if let Some(first) = ops.first() {
        if first.at < from {
            bail!(
                "timeline line {} is at {}, before --from {}; start the simulation earlier",
                first.line,
                first.at.to_rfc3339(),
                from.to_rfc3339()
            );
        }
    }
    let mut next = 0;
    let mut next_due = schedule::next_due_at(&herald.store).await?;
    loop {
        let next_op = ops.get(next).map(|o| o.at);
        let t = match (next_op, next_due) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        if t > until {
            break;
        }
        clock.set(t);
        summary.instants += 1;
        let now = herald.clock.now();
        let mut applied_any = false;
        while let Some(op) = ops.get(next).filter(|o| o.at <= now) {
            next += 1;
            applied_any = true;
            match apply(herald, &op.op).await {
                Ok(()) => summary.applied += 1,
                Err(WriteError::Internal(e)) => {
                    return Err(e.context(format!("timeline line {}", op.line)))
                }
                Err(e) => {
                    summary.refused += 1;
                    eprintln!("timeline line {}: {e}", op.line);
                }
            }
        }
        if applied_any {
            next_due = schedule::next_due_at(&herald.store).await?;
        }
        // An instant whose operations planned nothing due yet needs no tick,
        // and a tick that left nothing due needs no empty one after it.
        while next_due.is_some_and(|due| due <= now) {
            let Some(records) = tick::step(herald).await? else {
                bail!(
                    "a reminder is pending for {} but the tick at {} claimed nothing: the schedule is in a state the simulation cannot advance from",
                    next_due.map(|d| d.to_rfc3339()).unwrap_or_default(),
                    now.to_rfc3339()
                );
            };
            summary.ticks += 1;
            for record in records {
                sink(&record)?;
                summary.attempts += 1;
            }
            next_due = schedule::next_due_at(&herald.store).await?;
        }
    }
    summary.after_until = ops.len() - next;
    Ok(summary)
}

async fn apply(herald: &Herald, op: &Op) -> Result<(), WriteError> {
    match op {
        Op::Upsert(patch) => herald.upsert_customer(patch).await.map(|_| ()),
        Op::Event(event) => herald.record_event(event).await.map(|_| ()),
        Op::Delete(id) => herald.delete_customer(id).await,
        Op::Device(d) => herald
            .register_device(&d.customer, &d.token, &d.platform, &d.app, None)
            .await
            .map(|_| ()),
    }
}

/// Write `r` to `out` as one JSON line.
pub fn print_record(out: &mut dyn Write, r: &AttemptRecord) -> Result<()> {
    let line = serde_json::json!({
        "at": r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "customer": r.customer,
        "rule": r.rule,
        "channel": r.channel,
        "status": r.status,
        "subject": r.subject,
    });
    writeln!(out, "{line}").context("cannot write to stdout")?;
    Ok(())
}
