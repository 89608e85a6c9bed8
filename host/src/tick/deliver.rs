//! Deliver: hand each decided send to its channel's plugin. The message is
//! built in the plugin contract's shape (recipient, rendered parts, the
//! occurrence key as the provider's idempotency key, callback and
//! unsubscribe URLs); sends run concurrently (bounded by `concurrency`), each
//! on its own task, outside any transaction. The built-in channels (inbox,
//! call list) are delivered by the record transaction instead.

use super::decide::{Decision, Work};
use crate::channels::{address_of, Channel, Delivery};
use crate::customer::Customer;
use crate::engine::Herald;
use crate::plugin::bindings::channel_api::{Field, Message, PushToken, Recipient};
use crate::plugin::send_task::send_on_own_task;
use crate::plugin::SendOutcome;
use crate::render::Rendered;
use crate::store::schedule::ScheduledRow;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Send every plugin send of `work` and store each outcome with its
/// duration in milliseconds.
pub async fn send_all<'h>(
    herald: &'h Herald,
    work: &mut [Work<'h>],
    customers: &HashMap<i64, Customer>,
    now: DateTime<Utc>,
) {
    let sends: Vec<(usize, Message, &'h Channel)> = work
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let Decision::Send {
                channel,
                rendered,
                unsubscribe_url,
                ..
            } = &w.decision
            else {
                return None;
            };
            let customer = customers.get(&w.row.customer_id)?;
            let message = match &channel.delivery {
                Delivery::Plugin { plugin, .. } => message(
                    herald,
                    channel,
                    plugin.info.accepts_callbacks,
                    &w.row,
                    customer,
                    rendered,
                    unsubscribe_url.clone(),
                    now,
                ),
                Delivery::Inbox | Delivery::Task => return None,
            };
            Some((i, message, *channel))
        })
        .collect();
    // The futures are made first and streamed as they are: a stream that
    // maps with a closure would make them generic over the closure's
    // lifetimes, and the tick's future would stop being `Send`.
    let sends: Vec<_> = sends
        .into_iter()
        .map(|(i, message, channel)| async move {
            let started = Instant::now();
            let outcome = send(herald, channel, message).await;
            (i, outcome, started.elapsed().as_millis() as i64)
        })
        .collect();
    let outcomes: Vec<(usize, SendOutcome, i64)> = futures::stream::iter(sends)
        .buffer_unordered(herald.scheduler.concurrency)
        .collect()
        .await;
    for (i, outcome, ms) in outcomes {
        work[i].outcome = Some((outcome, ms));
    }
}

/// The message a plugin receives for this occurrence.
#[allow(clippy::too_many_arguments)]
fn message(
    herald: &Herald,
    channel: &Channel,
    accepts_callbacks: bool,
    row: &ScheduledRow,
    customer: &Customer,
    rendered: &Rendered,
    unsubscribe_url: Option<String>,
    now: DateTime<Utc>,
) -> Message {
    debug_assert!(address_of(customer, channel.address).is_some());
    Message {
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
            push_tokens: customer
                .devices
                .iter()
                .map(|d| PushToken {
                    token: d.token.clone(),
                    platform: d.platform.clone(),
                    app: d.app.clone(),
                })
                .collect(),
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
        callback_url: match (&herald.public_url, accepts_callbacks) {
            (Some(base), true) => Some(format!("{base}/hooks/{}", channel.name)),
            _ => None,
        },
        sent_at: now.timestamp_millis(),
    }
}

/// One send through the channel's plugin, on its own task.
async fn send(herald: &Herald, channel: &Channel, message: Message) -> SendOutcome {
    let Delivery::Plugin { plugin, settings } = &channel.delivery else {
        return SendOutcome::Permanent {
            reason: format!("channel `{}` is built in; it has no plugin", channel.name),
        };
    };
    send_on_own_task(
        Arc::clone(plugin),
        Arc::clone(settings),
        message,
        herald.http_mode.clone(),
    )
    .await
}
