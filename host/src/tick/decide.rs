//! Decide: for each claimed occurrence, what happens now. Is the customer
//! live, the rule still there, its condition still true, its date unchanged?
//! Which channel reaches the customer (routing, suppressions, failover)?
//! What does the rule's targeting plugin say? Then render the message, and
//! hold it back if a send window or frequency cap says so, or pace it to the
//! channel's rate limit. `herald preview` and `explain` use the same
//! [`Decider`] (without the rate limit, which would spend a send's turn).

use super::claim::Context;
use crate::channels::{Channel, Delivery};
use crate::config::UncertainSends;
use crate::customer::Customer;
use crate::engine::Herald;
use crate::plugin::targeting::Verdict;
use crate::plugin::SendOutcome;
use crate::render;
use crate::store::rates;
use crate::store::schedule::ScheduledRow;
use crate::strategy::caps::{self, Sent};
use crate::strategy::{date_anchor, step_of, topics, windows, Rule, Trigger};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Batches at least this many rows per core are decided on several threads.
const PARALLEL_DECIDE_MIN: usize = 512;

/// What was decided for one claimed occurrence.
pub enum Decision<'a> {
    /// Send through this channel.
    Send {
        /// The channel that carries it.
        channel: &'a Channel,
        /// The message.
        rendered: render::Rendered,
        /// The channel the rule wanted, when a failover moved it.
        failover_from: Option<&'a str>,
        /// The signed link that unsubscribes the customer from this channel.
        unsubscribe_url: Option<String>,
    },
    /// The rule's targeting plugin must be asked first (replaced before
    /// anything is recorded).
    Target {
        /// The channel routing chose.
        channel: &'a Channel,
    },
    /// The channel is at its rate limit: come back at this time (not an
    /// attempt, not recorded).
    Wait(DateTime<Utc>),
    /// Held back by a send window or a frequency cap until this time (not an
    /// attempt; recorded as `deferred` with the reason).
    Defer {
        /// When to try again.
        until: DateTime<Utc>,
        /// Why.
        reason: String,
        /// The channel it would have gone on.
        channel: &'a Channel,
    },
    /// Do not send; final.
    Skip(String),
    /// The rule's condition no longer holds: do not send, and end its
    /// follow-up sequence.
    Exit(String),
    /// The rendering failed; final.
    Broken(String),
    /// Nothing to record (the row is gone or canceled).
    Cancel(String),
    /// An earlier send of this row may have reached the provider (the node
    /// died, or its claim ran out, between send and record) and the channel
    /// holds such sends (`uncertain = "hold"`): kept as `unknown` for an
    /// operator to redrive or drop, not sent again.
    Hold {
        /// The channel it would go on again.
        channel: &'a Channel,
        /// Why it is held.
        reason: String,
    },
}

/// One claimed occurrence on its way through the tick.
pub struct Work<'a> {
    /// The claimed row.
    pub row: ScheduledRow,
    /// What happens to it.
    pub decision: Decision<'a>,
    /// The plugin's answer and how long the send took (ms), once sent.
    pub outcome: Option<(SendOutcome, i64)>,
}

/// Decides occurrences for one batch of customers at one instant.
pub struct Decider<'h, 'c> {
    herald: &'h Herald,
    context: &'c Context,
    now: DateTime<Utc>,
}

/// Decide every claimed row, hold back what windows and caps hold back, and
/// pace sends to their channel's rate limit. Sends decided here count
/// towards the caps of the rows after them.
pub async fn decide_claimed<'a>(
    herald: &'a Herald,
    rows: Vec<ScheduledRow>,
    context: &Context,
    now: DateTime<Utc>,
) -> Vec<Work<'a>> {
    let decider = Decider::new(herald, context, now);
    let decisions = decider.decide(&rows).await;
    let mut history = context.history.clone();
    let mut pacer = Pacer {
        fleet: fleet_grants(herald, &decisions, now).await,
        ..Pacer::default()
    };
    let mut work = Vec::with_capacity(rows.len());
    // Rows in doubt go first: each is decided again against what is
    // recorded (a send goes out with its key, which lets the provider drop
    // a repeat) and counts towards its customer's caps whatever the
    // decision, before anything else of theirs is decided.
    let mut batch: Vec<(usize, ScheduledRow, Decision<'a>)> = rows
        .into_iter()
        .zip(decisions)
        .enumerate()
        .map(|(i, (row, decision))| (i, row, decision))
        .collect();
    batch.sort_by_key(|(_, row, _)| !context.in_doubt.contains(&row.id));
    let mut decided = Vec::with_capacity(batch.len());
    for (i, row, decision) in batch {
        let in_doubt = context.in_doubt.contains(&row.id);
        let decision = decider.hold_back(&row, decision, history.get(&row.customer_id));
        let decision = match decision {
            Decision::Send { channel, .. }
                if in_doubt && channel.uncertain == UncertainSends::Hold =>
            {
                Decision::Hold {
                    channel,
                    reason: IN_DOUBT.to_string(),
                }
            }
            decision => pacer.pace(decision, now),
        };
        let sent_on = match &decision {
            Decision::Send { channel, .. } => Some(channel.name.clone()),
            _ if in_doubt => Some(String::new()),
            _ => None,
        };
        if let Some(channel) = sent_on.filter(|_| decider.counts_towards_caps(&row)) {
            history
                .entry(row.customer_id)
                .or_default()
                .push(Sent { at: now, channel });
        }
        decided.push((i, row, decision));
    }
    decided.sort_by_key(|(i, _, _)| *i);
    for (_, row, decision) in decided {
        work.push(Work {
            row,
            decision,
            outcome: None,
        });
    }
    work
}

/// Why an in-doubt row is held.
const IN_DOUBT: &str = "held: an earlier send may have reached the provider (the claim ran out between send and record); redrive or drop it";

/// Sends over a channel's rate wait their turn: the k-th of them in a batch
/// comes back k intervals after the limiter's next slot. On PostgreSQL the
/// slots come from the fleet's shared limit ([`fleet_grants`]), on SQLite
/// from the channel's in-process limiter.
#[derive(Default)]
struct Pacer<'a> {
    waiting: HashMap<&'a str, u32>,
    fleet: HashMap<String, rates::Grant>,
}

impl<'a> Pacer<'a> {
    fn pace(&mut self, decision: Decision<'a>, now: DateTime<Utc>) -> Decision<'a> {
        let Decision::Send { channel, .. } = &decision else {
            return decision;
        };
        let Some(limiter) = &channel.rate else {
            return decision;
        };
        if let Some(grant) = self.fleet.get_mut(channel.name.as_str()) {
            if grant.granted > 0 {
                grant.granted -= 1;
                return decision;
            }
            let k = self.waiting.entry(channel.name.as_str()).or_insert(0);
            let slot = ceil_to_millis(limiter.slot(grant.next_slot, *k));
            *k += 1;
            return Decision::Wait(slot);
        }
        match limiter.try_acquire(now) {
            Ok(()) => decision,
            Err(first) => {
                let k = self.waiting.entry(channel.name.as_str()).or_insert(0);
                let slot = ceil_to_millis(limiter.slot(first, *k));
                *k += 1;
                Decision::Wait(slot)
            }
        }
    }
}

/// On PostgreSQL, the sends each rate-limited channel of this batch may
/// make now, taken from the fleet's shared limit in one statement per
/// channel; empty on SQLite. A channel whose shared limit cannot be read
/// grants nothing this tick (its sends wait an interval): a fleet never
/// goes over a provider's rate because the database hiccuped.
async fn fleet_grants(
    herald: &Herald,
    decisions: &[Decision<'_>],
    now: DateTime<Utc>,
) -> HashMap<String, rates::Grant> {
    let mut wanted: HashMap<&str, (u32, &crate::channels::ratelimit::RateLimiter)> = HashMap::new();
    for decision in decisions {
        if let Decision::Send { channel, .. } = decision {
            if let Some(limiter) = &channel.rate {
                wanted
                    .entry(channel.name.as_str())
                    .or_insert((0, limiter))
                    .0 += 1;
            }
        }
    }
    let mut grants = HashMap::new();
    for (name, (count, limiter)) in wanted {
        let interval_us = limiter
            .rate()
            .interval
            .num_microseconds()
            .unwrap_or(i64::MAX);
        let limit = rates::Limit {
            interval_us,
            burst: limiter.burst(),
        };
        let grant = match rates::take(&herald.store, name, count, limit, now).await {
            Ok(Some(grant)) => grant,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(channel = name, "the shared rate limit is unreadable; this tick's sends on the channel wait: {e:#}");
                rates::Grant {
                    granted: 0,
                    next_slot: now + limiter.rate().interval,
                }
            }
        };
        grants.insert(name.to_string(), grant);
    }
    grants
}

/// The schedule stores milliseconds: round a waiting time up, so a send
/// never comes back a fraction of a millisecond before its slot.
fn ceil_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    let sub_ms = t.timestamp_subsec_nanos() % 1_000_000;
    if sub_ms == 0 {
        t
    } else {
        t + Duration::nanoseconds((1_000_000 - sub_ms) as i64)
    }
}

impl<'h, 'c> Decider<'h, 'c> {
    /// A decider for customers of `context` at `now`.
    pub fn new(herald: &'h Herald, context: &'c Context, now: DateTime<Utc>) -> Self {
        Decider {
            herald,
            context,
            now,
        }
    }

    /// Decide `rows` (route, render, ask targeting plugins), in order.
    pub async fn decide(&self, rows: &[ScheduledRow]) -> Vec<Decision<'h>> {
        let mut decisions = self.decide_all(rows);
        self.apply_targeting(rows, &mut decisions).await;
        decisions
    }

    /// Whether a send of `row` counts towards the frequency caps.
    fn counts_towards_caps(&self, row: &ScheduledRow) -> bool {
        let strategy = &self.herald.strategy;
        !strategy.caps.is_empty()
            && strategy
                .rule(&row.rule_id)
                .is_some_and(|r| !r.transactional)
    }

    /// [`Decider::decide_one`] every row. Deciding is mostly rendering
    /// templates, pure CPU work on read-only state, so a large batch is
    /// split over the machine's cores; the decisions come back in order.
    fn decide_all(&self, rows: &[ScheduledRow]) -> Vec<Decision<'h>> {
        let one = |row: &ScheduledRow| self.decide_one(row, None);
        if rows.len() < 2 * PARALLEL_DECIDE_MIN {
            return rows.iter().map(one).collect();
        }
        // Asked only for a batch worth splitting: on Linux the answer reads
        // three cgroup files.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(rows.len() / PARALLEL_DECIDE_MIN);
        if threads <= 1 {
            return rows.iter().map(one).collect();
        }
        let one = &one;
        std::thread::scope(|scope| {
            let parts: Vec<_> = rows
                .chunks(rows.len().div_ceil(threads))
                .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// Decide one row; `target` carries a targeting plugin's variables once
    /// it said to send.
    fn decide_one(&self, row: &ScheduledRow, target: Option<&Map<String, Value>>) -> Decision<'h> {
        let herald = self.herald;
        let (customer, rule) = match self.still_wanted(row) {
            Ok(found) => found,
            Err(decision) => return *decision,
        };
        let opted_out = self.context.opted_out.get(&customer.id);
        if let Some(why) = topics::refused(rule.topic.as_deref(), rule.transactional, opted_out) {
            return Decision::Skip(why);
        }
        let step = step_of(row.context.as_ref());
        let suppressed = self.context.suppressed.get(&customer.id);
        let preference = herald
            .strategy
            .channel_preference(rule, step, customer, self.now);
        let route =
            match herald
                .channels
                .route(&preference, customer, suppressed, row.attempts, self.now)
            {
                Ok(r) => r,
                Err(reason) => return Decision::Skip(reason),
            };
        if target.is_none() && herald.targeting.contains_key(&rule.id) {
            return Decision::Target {
                channel: route.channel,
            };
        }
        match self.render(row, rule, customer, route.channel, target) {
            Ok((rendered, unsubscribe_url)) => Decision::Send {
                channel: route.channel,
                rendered,
                failover_from: route.failover_from,
                unsubscribe_url,
            },
            Err(e) => Decision::Broken(format!("template failed: {e}")),
        }
    }

    /// The row's customer and rule if the reminder is still wanted: the
    /// customer is live (or the rule is about the deletion), the rule exists,
    /// its condition holds and its date has not moved.
    fn still_wanted(
        &self,
        row: &ScheduledRow,
    ) -> Result<(&'c Customer, &'h Rule), Box<Decision<'h>>> {
        let stop = |d: Decision<'h>| Err(Box::new(d));
        let Some(customer) = self.context.customers.get(&row.customer_id) else {
            return stop(Decision::Cancel("customer no longer exists".into()));
        };
        let Some(rule) = self.herald.strategy.rule(&row.rule_id) else {
            return stop(Decision::Cancel(format!(
                "rule `{}` is no longer in the strategy",
                row.rule_id
            )));
        };
        if customer.deleted_at.is_some() && !matches!(rule.trigger, Trigger::Deleted) {
            return stop(Decision::Cancel("customer deleted".into()));
        }
        let step = step_of(row.context.as_ref());
        match self
            .herald
            .strategy
            .condition_holds(rule, customer, self.now, row.context.as_ref())
        {
            Ok(true) => {}
            Ok(false) => {
                return stop(Decision::Exit(if step > 0 {
                    "sequence ended: the rule's condition no longer holds".into()
                } else {
                    "condition no longer holds".into()
                }))
            }
            Err(e) => {
                return stop(Decision::Skip(format!(
                    "condition could not be evaluated: {e}"
                )))
            }
        }
        if let Trigger::Date(trigger) = &rule.trigger {
            let current = date_anchor(trigger, customer).map(|(text, _)| text);
            if current.as_deref() != row.anchor.as_deref() {
                return stop(Decision::Skip(format!(
                    "`{}` changed since this reminder was planned ({} → {})",
                    trigger.attribute,
                    row.anchor.as_deref().unwrap_or("none"),
                    current.as_deref().unwrap_or("none")
                )));
            }
        }
        Ok((customer, rule))
    }

    /// The message for `customer` on `channel`, and its unsubscribe link.
    fn render(
        &self,
        row: &ScheduledRow,
        rule: &Rule,
        customer: &Customer,
        channel: &Channel,
        target: Option<&Map<String, Value>>,
    ) -> Result<(render::Rendered, Option<String>), String> {
        let herald = self.herald;
        let unsubscribe_url = match &channel.delivery {
            // The inbox is inside the operator's own app and has its own
            // settings; a task goes to staff.
            Delivery::Inbox | Delivery::Task => None,
            Delivery::Plugin { .. } => herald
                .links
                .unsubscribe_url(&customer.external_id, &channel.name),
        };
        let step = step_of(row.context.as_ref());
        let (text_templates, has_html) = rule.templates_of(step, customer.locale.as_deref());
        let templates = &herald.strategy.templates;
        let preferences_url = (templates.links_preferences(&text_templates)
            || templates.links_preferences(&rule.id))
        .then(|| herald.links.preferences_url(&customer.external_id))
        .flatten();
        let links = render::MessageLinks {
            unsubscribe_url: unsubscribe_url.as_deref(),
            preferences_url: preferences_url.as_deref(),
        };
        let ctx = render::message_context(
            customer,
            &rule.id,
            self.now,
            row.context.as_ref(),
            links,
            target,
        );
        let mut rendered = herald
            .strategy
            .templates
            .render(&rule.id, &text_templates, has_html, &rule.fields, &ctx)
            .map_err(|e| e.to_string())?;
        // Tracked links and the open pixel name this attempt; the built-in
        // channels stay inside the operator's own app.
        if matches!(channel.delivery, Delivery::Plugin { .. }) {
            herald
                .tracking
                .apply(&mut rendered, row.id, row.attempts + 1);
        }
        Ok((rendered, unsubscribe_url))
    }

    /// Ask the targeting plugins of the rules that have one about their due
    /// reminders (concurrently), and turn each answer into the decision:
    /// send with the plugin's variables, skip, or defer.
    async fn apply_targeting(&self, rows: &[ScheduledRow], decisions: &mut [Decision<'h>]) {
        let asks: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Decision::Target { .. }))
            .map(|(i, _)| i)
            .collect();
        if asks.is_empty() {
            return;
        }
        let herald = self.herald;
        // Futures made first, then streamed (see `deliver::send_all`).
        let asks: Vec<_> = asks
            .into_iter()
            .map(|i| {
                let row = &rows[i];
                async move {
                    let asked = match (
                        self.context.customers.get(&row.customer_id),
                        herald.targeting.get(&row.rule_id),
                    ) {
                        (Some(customer), Some(targeting)) => {
                            targeting.evaluate(&herald.store, customer, self.now).await
                        }
                        _ => Err(anyhow::anyhow!("the rule or customer is gone")),
                    };
                    (i, asked)
                }
            })
            .collect();
        let verdicts: Vec<(usize, anyhow::Result<(Verdict, u64)>)> = futures::stream::iter(asks)
            .buffer_unordered(herald.scheduler.concurrency)
            .collect()
            .await;
        for (i, verdict) in verdicts {
            let Decision::Target { channel } = decisions[i] else {
                continue;
            };
            decisions[i] = self.after_targeting(&rows[i], channel, verdict);
        }
    }

    /// The decision once the targeting plugin answered.
    fn after_targeting(
        &self,
        row: &ScheduledRow,
        channel: &'h Channel,
        verdict: anyhow::Result<(Verdict, u64)>,
    ) -> Decision<'h> {
        match verdict {
            Err(e) => Decision::Skip(format!("targeting plugin not asked: {e:#}")),
            Ok((Verdict::Send(vars), fuel)) => {
                tracing::debug!(rule = %row.rule_id, fuel, "targeting: send");
                self.decide_one(row, Some(&vars))
            }
            Ok((Verdict::Skip(reason), _)) => Decision::Skip(format!("targeting: {reason}")),
            Ok((Verdict::Defer(until), _)) => Decision::Defer {
                until,
                reason: format!(
                    "targeting plugin asked to wait until {}",
                    until.to_rfc3339()
                ),
                channel,
            },
            Ok((Verdict::Failed(reason), _)) => Decision::Skip(format!(
                "targeting plugin failed, evaluation skipped: {reason}"
            )),
        }
    }

    /// A send held back by a send window or a frequency cap becomes a
    /// deferral (or a skip, for `on_cap = "drop"`); transactional rules and
    /// other decisions pass unchanged.
    pub fn hold_back(
        &self,
        row: &ScheduledRow,
        decision: Decision<'h>,
        history: Option<&Vec<Sent>>,
    ) -> Decision<'h> {
        let Decision::Send { channel, .. } = &decision else {
            return decision;
        };
        let (Some(customer), Some(rule)) = (
            self.context.customers.get(&row.customer_id),
            self.herald.strategy.rule(&row.rule_id),
        ) else {
            return decision;
        };
        if rule.transactional {
            return decision;
        }
        let channel: &'h Channel = channel;
        if let Some(held) = self.outside_window(rule, customer, channel) {
            return held;
        }
        let history = history.map(Vec::as_slice).unwrap_or(&[]);
        let Some((cap, until)) =
            caps::check(&self.herald.strategy.caps, history, &channel.name, self.now)
        else {
            return decision;
        };
        if rule.drop_when_capped {
            Decision::Skip(format!(
                "capped ({}); dropped, as the rule says on_cap = \"drop\"",
                cap.describe()
            ))
        } else {
            Decision::Defer {
                until,
                reason: format!("capped ({}); deferred until the cap allows", cap.describe()),
                channel,
            }
        }
    }

    /// A deferral to the next opening when `now` is outside the rule's (or
    /// the strategy's) send windows in the customer's zone.
    fn outside_window(
        &self,
        rule: &Rule,
        customer: &Customer,
        channel: &'h Channel,
    ) -> Option<Decision<'h>> {
        let windows = rule
            .send_windows
            .as_deref()
            .unwrap_or(&self.herald.strategy.send_windows);
        let opening = windows::next_opening(windows, customer.tz(), self.now)?;
        let listed = windows
            .iter()
            .map(|w| format!("{}-{}", w.start.format("%H:%M"), w.end.format("%H:%M")))
            .collect::<Vec<_>>()
            .join(", ");
        Some(Decision::Defer {
            until: opening,
            reason: format!(
                "outside the send window ({listed} in {}); deferred to the next opening",
                customer.timezone
            ),
            channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::customer::CustomerPatch;
    use crate::engine::testing::{deployment, monday_9am, with_inbox, TestDeployment};
    use serde_json::json;

    /// A deployment with `rules` (and `extra` top-level config) and one
    /// customer `c1` named Ada, in UTC; returns it and the customer's id.
    async fn setup(extra: &str, rules: &str) -> (TestDeployment, i64) {
        let config = format!("{extra}\n{}", with_inbox(rules));
        let d = deployment(&config, monday_9am()).await;
        let patch: CustomerPatch = serde_json::from_value(json!({
            "external_id": "c1", "name": "Ada", "state": "trial",
            "attributes": {"renews_at": "2026-03-09"}
        }))
        .unwrap();
        let id = d.herald.upsert_customer(&patch).await.unwrap().customer.id;
        (d, id)
    }

    const NOTE: &str = r#"
[attributes]
renews_at = "date"

[[rules]]
id = "note"
trigger = { on = "event", kind = "ping" }
when = "customer.state == 'trial'"
channels = ["inbox"]
subject = "Hello {{ customer.name }}"
text = "Hi"
"#;

    fn row(customer_id: i64, rule: &str) -> ScheduledRow {
        ScheduledRow {
            id: 1,
            customer_id,
            rule_id: rule.into(),
            key: format!("{customer_id}:{rule}:x"),
            occurs_at: monday_9am(),
            due_at: monday_9am(),
            status: "pending".into(),
            attempts: 0,
            claim_token: Some("tok".into()),
            anchor: None,
            context: None,
            last_error: None,
        }
    }

    async fn decide_one(d: &TestDeployment, row: &ScheduledRow) -> String {
        let now = d.clock.now();
        let context = Context::load(&d.herald, &[row.customer_id], now)
            .await
            .unwrap();
        let decider = Decider::new(&d.herald, &context, now);
        let decision = decider
            .decide(std::slice::from_ref(row))
            .await
            .pop()
            .unwrap();
        let decision = decider.hold_back(row, decision, context.history.get(&row.customer_id));
        describe(&decision)
    }

    /// A decision in words, for assertions.
    fn describe(d: &Decision<'_>) -> String {
        match d {
            Decision::Send {
                channel, rendered, ..
            } => format!("send {} {}", channel.name, rendered.subject),
            Decision::Target { channel } => format!("target {}", channel.name),
            Decision::Wait(t) => format!("wait {}", t.to_rfc3339()),
            Decision::Defer { until, reason, .. } => {
                format!("defer {} {reason}", until.to_rfc3339())
            }
            Decision::Skip(r) => format!("skip {r}"),
            Decision::Exit(r) => format!("exit {r}"),
            Decision::Broken(r) => format!("broken {r}"),
            Decision::Cancel(r) => format!("cancel {r}"),
            Decision::Hold { channel, reason } => format!("hold {} {reason}", channel.name),
        }
    }

    #[tokio::test]
    async fn a_wanted_reminder_is_routed_and_rendered() {
        let (d, id) = setup("", NOTE).await;
        assert_eq!(
            decide_one(&d, &row(id, "note")).await,
            "send inbox Hello Ada"
        );
    }

    #[tokio::test]
    async fn a_condition_false_at_send_time_ends_the_reminder_and_its_sequence() {
        let (d, id) = setup("", NOTE).await;
        let patch: CustomerPatch =
            serde_json::from_value(json!({"external_id": "c1", "state": "paid"})).unwrap();
        d.herald.upsert_customer(&patch).await.unwrap();
        assert_eq!(
            decide_one(&d, &row(id, "note")).await,
            "exit condition no longer holds"
        );
        let mut step = row(id, "note");
        step.context = Some(json!({"step": 1}));
        assert_eq!(
            decide_one(&d, &step).await,
            "exit sequence ended: the rule's condition no longer holds"
        );
    }

    #[tokio::test]
    async fn gone_customers_and_rules_cancel_quietly() {
        let (d, id) = setup("", NOTE).await;
        assert_eq!(
            decide_one(&d, &row(id, "retired")).await,
            "cancel rule `retired` is no longer in the strategy"
        );
        assert_eq!(
            decide_one(&d, &row(id + 100, "note")).await,
            "cancel customer no longer exists"
        );
        d.herald.delete_customer("c1").await.unwrap();
        assert_eq!(
            decide_one(&d, &row(id, "note")).await,
            "cancel customer deleted"
        );
    }

    #[tokio::test]
    async fn a_moved_date_skips_the_reminder_planned_from_the_old_one() {
        let rules = r#"
[attributes]
renews_at = "date"

[[rules]]
id = "renewal"
trigger = { on = "date", attribute = "renews_at", before = "1d" }
channels = ["inbox"]
subject = "Renews"
text = "Renews"
"#;
        let (d, id) = setup("", rules).await;
        let mut planned = row(id, "renewal");
        planned.anchor = Some("2026-03-09".into());
        assert_eq!(decide_one(&d, &planned).await, "send inbox Renews");
        planned.anchor = Some("2026-02-01".into());
        assert_eq!(
            decide_one(&d, &planned).await,
            "skip `renews_at` changed since this reminder was planned (2026-02-01 → 2026-03-09)"
        );
    }

    #[tokio::test]
    async fn a_customer_who_refused_every_channel_is_skipped_with_the_reason() {
        let (d, id) = setup("", NOTE).await;
        d.herald
            .suppress(
                "c1",
                "inbox",
                "asked",
                crate::store::suppressions::source::API,
            )
            .await
            .unwrap();
        assert_eq!(
            decide_one(&d, &row(id, "note")).await,
            "skip no channel can reach the customer: inbox (the customer unsubscribed)"
        );
    }

    #[tokio::test]
    async fn send_windows_defer_to_the_next_opening_in_the_customers_zone() {
        let (d, id) = setup("[strategy]\nsend_windows = [\"11:00-12:00\"]\n", NOTE).await;
        let got = decide_one(&d, &row(id, "note")).await;
        assert!(
            got.starts_with(
                "defer 2026-03-02T11:00:00+00:00 outside the send window (11:00-12:00 in UTC)"
            ),
            "{got}"
        );
    }

    #[tokio::test]
    async fn caps_defer_or_drop_and_count_sends_of_the_same_batch() {
        let caps = "[strategy]\ncaps = [{ max = 1, per = \"1d\" }]\n";
        let (d, id) = setup(caps, NOTE).await;
        let now = d.clock.now();
        let context = Context::load(&d.herald, &[id], now).await.unwrap();
        let mut second = row(id, "note");
        second.id = 2;
        let work = decide_claimed(&d.herald, vec![row(id, "note"), second], &context, now).await;
        assert_eq!(describe(&work[0].decision), "send inbox Hello Ada");
        assert_eq!(
            describe(&work[1].decision),
            "defer 2026-03-03T09:00:00+00:00 capped (1 per 1d); deferred until the cap allows"
        );
        let dropping = NOTE.replace(
            "channels = [\"inbox\"]",
            "on_cap = \"drop\"\nchannels = [\"inbox\"]",
        );
        let (d, id) = setup(caps, &dropping).await;
        let context = Context::load(&d.herald, &[id], now).await.unwrap();
        let work = decide_claimed(
            &d.herald,
            vec![row(id, "note"), row(id, "note")],
            &context,
            now,
        )
        .await;
        assert_eq!(
            describe(&work[1].decision),
            "skip capped (1 per 1d); dropped, as the rule says on_cap = \"drop\""
        );
    }

    #[tokio::test]
    async fn transactional_rules_pass_windows_and_caps() {
        let extra =
            "[strategy]\nsend_windows = [\"11:00-12:00\"]\ncaps = [{ max = 1, per = \"1d\" }]\n";
        let rule = NOTE.replace(
            "channels = [\"inbox\"]",
            "transactional = true\nchannels = [\"inbox\"]",
        );
        let (d, id) = setup(extra, &rule).await;
        let now = d.clock.now();
        let context = Context::load(&d.herald, &[id], now).await.unwrap();
        let work = decide_claimed(
            &d.herald,
            vec![row(id, "note"), row(id, "note")],
            &context,
            now,
        )
        .await;
        assert!(work
            .iter()
            .all(|w| describe(&w.decision) == "send inbox Hello Ada"));
    }

    #[tokio::test]
    async fn sends_over_the_rate_wait_their_turn_in_order() {
        let config = format!("[channels.inbox]\nbuiltin = \"inbox\"\nrate = \"1/s\"\n{NOTE}");
        let d = deployment(&config, monday_9am()).await;
        let patch: CustomerPatch =
            serde_json::from_value(json!({"external_id": "c1", "name": "Ada", "state": "trial"}))
                .unwrap();
        let id = d.herald.upsert_customer(&patch).await.unwrap().customer.id;
        let now = d.clock.now();
        let context = Context::load(&d.herald, &[id], now).await.unwrap();
        let rows = vec![row(id, "note"), row(id, "note"), row(id, "note")];
        let work = decide_claimed(&d.herald, rows, &context, now).await;
        let got: Vec<String> = work.iter().map(|w| describe(&w.decision)).collect();
        assert_eq!(
            got,
            [
                "send inbox Hello Ada",
                "wait 2026-03-02T09:00:01+00:00",
                "wait 2026-03-02T09:00:02+00:00"
            ]
        );
    }
}
