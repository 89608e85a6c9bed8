//! The tick: claim due occurrences under a lease, decide for each whether it
//! still goes out (customer live, condition true, date unchanged, a channel
//! that reaches them), render it, hand it to its channel, and record the
//! attempt: delivered, retried with backoff, failed, dead or skipped. Then
//! plan the next occurrence of repeating rules.

use crate::caps::{self, Sent};
use crate::customer::Customer;
use crate::dispatch::{address_of, backoff, Channel, Delivery};
use crate::engine::Herald;
use crate::planner::{self, NextStep};
use crate::plugin::bindings::channel_api::{Field, Message, Recipient};
use crate::plugin::send_task::send_on_own_task;
use crate::plugin::targeting::Verdict;
use crate::plugin::SendOutcome;
use crate::render;
use crate::store::deliveries::{self, DeliveryStatus, NewDelivery};
use crate::store::schedule::{self, ScheduledRow};
use crate::store::{customers, inbox, raw, suppressions, tasks};
use crate::strategy::{date_anchor, step_of, Trigger};
use crate::windows;
use anyhow::{Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The schedule stores milliseconds: round a waiting time up, so a send
/// never comes back a fraction of a millisecond before its slot.
fn ceil_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    let sub_ms = t.timestamp_subsec_nanos() % 1_000_000;
    if sub_ms == 0 {
        t
    } else {
        t + ChronoDuration::nanoseconds((1_000_000 - sub_ms) as i64)
    }
}

/// One recorded attempt, as `herald simulate` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt was made (UTC).
    pub at: DateTime<Utc>,
    /// The customer's external id.
    pub customer: String,
    /// The rule.
    pub rule: String,
    /// The channel used (empty when none was chosen).
    pub channel: String,
    /// delivered, failed, skipped or dead.
    pub status: String,
    /// The rendered subject (empty when nothing was rendered).
    pub subject: String,
}

static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// Batches at least this many rows per core are decided on several threads.
const PARALLEL_DECIDE_MIN: usize = 512;

/// What was decided for one claimed occurrence.
enum Decision<'a> {
    /// Send through this channel.
    Send {
        channel: &'a Channel,
        rendered: render::Rendered,
        /// The channel the rule wanted, when a failover moved it.
        failover_from: Option<&'a str>,
        /// The signed link that unsubscribes the customer from this channel.
        unsubscribe_url: Option<String>,
    },
    /// The rule's targeting plugin must be asked first (replaced before
    /// anything is recorded).
    Target { channel: &'a Channel },
    /// The channel is at its rate limit: come back at this time (not an
    /// attempt, not recorded).
    Wait(DateTime<Utc>),
    /// Held back by a send window or a frequency cap until this time (not an
    /// attempt; recorded as `deferred` with the reason).
    Defer {
        until: DateTime<Utc>,
        reason: String,
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
}

/// One claimed occurrence on its way through the tick.
struct Work<'a> {
    row: ScheduledRow,
    decision: Decision<'a>,
    outcome: Option<(SendOutcome, i64)>,
}

impl Herald {
    /// Claim and process one batch of due occurrences. Returns the attempts
    /// made, in due order. An empty result means nothing was due.
    ///
    /// The batch goes through in phases so the database sees a handful of
    /// statements per tick rather than several per reminder: claim; load the
    /// customers; decide and render in memory; send through plugins
    /// concurrently (outside any transaction); then record every outcome,
    /// inbox message and next occurrence in one transaction.
    pub async fn tick(&self) -> Result<Vec<AttemptRecord>> {
        let now = self.clock.now();
        // Wall time per phase, for `HERALD_LOG=herald::scheduler=debug`.
        let phase = Instant::now();
        let lease_until = now + ChronoDuration::from_std(self.scheduler.lease)?;
        let token = format!(
            "{}-{}",
            self.instance,
            CLAIMS.fetch_add(1, Ordering::Relaxed)
        );
        let claimed = schedule::claim_due(
            &self.store.pool,
            now,
            lease_until,
            self.scheduler.batch,
            &token,
        )
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let claim_ms = phase.elapsed().as_secs_f64() * 1e3;
        let phase = Instant::now();
        let ids: Vec<i64> = claimed.iter().map(|r| r.customer_id).collect();
        let (customers, suppressed, mut history) = {
            let mut conn = self.store.pool.acquire().await?;
            let customers = customers::by_ids(&mut conn, &ids).await?;
            let suppressed = suppressions::for_customers(&mut conn, &ids).await?;
            let history = self.cap_history(&mut conn, &ids, now).await?;
            (customers, suppressed, history)
        };
        let load_ms = phase.elapsed().as_secs_f64() * 1e3;
        let phase = Instant::now();
        let mut decisions = self.decide_all(&claimed, &customers, &suppressed, now);
        self.apply_targeting(&claimed, &customers, &suppressed, &mut decisions, now)
            .await;
        // Sends over a channel's rate wait their turn: the k-th of them in
        // this batch comes back k intervals after the limiter's next slot.
        let mut waiting: HashMap<&str, u32> = HashMap::new();
        let mut work: Vec<Work> = Vec::with_capacity(claimed.len());
        for (row, mut decision) in claimed.into_iter().zip(decisions) {
            let customer = customers.get(&row.customer_id);
            if let (Decision::Send { channel, .. }, Some(customer), Some(rule)) =
                (&decision, customer, self.strategy.rule(&row.rule_id))
            {
                let channel: &Channel = channel;
                if !rule.transactional {
                    if let Some(held) =
                        self.hold_back(rule, customer, channel, history.get(&customer.id), now)
                    {
                        decision = held;
                    }
                }
            }
            if let Decision::Send { channel, .. } = &decision {
                if let Some(limiter) = &channel.rate {
                    if let Err(first) = limiter.try_acquire(now) {
                        let k = waiting.entry(channel.name.as_str()).or_insert(0);
                        decision = Decision::Wait(ceil_to_millis(limiter.slot(first, *k)));
                        *k += 1;
                    }
                }
            }
            if let Decision::Send { channel, .. } = &decision {
                let counts = self
                    .strategy
                    .rule(&row.rule_id)
                    .is_some_and(|r| !r.transactional);
                if counts && !self.strategy.caps.is_empty() {
                    history.entry(row.customer_id).or_default().push(Sent {
                        at: now,
                        channel: channel.name.clone(),
                    });
                }
            }
            work.push(Work {
                row,
                decision,
                outcome: None,
            });
        }
        let plugin_sends: Vec<usize> = work
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(&w.decision, Decision::Send { channel, .. } if matches!(channel.delivery, Delivery::Plugin { .. })))
            .map(|(i, _)| i)
            .collect();
        let outcomes: Vec<(usize, SendOutcome, i64)> = futures::stream::iter(plugin_sends)
            .map(|i| {
                let w = &work[i];
                let customer = customers.get(&w.row.customer_id);
                async move {
                    let Decision::Send {
                        channel,
                        rendered,
                        unsubscribe_url,
                        ..
                    } = &w.decision
                    else {
                        unreachable!("only sends are selected")
                    };
                    let started = Instant::now();
                    let outcome = self
                        .send(
                            channel,
                            &w.row,
                            customer.expect("a send has a customer"),
                            rendered,
                            unsubscribe_url.clone(),
                            now,
                        )
                        .await;
                    (i, outcome, started.elapsed().as_millis() as i64)
                }
            })
            .buffer_unordered(self.scheduler.concurrency)
            .collect()
            .await;
        for (i, outcome, ms) in outcomes {
            work[i].outcome = Some((outcome, ms));
        }
        let decide_send_ms = phase.elapsed().as_secs_f64() * 1e3;
        let phase = Instant::now();
        let records = self.record(&work, &customers, now).await;
        tracing::debug!(
            rows = work.len(),
            claim_ms,
            load_ms,
            decide_send_ms,
            record_ms = phase.elapsed().as_secs_f64() * 1e3,
            "tick phases"
        );
        records
    }

    /// Run ticks until nothing is due at the current time.
    pub async fn drain(&self) -> Result<Vec<AttemptRecord>> {
        let mut all = Vec::new();
        loop {
            let batch = self.tick().await?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// The reminders each customer received recently that count towards
    /// the frequency caps (transactional rules do not count).
    async fn cap_history(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<HashMap<i64, Vec<Sent>>> {
        let Some(longest) = self.strategy.caps.iter().map(|c| c.per).max() else {
            return Ok(HashMap::new());
        };
        let recent = deliveries::recent_sends(conn, ids, now - longest).await?;
        Ok(recent
            .into_iter()
            .map(|(id, sends)| {
                let counted = sends
                    .into_iter()
                    .filter(|(rule, _, _)| {
                        self.strategy.rule(rule).is_none_or(|r| !r.transactional)
                    })
                    .map(|(_, channel, at)| Sent { at, channel })
                    .collect();
                (id, counted)
            })
            .collect())
    }

    /// Whether a send window or a frequency cap holds this send back.
    fn hold_back<'a>(
        &self,
        rule: &crate::strategy::Rule,
        customer: &Customer,
        channel: &'a Channel,
        history: Option<&Vec<Sent>>,
        now: DateTime<Utc>,
    ) -> Option<Decision<'a>> {
        let windows = rule
            .send_windows
            .as_deref()
            .unwrap_or(&self.strategy.send_windows);
        if let Some(opening) = windows::next_opening(windows, customer.tz(), now) {
            return Some(Decision::Defer {
                until: opening,
                reason: format!(
                    "outside the send window ({} in {}); deferred to the next opening",
                    windows
                        .iter()
                        .map(|w| format!("{}-{}", w.start.format("%H:%M"), w.end.format("%H:%M")))
                        .collect::<Vec<_>>()
                        .join(", "),
                    customer.timezone
                ),
                channel,
            });
        }
        let history = history.map(Vec::as_slice).unwrap_or(&[]);
        let (cap, until) = caps::check(&self.strategy.caps, history, &channel.name, now)?;
        Some(if rule.drop_when_capped {
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
        })
    }

    /// Ask the targeting plugins of the rules that have one about their due
    /// reminders (concurrently), and turn each answer into the decision:
    /// send with the plugin's variables, skip, or defer.
    async fn apply_targeting<'a>(
        &'a self,
        rows: &[ScheduledRow],
        customers: &HashMap<i64, Customer>,
        suppressed: &HashMap<i64, HashSet<String>>,
        decisions: &mut [Decision<'a>],
        now: DateTime<Utc>,
    ) {
        let asks: Vec<usize> = decisions
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d, Decision::Target { .. }))
            .map(|(i, _)| i)
            .collect();
        if asks.is_empty() {
            return;
        }
        let verdicts: Vec<(usize, Result<(Verdict, u64)>)> = futures::stream::iter(asks)
            .map(|i| {
                let row = &rows[i];
                async move {
                    let customer = customers
                        .get(&row.customer_id)
                        .expect("targeted rows have customers");
                    let targeting = self
                        .targeting
                        .get(&row.rule_id)
                        .expect("targeted rules have a plugin");
                    (i, targeting.evaluate(&self.store.pool, customer, now).await)
                }
            })
            .buffer_unordered(self.scheduler.concurrency)
            .collect()
            .await;
        for (i, verdict) in verdicts {
            let row = &rows[i];
            let Decision::Target { channel } = decisions[i] else {
                continue;
            };
            decisions[i] = match verdict {
                Err(e) => Decision::Skip(format!("targeting plugin not asked: {e:#}")),
                Ok((Verdict::Send(vars), fuel)) => {
                    tracing::debug!(rule = %row.rule_id, fuel, "targeting: send");
                    self.decide(
                        row,
                        customers.get(&row.customer_id),
                        suppressed.get(&row.customer_id),
                        Some(&vars),
                        now,
                    )
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
            };
        }
    }

    /// [`Herald::decide`] every claimed row. Deciding is mostly rendering
    /// templates, pure CPU work on read-only state, so a large batch is split
    /// over the machine's cores; the decisions come back in claim order.
    fn decide_all<'a>(
        &'a self,
        claimed: &[ScheduledRow],
        customers: &HashMap<i64, Customer>,
        suppressed: &HashMap<i64, HashSet<String>>,
        now: DateTime<Utc>,
    ) -> Vec<Decision<'a>> {
        let one = |row: &ScheduledRow| {
            self.decide(
                row,
                customers.get(&row.customer_id),
                suppressed.get(&row.customer_id),
                None,
                now,
            )
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(claimed.len() / PARALLEL_DECIDE_MIN);
        if threads <= 1 {
            return claimed.iter().map(one).collect();
        }
        let one = &one;
        std::thread::scope(|scope| {
            let parts: Vec<_> = claimed
                .chunks(claimed.len().div_ceil(threads))
                .map(|part| scope.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
                .collect();
            parts
                .into_iter()
                .flat_map(|part| part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    fn decide<'a>(
        &'a self,
        row: &ScheduledRow,
        customer: Option<&Customer>,
        suppressed: Option<&HashSet<String>>,
        target: Option<&serde_json::Map<String, serde_json::Value>>,
        now: DateTime<Utc>,
    ) -> Decision<'a> {
        let Some(customer) = customer else {
            return Decision::Cancel("customer no longer exists".into());
        };
        let Some(rule) = self.strategy.rule(&row.rule_id) else {
            return Decision::Cancel(format!(
                "rule `{}` is no longer in the strategy",
                row.rule_id
            ));
        };
        if customer.deleted_at.is_some() && !matches!(rule.trigger, Trigger::Deleted) {
            return Decision::Cancel("customer deleted".into());
        }
        let step = step_of(row.context.as_ref());
        match self
            .strategy
            .condition_holds(rule, customer, now, row.context.as_ref())
        {
            Ok(true) => {}
            Ok(false) => {
                return Decision::Exit(if step > 0 {
                    "sequence ended: the rule's condition no longer holds".into()
                } else {
                    "condition no longer holds".into()
                })
            }
            Err(e) => return Decision::Skip(format!("condition could not be evaluated: {e}")),
        }
        if let Trigger::Date(trigger) = &rule.trigger {
            let current = date_anchor(trigger, customer).map(|(text, _)| text);
            if current.as_deref() != row.anchor.as_deref() {
                return Decision::Skip(format!(
                    "`{}` changed since this reminder was planned ({} → {})",
                    trigger.attribute,
                    row.anchor.as_deref().unwrap_or("none"),
                    current.as_deref().unwrap_or("none")
                ));
            }
        }
        let route = match self.channels.route(
            rule.channels_of(step),
            customer,
            suppressed,
            row.attempts,
            now,
        ) {
            Ok(r) => r,
            Err(reason) => return Decision::Skip(reason),
        };
        if target.is_none() && self.targeting.contains_key(&rule.id) {
            return Decision::Target {
                channel: route.channel,
            };
        }
        let unsubscribe_url = match &route.channel.delivery {
            // The inbox is inside the operator's own app and has its own
            // settings; a task goes to staff.
            Delivery::Inbox | Delivery::Task => None,
            Delivery::Plugin { .. } => self
                .links
                .unsubscribe_url(&customer.external_id, &route.channel.name),
        };
        let ctx = render::message_context(
            customer,
            &rule.id,
            now,
            row.context.as_ref(),
            unsubscribe_url.as_deref(),
            target,
        );
        let (text_templates, has_html) = rule.templates_of(step, customer.locale.as_deref());
        match self.strategy.templates.render(
            &rule.id,
            &text_templates,
            has_html,
            &rule.fields,
            &ctx,
        ) {
            Ok(mut rendered) => {
                // Tracked links and the open pixel name this attempt; the
                // built-in channels stay inside the operator's own app.
                if matches!(route.channel.delivery, Delivery::Plugin { .. }) {
                    self.tracking.apply(&mut rendered, row.id, row.attempts + 1);
                }
                Decision::Send {
                    channel: route.channel,
                    rendered,
                    failover_from: route.failover_from,
                    unsubscribe_url,
                }
            }
            Err(e) => Decision::Broken(format!("template failed: {e}")),
        }
    }

    /// Write every outcome of a tick in one transaction.
    async fn record(
        &self,
        work: &[Work<'_>],
        customers: &HashMap<i64, Customer>,
        now: DateTime<Utc>,
    ) -> Result<Vec<AttemptRecord>> {
        let phase = Instant::now();
        let mut releases = Vec::with_capacity(work.len());
        let mut attempts: Vec<NewDelivery> = Vec::with_capacity(work.len());
        let mut messages = Vec::new();
        let mut tasks_added = Vec::new();
        let mut next = Vec::new();
        let mut cancels = Vec::new();
        let mut suppress: Vec<(i64, &str, String)> = Vec::new();
        let mut records = Vec::with_capacity(work.len());
        let inbox_ids: Vec<String> = work
            .iter()
            .map(|w| format!("inbox:{}", w.row.key))
            .collect();
        for (w, inbox_id) in work.iter().zip(&inbox_ids) {
            let row = &w.row;
            let attempt = row.attempts + 1;
            let customer = customers.get(&row.customer_id);
            let release = |status: &'static str,
                           error: Option<String>,
                           due_at: Option<DateTime<Utc>>,
                           attempted: bool| schedule::Release {
                id: row.id,
                token: row.claim_token.clone().unwrap_or_default(),
                status,
                error,
                due_at,
                attempted,
            };
            let mut record = AttemptRecord {
                at: now,
                customer: customer.map(|c| c.external_id.clone()).unwrap_or_default(),
                rule: row.rule_id.clone(),
                channel: String::new(),
                status: String::new(),
                subject: String::new(),
            };
            let mut d = NewDelivery {
                schedule_id: row.id,
                customer_id: row.customer_id,
                rule_id: &row.rule_id,
                channel: None,
                provider: None,
                failover_from: None,
                attempt,
                status: DeliveryStatus::Skipped,
                provider_message_id: None,
                error: None,
                subject: None,
                retry_at: None,
                at: now,
                duration_ms: None,
            };
            let mut fired = true;
            let mut continue_sequence = true;
            match &w.decision {
                Decision::Cancel(reason) => {
                    tracing::debug!(key = %row.key, "canceled when due: {reason}");
                    releases.push(release("canceled", Some(reason.clone()), None, false));
                    continue;
                }
                Decision::Defer {
                    until,
                    reason,
                    channel,
                } => {
                    d.status = DeliveryStatus::Deferred;
                    d.channel = Some(&channel.name);
                    d.error = Some(reason.clone());
                    d.retry_at = Some(*until);
                    record.channel = channel.name.clone();
                    record.status = "deferred".into();
                    releases.push(release(
                        "pending",
                        Some(reason.clone()),
                        Some(*until),
                        false,
                    ));
                    attempts.push(d);
                    records.push(record);
                    continue;
                }
                Decision::Target { .. } => {
                    unreachable!("targeting decisions are resolved before recording")
                }
                Decision::Wait(until) => {
                    tracing::debug!(key = %row.key, %until, "channel at its rate limit; waiting");
                    releases.push(release(
                        "pending",
                        row.last_error.clone(),
                        Some(*until),
                        false,
                    ));
                    continue;
                }
                Decision::Skip(reason) => {
                    d.error = Some(reason.clone());
                    record.status = "skipped".into();
                    releases.push(release("skipped", Some(reason.clone()), None, true));
                }
                Decision::Exit(reason) => {
                    d.error = Some(reason.clone());
                    record.status = "skipped".into();
                    releases.push(release("skipped", Some(reason.clone()), None, true));
                    continue_sequence = false;
                }
                Decision::Broken(reason) => {
                    d.status = DeliveryStatus::Failed;
                    d.error = Some(reason.clone());
                    record.status = "failed".into();
                    releases.push(release("failed", Some(reason.clone()), None, true));
                }
                Decision::Send {
                    channel,
                    rendered,
                    failover_from,
                    ..
                } => {
                    record.channel = channel.name.clone();
                    record.subject = rendered.subject.clone();
                    d.channel = Some(&channel.name);
                    d.provider = Some(&channel.provider);
                    d.failover_from = *failover_from;
                    d.subject = Some(&rendered.subject);
                    let (outcome, ms) = match &w.outcome {
                        Some((outcome, ms)) => (outcome, Some(*ms)),
                        None => {
                            // Built-in channels: delivered by this very transaction.
                            if matches!(channel.delivery, Delivery::Task) {
                                tasks_added.push(tasks::NewTask {
                                    customer_id: row.customer_id,
                                    occurrence_key: &row.key,
                                    rule: &row.rule_id,
                                    title: &rendered.subject,
                                    reason: &rendered.text,
                                });
                            } else {
                                messages.push(inbox::NewMessage {
                                    customer_id: row.customer_id,
                                    occurrence_key: &row.key,
                                    rule: &row.rule_id,
                                    subject: &rendered.subject,
                                    text: &rendered.text,
                                    html: rendered.html.as_deref(),
                                });
                            }
                            d.status = DeliveryStatus::Delivered;
                            d.provider_message_id = Some(inbox_id);
                            record.status = "delivered".into();
                            releases.push(release("done", None, None, true));
                            attempts.push(d);
                            records.push(record);
                            self.plan_next(row, customer, now, true, &mut next, &mut cancels);
                            continue;
                        }
                    };
                    d.duration_ms = ms;
                    match outcome {
                        SendOutcome::Delivered {
                            provider_message_id,
                        } => {
                            channel.breaker.record_success();
                            d.status = DeliveryStatus::Delivered;
                            d.provider_message_id = Some(provider_message_id);
                            record.status = "delivered".into();
                            releases.push(release("done", None, None, true));
                        }
                        SendOutcome::Unsubscribed { reason } => {
                            // The provider is up; this recipient refused the
                            // channel. Suppress them on it and let the
                            // reminder move to the rule's next channel now.
                            channel.breaker.record_success();
                            let reason = format!("recipient unsubscribed: {reason}");
                            d.status = DeliveryStatus::Suppressed;
                            d.error = Some(reason.clone());
                            record.status = "suppressed".into();
                            suppress.push((row.customer_id, channel.name.as_str(), reason.clone()));
                            releases.push(release("pending", Some(reason), Some(now), true));
                            fired = false;
                        }
                        SendOutcome::Permanent { reason } => {
                            channel.breaker.record_success();
                            d.status = DeliveryStatus::Failed;
                            d.error = Some(reason.clone());
                            record.status = "failed".into();
                            releases.push(release("failed", Some(reason.clone()), None, true));
                        }
                        SendOutcome::Retryable {
                            reason,
                            retry_after,
                        } => {
                            if let Some(f) = &channel.failover {
                                if channel.breaker.record_failure(now, f.after, f.cooldown) {
                                    tracing::warn!(channel = %channel.name, backup = %f.backup, "provider failing: circuit open, sends go to the backup for {}", f.cooldown);
                                }
                            }
                            if attempt >= channel.retry.max_attempts as i64 {
                                let reason = format!(
                                    "{reason} (attempt {attempt} of {}; giving up)",
                                    channel.retry.max_attempts
                                );
                                d.status = DeliveryStatus::Dead;
                                record.status = "dead".into();
                                d.error = Some(reason.clone());
                                releases.push(release("dead", Some(reason), None, true));
                            } else {
                                let delay =
                                    backoff(&channel.retry, attempt as u32, &row.key, *retry_after);
                                let retry_at = now + ChronoDuration::from_std(delay)?;
                                d.status = DeliveryStatus::Failed;
                                d.error = Some(reason.clone());
                                d.retry_at = Some(retry_at);
                                record.status = "failed".into();
                                releases.push(release(
                                    "pending",
                                    Some(reason.clone()),
                                    Some(retry_at),
                                    true,
                                ));
                                fired = false;
                            }
                        }
                    }
                }
            }
            attempts.push(d);
            records.push(record);
            if fired {
                self.plan_next(
                    row,
                    customer,
                    now,
                    continue_sequence,
                    &mut next,
                    &mut cancels,
                );
            }
        }
        let build_ms = phase.elapsed().as_secs_f64() * 1e3;
        let phase = Instant::now();
        // Written in customer order (stable: one customer's rows keep their
        // order), so each index is walked front to back instead of at random
        // places: ~40% less b-tree work for large batches (docs/performance.md).
        attempts.sort_by_key(|d| d.customer_id);
        messages.sort_by_key(|m| m.customer_id);
        next.sort_by_key(|o| o.customer_id);
        cancels.sort_by_key(|c| c.0);
        let mut tx = self.store.write_tx().await?;
        // The bulk of the writes go straight through SQLite's C API on the
        // transaction's own connection (`store::raw`): per row, the driver's
        // hand-over cost more than the b-tree work (docs/performance.md).
        let released = {
            let mut handle = tx.lock_handle().await?;
            let conn = raw::Conn::new(handle.as_raw_handle());
            raw::blocking(|| -> Result<u64> {
                let released = schedule::release_many(conn, &releases, now)?;
                deliveries::insert_many(conn, &attempts)?;
                inbox::deliver_many(conn, &messages, now)?;
                schedule::upsert_many(conn, &next, now)?;
                Ok(released)
            })
            .context("cannot record the tick")?
        };
        let rows_ms = phase.elapsed().as_secs_f64() * 1e3;
        let phase = Instant::now();
        if released < releases.len() as u64 {
            tracing::warn!(
                lost = releases.len() as u64 - released,
                "some claims expired during their send; another process may have retried them (the idempotency key protects the provider)"
            );
        }
        tasks::add_many(&mut tx, &tasks_added, now).await?;
        schedule::cancel_rules_many(&mut tx, &cancels, now).await?;
        for (customer_id, channel, reason) in &suppress {
            suppressions::add(
                &mut tx,
                *customer_id,
                channel,
                reason,
                suppressions::source::PROVIDER,
                now,
            )
            .await?;
        }
        let rest_ms = phase.elapsed().as_secs_f64() * 1e3;
        let phase = Instant::now();
        tx.commit().await?;
        tracing::debug!(
            build_ms,
            rows_ms,
            rest_ms,
            commit_ms = phase.elapsed().as_secs_f64() * 1e3,
            "tick record phases"
        );
        crate::metrics::record_attempts(&records);
        Ok(records)
    }

    /// Collect what a fired rule wants next: the next step of its sequence
    /// (unless `continue_sequence` is false), and after its first step the
    /// following occurrence of a repeating rule.
    fn plan_next(
        &self,
        row: &ScheduledRow,
        customer: Option<&Customer>,
        now: DateTime<Utc>,
        continue_sequence: bool,
        next: &mut Vec<schedule::PlannedOccurrence>,
        cancels: &mut Vec<(i64, String, Option<String>, String)>,
    ) {
        let (Some(rule), Some(customer)) = (self.strategy.rule(&row.rule_id), customer) else {
            return;
        };
        let step = step_of(row.context.as_ref());
        if continue_sequence && customer.deleted_at.is_none() {
            if let Some(following) = rule.steps.get(step) {
                let base = row.key.split("#step").next().unwrap_or(&row.key);
                let mut context = row.context.clone().unwrap_or_else(|| serde_json::json!({}));
                if !context.is_object() {
                    context = serde_json::json!({});
                }
                context["step"] = serde_json::json!(step + 1);
                next.push(schedule::PlannedOccurrence {
                    customer_id: customer.id,
                    rule_id: rule.id.clone(),
                    key: format!("{base}#step{}", step + 1),
                    due_at: now + following.after,
                    anchor: row.anchor.clone(),
                    context: Some(context),
                });
            }
        }
        if step > 0 {
            return;
        }
        match planner::next_after_fired(
            &self.strategy,
            rule,
            customer,
            row.occurs_at,
            row.context.as_ref(),
            now,
        ) {
            NextStep::Plan(occ) => {
                // A rule with follow-ups keeps them: only a rule without
                // steps clears stray occurrences here.
                if rule.steps.is_empty() {
                    cancels.push((
                        customer.id,
                        rule.id.clone(),
                        Some(occ.key.clone()),
                        "date moved".into(),
                    ));
                }
                next.push(occ);
            }
            NextStep::CancelAll(reason) => {
                cancels.push((customer.id, rule.id.clone(), None, reason))
            }
            NextStep::Nothing => {}
        }
    }

    async fn send(
        &self,
        channel: &Channel,
        row: &ScheduledRow,
        customer: &crate::customer::Customer,
        rendered: &render::Rendered,
        unsubscribe_url: Option<String>,
        now: DateTime<Utc>,
    ) -> SendOutcome {
        match &channel.delivery {
            Delivery::Inbox | Delivery::Task => {
                unreachable!("built-in channels are delivered by the record transaction")
            }
            Delivery::Plugin { plugin, settings } => {
                let message = Message {
                    idempotency_key: format!("herald:{}", row.key),
                    rule: row.rule_id.clone(),
                    recipient: Recipient {
                        customer_id: customer.external_id.clone(),
                        name: customer.name.clone(),
                        email: customer.email.clone(),
                        phone: customer.phone.clone(),
                        wechat_openid: customer.wechat_openid.clone(),
                        locale: customer.locale.clone(),
                        timezone: customer.timezone.clone(),
                    },
                    subject: rendered.subject.clone(),
                    text: rendered.text.clone(),
                    html: rendered.html.clone(),
                    fields: rendered
                        .fields
                        .iter()
                        .map(|(name, value)| Field {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    unsubscribe_url,
                    callback_url: match (&self.public_url, plugin.info.accepts_callbacks) {
                        (Some(base), true) => Some(format!("{base}/hooks/{}", channel.name)),
                        _ => None,
                    },
                    sent_at: now.timestamp_millis(),
                };
                debug_assert!(address_of(customer, channel.address).is_some());
                send_on_own_task(
                    Arc::clone(plugin),
                    Arc::clone(settings),
                    message,
                    self.http_mode.clone(),
                )
                .await
            }
        }
    }
}

/// What the tick would do with a reminder right now, without sending or
/// recording anything: for `herald preview` and `herald explain`.
#[derive(Debug, Clone, Serialize)]
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

impl Herald {
    /// Decide `row` for `customer` at `now` as the tick would — routing,
    /// conditions, targeting plugin, send windows and caps — and render it,
    /// without sending or recording anything.
    pub async fn dry_run(
        &self,
        row: &ScheduledRow,
        customer: &Customer,
        now: DateTime<Utc>,
    ) -> Result<DryRun> {
        let ids = [customer.id];
        let (suppressed, history) = {
            let mut conn = self.store.pool.acquire().await?;
            (
                suppressions::for_customers(&mut conn, &ids).await?,
                self.cap_history(&mut conn, &ids, now).await?,
            )
        };
        let customers: HashMap<i64, Customer> = [(customer.id, customer.clone())].into();
        let mut decisions =
            vec![self.decide(row, Some(customer), suppressed.get(&customer.id), None, now)];
        self.apply_targeting(
            std::slice::from_ref(row),
            &customers,
            &suppressed,
            &mut decisions,
            now,
        )
        .await;
        let mut decision = decisions.pop().expect("one decision");
        if let (Decision::Send { channel, .. }, Some(rule)) =
            (&decision, self.strategy.rule(&row.rule_id))
        {
            let channel: &Channel = channel;
            if !rule.transactional {
                if let Some(held) =
                    self.hold_back(rule, customer, channel, history.get(&customer.id), now)
                {
                    decision = held;
                }
            }
        }
        let mut out = DryRun {
            outcome: String::new(),
            channel: None,
            failover_from: None,
            reason: None,
            until: None,
            subject: None,
            text: None,
            html: None,
            fields: Vec::new(),
            unsubscribe_url: None,
        };
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
            Decision::Wait(until) => {
                out.outcome = "wait".into();
                out.until = Some(until);
            }
            Decision::Target { .. } => unreachable!("targeting is resolved above"),
        }
        Ok(out)
    }
}
