//! The occurrences each rule wants after a change to one customer: a pure
//! function of the customer, the strategy, the change, the [`Facts`] the
//! store holds about the customer, and the time. Follow-up steps and
//! repeats are [`super::next`]'s.

use super::{event_context, holds, keys, Change};
use crate::customer::Customer;
use crate::store::planning::{Changes, Facts, GoalCredit, MarkedCancel};
use crate::store::schedule::{Cancel, PlannedOccurrence, ScheduledRow};
use crate::strategy::{date_anchor, InactiveTrigger, Rule, Since, Strategy, Trigger};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// What `change` means for the customer's schedule.
pub fn plan(
    strategy: &Strategy,
    customer: &Customer,
    change: Change<'_>,
    facts: &Facts,
    now: DateTime<Utc>,
) -> Changes {
    let mut out = Changes::default();
    let mut pending: Vec<&ScheduledRow> = facts.pending.iter().collect();
    if let Change::Event(event) = change {
        credit_goals(strategy, customer, event, facts, &mut pending, &mut out);
    }
    let event_ctx = match change {
        Change::Event(e) => Some(event_context(e)),
        _ => None,
    };
    let planner = Planner {
        strategy,
        customer,
        change,
        pending: &pending,
        event_ctx: event_ctx.as_ref(),
        facts,
        now,
    };
    for rule in &strategy.rules {
        planner.rule(rule, &mut out);
    }
    out
}

/// A goal event within its window after a reminder of the rule is credited
/// to that delivery and ends the rule's pending follow-up steps (which
/// planning then no longer counts as pending).
fn credit_goals(
    strategy: &Strategy,
    customer: &Customer,
    event: &crate::store::events::EventRecord,
    facts: &Facts,
    pending: &mut Vec<&ScheduledRow>,
    out: &mut Changes,
) {
    for rule in &strategy.rules {
        if rule.goal.as_ref().is_none_or(|g| g.event != event.kind) {
            continue;
        }
        let Some(&delivery_id) = facts.open_deliveries.get(&rule.id) else {
            continue;
        };
        out.goals.push(GoalCredit {
            customer_id: customer.id,
            rule_id: rule.id.clone(),
            delivery_id,
            event_id: event.id,
            event_kind: event.kind.clone(),
            at: event.at,
        });
        out.marked_cancels.push(MarkedCancel {
            customer_id: customer.id,
            rule_id: rule.id.clone(),
            marker: keys::STEP_MARKER,
            reason: format!("goal reached: {}", event.kind),
        });
        pending.retain(|row| {
            !(row.rule_id == rule.id
                && row.claim_token.is_none()
                && row.key.contains(keys::STEP_MARKER))
        });
    }
}

/// Everything one customer's planning reads.
struct Planner<'a> {
    strategy: &'a Strategy,
    customer: &'a Customer,
    change: Change<'a>,
    pending: &'a [&'a ScheduledRow],
    event_ctx: Option<&'a Value>,
    facts: &'a Facts,
    now: DateTime<Utc>,
}

impl Planner<'_> {
    fn rule(&self, rule: &Rule, out: &mut Changes) {
        if let Change::Deleted = self.change {
            return self.deleted(rule, out);
        }
        let is_date = matches!(rule.trigger, Trigger::Date(_) | Trigger::Inactive(_));
        if matches!(self.change, Change::Replan) && !is_date {
            return;
        }
        let condition = holds(self.strategy, rule, self.customer, self.now, self.event_ctx);
        match &rule.trigger {
            Trigger::Date(_) => self.date_rule(rule, condition, out),
            Trigger::Inactive(trigger) => {
                let concerned = match self.change {
                    Change::Event(e) => trigger.concerns(&e.kind),
                    _ => true,
                };
                if concerned {
                    self.inactive_rule(rule, trigger, condition, out);
                }
            }
            _ if condition => {
                if let Some(occ) = self.instant_occurrence(rule) {
                    out.upserts.push(occ);
                }
            }
            _ => out
                .cancels
                .push(self.cancel(rule, None, "condition no longer holds")),
        }
    }

    /// A deletion fires the rules triggered by it and cancels every other.
    fn deleted(&self, rule: &Rule, out: &mut Changes) {
        if matches!(rule.trigger, Trigger::Deleted) {
            if holds(self.strategy, rule, self.customer, self.now, None) {
                out.upserts
                    .push(self.instant(rule, "deleted", self.now, None));
            }
        } else {
            out.cancels
                .push(self.cancel(rule, None, "customer deleted"));
        }
    }

    /// The occurrence a created/updated/event rule wants for this change, if
    /// the change is what it waits for.
    fn instant_occurrence(&self, rule: &Rule) -> Option<PlannedOccurrence> {
        match (&rule.trigger, self.change) {
            (Trigger::Created { delay }, Change::Created) => {
                let due = due_after(rule, self.now, *delay)?;
                Some(self.instant(rule, "created", due, None))
            }
            (Trigger::Updated { field, to, delay }, Change::Updated(changed)) => {
                let relevant = match field {
                    Some(f) => {
                        changed.iter().any(|c| c == f)
                            && to
                                .as_ref()
                                .is_none_or(|want| self.customer.field(f).as_ref() == Some(want))
                    }
                    None => !changed.is_empty(),
                };
                let tag = format!("updated:{}", self.customer.updated_at.timestamp_millis());
                let due = due_after(rule, self.now, *delay).filter(|_| relevant)?;
                Some(self.instant(rule, &tag, due, None))
            }
            (Trigger::Event { kind, delay }, Change::Event(event)) if &event.kind == kind => {
                let tag = format!("event:{}", event.id);
                let due = due_after(rule, event.at, *delay)?;
                Some(self.instant(rule, &tag, due, self.event_ctx.cloned()))
            }
            _ => None,
        }
    }

    /// A date rule keeps exactly its next occurrence pending.
    fn date_rule(&self, rule: &Rule, condition: bool, out: &mut Changes) {
        match next_date_occurrence(rule, self.customer, condition, self.now) {
            Ok(Some(occ)) => {
                // An occurrence already planned from the same date stays as it
                // is, even if it is overdue: the scheduler will still send it.
                let unchanged = self.pending.iter().any(|row| {
                    row.rule_id == rule.id && row.anchor.is_some() && row.anchor == occ.anchor
                });
                if !unchanged {
                    out.cancels
                        .push(self.cancel(rule, Some(&occ.key), "date moved"));
                    out.upserts.push(occ);
                }
            }
            Ok(None) => {}
            Err(reason) => out.cancels.push(self.cancel(rule, None, &reason)),
        }
    }

    /// A dormancy rule keeps exactly one pending reminder at the end of the
    /// customer's quiet spell. A new activity event moves the spell (the old
    /// reminder is canceled); activity after a `created` or event reference
    /// ends it.
    fn inactive_rule(
        &self,
        rule: &Rule,
        trigger: &InactiveTrigger,
        condition: bool,
        out: &mut Changes,
    ) {
        if !condition {
            return out
                .cancels
                .push(self.cancel(rule, None, "condition no longer holds"));
        }
        let Some(since) = spell_start(trigger, self.customer, self.facts) else {
            return out.cancels.push(self.cancel(rule, None, "active again"));
        };
        let anchor = since.to_rfc3339();
        // A spell already planned from the same point stays as it is (it
        // may be on a later repeat).
        if self
            .pending
            .iter()
            .any(|row| row.rule_id == rule.id && row.anchor.as_deref() == Some(anchor.as_str()))
        {
            return;
        }
        let Some(occ) = inactive_occurrence(rule, trigger, self.customer, since, 0) else {
            return;
        };
        out.cancels
            .push(self.cancel(rule, Some(&occ.key), "active again"));
        out.upserts.push(occ);
    }

    fn instant(
        &self,
        rule: &Rule,
        tag: &str,
        due: DateTime<Utc>,
        context: Option<Value>,
    ) -> PlannedOccurrence {
        PlannedOccurrence {
            customer_id: self.customer.id,
            rule_id: rule.id.clone(),
            key: keys::instant(self.customer.id, &rule.id, tag),
            due_at: due,
            anchor: None,
            context,
        }
    }

    fn cancel(&self, rule: &Rule, keep: Option<&str>, reason: &str) -> Cancel {
        Cancel {
            customer_id: self.customer.id,
            rule_id: rule.id.clone(),
            keep: keep.map(str::to_string),
            reason: reason.to_string(),
        }
    }
}

/// Where the customer's current quiet spell is counted from, if they are in
/// one: the latest activity (or sign-up), sign-up only while there was no
/// activity since, or the latest reference event with no activity after it.
fn spell_start(
    trigger: &InactiveTrigger,
    customer: &Customer,
    facts: &Facts,
) -> Option<DateTime<Utc>> {
    let latest_of = |kinds: &[String]| {
        kinds
            .iter()
            .filter_map(|k| facts.latest.get(k))
            .max()
            .copied()
    };
    let last_activity = latest_of(&trigger.kinds);
    match &trigger.since {
        Since::Last => {
            Some(last_activity.map_or(customer.created_at, |t| t.max(customer.created_at)))
        }
        Since::Created => match last_activity {
            Some(t) if t >= customer.created_at => None,
            _ => Some(customer.created_at),
        },
        Since::Event(kind) => match latest_of(std::slice::from_ref(kind)) {
            Some(reference) if last_activity.is_none_or(|t| t < reference) => Some(reference),
            _ => None,
        },
    }
}

/// The next occurrence of a date rule at or after `not_before`: `Ok(None)`
/// when the rule is not a date rule, `Err(reason)` when none should be
/// pending (condition false, no date, the date moved past its last one).
pub fn next_date_occurrence(
    rule: &Rule,
    customer: &Customer,
    condition: bool,
    not_before: DateTime<Utc>,
) -> Result<Option<PlannedOccurrence>, String> {
    let Trigger::Date(trigger) = &rule.trigger else {
        return Ok(None);
    };
    if !condition {
        return Err("condition no longer holds".into());
    }
    let Some((anchor_text, anchor_date)) = date_anchor(trigger, customer) else {
        return Err(format!("customer has no `{}` date", trigger.attribute));
    };
    let at = trigger
        .next_occurrence(anchor_date, customer.tz(), not_before)
        .ok_or_else(|| "date moved".to_string())?;
    Ok(Some(PlannedOccurrence {
        customer_id: customer.id,
        rule_id: rule.id.clone(),
        key: keys::date(customer.id, &rule.id, at),
        due_at: at,
        anchor: Some(anchor_text),
        context: None,
    }))
}

/// The `n`-th reminder (from 0) of a dormant spell counted from `since`;
/// none when that instant is past the calendar's end (a stored instant
/// from before instants were bounded).
pub fn inactive_occurrence(
    rule: &Rule,
    trigger: &InactiveTrigger,
    customer: &Customer,
    since: DateTime<Utc>,
    n: u32,
) -> Option<PlannedOccurrence> {
    let repeats = trigger
        .repeat
        .unwrap_or_else(Duration::zero)
        .checked_mul(i32::try_from(n).ok()?)?;
    let due_at = due_after(rule, since, trigger.idle).and_then(|d| due_after(rule, d, repeats))?;
    Some(PlannedOccurrence {
        customer_id: customer.id,
        rule_id: rule.id.clone(),
        key: keys::inactive(customer.id, &rule.id, since, n),
        due_at,
        anchor: Some(since.to_rfc3339()),
        context: Some(json!({"inactive": {"since": since.to_rfc3339(), "n": n}})),
    })
}

/// `from + delay`, or none (with a warning naming the rule) when that is
/// past the end of the calendar: the occurrence is not planned, and
/// nothing panics.
pub fn due_after(rule: &Rule, from: DateTime<Utc>, delay: Duration) -> Option<DateTime<Utc>> {
    let due = from.checked_add_signed(delay);
    if due.is_none() {
        tracing::warn!(rule = %rule.id, %from, "not planned: {from} plus the rule's delay is past the end of the calendar");
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::events::EventRecord;
    use chrono::TimeZone;
    use std::collections::BTreeSet;

    /// A strategy of `rules` (TOML) with an `inbox` channel and a date attribute.
    pub(crate) fn strategy(rules: &str) -> Strategy {
        let text = format!(
            "[channels.inbox]\nbuiltin = \"inbox\"\n[attributes]\nrenews_at = \"date\"\n{rules}"
        );
        let config = Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        Strategy::compile(&config, &BTreeSet::from(["inbox".to_string()])).unwrap()
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    fn customer() -> Customer {
        let mut c = Customer::new("c7", at(1, 9));
        c.id = 7;
        c.state = Some("trial".into());
        c
    }

    fn event(id: i64, kind: &str, when: DateTime<Utc>) -> EventRecord {
        EventRecord {
            id,
            customer_id: 7,
            kind: kind.into(),
            at: when,
            properties: Default::default(),
        }
    }

    fn pending(rule: &str, key: &str, anchor: Option<&str>) -> ScheduledRow {
        ScheduledRow {
            id: 1,
            customer_id: 7,
            rule_id: rule.into(),
            key: key.into(),
            occurs_at: at(1, 9),
            due_at: at(1, 9),
            status: "pending".into(),
            attempts: 0,
            claim_token: None,
            anchor: anchor.map(str::to_string),
            context: None,
            last_error: None,
        }
    }

    const WELCOME: &str = r#"
[[rules]]
id = "welcome"
trigger = { on = "created", delay = "1h" }
when = "customer.state == 'trial'"
channels = ["inbox"]
subject = "Hi"
text = "Hi"
"#;

    #[test]
    fn a_created_rule_wants_one_occurrence_keyed_by_the_change() {
        let s = strategy(WELCOME);
        let out = plan(
            &s,
            &customer(),
            Change::Created,
            &Facts::default(),
            at(1, 9),
        );
        assert_eq!(out.upserts.len(), 1);
        assert_eq!(out.upserts[0].key, "7:welcome:created");
        assert_eq!(out.upserts[0].due_at, at(1, 10));
        assert!(out.cancels.is_empty() && out.goals.is_empty());
        // Planning again gives the same key: the store's upsert makes it one row.
        let again = plan(
            &s,
            &customer(),
            Change::Created,
            &Facts::default(),
            at(1, 9),
        );
        assert_eq!(again.upserts[0].key, out.upserts[0].key);
    }

    #[test]
    fn a_false_condition_cancels_what_is_pending_and_plans_nothing() {
        let s = strategy(WELCOME);
        let mut c = customer();
        c.state = Some("paid".into());
        let out = plan(
            &s,
            &c,
            Change::Updated(&["state".into()]),
            &Facts::default(),
            at(2, 9),
        );
        assert!(out.upserts.is_empty());
        assert_eq!(out.cancels.len(), 1);
        assert_eq!(out.cancels[0].reason, "condition no longer holds");
        assert_eq!(out.cancels[0].keep, None);
    }

    #[test]
    fn an_updated_rule_fires_only_for_its_field_and_value() {
        let s = strategy(
            r#"
[[rules]]
id = "vip"
trigger = { on = "updated", field = "state", to = "vip" }
channels = ["inbox"]
subject = "VIP"
text = "VIP"
"#,
        );
        let mut c = customer();
        c.updated_at = at(3, 12);
        let name_changed = plan(
            &s,
            &c,
            Change::Updated(&["name".into()]),
            &Facts::default(),
            at(3, 12),
        );
        assert!(name_changed.upserts.is_empty());
        let still_trial = plan(
            &s,
            &c,
            Change::Updated(&["state".into()]),
            &Facts::default(),
            at(3, 12),
        );
        assert!(still_trial.upserts.is_empty());
        c.state = Some("vip".into());
        let vip = plan(
            &s,
            &c,
            Change::Updated(&["state".into()]),
            &Facts::default(),
            at(3, 12),
        );
        assert_eq!(vip.upserts.len(), 1);
        assert_eq!(
            vip.upserts[0].key,
            format!("7:vip:updated:{}", at(3, 12).timestamp_millis())
        );
    }

    #[test]
    fn an_event_rule_is_due_after_the_event_with_the_event_in_context() {
        let s = strategy(
            r#"
[[rules]]
id = "thanks"
trigger = { on = "event", kind = "payment", delay = "2h" }
channels = ["inbox"]
subject = "Thanks"
text = "Paid {{ event.properties.amount }}"
"#,
        );
        let paid = event(41, "payment", at(4, 8));
        let out = plan(
            &s,
            &customer(),
            Change::Event(&paid),
            &Facts::default(),
            at(4, 9),
        );
        assert_eq!(out.upserts.len(), 1);
        let occ = &out.upserts[0];
        assert_eq!(occ.key, "7:thanks:event:41");
        assert_eq!(occ.due_at, at(4, 10));
        assert_eq!(occ.context.as_ref().unwrap()["kind"], "payment");
        let login = event(42, "login", at(4, 8));
        assert!(plan(
            &s,
            &customer(),
            Change::Event(&login),
            &Facts::default(),
            at(4, 9)
        )
        .upserts
        .is_empty());
    }

    #[test]
    fn deleting_fires_deleted_rules_and_cancels_the_rest() {
        let s = strategy(&format!(
            "{WELCOME}\n[[rules]]\nid = \"bye\"\ntrigger = {{ on = \"deleted\" }}\nchannels = [\"inbox\"]\nsubject = \"Bye\"\ntext = \"Bye\"\n"
        ));
        let out = plan(
            &s,
            &customer(),
            Change::Deleted,
            &Facts::default(),
            at(5, 9),
        );
        assert_eq!(out.upserts.len(), 1);
        assert_eq!(out.upserts[0].key, "7:bye:deleted");
        assert_eq!(out.cancels.len(), 1);
        assert_eq!(out.cancels[0].rule_id, "welcome");
        assert_eq!(out.cancels[0].reason, "customer deleted");
    }

    const RENEWAL: &str = r#"
[[rules]]
id = "renewal"
trigger = { on = "date", attribute = "renews_at", before = "7d", at = "10:00" }
channels = ["inbox"]
subject = "Renews"
text = "Renews"
"#;

    #[test]
    fn a_date_rule_keeps_its_next_occurrence_and_moves_it_with_the_date() {
        let s = strategy(RENEWAL);
        let mut c = customer();
        c.attributes.insert("renews_at".into(), "2026-04-20".into());
        let out = plan(&s, &c, Change::Replan, &Facts::default(), at(5, 9));
        assert_eq!(out.upserts.len(), 1);
        let occ = &out.upserts[0];
        assert_eq!(
            occ.due_at,
            Utc.with_ymd_and_hms(2026, 4, 13, 10, 0, 0).unwrap()
        );
        assert_eq!(occ.key, "7:renewal:2026-04-13T10:00Z");
        assert_eq!(occ.anchor.as_deref(), Some("2026-04-20"));
        // The others of the rule go, this one stays.
        assert_eq!(out.cancels[0].keep.as_deref(), Some(occ.key.as_str()));
        // Planned from the same date already: nothing to do, even if overdue.
        let facts = Facts {
            pending: vec![pending("renewal", &occ.key, Some("2026-04-20"))],
            ..Facts::default()
        };
        assert!(plan(&s, &c, Change::Replan, &facts, at(5, 9)).is_empty());
        // No date: nothing may stay pending.
        c.attributes.clear();
        let out = plan(
            &s,
            &c,
            Change::Updated(&["renews_at".into()]),
            &facts,
            at(5, 9),
        );
        assert!(out.upserts.is_empty());
        assert_eq!(out.cancels[0].reason, "customer has no `renews_at` date");
    }

    #[test]
    fn replanning_touches_only_date_and_dormancy_rules() {
        let s = strategy(&format!("{WELCOME}{RENEWAL}"));
        let mut c = customer();
        c.attributes.insert("renews_at".into(), "2026-04-20".into());
        let out = plan(&s, &c, Change::Replan, &Facts::default(), at(5, 9));
        assert!(out.upserts.iter().all(|o| o.rule_id == "renewal"));
        assert!(out.cancels.iter().all(|c| c.rule_id == "renewal"));
    }

    const DORMANT: &str = r#"
[[rules]]
id = "miss-you"
trigger = { on = "inactive", kinds = ["login"], for = "7d", repeat = "7d", max = 3 }
channels = ["inbox"]
subject = "We miss you"
text = "We miss you"
"#;

    #[test]
    fn a_dormancy_rule_counts_the_spell_from_the_latest_activity() {
        let s = strategy(DORMANT);
        let mut facts = Facts::default();
        facts.latest.insert("login".into(), at(10, 8));
        let login = event(5, "login", at(10, 8));
        let out = plan(&s, &customer(), Change::Event(&login), &facts, at(10, 8));
        assert_eq!(out.upserts.len(), 1);
        let occ = &out.upserts[0];
        assert_eq!(occ.due_at, at(17, 8));
        assert_eq!(occ.key, keys::inactive(7, "miss-you", at(10, 8), 0));
        assert_eq!(out.cancels[0].reason, "active again");
        // An event of another kind does not concern it.
        let paid = event(6, "payment", at(11, 8));
        assert!(plan(&s, &customer(), Change::Event(&paid), &facts, at(11, 8)).is_empty());
    }

    #[test]
    fn a_since_created_spell_ends_with_the_first_activity() {
        let s = strategy(
            r#"
[[rules]]
id = "no-visit"
trigger = { on = "inactive", kinds = ["visit"], for = "3d", since = "created" }
channels = ["inbox"]
subject = "Come by"
text = "Come by"
"#,
        );
        let none = plan(
            &s,
            &customer(),
            Change::Created,
            &Facts::default(),
            at(1, 9),
        );
        assert_eq!(none.upserts[0].due_at, at(4, 9));
        let mut facts = Facts::default();
        facts.latest.insert("visit".into(), at(2, 9));
        let visit = event(8, "visit", at(2, 9));
        let out = plan(&s, &customer(), Change::Event(&visit), &facts, at(2, 9));
        assert!(out.upserts.is_empty());
        assert_eq!(out.cancels[0].reason, "active again");
    }

    #[test]
    fn a_goal_event_is_credited_and_ends_the_pending_steps() {
        let s = strategy(
            r#"
[[rules]]
id = "win-back"
trigger = { on = "event", kind = "expired" }
goal = { event = "login", within = "3d" }
channels = ["inbox"]
subject = "Come back"
text = "Come back"
[[rules.steps]]
after = "3d"
channels = ["inbox"]
subject = "Still there?"
text = "Still there?"
"#,
        );
        let mut facts = Facts::default();
        facts.open_deliveries.insert("win-back".into(), 99);
        facts
            .pending
            .push(pending("win-back", "7:win-back:event:1#step1", None));
        let login = event(3, "login", at(6, 9));
        let out = plan(&s, &customer(), Change::Event(&login), &facts, at(6, 9));
        assert_eq!(
            out.goals,
            vec![GoalCredit {
                customer_id: 7,
                rule_id: "win-back".into(),
                delivery_id: 99,
                event_id: 3,
                event_kind: "login".into(),
                at: at(6, 9),
            }]
        );
        assert_eq!(out.marked_cancels[0].marker, keys::STEP_MARKER);
        assert_eq!(out.marked_cancels[0].reason, "goal reached: login");
        // Without an open delivery, a login is just a login.
        let out = plan(
            &s,
            &customer(),
            Change::Event(&login),
            &Facts::default(),
            at(6, 9),
        );
        assert!(out.goals.is_empty() && out.marked_cancels.is_empty());
    }
}
