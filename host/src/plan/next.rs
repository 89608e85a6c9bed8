//! What a rule wants after one of its occurrences fired (sent, skipped or
//! failed for good): the next step of its follow-up sequence, and — after
//! the rule's own message — the next occurrence of a repeating date rule or
//! the next reminder of a dormant spell. Pure; the tick writes the result
//! with the rest of its outcome.

use super::first::{inactive_occurrence, next_date_occurrence};
use super::{holds, keys};
use crate::customer::Customer;
use crate::store::schedule::{Cancel, PlannedOccurrence, ScheduledRow};
use crate::strategy::{step_of, InactiveTrigger, Rule, Strategy, Trigger};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// What follows a fired occurrence.
#[derive(Debug, Default, PartialEq)]
pub struct Following {
    /// Occurrences to plan.
    pub plan: Vec<PlannedOccurrence>,
    /// Pending occurrences to cancel.
    pub cancel: Vec<Cancel>,
}

/// What follows `row` of `rule`, fired at `now` for `customer`. With
/// `continue_sequence` false (the rule's condition ended it) no further step
/// is planned.
pub fn after_fired(
    strategy: &Strategy,
    rule: &Rule,
    row: &ScheduledRow,
    customer: &Customer,
    continue_sequence: bool,
    now: DateTime<Utc>,
) -> Following {
    let mut out = Following::default();
    let step = step_of(row.context.as_ref());
    if continue_sequence && customer.deleted_at.is_none() {
        if let Some(following) = rule.steps.get(step) {
            if let Some(due) = super::first::due_after(rule, now, following.after) {
                out.plan.push(next_step(row, step + 1, due));
            }
        }
    }
    if step > 0 || customer.deleted_at.is_some() {
        return out;
    }
    match next_occurrence(strategy, rule, customer, row, now) {
        Ok(Some(occ)) => {
            // A rule with follow-ups keeps them: only a rule without steps
            // clears stray occurrences here.
            if rule.steps.is_empty() {
                out.cancel.push(Cancel {
                    customer_id: customer.id,
                    rule_id: rule.id.clone(),
                    keep: Some(occ.key.clone()),
                    reason: "date moved".into(),
                });
            }
            out.plan.push(occ);
        }
        Ok(None) => {}
        // No next date (a rule that fires once, a date moved into the
        // past): the rule's other pending occurrences go, but not the
        // follow-up step just planned for this one.
        Err(reason) => out.cancel.push(Cancel {
            customer_id: customer.id,
            rule_id: rule.id.clone(),
            keep: out.plan.first().map(|step| step.key.clone()),
            reason,
        }),
    }
    out
}

/// Step `step` of the sequence `row` belongs to, due at `due`.
fn next_step(row: &ScheduledRow, step: usize, due: DateTime<Utc>) -> PlannedOccurrence {
    let mut context = row.context.clone().unwrap_or_else(|| json!({}));
    if !context.is_object() {
        context = json!({});
    }
    context["step"] = json!(step);
    PlannedOccurrence {
        customer_id: row.customer_id,
        rule_id: row.rule_id.clone(),
        key: keys::step(&row.key, step),
        due_at: due,
        anchor: row.anchor.clone(),
        context: Some(context),
    }
}

/// The next occurrence of a repeating rule after `row`: `Ok(None)` when the
/// rule does not repeat, `Err(reason)` when its pending ones should go.
fn next_occurrence(
    strategy: &Strategy,
    rule: &Rule,
    customer: &Customer,
    row: &ScheduledRow,
    now: DateTime<Utc>,
) -> Result<Option<PlannedOccurrence>, String> {
    match &rule.trigger {
        Trigger::Inactive(trigger) => Ok(next_of_spell(rule, trigger, customer, row)),
        Trigger::Date(_) => {
            let condition = holds(strategy, rule, customer, now, None);
            let Some(after_last) = row.occurs_at.checked_add_signed(Duration::milliseconds(1))
            else {
                return Ok(None);
            };
            let not_before = after_last.max(now);
            next_date_occurrence(rule, customer, condition, not_before)
        }
        _ => Ok(None),
    }
}

/// After the `n`-th reminder of a dormant spell: the next repeat, if any.
fn next_of_spell(
    rule: &Rule,
    trigger: &InactiveTrigger,
    customer: &Customer,
    row: &ScheduledRow,
) -> Option<PlannedOccurrence> {
    let spell = row.context.as_ref().and_then(|c| c.get("inactive"));
    let since = spell
        .and_then(|s| s.get("since"))
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())?
        .with_timezone(&Utc);
    let n = spell
        .and_then(|s| s.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let next = u32::try_from(n).ok()?.checked_add(1)?;
    if trigger.repeat.is_none() || next >= trigger.max {
        return None;
    }
    inactive_occurrence(rule, trigger, customer, since, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    fn strategy(rules: &str) -> Strategy {
        let text = format!(
            "[channels.inbox]\nbuiltin = \"inbox\"\n[attributes]\nrenews_at = \"date\"\n{rules}"
        );
        let config = Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        Strategy::compile(&config, &BTreeSet::from(["inbox".to_string()])).unwrap()
    }

    fn at(month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, 10, 0, 0).unwrap()
    }

    fn row(rule: &str, key: &str, context: Option<Value>, anchor: Option<&str>) -> ScheduledRow {
        ScheduledRow {
            id: 1,
            customer_id: 7,
            rule_id: rule.into(),
            key: key.into(),
            occurs_at: at(3, 1),
            due_at: at(3, 1),
            status: "pending".into(),
            attempts: 0,
            claim_token: Some("t".into()),
            anchor: anchor.map(str::to_string),
            context,
            last_error: None,
        }
    }

    fn customer() -> Customer {
        let mut c = Customer::new("c7", at(1, 1));
        c.id = 7;
        c
    }

    const SEQUENCE: &str = r#"
[[rules]]
id = "win-back"
trigger = { on = "event", kind = "expired" }
channels = ["inbox"]
subject = "a"
text = "a"
[[rules.steps]]
after = "3d"
channels = ["inbox"]
subject = "b"
text = "b"
[[rules.steps]]
after = "2d"
channels = ["inbox"]
subject = "c"
text = "c"
"#;

    #[test]
    fn each_fired_step_plans_the_next_after_its_delay() {
        let s = strategy(SEQUENCE);
        let rule = s.rule("win-back").unwrap();
        let first = row(
            "win-back",
            "7:win-back:event:1",
            Some(json!({"kind": "expired"})),
            None,
        );
        let out = after_fired(&s, rule, &first, &customer(), true, at(3, 1));
        assert_eq!(out.plan.len(), 1);
        let step1 = &out.plan[0];
        assert_eq!(step1.key, "7:win-back:event:1#step1");
        assert_eq!(step1.due_at, at(3, 4));
        assert_eq!(step1.context.as_ref().unwrap()["step"], 1);
        assert_eq!(step1.context.as_ref().unwrap()["kind"], "expired");
        let fired1 = row("win-back", &step1.key, step1.context.clone(), None);
        let out = after_fired(&s, rule, &fired1, &customer(), true, at(3, 4));
        assert_eq!(out.plan[0].key, "7:win-back:event:1#step2");
        assert_eq!(out.plan[0].due_at, at(3, 6));
        let fired2 = row(
            "win-back",
            &out.plan[0].key,
            out.plan[0].context.clone(),
            None,
        );
        assert_eq!(
            after_fired(&s, rule, &fired2, &customer(), true, at(3, 6)),
            Following::default()
        );
    }

    #[test]
    fn an_ended_sequence_or_a_deleted_customer_gets_no_next_step() {
        let s = strategy(SEQUENCE);
        let rule = s.rule("win-back").unwrap();
        let first = row("win-back", "7:win-back:event:1", None, None);
        assert!(after_fired(&s, rule, &first, &customer(), false, at(3, 1))
            .plan
            .is_empty());
        let mut gone = customer();
        gone.deleted_at = Some(at(3, 1));
        assert!(after_fired(&s, rule, &first, &gone, true, at(3, 1))
            .plan
            .is_empty());
    }

    #[test]
    fn a_yearly_date_rule_plans_next_year_and_clears_strays() {
        let s = strategy(
            r#"
[[rules]]
id = "renewal"
trigger = { on = "date", attribute = "renews_at", at = "10:00", every = "1y" }
channels = ["inbox"]
subject = "r"
text = "r"
"#,
        );
        let rule = s.rule("renewal").unwrap();
        let mut c = customer();
        c.attributes.insert("renews_at".into(), "2026-03-01".into());
        let fired = row(
            "renewal",
            "7:renewal:2026-03-01T10:00Z",
            None,
            Some("2026-03-01"),
        );
        let out = after_fired(&s, rule, &fired, &c, true, at(3, 1));
        assert_eq!(out.plan.len(), 1);
        assert_eq!(
            out.plan[0].due_at,
            Utc.with_ymd_and_hms(2027, 3, 1, 10, 0, 0).unwrap()
        );
        assert_eq!(
            out.cancel[0].keep.as_deref(),
            Some(out.plan[0].key.as_str())
        );
    }

    #[test]
    fn a_dormant_spell_repeats_up_to_its_max() {
        let s = strategy(
            r#"
[[rules]]
id = "miss-you"
trigger = { on = "inactive", kinds = ["login"], for = "7d", repeat = "7d", max = 2 }
channels = ["inbox"]
subject = "m"
text = "m"
"#,
        );
        let rule = s.rule("miss-you").unwrap();
        let since = at(3, 1);
        let spell = |n: u32| json!({"inactive": {"since": since.to_rfc3339(), "n": n}});
        let first = row("miss-you", "k0", Some(spell(0)), Some(&since.to_rfc3339()));
        let out = after_fired(&s, rule, &first, &customer(), true, at(3, 8));
        assert_eq!(out.plan.len(), 1);
        assert_eq!(out.plan[0].due_at, at(3, 15));
        assert_eq!(out.plan[0].key, keys::inactive(7, "miss-you", since, 1));
        let second = row("miss-you", "k1", Some(spell(1)), Some(&since.to_rfc3339()));
        assert!(after_fired(&s, rule, &second, &customer(), true, at(3, 15))
            .plan
            .is_empty());
    }
}
