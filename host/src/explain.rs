//! `herald preview` and `herald explain`: what a customer would receive
//! from a rule right now — decided by the tick's own [`Decider`] (routing,
//! conditions, targeting plugin, send windows, caps) and rendered, without
//! sending or recording anything — and for every rule what is coming for
//! the customer and, where nothing is, why not.

use crate::customer::Customer;
use crate::engine::Herald;
use crate::plan::event_context;
use crate::store::schedule::ScheduledRow;
use crate::store::{customers, events, goals, schedule};
use crate::strategy::{date_anchor, step_of, Rule, Trigger};
use crate::tick::claim::Context;
use crate::tick::decide::{Decider, Decision};
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What the tick would do with a reminder right now, without sending or
/// recording anything: for `herald preview` and `herald explain`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRun {
    /// send, skip, defer, wait or broken.
    pub outcome: String,
    /// The channel that would carry it.
    pub channel: Option<String>,
    /// The channel a failover would move it from.
    pub failover_from: Option<String>,
    /// Why it would not go now.
    pub reason: Option<String>,
    /// When it would go instead, if deferred.
    pub until: Option<DateTime<Utc>>,
    /// The rendered message.
    pub subject: Option<String>,
    /// Text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// The rule's extra fields.
    pub fields: Vec<(String, String)>,
    /// The unsubscribe link it would carry.
    pub unsubscribe_url: Option<String>,
}

impl From<Decision<'_>> for DryRun {
    fn from(decision: Decision<'_>) -> DryRun {
        let mut out = DryRun::default();
        match decision {
            Decision::Send {
                channel,
                rendered,
                failover_from,
                unsubscribe_url,
            } => {
                out.outcome = "send".into();
                out.channel = Some(channel.name.clone());
                out.failover_from = failover_from.map(str::to_string);
                out.subject = Some(rendered.subject);
                out.text = Some(rendered.text);
                out.html = rendered.html;
                out.fields = rendered.fields;
                out.unsubscribe_url = unsubscribe_url;
            }
            Decision::Skip(reason) | Decision::Exit(reason) | Decision::Cancel(reason) => {
                out.outcome = "skip".into();
                out.reason = Some(reason);
            }
            Decision::Broken(reason) => {
                out.outcome = "broken".into();
                out.reason = Some(reason);
            }
            Decision::Defer {
                until,
                reason,
                channel,
            } => {
                out.outcome = "defer".into();
                out.channel = Some(channel.name.clone());
                out.reason = Some(reason);
                out.until = Some(until);
            }
            Decision::Hold { channel, reason } => {
                out.outcome = "hold".into();
                out.channel = Some(channel.name.clone());
                out.reason = Some(reason);
            }
            Decision::Wait(until) => {
                out.outcome = "wait".into();
                out.until = Some(until);
            }
            Decision::Target { channel } => {
                out.outcome = "skip".into();
                out.channel = Some(channel.name.clone());
                out.reason = Some("the targeting plugin was not asked".into());
            }
        }
        out
    }
}

/// Decide `row` for its customer at `now` as the tick would — routing,
/// conditions, targeting plugin, send windows and caps — and render it,
/// without sending or recording anything (the channel's rate limit is not
/// consulted: that would spend a real send's turn).
pub async fn dry_run(herald: &Herald, row: &ScheduledRow, now: DateTime<Utc>) -> Result<DryRun> {
    let context = Context::load(herald, &[row.customer_id], now).await?;
    let decider = Decider::new(herald, &context, now);
    let decision = decider
        .decide(std::slice::from_ref(row))
        .await
        .pop()
        .unwrap_or_else(|| Decision::Skip("nothing was decided".into()));
    let decision = decider.hold_back(row, decision, context.history.get(&row.customer_id));
    Ok(decision.into())
}

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

/// Which channel a reminder would go by now and why, or why none can.
fn route_note(
    route: &Result<crate::channels::Route<'_>, String>,
    preference: &crate::strategy::ChannelPreference,
) -> String {
    let route = match route {
        Ok(route) => route,
        Err(why) => return why.clone(),
    };
    let mut note = format!("would go by {}", route.channel.name);
    if preference.preferred_first.as_deref() == Some(route.channel.name.as_str()) {
        note.push_str(" (the customer's preferred channel)");
    }
    if let Some(from) = route.failover_from {
        note.push_str(&format!(" (failing over from {from})"));
    }
    if !route.passed_over.is_empty() {
        note.push_str(&format!(", passing over {}", route.passed_over.join(", ")));
    }
    note
}

async fn find_customer(herald: &Herald, external_id: &str) -> Result<Customer> {
    let mut tx = herald.store.read().await?;
    match customers::by_external_id(&mut tx, external_id).await? {
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

/// Render what `customer` would receive from `rule` (step `step`) at `now`.
pub async fn preview(
    herald: &Herald,
    rule_id: &str,
    customer_id: &str,
    step: usize,
    now: DateTime<Utc>,
) -> Result<DryRun> {
    let customer = find_customer(herald, customer_id).await?;
    let rule = find_rule(herald, rule_id)?;
    if step > rule.steps.len() {
        bail!(
            "rule `{rule_id}` has {} follow-up step(s); --step goes from 0 to {}",
            rule.steps.len(),
            rule.steps.len()
        );
    }
    let mut context = match &rule.trigger {
        Trigger::Event { kind, .. } => {
            let mut tx = herald.store.read().await?;
            let latest = events::since(
                &mut tx,
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
    dry_run(herald, &row, now).await
}

/// Every rule's state for a customer at `now`: upcoming reminders with
/// their due times, and for each rule that will not fire, why.
pub async fn explain(
    herald: &Herald,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<RuleState>> {
    let customer = find_customer(herald, customer_id).await?;
    let (rows, suppressed) = {
        let mut tx = herald.store.read().await?;
        (
            schedule::all_for(&mut tx, customer.id).await?,
            crate::tick::claim::refusals(
                &mut tx,
                &std::collections::HashMap::from([(customer.id, customer.clone())]),
            )
            .await?,
        )
    };
    let reached = goals::for_customer(&herald.store, customer.id).await?;
    let mut out = Vec::new();
    for rule in &herald.strategy.rules {
        let mine: Vec<&ScheduledRow> = rows.iter().filter(|r| r.rule_id == rule.id).collect();
        let mut pending: Vec<&&ScheduledRow> =
            mine.iter().filter(|r| r.status == "pending").collect();
        pending.sort_by_key(|r| r.due_at);
        let step = pending
            .first()
            .map(|next| step_of(next.context.as_ref()))
            .unwrap_or(0);
        let preference = herald
            .strategy
            .channel_preference(rule, step, &customer, now);
        let route =
            herald
                .channels
                .route(&preference, &customer, suppressed.get(&customer.id), 0, now);
        if let Some(next) = pending.first() {
            let mut detail = next
                .last_error
                .clone()
                .map(|e| format!("held back before: {e}; "))
                .unwrap_or_default();
            detail.push_str(&route_note(&route, &preference));
            out.push(RuleState {
                rule: rule.id.clone(),
                state: "upcoming".into(),
                due: Some(next.due_at),
                step,
                detail,
            });
            continue;
        }
        let condition = herald.strategy.condition_holds(rule, &customer, now, None);
        let (state, detail) = if let Some(goal) = reached.iter().rev().find(|g| g.rule == rule.id) {
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
                "canceled" if reason.contains("goal reached") => ("goal reached".into(), reason),
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
                    rule.trigger.describe()
                ),
            )
        } else {
            ("not triggered".into(), rule.trigger.describe())
        };
        let mut detail = detail;
        match condition {
            Ok(false) if !mine.is_empty() => detail.push_str("; its condition is false now"),
            Err(e) => detail.push_str(&format!("; its condition fails: {e}")),
            _ => {}
        }
        // Where a reminder could still go out, say by which channel; where
        // none can reach the customer, say why whatever the state.
        let may_send = matches!(state.as_str(), "not triggered" | "condition false");
        if may_send || route.is_err() {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&route_note(&route, &preference));
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
