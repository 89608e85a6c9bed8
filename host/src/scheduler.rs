//! The tick: claim due occurrences under a lease, decide for each whether it
//! still goes out (customer live, condition true, date unchanged, a channel
//! that reaches them), render it, hand it to its channel, and record the
//! attempt: delivered, retried with backoff, failed, dead or skipped. Then
//! plan the next occurrence of repeating rules.

use crate::dispatch::{address_of, backoff, Channel, Delivery};
use crate::engine::Herald;
use crate::planner::{self};
use crate::plugin::bindings::channel_api::{Message, Recipient};
use crate::plugin::SendOutcome;
use crate::render;
use crate::store::deliveries::{self, DeliveryStatus, NewDelivery};
use crate::store::schedule::{self, ScheduledRow};
use crate::store::{customers, inbox};
use crate::strategy::{date_anchor, Rule, Trigger};
use anyhow::Result;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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

/// What was decided for one claimed occurrence.
enum Decision<'a> {
    /// Send through this channel.
    Send {
        channel: &'a Channel,
        rendered: render::Rendered,
    },
    /// Do not send; final.
    Skip(String),
    /// The rendering failed; final.
    Broken(String),
    /// Nothing to record (the row is gone or canceled).
    Cancel(String),
}

impl Herald {
    /// Claim and process one batch of due occurrences. Returns the attempts
    /// made, in due order. An empty result means nothing was due.
    pub async fn tick(&self) -> Result<Vec<AttemptRecord>> {
        let now = self.clock.now();
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
        let results: Vec<Result<Option<AttemptRecord>>> = futures::stream::iter(claimed)
            .map(|row| self.process(row, now))
            .buffered(self.scheduler.concurrency)
            .collect()
            .await;
        let mut records = Vec::new();
        for result in results {
            match result {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(e) => tracing::error!("recording an attempt failed; the lease will expire and it will be retried: {e:#}"),
            }
        }
        Ok(records)
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

    async fn decide<'a>(
        &'a self,
        row: &ScheduledRow,
        now: DateTime<Utc>,
    ) -> Result<(Decision<'a>, Option<crate::customer::Customer>)> {
        let mut conn = self.store.pool.acquire().await?;
        let Some(customer) = customers::by_id(&mut conn, row.customer_id).await? else {
            return Ok((Decision::Cancel("customer no longer exists".into()), None));
        };
        let Some(rule) = self.strategy.rule(&row.rule_id) else {
            return Ok((
                Decision::Cancel(format!(
                    "rule `{}` is no longer in the strategy",
                    row.rule_id
                )),
                Some(customer),
            ));
        };
        if customer.deleted_at.is_some() && !matches!(rule.trigger, Trigger::Deleted) {
            return Ok((Decision::Cancel("customer deleted".into()), Some(customer)));
        }
        let decision = self.decide_for(rule, row, &customer, now);
        Ok((decision, Some(customer)))
    }

    fn decide_for<'a>(
        &'a self,
        rule: &Rule,
        row: &ScheduledRow,
        customer: &crate::customer::Customer,
        now: DateTime<Utc>,
    ) -> Decision<'a> {
        match self
            .strategy
            .condition_holds(rule, customer, now, row.context.as_ref())
        {
            Ok(true) => {}
            Ok(false) => return Decision::Skip("condition no longer holds".into()),
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
        let channel = match self.channels.choose(&rule.channels, customer) {
            Ok(c) => c,
            Err(reason) => return Decision::Skip(reason),
        };
        let ctx = render::context(customer, &rule.id, now, row.context.as_ref());
        match self
            .strategy
            .templates
            .render(&rule.id, rule.has_html, &ctx)
        {
            Ok(rendered) => Decision::Send { channel, rendered },
            Err(e) => Decision::Broken(format!("template failed: {e}")),
        }
    }

    async fn process(
        &self,
        row: ScheduledRow,
        now: DateTime<Utc>,
    ) -> Result<Option<AttemptRecord>> {
        let (decision, customer) = self.decide(&row, now).await?;
        let attempt = row.attempts + 1;
        let mut record = AttemptRecord {
            at: now,
            customer: customer
                .as_ref()
                .map(|c| c.external_id.clone())
                .unwrap_or_default(),
            rule: row.rule_id.clone(),
            channel: String::new(),
            status: String::new(),
            subject: String::new(),
        };
        let mut tx = self.store.pool.begin().await?;
        let rule = self.strategy.rule(&row.rule_id);
        match decision {
            Decision::Cancel(reason) => {
                schedule::finish(&mut tx, &row, "canceled", Some(&reason), now).await?;
                tx.commit().await?;
                tracing::debug!(key = %row.key, "canceled when due: {reason}");
                return Ok(None);
            }
            Decision::Skip(reason) => {
                schedule::finish(&mut tx, &row, "skipped", Some(&reason), now).await?;
                deliveries::insert(
                    &mut tx,
                    &new_delivery(
                        &row,
                        attempt,
                        DeliveryStatus::Skipped,
                        None,
                        Some(&reason),
                        None,
                        now,
                    ),
                )
                .await?;
                record.status = "skipped".into();
            }
            Decision::Broken(reason) => {
                schedule::finish(&mut tx, &row, "failed", Some(&reason), now).await?;
                deliveries::insert(
                    &mut tx,
                    &new_delivery(
                        &row,
                        attempt,
                        DeliveryStatus::Failed,
                        None,
                        Some(&reason),
                        None,
                        now,
                    ),
                )
                .await?;
                record.status = "failed".into();
            }
            Decision::Send { channel, rendered } => {
                // The send happens outside any transaction: a slow provider
                // must not hold the database.
                drop(tx);
                let customer = customer.as_ref().expect("a send has a customer");
                let started = Instant::now();
                let outcome = self.send(channel, &row, customer, &rendered, now).await;
                let duration_ms = Some(started.elapsed().as_millis() as i64);
                tx = self.store.pool.begin().await?;
                record.channel = channel.name.clone();
                record.subject = rendered.subject.clone();
                let mut d = new_delivery(
                    &row,
                    attempt,
                    DeliveryStatus::Delivered,
                    Some(channel),
                    None,
                    Some(&rendered.subject),
                    now,
                );
                d.duration_ms = duration_ms;
                let claim_held = match &outcome {
                    SendOutcome::Delivered {
                        provider_message_id,
                    } => {
                        d.provider_message_id = Some(provider_message_id);
                        deliveries::insert(&mut tx, &d).await?;
                        record.status = "delivered".into();
                        schedule::finish(&mut tx, &row, "done", None, now).await?
                    }
                    SendOutcome::Permanent { reason } => {
                        d.status = DeliveryStatus::Failed;
                        d.error = Some(reason);
                        deliveries::insert(&mut tx, &d).await?;
                        record.status = "failed".into();
                        schedule::finish(&mut tx, &row, "failed", Some(reason), now).await?
                    }
                    SendOutcome::Retryable {
                        reason,
                        retry_after,
                    } => {
                        if attempt >= channel.retry.max_attempts as i64 {
                            let reason = format!(
                                "{reason} (attempt {attempt} of {}; giving up)",
                                channel.retry.max_attempts
                            );
                            d.status = DeliveryStatus::Dead;
                            d.error = Some(&reason);
                            deliveries::insert(&mut tx, &d).await?;
                            record.status = "dead".into();
                            schedule::finish(&mut tx, &row, "dead", Some(&reason), now).await?
                        } else {
                            let delay =
                                backoff(&channel.retry, attempt as u32, &row.key, *retry_after);
                            let retry_at = now + ChronoDuration::from_std(delay)?;
                            d.status = DeliveryStatus::Failed;
                            d.error = Some(reason);
                            d.retry_at = Some(retry_at);
                            deliveries::insert(&mut tx, &d).await?;
                            record.status = "failed".into();
                            let held =
                                schedule::retry_at(&mut tx, &row, retry_at, reason, now).await?;
                            tx.commit().await?;
                            log_lost_claim(held, &row);
                            return Ok(Some(record));
                        }
                    }
                };
                log_lost_claim(claim_held, &row);
            }
        }
        if let (Some(rule), Some(customer)) = (rule, customer.as_ref()) {
            planner::plan_after_fired(&mut tx, &self.strategy, rule, customer, row.occurs_at, now)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(record))
    }

    async fn send(
        &self,
        channel: &Channel,
        row: &ScheduledRow,
        customer: &crate::customer::Customer,
        rendered: &render::Rendered,
        now: DateTime<Utc>,
    ) -> SendOutcome {
        match &channel.delivery {
            Delivery::Inbox => {
                let result = async {
                    let mut conn = self.store.pool.acquire().await?;
                    inbox::deliver(
                        &mut conn,
                        customer.id,
                        &row.key,
                        &row.rule_id,
                        &rendered.subject,
                        &rendered.text,
                        rendered.html.as_deref(),
                        now,
                    )
                    .await
                }
                .await;
                match result {
                    Ok(id) => SendOutcome::Delivered {
                        provider_message_id: format!("inbox-{id}"),
                    },
                    Err(e) => SendOutcome::Retryable {
                        reason: format!("inbox write failed: {e:#}"),
                        retry_after: None,
                    },
                }
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
                    sent_at: now.timestamp_millis(),
                };
                debug_assert!(address_of(customer, channel.address).is_some());
                plugin
                    .send(settings, &message, self.http_mode.clone())
                    .await
            }
        }
    }
}

fn log_lost_claim(held: bool, row: &ScheduledRow) {
    if !held {
        tracing::warn!(key = %row.key, "the claim on this reminder expired during the send; another process may have retried it (the idempotency key protects the provider)");
    }
}

fn new_delivery<'a>(
    row: &'a ScheduledRow,
    attempt: i64,
    status: DeliveryStatus,
    channel: Option<&'a Channel>,
    error: Option<&'a str>,
    subject: Option<&'a str>,
    now: DateTime<Utc>,
) -> NewDelivery<'a> {
    NewDelivery {
        schedule_id: row.id,
        customer_id: row.customer_id,
        rule_id: &row.rule_id,
        channel: channel.map(|c| c.name.as_str()),
        provider: channel.map(|c| c.provider.as_str()),
        attempt,
        status,
        provider_message_id: None,
        error,
        subject,
        retry_at: None,
        at: now,
        duration_ms: None,
    }
}
