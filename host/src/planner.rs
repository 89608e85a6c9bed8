//! Planning: when a customer is written, deleted or sends an event, work out
//! which occurrences each rule wants for that customer and bring the
//! schedule in line (insert, move, cancel). Only that customer is touched;
//! nothing rescans the customer base.

use crate::customer::Customer;
use crate::store::events::EventRecord;
use crate::store::schedule::{self, PlannedOccurrence, ScheduledRow};
use crate::store::{events, goals};
use crate::strategy::{
    date_anchor, date_occurrence_key, InactiveTrigger, Rule, Since, Strategy, Trigger,
};
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sqlx::SqliteConnection;

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

/// Bring the customer's schedule in line with the strategy after `change`.
pub async fn plan(
    conn: &mut SqliteConnection,
    strategy: &Strategy,
    customer: &Customer,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    if let Change::Event(event) = change {
        record_goals(conn, strategy, customer, event, now).await?;
    }
    let pending = schedule::pending_for(conn, customer.id).await?;
    let event_ctx = match change {
        Change::Event(e) => Some(event_context(e)),
        _ => None,
    };
    for rule in &strategy.rules {
        if let Change::Deleted = change {
            if matches!(rule.trigger, Trigger::Deleted) {
                if holds(strategy, rule, customer, now, None) {
                    let occ = instant(customer, rule, "deleted", now, None);
                    schedule::upsert(conn, &occ, now).await?;
                }
            } else {
                schedule::cancel_rule(conn, customer.id, &rule.id, None, "customer deleted", now)
                    .await?;
            }
            continue;
        }
        let is_date = matches!(rule.trigger, Trigger::Date(_) | Trigger::Inactive(_));
        if matches!(change, Change::Replan) && !is_date {
            continue;
        }
        let condition = holds(strategy, rule, customer, now, event_ctx.as_ref());
        match &rule.trigger {
            Trigger::Created { delay } => {
                if matches!(change, Change::Created) && condition {
                    let occ = instant(customer, rule, "created", now + *delay, None);
                    schedule::upsert(conn, &occ, now).await?;
                }
            }
            Trigger::Updated { field, to, delay } => {
                if let Change::Updated(changed) = change {
                    let relevant = match field {
                        Some(f) => {
                            changed.iter().any(|c| c == f)
                                && to
                                    .as_ref()
                                    .is_none_or(|want| customer.field(f).as_ref() == Some(want))
                        }
                        None => !changed.is_empty(),
                    };
                    if relevant && condition {
                        let tag = format!("updated:{}", customer.updated_at.timestamp_millis());
                        let occ = instant(customer, rule, &tag, now + *delay, None);
                        schedule::upsert(conn, &occ, now).await?;
                    }
                }
            }
            Trigger::Deleted => {}
            Trigger::Event { kind, delay } => {
                if let Change::Event(event) = change {
                    if &event.kind == kind && condition {
                        let tag = format!("event:{}", event.id);
                        let occ =
                            instant(customer, rule, &tag, event.at + *delay, event_ctx.clone());
                        schedule::upsert(conn, &occ, now).await?;
                    }
                }
            }
            Trigger::Date(_) => {
                plan_date_rule(conn, rule, customer, &pending, condition, now).await?;
                continue;
            }
            Trigger::Inactive(trigger) => {
                let concerned = match change {
                    Change::Event(e) => trigger.concerns(&e.kind),
                    _ => true,
                };
                if concerned {
                    plan_inactive_rule(conn, rule, trigger, customer, &pending, condition, now)
                        .await?;
                }
                continue;
            }
        }
        if !condition {
            schedule::cancel_rule(
                conn,
                customer.id,
                &rule.id,
                None,
                "condition no longer holds",
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// An event that is some rule's goal, within its window after a reminder
/// of that rule, is recorded against that delivery and ends the rule's
/// pending follow-up steps.
async fn record_goals(
    conn: &mut SqliteConnection,
    strategy: &Strategy,
    customer: &Customer,
    event: &EventRecord,
    now: DateTime<Utc>,
) -> Result<()> {
    for rule in &strategy.rules {
        let Some(goal) = &rule.goal else { continue };
        if goal.event != event.kind {
            continue;
        }
        let Some(delivery) = goals::open_delivery(
            conn,
            customer.id,
            &rule.id,
            event.at - goal.within,
            event.at,
        )
        .await?
        else {
            continue;
        };
        goals::record(
            conn,
            customer.id,
            &rule.id,
            delivery,
            event.id,
            &event.kind,
            event.at,
        )
        .await?;
        schedule::cancel_steps(
            conn,
            customer.id,
            &rule.id,
            &format!("goal reached: {}", event.kind),
            now,
        )
        .await?;
    }
    Ok(())
}

/// What a date rule wants next for a customer.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    /// This occurrence should be pending (and no other of the rule).
    Plan(PlannedOccurrence),
    /// No occurrence should be pending, for this reason.
    CancelAll(String),
    /// Not a date rule: nothing to plan.
    Nothing,
}

/// The next occurrence of a date rule at or after `not_before`, if its condition holds.
pub fn next_date_step(
    rule: &Rule,
    customer: &Customer,
    condition: bool,
    not_before: DateTime<Utc>,
) -> NextStep {
    let Trigger::Date(trigger) = &rule.trigger else {
        return NextStep::Nothing;
    };
    if !condition {
        return NextStep::CancelAll("condition no longer holds".into());
    }
    let Some((anchor_text, anchor_date)) = date_anchor(trigger, customer) else {
        return NextStep::CancelAll(format!("customer has no `{}` date", trigger.attribute));
    };
    match trigger.next_occurrence(anchor_date, customer.tz(), not_before) {
        Some(at) => NextStep::Plan(PlannedOccurrence {
            customer_id: customer.id,
            rule_id: rule.id.clone(),
            key: date_occurrence_key(customer.id, &rule.id, at),
            due_at: at,
            anchor: Some(anchor_text),
            context: None,
        }),
        None => NextStep::CancelAll("date moved".into()),
    }
}

/// After an occurrence of a rule fired (sent, skipped or failed for good),
/// what the rule wants next: the following occurrence of a repeating date rule.
pub fn next_after_fired(
    strategy: &Strategy,
    rule: &Rule,
    customer: &Customer,
    fired_at: DateTime<Utc>,
    context: Option<&Value>,
    now: DateTime<Utc>,
) -> NextStep {
    if customer.deleted_at.is_some() {
        return NextStep::Nothing;
    }
    if let Trigger::Inactive(trigger) = &rule.trigger {
        return next_inactive_step(rule, trigger, customer, context);
    }
    if !matches!(rule.trigger, Trigger::Date(_)) {
        return NextStep::Nothing;
    }
    let condition = holds(strategy, rule, customer, now, None);
    let not_before = (fired_at + Duration::milliseconds(1)).max(now);
    next_date_step(rule, customer, condition, not_before)
}

/// After the `n`-th reminder of a dormant spell: the next repeat, if any.
fn next_inactive_step(
    rule: &Rule,
    trigger: &InactiveTrigger,
    customer: &Customer,
    context: Option<&Value>,
) -> NextStep {
    let spell = context.and_then(|c| c.get("inactive"));
    let since = spell
        .and_then(|s| s.get("since"))
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc));
    let n = spell
        .and_then(|s| s.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as u32;
    match since {
        Some(since) if trigger.repeat.is_some() && n + 1 < trigger.max => {
            NextStep::Plan(inactive_occurrence(rule, trigger, customer, since, n + 1))
        }
        _ => NextStep::Nothing,
    }
}

async fn plan_date_rule(
    conn: &mut SqliteConnection,
    rule: &Rule,
    customer: &Customer,
    pending: &[ScheduledRow],
    condition: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    match next_date_step(rule, customer, condition, now) {
        NextStep::Plan(occ) => {
            // An occurrence already planned from the same date stays as it
            // is, even if it is overdue: the scheduler will still send it.
            let unchanged = pending.iter().any(|row| {
                row.rule_id == rule.id && row.anchor.is_some() && row.anchor == occ.anchor
            });
            if unchanged {
                return Ok(());
            }
            schedule::upsert(conn, &occ, now).await?;
            schedule::cancel_rule(
                conn,
                customer.id,
                &rule.id,
                Some(&occ.key),
                "date moved",
                now,
            )
            .await?;
        }
        NextStep::CancelAll(reason) => {
            schedule::cancel_rule(conn, customer.id, &rule.id, None, &reason, now).await?;
        }
        NextStep::Nothing => {}
    }
    Ok(())
}

/// The occurrence key and context of the `n`-th reminder (from 0) of a
/// dormant spell counted from `since`.
fn inactive_occurrence(
    rule: &Rule,
    trigger: &InactiveTrigger,
    customer: &Customer,
    since: DateTime<Utc>,
    n: u32,
) -> PlannedOccurrence {
    let repeats = trigger.repeat.unwrap_or_else(Duration::zero) * n as i32;
    PlannedOccurrence {
        customer_id: customer.id,
        rule_id: rule.id.clone(),
        key: format!(
            "{}:{}:inactive:{}:{n}",
            customer.id,
            rule.id,
            since.timestamp_millis()
        ),
        due_at: since + trigger.idle + repeats,
        anchor: Some(since.to_rfc3339()),
        context: Some(json!({"inactive": {"since": since.to_rfc3339(), "n": n}})),
    }
}

/// Plan a dormancy rule: find where the quiet spell is counted from, and
/// keep exactly one pending reminder at the end of it. A new activity event
/// moves the spell (the old reminder is canceled); activity after a
/// `created` or event reference ends it.
async fn plan_inactive_rule(
    conn: &mut SqliteConnection,
    rule: &Rule,
    trigger: &InactiveTrigger,
    customer: &Customer,
    pending: &[ScheduledRow],
    condition: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    if !condition {
        schedule::cancel_rule(
            conn,
            customer.id,
            &rule.id,
            None,
            "condition no longer holds",
            now,
        )
        .await?;
        return Ok(());
    }
    let last_activity = events::latest_at(conn, customer.id, &trigger.kinds).await?;
    let since = match &trigger.since {
        Since::Last => {
            Some(last_activity.map_or(customer.created_at, |t| t.max(customer.created_at)))
        }
        Since::Created => match last_activity {
            Some(t) if t >= customer.created_at => None,
            _ => Some(customer.created_at),
        },
        Since::Event(kind) => {
            match events::latest_at(conn, customer.id, std::slice::from_ref(kind)).await? {
                Some(reference) if last_activity.is_none_or(|t| t < reference) => Some(reference),
                _ => None,
            }
        }
    };
    let Some(since) = since else {
        schedule::cancel_rule(conn, customer.id, &rule.id, None, "active again", now).await?;
        return Ok(());
    };
    let anchor = since.to_rfc3339();
    // A spell already planned from the same point stays as it is (it may
    // be on a later repeat).
    if pending
        .iter()
        .any(|row| row.rule_id == rule.id && row.anchor.as_deref() == Some(anchor.as_str()))
    {
        return Ok(());
    }
    let occ = inactive_occurrence(rule, trigger, customer, since, 0);
    schedule::upsert(conn, &occ, now).await?;
    schedule::cancel_rule(
        conn,
        customer.id,
        &rule.id,
        Some(&occ.key),
        "active again",
        now,
    )
    .await?;
    Ok(())
}

fn holds(
    strategy: &Strategy,
    rule: &Rule,
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

fn instant(
    customer: &Customer,
    rule: &Rule,
    tag: &str,
    due: DateTime<Utc>,
    context: Option<Value>,
) -> PlannedOccurrence {
    PlannedOccurrence {
        customer_id: customer.id,
        rule_id: rule.id.clone(),
        key: format!("{}:{}:{tag}", customer.id, rule.id),
        due_at: due,
        anchor: None,
        context,
    }
}
