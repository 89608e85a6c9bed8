//! Record: turn each decided and sent occurrence into what the store keeps —
//! the claim's release (done, skipped, failed, dead, or pending again at its
//! retry, deferral or rate-limit slot), a delivery row per attempt, inbox
//! messages and call-list entries of the built-in channels, suppressions the
//! provider reported, and what the rule wants next ([`crate::plan::next`]) —
//! and write it all in one transaction. Feeds the provider's health to the
//! channel's circuit breaker.

use super::decide::{Decision, Work};
use super::AttemptRecord;
use crate::address::Kind;
use crate::channels::{backoff, Channel, Delivery};
use crate::config::{AddressKind, UncertainSends};
use crate::customer::Customer;
use crate::engine::Herald;
use crate::plan::next::after_fired;
use crate::plugin::SendOutcome;
use crate::render::Rendered;
use crate::store::address_suppressions::{source as address_source, NewAddressSuppression};
use crate::store::deliveries::{DeliveryStatus, NewDelivery};
use crate::store::inbox::NewMessage;
use crate::store::schedule::{Release, ScheduledRow};
use crate::store::suppressions::{source, NewSuppression};
use crate::store::tasks::NewTask;
use crate::store::tick::{self, TickWrites};
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

/// Write every outcome of a tick in one transaction; the attempts, in order.
pub async fn record(
    herald: &Herald,
    work: &[Work<'_>],
    customers: &HashMap<i64, Customer>,
    now: DateTime<Utc>,
) -> Result<Vec<AttemptRecord>> {
    let inbox_ids: Vec<String> = work
        .iter()
        .map(|w| format!("inbox:{}", w.row.key))
        .collect();
    let mut book = Book {
        herald,
        customers,
        now,
        writes: TickWrites::default(),
        records: Vec::with_capacity(work.len()),
    };
    for (w, inbox_id) in work.iter().zip(&inbox_ids) {
        // One row that cannot be booked is left claimed (it comes due again
        // when its lease ends); the rest of the tick is recorded.
        if let Err(e) = book.add(w, inbox_id) {
            tracing::error!(key = %w.row.key, "cannot record this reminder: {e:#}");
        }
    }
    let Book {
        mut writes,
        records,
        ..
    } = book;
    let asked = writes.releases.len() as u64;
    let released = match tick::record(&herald.store, &mut writes, now).await {
        Ok(released) => released,
        Err(e) => {
            tracing::warn!(
                "cannot record the tick in one transaction; recording customer by customer: {e:#}"
            );
            record_apart(herald, writes, work, now).await
        }
    };
    if released < asked {
        tracing::warn!(
            lost = asked - released,
            "some claims expired during their send; another process may have retried them (the idempotency key protects the provider)"
        );
    }
    crate::metrics::record_attempts(
        records
            .iter()
            .map(|r| (r.channel.as_str(), r.status.as_str())),
    );
    Ok(records)
}

/// Record a tick's writes customer by customer, so a row that cannot be
/// written fails alone. A customer whose writes fail still has their
/// claims released: sends that went out are held or retried as the
/// channel's `uncertain` setting says ([`unrecorded`]), the rest come due
/// again when their lease ends. Returns how many claims were released.
async fn record_apart(
    herald: &Herald,
    writes: TickWrites<'_>,
    work: &[Work<'_>],
    now: DateTime<Utc>,
) -> u64 {
    let mut released = 0;
    for (customer_id, mut part) in writes.split_by_customer() {
        let error = match tick::record(&herald.store, &mut part, now).await {
            Ok(n) => {
                released += n;
                continue;
            }
            Err(e) => format!("{e:#}"),
        };
        crate::metrics::record_failed();
        tracing::error!(
            customer_id,
            "cannot record this customer's reminders: {error}"
        );
        let releases: Vec<Release> = work
            .iter()
            .filter(|w| w.row.customer_id == customer_id)
            .filter_map(|w| unrecorded(w, &error, now))
            .collect();
        match tick::release_only(&herald.store, &releases, now).await {
            Ok(ids) => released += ids.len() as u64,
            Err(e) => tracing::error!(
                customer_id,
                "cannot release this customer's claims either; they come due again when their lease ends: {e:#}"
            ),
        }
    }
    released
}

/// How a plugin send whose outcome could not be recorded leaves its claim:
/// held as `unknown`, or retried (dead after the channel's last attempt),
/// as the channel's `uncertain` setting says. `None` when nothing left
/// Herald (the row is simply decided again when its lease ends).
fn unrecorded(w: &Work<'_>, error: &str, now: DateTime<Utc>) -> Option<Release> {
    let Decision::Send { channel, .. } = &w.decision else {
        return None;
    };
    w.outcome.as_ref()?;
    let row = &w.row;
    let reason = format!("the outcome of this send could not be recorded: {error}");
    let attempt = row.attempts + 1;
    let (status, due_at) = match channel.uncertain {
        UncertainSends::Hold => ("unknown", None),
        UncertainSends::Resend if attempt >= channel.retry.max_attempts as i64 => ("dead", None),
        UncertainSends::Resend => {
            let delay = backoff(&channel.retry, attempt as u32, &row.key, None);
            let retry_at = Duration::from_std(delay)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(now);
            ("pending", Some(retry_at))
        }
    };
    Some(Release {
        id: row.id,
        customer_id: row.customer_id,
        token: row.claim_token.clone().unwrap_or_default(),
        status,
        error: Some(reason),
        due_at,
        attempted: true,
    })
}

/// The writes and attempt records of one tick, as they are collected.
struct Book<'w> {
    herald: &'w Herald,
    customers: &'w HashMap<i64, Customer>,
    now: DateTime<Utc>,
    writes: TickWrites<'w>,
    records: Vec<AttemptRecord>,
}

/// One attempt being recorded: its delivery row and its printed record.
struct Entry<'w> {
    delivery: NewDelivery<'w>,
    record: AttemptRecord,
}

impl<'w> Book<'w> {
    /// Record one occurrence of the tick.
    fn add(&mut self, w: &'w Work<'w>, inbox_id: &'w str) -> Result<()> {
        let row = &w.row;
        match &w.decision {
            Decision::Cancel(reason) => {
                tracing::debug!(key = %row.key, "canceled when due: {reason}");
                self.release(row, "canceled", Some(reason.clone()), None, false);
            }
            Decision::Wait(until) => {
                tracing::debug!(key = %row.key, %until, "channel at its rate limit; waiting");
                self.release(row, "pending", row.last_error.clone(), Some(*until), false);
            }
            Decision::Defer {
                until,
                reason,
                channel,
            } => self.deferred(row, channel, *until, reason),
            Decision::Skip(reason) => self.ended(row, DeliveryStatus::Skipped, reason, true),
            Decision::Exit(reason) => self.ended(row, DeliveryStatus::Skipped, reason, false),
            Decision::Broken(reason) => self.ended(row, DeliveryStatus::Failed, reason, true),
            Decision::Send {
                channel,
                rendered,
                failover_from,
                ..
            } => self.sent(w, channel, rendered, *failover_from, inbox_id)?,
            Decision::Hold { channel, reason } => {
                let mut entry = self.entry(row);
                entry.delivery.channel = Some(&channel.name);
                entry.delivery.provider = Some(&channel.provider);
                entry.record.channel = channel.name.clone();
                self.held(row, reason, entry);
                self.fired(row, true);
            }
            Decision::Target { .. } => {
                anyhow::bail!(
                    "schedule row {}: targeting was not resolved before recording",
                    row.id
                )
            }
        }
        Ok(())
    }

    fn release(
        &mut self,
        row: &ScheduledRow,
        status: &'static str,
        error: Option<String>,
        due_at: Option<DateTime<Utc>>,
        attempted: bool,
    ) {
        self.writes.releases.push(Release {
            id: row.id,
            customer_id: row.customer_id,
            token: row.claim_token.clone().unwrap_or_default(),
            status,
            error,
            due_at,
            attempted,
        });
    }

    /// A fresh attempt at `row` (skipped until said otherwise).
    fn entry(&self, row: &'w ScheduledRow) -> Entry<'w> {
        Entry {
            delivery: NewDelivery {
                schedule_id: row.id,
                customer_id: row.customer_id,
                rule_id: &row.rule_id,
                channel: None,
                provider: None,
                failover_from: None,
                attempt: row.attempts + 1,
                status: DeliveryStatus::Skipped,
                provider_message_id: None,
                error: None,
                subject: None,
                retry_at: None,
                at: self.now,
                duration_ms: None,
            },
            record: AttemptRecord {
                at: self.now,
                customer: self
                    .customers
                    .get(&row.customer_id)
                    .map(|c| c.external_id.clone())
                    .unwrap_or_default(),
                rule: row.rule_id.clone(),
                channel: String::new(),
                status: String::new(),
                subject: String::new(),
            },
        }
    }

    fn push(&mut self, mut entry: Entry<'w>, status: DeliveryStatus) {
        entry.delivery.status = status;
        entry.record.status = status.as_str().to_string();
        self.writes.deliveries.push(entry.delivery);
        self.records.push(entry.record);
    }

    /// Held back until `until`: a `deferred` row, not an attempt.
    fn deferred(
        &mut self,
        row: &'w ScheduledRow,
        channel: &'w Channel,
        until: DateTime<Utc>,
        reason: &str,
    ) {
        let mut entry = self.entry(row);
        entry.delivery.channel = Some(&channel.name);
        entry.delivery.error = Some(reason.to_string());
        entry.delivery.retry_at = Some(until);
        entry.record.channel = channel.name.clone();
        self.release(row, "pending", Some(reason.to_string()), Some(until), false);
        self.push(entry, DeliveryStatus::Deferred);
    }

    /// Decided against (skipped) or broken (failed) for good. The rule
    /// still moves on, and its sequence too unless `continue_sequence` is
    /// false (its condition ended it).
    fn ended(
        &mut self,
        row: &'w ScheduledRow,
        status: DeliveryStatus,
        reason: &str,
        continue_sequence: bool,
    ) {
        let mut entry = self.entry(row);
        entry.delivery.error = Some(reason.to_string());
        let release_status = if status == DeliveryStatus::Failed {
            "failed"
        } else {
            "skipped"
        };
        self.release(row, release_status, Some(reason.to_string()), None, true);
        self.push(entry, status);
        self.fired(row, continue_sequence);
    }

    /// Sent through a plugin or delivered by a built-in channel.
    fn sent(
        &mut self,
        w: &'w Work<'w>,
        channel: &'w Channel,
        rendered: &'w Rendered,
        failover_from: Option<&'w str>,
        inbox_id: &'w str,
    ) -> Result<()> {
        let row = &w.row;
        let mut entry = self.entry(row);
        entry.record.channel = channel.name.clone();
        entry.record.subject = rendered.subject.clone();
        entry.delivery.channel = Some(&channel.name);
        entry.delivery.provider = Some(&channel.provider);
        entry.delivery.failover_from = failover_from;
        entry.delivery.subject = Some(&rendered.subject);
        if channel.delivery.is_builtin() {
            self.built_in(row, channel, rendered);
            entry.delivery.provider_message_id = Some(inbox_id);
            self.release(row, "done", None, None, true);
            self.push(entry, DeliveryStatus::Delivered);
            self.fired(row, true);
            return Ok(());
        }
        let Some((outcome, ms)) = &w.outcome else {
            anyhow::bail!("schedule row {}: a plugin send has no outcome", row.id);
        };
        entry.delivery.duration_ms = Some(*ms);
        if self.plugin_outcome(row, channel, outcome, entry)? {
            self.fired(row, true);
        }
        Ok(())
    }

    /// The inbox message or call-list entry a built-in channel delivers.
    fn built_in(&mut self, row: &'w ScheduledRow, channel: &Channel, rendered: &'w Rendered) {
        if matches!(channel.delivery, Delivery::Task) {
            self.writes.tasks.push(NewTask {
                customer_id: row.customer_id,
                occurrence_key: &row.key,
                rule: &row.rule_id,
                title: &rendered.subject,
                reason: &rendered.text,
            });
        } else {
            self.writes.messages.push(NewMessage {
                customer_id: row.customer_id,
                occurrence_key: &row.key,
                rule: &row.rule_id,
                subject: &rendered.subject,
                text: &rendered.text,
                html: rendered.html.as_deref(),
            });
        }
    }

    /// Record what the plugin answered; true when the occurrence is over
    /// (the rule moves on), false when it comes back (retry, or the next
    /// channel after an unsubscribe).
    fn plugin_outcome(
        &mut self,
        row: &'w ScheduledRow,
        channel: &'w Channel,
        outcome: &'w SendOutcome,
        mut entry: Entry<'w>,
    ) -> Result<bool> {
        let now = self.now;
        match outcome {
            SendOutcome::Delivered {
                provider_message_id,
            } => {
                channel.breaker.record_success();
                entry.delivery.provider_message_id = Some(provider_message_id);
                self.release(row, "done", None, None, true);
                self.push(entry, DeliveryStatus::Delivered);
                Ok(true)
            }
            SendOutcome::Unsubscribed { reason } => {
                // The provider is up; this recipient refused the channel.
                // Suppress them on it and let the reminder move to the
                // rule's next channel now.
                channel.breaker.record_success();
                let reason = format!("recipient unsubscribed: {reason}");
                entry.delivery.error = Some(reason.clone());
                self.writes.suppressions.push(NewSuppression {
                    customer_id: row.customer_id,
                    channel: &channel.name,
                    reason: reason.clone(),
                    source: source::PROVIDER,
                });
                self.release(row, "pending", Some(reason), Some(now), true);
                self.push(entry, DeliveryStatus::Suppressed);
                Ok(false)
            }
            SendOutcome::InvalidAddress { reason } if channel.address == AddressKind::Push => {
                // Every token the message went to is dead: forget them, and
                // let the reminder move to the rule's next channel now (the
                // push channel no longer reaches this customer).
                channel.breaker.record_success();
                let reason = format!("invalid address: {reason}");
                entry.delivery.error = Some(reason.clone());
                if let Some(customer) = self.customers.get(&row.customer_id) {
                    let tokens = customer.devices.iter().map(|d| d.token.as_str()).collect();
                    self.writes.dead_devices.push((row.customer_id, tokens));
                }
                self.release(row, "pending", Some(reason), Some(now), true);
                self.push(entry, DeliveryStatus::Failed);
                Ok(false)
            }
            // An email or phone number that does not exist fails the
            // reminder for good, as a permanent error does, and goes on the
            // do-not-contact list: no customer with it is sent to again.
            SendOutcome::InvalidAddress { reason } => {
                channel.breaker.record_success();
                let reason = format!("invalid address: {reason}");
                self.list_address(row.customer_id, channel, &reason);
                entry.delivery.error = Some(reason.clone());
                self.release(row, "failed", Some(reason), None, true);
                self.push(entry, DeliveryStatus::Failed);
                Ok(true)
            }
            SendOutcome::Permanent { reason } => {
                channel.breaker.record_success();
                entry.delivery.error = Some(reason.clone());
                self.release(row, "failed", Some(reason.clone()), None, true);
                self.push(entry, DeliveryStatus::Failed);
                Ok(true)
            }
            SendOutcome::Retryable {
                reason,
                retry_after,
            } => self.retryable(row, channel, reason, *retry_after, entry),
            SendOutcome::Uncertain { reason } => match channel.uncertain {
                UncertainSends::Resend => {
                    let reason = format!("outcome unknown, sending again: {reason}");
                    self.retryable(row, channel, &reason, None, entry)
                }
                UncertainSends::Hold => {
                    self.provider_failed(channel);
                    self.held(row, &format!("held, outcome unknown: {reason}"), entry);
                    Ok(true)
                }
            },
        }
    }

    /// Put the customer's address of `channel`'s kind (email or phone,
    /// normalised) on the do-not-contact list with this tick's writes.
    fn list_address(&mut self, customer_id: i64, channel: &Channel, reason: &str) {
        let Some(customer) = self.customers.get(&customer_id) else {
            return;
        };
        let found = match channel.address {
            AddressKind::Email => customer.email.as_deref().map(|a| (Kind::Email, a)),
            AddressKind::Phone => customer.phone.as_deref().map(|a| (Kind::Phone, a)),
            _ => None,
        };
        let Some((kind, raw)) = found else {
            return;
        };
        // An address that cannot be normalised can match no one: nothing to list.
        if let Ok(address) = crate::address::normalise(kind, raw) {
            self.writes.dead_addresses.push(NewAddressSuppression {
                customer_id,
                kind: kind.as_str(),
                address,
                reason: format!("{reason} (on {})", channel.name),
                source: address_source::INVALID_ADDRESS,
            });
        }
    }

    /// Feed a failed or unanswered send to the channel's circuit breaker.
    fn provider_failed(&self, channel: &Channel) {
        let Some(f) = &channel.failover else {
            return;
        };
        if channel
            .breaker
            .record_failure(self.now, f.after, f.cooldown)
        {
            tracing::warn!(channel = %channel.name, backup = %f.backup, "provider failing: circuit open, sends go to the backup for {}", f.cooldown);
        }
    }

    /// The send may have reached the provider and the channel holds such
    /// sends: `unknown` until an operator redrives or drops it. The rule
    /// moves on as after a send.
    fn held(&mut self, row: &ScheduledRow, reason: &str, mut entry: Entry<'w>) {
        entry.delivery.error = Some(reason.to_string());
        self.release(row, "unknown", Some(reason.to_string()), None, true);
        self.push(entry, DeliveryStatus::Unknown);
    }

    /// A retryable failure: retried after a backoff, or dead after the
    /// channel's last attempt. Counts against the provider's health.
    fn retryable(
        &mut self,
        row: &'w ScheduledRow,
        channel: &'w Channel,
        reason: &str,
        retry_after: Option<std::time::Duration>,
        mut entry: Entry<'w>,
    ) -> Result<bool> {
        self.provider_failed(channel);
        let attempt = row.attempts + 1;
        if attempt >= channel.retry.max_attempts as i64 {
            let reason = format!(
                "{reason} (attempt {attempt} of {}; giving up)",
                channel.retry.max_attempts
            );
            entry.delivery.error = Some(reason.clone());
            self.release(row, "dead", Some(reason), None, true);
            self.push(entry, DeliveryStatus::Dead);
            return Ok(true);
        }
        let delay = backoff(&channel.retry, attempt as u32, &row.key, retry_after);
        // The delay is bounded by `backoff`; were it ever off the calendar,
        // the reminder would retry at the next tick rather than stop the tick.
        let retry_at = Duration::from_std(delay)
            .ok()
            .and_then(|d| self.now.checked_add_signed(d))
            .unwrap_or(self.now);
        entry.delivery.error = Some(reason.to_string());
        entry.delivery.retry_at = Some(retry_at);
        self.release(
            row,
            "pending",
            Some(reason.to_string()),
            Some(retry_at),
            true,
        );
        self.push(entry, DeliveryStatus::Failed);
        Ok(false)
    }

    /// The occurrence is over: plan what its rule wants next.
    fn fired(&mut self, row: &ScheduledRow, continue_sequence: bool) {
        let herald = self.herald;
        let (Some(rule), Some(customer)) = (
            herald.strategy.rule(&row.rule_id),
            self.customers.get(&row.customer_id),
        ) else {
            return;
        };
        let following = after_fired(
            &herald.strategy,
            rule,
            row,
            customer,
            continue_sequence,
            self.now,
        );
        self.writes.next.extend(following.plan);
        self.writes.cancels.extend(following.cancel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::customer::CustomerPatch;
    use crate::engine::testing::{deployment, monday_9am, with_inbox, TestDeployment};
    use crate::store::schedule;
    use crate::store::{deliveries, inbox, suppressions, tasks};
    use crate::tick::claim;
    use serde_json::json;

    const RULES: &str = r#"
[retry]
max_attempts = 2
base = "1m"
max = "1h"

[[rules]]
id = "note"
trigger = { on = "created" }
channels = ["inbox"]
subject = "Hello {{ customer.name }}"
text = "Hi"

[[rules.steps]]
after = "1d"
channels = ["calls"]
subject = "Call {{ customer.name }}"
text = "No answer to the note"
"#;

    /// A deployment whose customer `c1` has its `note` reminder claimed.
    async fn claimed() -> (TestDeployment, claim::Claimed) {
        let d = deployment(&with_inbox(RULES), monday_9am()).await;
        let patch: CustomerPatch =
            serde_json::from_value(json!({"external_id": "c1", "name": "Ada"})).unwrap();
        d.herald.upsert_customer(&patch).await.unwrap();
        let claimed = claim::claim(&d.herald, d.clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.rows.len(), 1);
        (d, claimed)
    }

    async fn schedule_of(d: &TestDeployment) -> Vec<ScheduledRow> {
        let mut tx = d.herald.store.read().await.unwrap();
        let mut rows = schedule::all_for(&mut tx, 1).await.unwrap();
        rows.sort_by_key(|r| r.id);
        rows
    }

    async fn record_one(
        d: &TestDeployment,
        claimed: claim::Claimed,
        decision: Decision<'_>,
    ) -> Vec<AttemptRecord> {
        let now = d.clock.now();
        let work = vec![Work {
            row: claimed.rows.into_iter().next().unwrap(),
            decision,
            outcome: None,
        }];
        record(&d.herald, &work, &claimed.context.customers, now)
            .await
            .unwrap()
    }

    fn rendered(subject: &str) -> Rendered {
        Rendered {
            subject: subject.into(),
            text: "Hi".into(),
            html: None,
            fields: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_inbox_send_is_delivered_in_the_same_transaction_and_plans_the_next_step() {
        let (d, claimed) = claimed().await;
        let inbox_channel = d.herald.channels.get("inbox").unwrap();
        let send = Decision::Send {
            channel: inbox_channel,
            rendered: rendered("Hello Ada"),
            failover_from: None,
            unsubscribe_url: None,
        };
        let records = record_one(&d, claimed, send).await;
        assert_eq!(records[0].status, "delivered");
        assert_eq!(records[0].channel, "inbox");
        let rows = schedule_of(&d).await;
        assert_eq!(rows[0].status, "done");
        assert_eq!(rows[0].attempts, 1);
        assert_eq!(rows[1].key, format!("{}#step1", rows[0].key));
        assert_eq!(rows[1].due_at, monday_9am() + Duration::days(1));
        let messages = inbox::list(&d.herald.store, 1).await.unwrap();
        assert_eq!(messages[0].subject, "Hello Ada");
        let attempts = deliveries::list(&d.herald.store, &Default::default())
            .await
            .unwrap();
        assert_eq!(
            attempts[0].provider_message_id.as_deref(),
            Some(format!("inbox:{}", rows[0].key).as_str())
        );
    }

    #[tokio::test]
    async fn a_task_step_lands_on_the_call_list() {
        let (d, claimed) = claimed().await;
        let calls = d.herald.channels.get("calls").unwrap();
        let send = Decision::Send {
            channel: calls,
            rendered: rendered("Call Ada"),
            failover_from: None,
            unsubscribe_url: None,
        };
        record_one(&d, claimed, send).await;
        let list = tasks::list(
            &d.herald.store,
            &tasks::TaskFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(list[0].title, "Call Ada");
    }

    #[tokio::test]
    async fn a_deferral_is_recorded_but_not_counted_as_an_attempt() {
        let (d, claimed) = claimed().await;
        let until = monday_9am() + Duration::hours(2);
        let defer = Decision::Defer {
            until,
            reason: "outside the send window".into(),
            channel: d.herald.channels.get("inbox").unwrap(),
        };
        let records = record_one(&d, claimed, defer).await;
        assert_eq!(records[0].status, "deferred");
        let rows = schedule_of(&d).await;
        assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("pending", 0));
        assert_eq!(rows[0].due_at, until);
        assert_eq!(rows.len(), 1, "nothing follows a deferral");
    }

    #[tokio::test]
    async fn a_rate_limit_wait_leaves_no_trace_but_the_new_due_time() {
        let (d, claimed) = claimed().await;
        let slot = monday_9am() + Duration::seconds(3);
        let records = record_one(&d, claimed, Decision::Wait(slot)).await;
        assert!(records.is_empty());
        let rows = schedule_of(&d).await;
        assert_eq!(
            (
                rows[0].status.as_str(),
                rows[0].due_at,
                rows[0].claim_token.as_deref()
            ),
            ("pending", slot, None)
        );
        assert!(deliveries::list(&d.herald.store, &Default::default())
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn skips_exits_breaks_and_cancels_end_the_occurrence_differently() {
        for (decision, status, delivery, follows) in [
            (
                Decision::Skip("capped".into()),
                "skipped",
                Some("skipped"),
                true,
            ),
            (
                Decision::Exit("condition".into()),
                "skipped",
                Some("skipped"),
                false,
            ),
            (
                Decision::Broken("template".into()),
                "failed",
                Some("failed"),
                true,
            ),
            (Decision::Cancel("gone".into()), "canceled", None, false),
        ] {
            let (d, claimed) = claimed().await;
            record_one(&d, claimed, decision).await;
            let rows = schedule_of(&d).await;
            assert_eq!(rows[0].status, status);
            let attempts = deliveries::list(&d.herald.store, &Default::default())
                .await
                .unwrap();
            assert_eq!(attempts.first().map(|a| a.status.as_str()), delivery);
            assert_eq!(
                rows.len() == 2,
                follows,
                "{status}: the next step is planned only when the sequence goes on"
            );
        }
    }

    /// A book for one claimed row, to feed it a plugin's answers.
    fn plugin_answer(
        d: &TestDeployment,
        claimed: &claim::Claimed,
        attempts: i64,
        outcome: SendOutcome,
    ) -> (Vec<Release>, Vec<String>, usize, bool) {
        let mut row = claimed.rows[0].clone();
        row.attempts = attempts;
        let (row, outcome) = (&row, &outcome);
        let channel = d.herald.channels.get("inbox").unwrap();
        let mut book = Book {
            herald: &d.herald,
            customers: &claimed.context.customers,
            now: d.clock.now(),
            writes: TickWrites::default(),
            records: Vec::new(),
        };
        let entry = book.entry(row);
        let over = book.plugin_outcome(row, channel, outcome, entry).unwrap();
        let statuses = book.records.iter().map(|r| r.status.clone()).collect();
        (
            book.writes.releases,
            statuses,
            book.writes.suppressions.len(),
            over,
        )
    }

    #[tokio::test]
    async fn plugin_answers_become_done_suppressed_failed_retried_or_dead() {
        let (d, claimed) = claimed().await;
        let now = d.clock.now();
        let delivered = SendOutcome::Delivered {
            provider_message_id: "SM1".into(),
        };
        let (releases, statuses, _, over) = plugin_answer(&d, &claimed, 0, delivered);
        assert_eq!(
            (releases[0].status, statuses[0].as_str(), over),
            ("done", "delivered", true)
        );

        let refused = SendOutcome::Unsubscribed {
            reason: "21610".into(),
        };
        let (releases, statuses, suppressed, over) = plugin_answer(&d, &claimed, 0, refused);
        assert_eq!(
            (releases[0].status, statuses[0].as_str(), suppressed, over),
            ("pending", "suppressed", 1, false)
        );
        assert_eq!(
            releases[0].due_at,
            Some(now),
            "it moves to the next channel at once"
        );

        let permanent = SendOutcome::Permanent {
            reason: "bad number".into(),
        };
        let (releases, _, _, over) = plugin_answer(&d, &claimed, 0, permanent);
        assert_eq!((releases[0].status, over), ("failed", true));

        let busy = || SendOutcome::Retryable {
            reason: "503".into(),
            retry_after: Some(std::time::Duration::from_secs(600)),
        };
        let (releases, statuses, _, over) = plugin_answer(&d, &claimed, 0, busy());
        assert_eq!(
            (releases[0].status, statuses[0].as_str(), over),
            ("pending", "failed", false)
        );
        assert!(
            releases[0].due_at.unwrap() >= now + Duration::seconds(600),
            "never sooner than Retry-After"
        );
        let (releases, statuses, _, over) = plugin_answer(&d, &claimed, 1, busy());
        assert_eq!(
            (releases[0].status, statuses[0].as_str(), over),
            ("dead", "dead", true)
        );
        assert!(releases[0]
            .error
            .as_deref()
            .unwrap()
            .contains("attempt 2 of 2; giving up"));
    }

    #[tokio::test]
    async fn a_provider_refusal_suppresses_the_customer_on_that_channel() {
        let (d, claimed) = claimed().await;
        let mut writes = TickWrites::default();
        writes.suppressions.push(NewSuppression {
            customer_id: claimed.rows[0].customer_id,
            channel: "inbox",
            reason: "recipient unsubscribed: 21610".into(),
            source: source::PROVIDER,
        });
        tick::record(&d.herald.store, &mut writes, d.clock.now())
            .await
            .unwrap();
        let list = suppressions::list(&d.herald.store, Some("c1"), None)
            .await
            .unwrap();
        assert_eq!(
            (list[0].channel.as_str(), list[0].source.as_str()),
            ("inbox", "provider")
        );
    }
}
