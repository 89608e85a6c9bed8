//! `herald simulate --compare`: two strategies run over the same customers
//! (each on its own copy of the same snapshot, or the same timeline on its
//! own scratch database), and what changes between them: messages per rule,
//! channel and month (from each run's [`Tally`]), and a few customers per
//! changed rule and channel who gain or lose reminders, with each side's
//! reason in `herald explain`'s words ([`crate::explain::explain`]).
//!
//! Owns the per-customer counts, the choice of sample customers and the
//! printed comparison. May not evaluate rules itself (explain does), count
//! attempts apart from the tally, or touch the simulation loop's internals.

use super::snapshot::{open_engine, Snapshot};
use super::tally::Tally;
use super::{Summary, TimelineOp};
use crate::config::Config;
use crate::engine::Herald;
use crate::store::Location;
use crate::tick::AttemptRecord;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Where both strategies start.
pub enum Start<'a> {
    /// From a copy of this database (`--from-db`), each on its own copy.
    Snapshot(&'a Location),
    /// From an empty database each (a timeline brings the customers).
    Empty,
}

/// Run `base` and `other` over the same customers (from `start`, with the
/// same `ops`) from `from` until `until`, and compare them with up to
/// `samples` customers per change and side. Returns the comparison and
/// each run's summary.
pub async fn run(
    (base, other): (&Config, &Config),
    start: Start<'_>,
    (from, until): (DateTime<Utc>, DateTime<Utc>),
    ops: &[TimelineOp],
    samples: usize,
) -> Result<(Comparison, [Summary; 2])> {
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let snapshot = match start {
        Start::Snapshot(live) => Some(Snapshot::take(live)?),
        Start::Empty => None,
    };
    let db = |name: &str| match &snapshot {
        Some(s) => s.copy(name),
        None => Ok(Location::Embedded(
            scratch.path().join(format!("{name}.db")),
        )),
    };
    let a = open_engine(base, db("base")?, from).await?;
    let b = open_engine(other, db("other")?, from).await?;
    let (mut side_a, mut side_b) = (Side::default(), Side::default());
    let sum_a = super::run(&a.herald, &a.clock, ops, until, &mut |r: &AttemptRecord| {
        side_a.add(r);
        Ok(())
    })
    .await
    .with_context(|| format!("simulating {}", base.path.display()))?;
    let sum_b = super::run(&b.herald, &b.clock, ops, until, &mut |r: &AttemptRecord| {
        side_b.add(r);
        Ok(())
    })
    .await
    .with_context(|| format!("simulating {}", other.path.display()))?;
    let names = (
        base.path.display().to_string(),
        other.path.display().to_string(),
    );
    let mut comparison = Comparison::of(
        (&names.0, &names.1),
        (from, until),
        &side_a,
        &side_b,
        samples,
    );
    comparison.explain(&a.herald, &b.herald).await?;
    a.herald.store.close().await;
    b.herald.store.close().await;
    Ok((comparison, [sum_a, sum_b]))
}

/// The attempt status that counts as a message handed to a channel (as
/// [`Tally::messages`] counts).
const DELIVERED: &str = "delivered";

/// What one strategy's run produced: its tally, and the messages each
/// customer got per rule and channel.
#[derive(Debug, Default)]
pub struct Side {
    /// Attempts per rule, channel and month, by status.
    pub tally: Tally,
    by_customer: BTreeMap<(String, String), BTreeMap<String, u64>>,
}

impl Side {
    /// Count one attempt.
    pub fn add(&mut self, record: &AttemptRecord) {
        self.tally.add(record);
        if record.status == DELIVERED {
            let n = self
                .by_customer
                .entry((record.rule.clone(), record.channel.clone()))
                .or_default()
                .entry(record.customer.clone())
                .or_default();
            *n = n.saturating_add(1);
        }
    }

    fn messages_of(&self, cell: &(String, String)) -> Option<&BTreeMap<String, u64>> {
        self.by_customer.get(cell)
    }
}

/// Messages of one rule on one channel in one month, on each side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Month {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Messages with the configured strategy.
    pub base: u64,
    /// Messages with the other strategy.
    pub other: u64,
}

/// A customer who gets a different number of messages of a rule on a
/// channel, and why, as `herald explain` says it on each side at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// The customer's external id.
    pub customer: String,
    /// Messages with the configured strategy.
    pub base: u64,
    /// Messages with the other strategy.
    pub other: u64,
    /// The rule's state for the customer with the configured strategy.
    pub base_reason: String,
    /// The rule's state for the customer with the other strategy.
    pub other_reason: String,
}

/// What changes for one rule on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The rule.
    pub rule: String,
    /// The channel (empty when none was chosen).
    pub channel: String,
    /// Messages with the configured strategy.
    pub base: u64,
    /// Messages with the other strategy.
    pub other: u64,
    /// Every month either side sent in, in order.
    pub months: Vec<Month>,
    /// Customers who get more with the other strategy (the first few by id).
    pub gain: Vec<Sample>,
    /// Customers who get fewer with the other strategy (the first few by id).
    pub lose: Vec<Sample>,
    /// How many customers get more, in all.
    pub gaining: u64,
    /// How many customers get fewer, in all.
    pub losing: u64,
}

/// Two strategies' runs side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The configured strategy (its config file).
    pub base: String,
    /// The other strategy (its config file).
    pub other: String,
    /// Start of the period.
    pub from: DateTime<Utc>,
    /// End of the period.
    pub until: DateTime<Utc>,
    /// Rules and channels whose messages change, by rule then channel.
    pub changes: Vec<Change>,
    /// Rules and channels whose messages do not change, with their count.
    pub unchanged: Vec<(String, String, u64)>,
}

impl Comparison {
    /// Compare two runs over `from`..`until`, with up to `samples` gaining
    /// and `samples` losing customers per changed rule and channel (the
    /// first by external id, so the choice is the same every run). Their
    /// reasons are filled in by [`Comparison::explain`].
    pub fn of(
        names: (&str, &str),
        (from, until): (DateTime<Utc>, DateTime<Utc>),
        base: &Side,
        other: &Side,
        samples: usize,
    ) -> Comparison {
        let mut months: BTreeMap<(String, String), BTreeMap<String, (u64, u64)>> = BTreeMap::new();
        for (cell, n) in base.tally.messages() {
            let at = months
                .entry((cell.rule.clone(), cell.channel.clone()))
                .or_default()
                .entry(cell.month.clone())
                .or_default();
            at.0 = n;
        }
        for (cell, n) in other.tally.messages() {
            let at = months
                .entry((cell.rule.clone(), cell.channel.clone()))
                .or_default()
                .entry(cell.month.clone())
                .or_default();
            at.1 = n;
        }
        let mut changes = Vec::new();
        let mut unchanged = Vec::new();
        for (cell, by_month) in months {
            let total = |pick: fn(&(u64, u64)) -> u64| {
                by_month.values().map(pick).fold(0u64, u64::saturating_add)
            };
            let (base_total, other_total) = (total(|p| p.0), total(|p| p.1));
            let (gain, lose) = differing(base.messages_of(&cell), other.messages_of(&cell));
            if gain.is_empty() && lose.is_empty() && by_month.values().all(|(a, b)| a == b) {
                unchanged.push((cell.0, cell.1, base_total));
                continue;
            }
            let sample = |list: &[(String, u64, u64)]| -> Vec<Sample> {
                list.iter()
                    .take(samples)
                    .map(|(customer, a, b)| Sample {
                        customer: customer.clone(),
                        base: *a,
                        other: *b,
                        base_reason: String::new(),
                        other_reason: String::new(),
                    })
                    .collect()
            };
            changes.push(Change {
                months: by_month
                    .into_iter()
                    .map(|(month, (base, other))| Month { month, base, other })
                    .collect(),
                gain: sample(&gain),
                lose: sample(&lose),
                gaining: gain.len() as u64,
                losing: lose.len() as u64,
                rule: cell.0,
                channel: cell.1,
                base: base_total,
                other: other_total,
            });
        }
        Comparison {
            base: names.0.to_string(),
            other: names.1.to_string(),
            from,
            until,
            changes,
            unchanged,
        }
    }

    /// Whether any rule or channel sends a different number of messages,
    /// or to different customers.
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Fill in each sample's reasons: the rule's state for that customer
    /// at the end of the period on each side, as `herald explain` says it.
    pub async fn explain(&mut self, base: &Herald, other: &Herald) -> Result<()> {
        let at = self.until;
        let names = (self.base.clone(), self.other.clone());
        for change in &mut self.changes {
            for sample in change.gain.iter_mut().chain(change.lose.iter_mut()) {
                sample.base_reason =
                    reason(base, &names.0, &change.rule, &sample.customer, at).await?;
                sample.other_reason =
                    reason(other, &names.1, &change.rule, &sample.customer, at).await?;
            }
        }
        Ok(())
    }

    /// The comparison as a person reads it.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Messages from {} to {}: {} (A) against {} (B)",
            self.from.to_rfc3339(),
            self.until.to_rfc3339(),
            self.base,
            self.other
        );
        if self.changes.is_empty() {
            let _ = writeln!(out, "\nNothing changes: every rule sends the same messages on the same channels to the same customers.");
        }
        for change in &self.changes {
            let _ = writeln!(
                out,
                "\n{} on {}: {} → {} ({})",
                change.rule,
                channel_name(&change.channel),
                change.base,
                change.other,
                signed(change.base, change.other)
            );
            let _ = writeln!(
                out,
                "  {:<8} {:>9} {:>9} {:>9}",
                "month", "A", "B", "change"
            );
            for m in &change.months {
                let _ = writeln!(
                    out,
                    "  {:<8} {:>9} {:>9} {:>9}",
                    m.month,
                    m.base,
                    m.other,
                    signed(m.base, m.other)
                );
            }
            for (list, total, verb) in [
                (&change.gain, change.gaining, "gain"),
                (&change.lose, change.losing, "lose"),
            ] {
                if total == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "  {total} customer(s) {verb} messages with B; for example:"
                );
                for s in list {
                    let _ = writeln!(
                        out,
                        "    {}: {} → {}\n      A: {}\n      B: {}",
                        s.customer, s.base, s.other, s.base_reason, s.other_reason
                    );
                }
            }
        }
        if !self.unchanged.is_empty() {
            let list: Vec<String> = self
                .unchanged
                .iter()
                .map(|(rule, channel, n)| format!("{rule} on {} ({n})", channel_name(channel)))
                .collect();
            let _ = writeln!(out, "\nUnchanged: {}.", list.join(", "));
        }
        out
    }
}

/// Customers with more messages on the other side, and with fewer, in
/// external-id order: (customer, base, other).
type Differing = Vec<(String, u64, u64)>;

fn differing(
    base: Option<&BTreeMap<String, u64>>,
    other: Option<&BTreeMap<String, u64>>,
) -> (Differing, Differing) {
    let empty = BTreeMap::new();
    let (base, other) = (base.unwrap_or(&empty), other.unwrap_or(&empty));
    let customers: BTreeSet<&String> = base.keys().chain(other.keys()).collect();
    let (mut gain, mut lose) = (Vec::new(), Vec::new());
    for customer in customers {
        let a = base.get(customer).copied().unwrap_or(0);
        let b = other.get(customer).copied().unwrap_or(0);
        if b > a {
            gain.push((customer.clone(), a, b));
        } else if b < a {
            lose.push((customer.clone(), a, b));
        }
    }
    (gain, lose)
}

/// `rule`'s state for `customer` on one side at `at`, in explain's words.
async fn reason(
    herald: &Herald,
    side: &str,
    rule: &str,
    customer: &str,
    at: DateTime<Utc>,
) -> Result<String> {
    if herald.strategy.rule(rule).is_none() {
        return Ok(format!("no rule `{rule}` in {side}"));
    }
    let states = match crate::explain::explain(herald, customer, at).await {
        Ok(states) => states,
        // A customer deleted during the period: explain's own words.
        Err(e) => return Ok(format!("{e:#}")),
    };
    Ok(states
        .into_iter()
        .find(|s| s.rule == rule)
        .map(|s| {
            let mut text = s.state;
            if let Some(due) = s.due {
                text.push_str(&format!(
                    ", due {}",
                    due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            if s.step > 0 {
                text.push_str(&format!(" (step {})", s.step));
            }
            if !s.detail.is_empty() {
                text.push_str(&format!(": {}", s.detail));
            }
            text
        })
        .unwrap_or_else(|| format!("no rule `{rule}` in {side}")))
}

fn channel_name(channel: &str) -> &str {
    if channel.is_empty() {
        "no channel"
    } else {
        channel
    }
}

/// `b - a` with its sign.
fn signed(a: u64, b: u64) -> String {
    if b >= a {
        format!("+{}", b - a)
    } else {
        format!("-{}", a - b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(customer: &str, rule: &str, month: u32, status: &str) -> AttemptRecord {
        AttemptRecord {
            at: Utc.with_ymd_and_hms(2030, month, 5, 9, 0, 0).unwrap(),
            customer: customer.into(),
            rule: rule.into(),
            channel: "inbox".into(),
            status: status.into(),
            subject: String::new(),
        }
    }

    #[test]
    fn changes_by_month_and_the_first_customers_who_gain_or_lose() {
        let (mut a, mut b) = (Side::default(), Side::default());
        for r in [
            record("c1", "renewal", 1, "delivered"),
            record("c2", "renewal", 2, "delivered"),
            record("c3", "renewal", 2, "delivered"),
            record("c1", "lapsed", 1, "delivered"),
            record("c1", "same", 1, "delivered"),
            record("c9", "renewal", 1, "skipped"),
        ] {
            a.add(&r);
        }
        for r in [
            record("c1", "renewal", 1, "delivered"),
            record("c2", "renewal", 1, "delivered"),
            record("c3", "renewal", 2, "delivered"),
            record("c4", "renewal", 3, "delivered"),
            record("c5", "renewal", 3, "delivered"),
            record("c1", "same", 1, "delivered"),
        ] {
            b.add(&r);
        }
        let period = (
            Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2030, 4, 1, 0, 0, 0).unwrap(),
        );
        let c = Comparison::of(("a.toml", "b.toml"), period, &a, &b, 1);
        assert!(c.changed());
        assert_eq!(c.unchanged, [("same".into(), "inbox".into(), 1)]);
        let rules: Vec<&str> = c.changes.iter().map(|ch| ch.rule.as_str()).collect();
        assert_eq!(rules, ["lapsed", "renewal"]);
        let renewal = &c.changes[1];
        let months: Vec<(&str, u64, u64)> = renewal
            .months
            .iter()
            .map(|m| (m.month.as_str(), m.base, m.other))
            .collect();
        assert_eq!(
            months,
            [("2030-01", 1, 2), ("2030-02", 2, 1), ("2030-03", 0, 2)]
        );
        assert_eq!((renewal.base, renewal.other), (3, 5));
        assert_eq!((renewal.gaining, renewal.losing), (2, 0));
        assert_eq!(renewal.gain[0].customer, "c4");
        assert_eq!(c.changes[0].lose[0].customer, "c1");
        let text = c.text();
        assert!(text.contains("renewal on inbox: 3 → 5 (+2)"), "{text}");
        assert!(
            text.contains("2030-02          2         1        -1"),
            "{text}"
        );
        assert!(text.contains("Unchanged: same on inbox (1)."), "{text}");
    }

    #[test]
    fn the_same_runs_change_nothing() {
        let mut a = Side::default();
        a.add(&record("c1", "renewal", 1, "delivered"));
        let mut b = Side::default();
        b.add(&record("c1", "renewal", 1, "delivered"));
        let t = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let c = Comparison::of(("a", "b"), (t, t), &a, &b, 3);
        assert!(!c.changed());
        assert!(c.text().contains("Nothing changes"), "{}", c.text());
    }
}
