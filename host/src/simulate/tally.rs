//! The tally of a simulation: how many attempts each rule made on each
//! channel in each month, by status. The summary, the HTML report and a
//! comparison of two strategies all count from it, so they count alike.
//! Owns counting only; may not touch the engine or store.

use crate::tick::AttemptRecord;
use std::collections::BTreeMap;

/// One cell of the tally: a rule on a channel in a month (`YYYY-MM`, UTC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell {
    /// The rule.
    pub rule: String,
    /// The channel (empty when no channel was chosen, e.g. a skipped reminder).
    pub channel: String,
    /// The month of the attempt, `YYYY-MM` in UTC.
    pub month: String,
}

/// Attempts counted by cell and status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Attempts per cell, by status (delivered, failed, skipped, ...).
    pub cells: BTreeMap<Cell, BTreeMap<String, u64>>,
}

impl Tally {
    /// Count one attempt.
    pub fn add(&mut self, record: &AttemptRecord) {
        let cell = Cell {
            rule: record.rule.clone(),
            channel: record.channel.clone(),
            month: record.at.format("%Y-%m").to_string(),
        };
        *self
            .cells
            .entry(cell)
            .or_default()
            .entry(record.status.clone())
            .or_default() += 1;
    }

    /// Messages handed to a channel (attempts that ended `delivered`) per cell.
    pub fn messages(&self) -> BTreeMap<&Cell, u64> {
        self.cells
            .iter()
            .map(|(cell, by_status)| (cell, by_status.get("delivered").copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Every count of `other` added to this tally (shards are tallied apart
    /// and merged).
    pub fn merge(&mut self, other: Tally) {
        for (cell, by_status) in other.cells {
            let mine = self.cells.entry(cell).or_default();
            for (status, n) in by_status {
                *mine.entry(status).or_default() += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn record(rule: &str, channel: &str, month: u32, status: &str) -> AttemptRecord {
        AttemptRecord {
            at: Utc.with_ymd_and_hms(2026, month, 3, 9, 0, 0).unwrap(),
            customer: "c1".into(),
            rule: rule.into(),
            channel: channel.into(),
            status: status.into(),
            subject: String::new(),
        }
    }

    #[test]
    fn counts_by_rule_channel_month_and_status_and_merges() {
        let mut a = Tally::default();
        a.add(&record("welcome", "email", 1, "delivered"));
        a.add(&record("welcome", "email", 1, "delivered"));
        a.add(&record("welcome", "email", 2, "failed"));
        let mut b = Tally::default();
        b.add(&record("welcome", "email", 1, "delivered"));
        b.add(&record("welcome", "", 1, "skipped"));
        a.merge(b);
        let messages: Vec<_> = a
            .messages()
            .into_iter()
            .map(|(c, n)| (c.rule.as_str(), c.channel.as_str(), c.month.as_str(), n))
            .collect();
        assert_eq!(messages, vec![("welcome", "email", "2026-01", 3)]);
        let feb = Cell {
            rule: "welcome".into(),
            channel: "email".into(),
            month: "2026-02".into(),
        };
        assert_eq!(a.cells[&feb]["failed"], 1);
    }
}
