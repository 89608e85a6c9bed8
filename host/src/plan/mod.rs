//! Planning: which occurrences each rule wants for a customer, after the
//! customer was written, deleted or sent an event ([`first`]), and after one
//! of the customer's reminders fired ([`next`]: the following step of a
//! sequence, the next occurrence of a repeating rule). The one owner of
//! occurrence keys ([`keys`]).
//!
//! Planning is a pure function of (customer, strategy, [`Facts`] the store
//! read for it, now) to the wanted [`Changes`]; [`reconcile`] reads the facts
//! and writes the changes in a handful of statements. Only that customer is
//! touched; nothing rescans the customer base. May not import the tick, the
//! engine or the HTTP edge.

pub mod first;
pub mod keys;
pub mod next;

use crate::customer::Customer;
use crate::store::events::EventRecord;
use crate::store::planning::{self, Changes, Facts, GoalWindow};
use crate::store::Tx;
use crate::strategy::{Strategy, Trigger};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// What happened to the customer.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// The record was inserted.
    Created,
    /// The record was updated; these fields and attributes changed.
    Updated(&'a [String]),
    /// The record was deleted.
    Deleted,
    /// An event was recorded.
    Event(&'a EventRecord),
    /// Nothing happened to the customer, but the strategy changed: plan the
    /// date rules again (other triggers are not retroactive).
    Replan,
}

/// The JSON form of an event, as templates see it (`event.kind`, ...).
pub fn event_context(event: &EventRecord) -> Value {
    json!({"kind": event.kind, "at": event.at.to_rfc3339(), "properties": event.properties})
}

/// The event kinds whose latest occurrence planning `change` depends on
/// (dormancy rules' activity and reference kinds), without repeats.
pub fn event_kinds_needed(strategy: &Strategy, change: Change<'_>) -> Vec<String> {
    let mut kinds: Vec<String> = Vec::new();
    if matches!(change, Change::Deleted) {
        return kinds;
    }
    for rule in &strategy.rules {
        let Trigger::Inactive(trigger) = &rule.trigger else {
            continue;
        };
        if let Change::Event(e) = change {
            if !trigger.concerns(&e.kind) {
                continue;
            }
        }
        let reference = match &trigger.since {
            crate::strategy::Since::Event(kind) => Some(kind),
            _ => None,
        };
        for kind in trigger.kinds.iter().chain(reference) {
            if !kinds.contains(kind) {
                kinds.push(kind.clone());
            }
        }
    }
    kinds
}

/// The goal windows an event may close: for each rule whose goal is this
/// event's kind, the span before the event in which a reminder counts.
pub fn goal_windows<'s>(strategy: &'s Strategy, change: Change<'_>) -> Vec<GoalWindow<'s>> {
    let Change::Event(event) = change else {
        return Vec::new();
    };
    strategy
        .rules
        .iter()
        .filter_map(|rule| {
            let goal = rule.goal.as_ref().filter(|g| g.event == event.kind)?;
            Some(GoalWindow {
                rule_id: &rule.id,
                from: event
                    .at
                    .checked_sub_signed(goal.within)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
                to: event.at,
            })
        })
        .collect()
}

/// Bring one customer's schedule in line with the strategy after `change`,
/// inside the caller's write transaction: read the facts planning needs,
/// plan, write the changes.
pub async fn reconcile(
    tx: &mut Tx,
    strategy: &Strategy,
    customer: &Customer,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    let kinds = event_kinds_needed(strategy, change);
    let goals = goal_windows(strategy, change);
    let facts = planning::facts(tx, customer.id, &kinds, &goals).await?;
    let changes = first::plan(strategy, customer, change, &facts, now);
    planning::apply(tx, &changes, now).await
}

/// [`reconcile`] a strategy change ([`Change::Replan`]) for many customers:
/// their facts in two reads, their changes in one batch.
pub async fn replan_all(
    tx: &mut Tx,
    strategy: &Strategy,
    customers: &[Customer],
    now: DateTime<Utc>,
) -> Result<()> {
    let kinds = event_kinds_needed(strategy, Change::Replan);
    let ids: Vec<i64> = customers.iter().map(|c| c.id).collect();
    let mut facts = planning::facts_of_many(tx, &ids, &kinds).await?;
    let mut changes = Changes::default();
    for customer in customers {
        let facts: Facts = facts.remove(&customer.id).unwrap_or_default();
        changes.extend(first::plan(strategy, customer, Change::Replan, &facts, now));
    }
    planning::apply(tx, &changes, now).await
}

/// Whether a rule's condition holds; one that fails to evaluate counts as
/// false (logged).
fn holds(
    strategy: &Strategy,
    rule: &crate::strategy::Rule,
    customer: &Customer,
    now: DateTime<Utc>,
    event: Option<&Value>,
) -> bool {
    match strategy.condition_holds(rule, customer, now, event) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(rule = %rule.id, customer = %customer.external_id, "condition failed to evaluate, treated as false: {e}");
            false
        }
    }
}
