//! `herald preview` and `herald explain`: what a customer would receive
//! from a rule right now (rendered exactly as the tick would, through the
//! same routing, targeting, windows and caps, without sending), and for every
//! rule what is coming for the customer and, where nothing is, why not.

use crate::customer::Customer;
use crate::engine::Herald;
use crate::planner::event_context;
use crate::scheduler::DryRun;
use crate::store::schedule::ScheduledRow;
use crate::store::{customers, events, goals, schedule, suppressions};
use crate::strategy::{date_anchor, step_of, Rule, Trigger};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One rule's state for a customer.
#[derive(Debug, Clone, Serialize)]
pub struct RuleState {
    /// The rule.
    pub rule: String,
    /// `upcoming` (with `due`), or why nothing is: `not triggered`,
    /// `condition false`, `unreachable`, `goal reached`, `ended`, `sent`, ...
    pub state: String,
    /// When the next reminder is due.
    pub due: Option<DateTime<Utc>>,
    /// The follow-up step it is (0: the rule's own message).
    pub step: usize,
    /// Details: the recorded reason, the condition, the channels tried.
    pub detail: String,
}

async fn find_customer(herald: &Herald, external_id: &str) -> Result<Customer> {
    let mut conn = herald.store.pool.acquire().await?;
    match customers::by_external_id(&mut conn, external_id).await? {
        Some(c) if c.deleted_at.is_none() => Ok(c),
        Some(_) => bail!("customer `{external_id}` was deleted"),
        None => bail!("no customer with external_id `{external_id}`"),
    }
}

fn find_rule<'a>(herald: &'a Herald, id: &str) -> Result<&'a Rule> {
    herald.strategy.rule(id).ok_or_else(|| {
        let known: Vec<&str> = herald
            .strategy
            .rules
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        anyhow::anyhow!("no rule `{id}`; the rules are: {}", known.join(", "))
    })
}

impl Herald {
    /// Render what `customer` would receive from `rule` (step `step`) at `now`.
    pub async fn preview(
        &self,
        rule_id: &str,
        customer_id: &str,
        step: usize,
        now: DateTime<Utc>,
    ) -> Result<DryRun> {
        let customer = find_customer(self, customer_id).await?;
        let rule = find_rule(self, rule_id)?;
        if step > rule.steps.len() {
            bail!(
                "rule `{rule_id}` has {} follow-up step(s); --step goes from 0 to {}",
                rule.steps.len(),
                rule.steps.len()
            );
        }
        let mut context = match &rule.trigger {
            Trigger::Event { kind, .. } => {
                let mut conn = self.store.pool.acquire().await?;
                let latest = events::since(
                    &mut conn,
                    customer.id,
                    DateTime::<Utc>::MIN_UTC,
                    Some(std::slice::from_ref(kind)),
                    1,
                )
                .await?;
                latest.last().map(event_context)
            }
            _ => None,
        };
        if step > 0 {
            let mut c = context.unwrap_or_else(|| serde_json::json!({}));
            c["step"] = serde_json::json!(step);
            context = Some(c);
        }
        let anchor = match &rule.trigger {
            Trigger::Date(t) => date_anchor(t, &customer).map(|(text, _)| text),
            _ => None,
        };
        let row = ScheduledRow {
            id: 0,
            customer_id: customer.id,
            rule_id: rule.id.clone(),
            key: format!("preview:{}:{}", customer.id, rule.id),
            occurs_at: now,
            due_at: now,
            status: "pending".into(),
            attempts: 0,
            claim_token: None,
            anchor,
            context,
            last_error: None,
        };
        self.dry_run(&row, &customer, now).await
    }

    /// Every rule's state for a customer at `now`: upcoming reminders with
    /// their due times, and for each rule that will not fire, why.
    pub async fn explain(&self, customer_id: &str, now: DateTime<Utc>) -> Result<Vec<RuleState>> {
        let customer = find_customer(self, customer_id).await?;
        let rows = {
            let mut conn = self.store.pool.acquire().await?;
            schedule::all_for(&mut conn, customer.id).await?
        };
        let suppressed = {
            let mut conn = self.store.pool.acquire().await?;
            suppressions::for_customers(&mut conn, &[customer.id]).await?
        };
        let reached = goals::for_customer(&self.store.pool, customer.id).await?;
        let mut out = Vec::new();
        for rule in &self.strategy.rules {
            let mine: Vec<&ScheduledRow> = rows.iter().filter(|r| r.rule_id == rule.id).collect();
            let mut pending: Vec<&&ScheduledRow> =
                mine.iter().filter(|r| r.status == "pending").collect();
            pending.sort_by_key(|r| r.due_at);
            if let Some(next) = pending.first() {
                out.push(RuleState {
                    rule: rule.id.clone(),
                    state: "upcoming".into(),
                    due: Some(next.due_at),
                    step: step_of(next.context.as_ref()),
                    detail: next
                        .last_error
                        .clone()
                        .map(|e| format!("held back before: {e}"))
                        .unwrap_or_default(),
                });
                continue;
            }
            let condition = self.strategy.condition_holds(rule, &customer, now, None);
            let route = self.channels.route(
                rule.channels_of(0),
                &customer,
                suppressed.get(&customer.id),
                0,
                now,
            );
            let (state, detail) =
                if let Some(goal) = reached.iter().rev().find(|g| g.rule == rule.id) {
                    (
                        "goal reached".to_string(),
                        format!(
                            "`{}` at {}; the sequence ended",
                            goal.event,
                            goal.at.to_rfc3339()
                        ),
                    )
                } else if let Some(last) = mine.first() {
                    let reason = last.last_error.clone().unwrap_or_default();
                    match last.status.as_str() {
                        "canceled" if reason.contains("goal reached") => {
                            ("goal reached".into(), reason)
                        }
                        "canceled" => ("ended".into(), reason),
                        "done" => (
                            "sent".into(),
                            format!("last at {}", last.occurs_at.to_rfc3339()),
                        ),
                        "skipped" => ("skipped".into(), reason),
                        other => (other.to_string(), reason),
                    }
                } else if matches!(condition, Ok(false)) {
                    (
                        "condition false".into(),
                        format!(
                            "{}, but only when its `when` holds",
                            describe_trigger(&rule.trigger)
                        ),
                    )
                } else {
                    ("not triggered".into(), describe_trigger(&rule.trigger))
                };
            let mut detail = detail;
            match condition {
                Ok(false) if !mine.is_empty() => detail.push_str("; its condition is false now"),
                Err(e) => detail.push_str(&format!("; its condition fails: {e}")),
                _ => {}
            }
            if let Err(why) = route {
                detail.push_str(&format!("; {why}"));
            }
            out.push(RuleState {
                rule: rule.id.clone(),
                state,
                due: None,
                step: 0,
                detail: detail.trim_start_matches("; ").to_string(),
            });
        }
        Ok(out)
    }
}

/// What makes a rule fire, in words.
pub fn describe_trigger(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Created { .. } => "fires when the customer is created".into(),
        Trigger::Updated { field: Some(f), .. } => format!("fires when `{f}` changes"),
        Trigger::Updated { .. } => "fires when the customer changes".into(),
        Trigger::Deleted => "fires when the customer is deleted".into(),
        Trigger::Event { kind, .. } => format!("waits for a `{kind}` event"),
        Trigger::Inactive(t) => format!(
            "waits for {} without {}",
            humantime(t.idle),
            t.kinds.join("/")
        ),
        Trigger::Date(t) => format!("needs a `{}` date", t.attribute),
    }
}

fn humantime(d: chrono::Duration) -> String {
    if d.num_hours() % 24 == 0 {
        format!("{}d", d.num_days())
    } else {
        format!("{}h", d.num_hours())
    }
}
