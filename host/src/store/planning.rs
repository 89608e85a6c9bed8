//! What planning reads of customers and writes back. The planner is a pure
//! function of a customer, the strategy, these [`Facts`] and the time; it
//! returns [`Changes`], which [`apply`] writes in a handful of statements.
//! Reading and writing in batches keeps planning cheap on a networked
//! database and when the whole base is planned again.

use super::backend::on;
use super::schedule::{self, Cancel, PlannedOccurrence, ScheduledRow};
use super::{from_millis, json_list, to_millis, Tx};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;

/// What the store knows of one customer that planning depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Pending occurrences (claimed or not), earliest first.
    pub pending: Vec<ScheduledRow>,
    /// The latest event of each asked-for kind the customer has.
    pub latest: HashMap<String, DateTime<Utc>>,
    /// For each asked-for goal window: the delivery a goal event would be
    /// credited to (the latest delivered reminder of that rule in the
    /// window that has no goal yet).
    pub open_deliveries: HashMap<String, i64>,
}

/// A rule's goal window to look for an open delivery in.
#[derive(Debug, Clone)]
pub struct GoalWindow<'a> {
    /// The rule.
    pub rule_id: &'a str,
    /// Start of the window (inclusive).
    pub from: DateTime<Utc>,
    /// End of the window (inclusive).
    pub to: DateTime<Utc>,
}

/// A goal reached after a delivery, to record against it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalCredit {
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule whose goal it is.
    pub rule_id: String,
    /// The delivery credited.
    pub delivery_id: i64,
    /// The goal event.
    pub event_id: i64,
    /// Its kind.
    pub event_kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Pending occurrences of a customer's rule whose key contains `marker`
/// (follow-up steps), to cancel.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkedCancel {
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule.
    pub rule_id: String,
    /// What the keys to cancel contain.
    pub marker: &'static str,
    /// Why.
    pub reason: String,
}

/// What planning wants written, applied in this order: goals, marked
/// cancels, upserts (a done, claimed, failed or dead row is never revived),
/// cancels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Goals reached.
    pub goals: Vec<GoalCredit>,
    /// Follow-up steps a goal ended.
    pub marked_cancels: Vec<MarkedCancel>,
    /// Occurrences that should be pending.
    pub upserts: Vec<PlannedOccurrence>,
    /// Pending occurrences no longer wanted.
    pub cancels: Vec<Cancel>,
}

impl Changes {
    /// Add another customer's changes.
    pub fn extend(&mut self, other: Changes) {
        self.goals.extend(other.goals);
        self.marked_cancels.extend(other.marked_cancels);
        self.upserts.extend(other.upserts);
        self.cancels.extend(other.cancels);
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.goals.is_empty()
            && self.marked_cancels.is_empty()
            && self.upserts.is_empty()
            && self.cancels.is_empty()
    }
}

/// The facts of one customer: pending occurrences, the latest event of each
/// of `kinds`, and the open delivery of each goal window.
pub async fn facts(
    tx: &mut Tx,
    customer_id: i64,
    kinds: &[String],
    goals: &[GoalWindow<'_>],
) -> Result<Facts> {
    let mut all = facts_of_many(tx, &[customer_id], kinds).await?;
    let mut facts = all.remove(&customer_id).unwrap_or_default();
    for goal in goals {
        if let Some(id) = open_delivery(tx, customer_id, goal).await? {
            facts.open_deliveries.insert(goal.rule_id.to_string(), id);
        }
    }
    Ok(facts)
}

/// [`facts`] without goal windows for many customers, in two queries.
/// Every asked-for customer has an entry.
pub async fn facts_of_many(
    tx: &mut Tx,
    ids: &[i64],
    kinds: &[String],
) -> Result<HashMap<i64, Facts>> {
    let mut out: HashMap<i64, Facts> = ids.iter().map(|&id| (id, Facts::default())).collect();
    if ids.is_empty() {
        return Ok(out);
    }
    for row in schedule::pending_of_many(tx, ids).await? {
        out.entry(row.customer_id).or_default().pending.push(row);
    }
    if kinds.is_empty() {
        return Ok(out);
    }
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT customer_id, kind, MAX(at) FROM events
             WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?1))
               AND kind IN (SELECT value FROM json_each(?2))
             GROUP BY customer_id, kind",
        ))
        .bind(json_list(ids)?)
        .bind(json_list(kinds)?)
        .fetch_all(&mut *db)
        .await
        .context("cannot read the customers' latest events")?;
        for r in rows {
            let facts = out.entry(r.get(0)).or_default();
            facts.latest.insert(r.get(1), from_millis(r.get(2)));
        }
    });
    Ok(out)
}

async fn open_delivery(
    tx: &mut Tx,
    customer_id: i64,
    goal: &GoalWindow<'_>,
) -> Result<Option<i64>> {
    on!(tx.conn(), |db, d| {
        let row = sqlx::query(&d.sql("SELECT d.id FROM deliveries d
         WHERE d.customer_id = ? AND d.rule_id = ? AND d.status = 'delivered' AND d.at BETWEEN ? AND ?
           AND NOT EXISTS (SELECT 1 FROM goals g WHERE g.delivery_id = d.id)
         ORDER BY d.at DESC, d.id DESC LIMIT 1"))
    .bind(customer_id)
    .bind(goal.rule_id)
    .bind(to_millis(goal.from))
    .bind(to_millis(goal.to))
    .fetch_optional(&mut *db)
    .await
    .context("cannot look for the delivery a goal is credited to")?;
        Ok(row.map(|r| r.get(0)))
    })
}

/// Write planning's changes inside the caller's write transaction.
pub async fn apply(tx: &mut Tx, changes: &Changes, now: DateTime<Utc>) -> Result<()> {
    on!(tx.conn(), |db, d| {
        for g in &changes.goals {
            sqlx::query(&d.sql(
                "INSERT INTO goals (customer_id, rule_id, delivery_id, event_id, event_kind, reached_at)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO NOTHING",
            ))
            .bind(g.customer_id)
            .bind(&g.rule_id)
            .bind(g.delivery_id)
            .bind(g.event_id)
            .bind(&g.event_kind)
            .bind(to_millis(g.at))
            .execute(&mut *db)
            .await
            .context("cannot record a reached goal")?;
        }
    });
    for c in &changes.marked_cancels {
        schedule::cancel_marked(tx, c.customer_id, &c.rule_id, c.marker, &c.reason, now).await?;
    }
    schedule::upsert_batch(tx, &changes.upserts, now).await?;
    schedule::cancel_rules_many(tx, &changes.cancels, now).await?;
    Ok(())
}
