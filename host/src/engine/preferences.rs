//! A customer's preferences, read and changed the same way by the signed
//! preference page and the API: which topics of the strategy they hear
//! about (`store::preferences`) and which channels may reach them (their
//! channel suppressions, source `preferences`). Owns what a customer may
//! change: a topic whose rules are all transactional cannot be turned off,
//! and a channel stopped by a STOP reply, a provider or an operator cannot
//! be turned back on here. Rendering the page is the HTTP edge's business.

use super::writes::{live_in_scope, RegionScope, WriteError};
use super::Herald;
use crate::channels::{address_of, Delivery};
use crate::config::AddressKind;
use crate::customer::Customer;
use crate::store::suppressions::{self, source};
use crate::store::{preferences, Tx};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// What a customer hears about, and how.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preferences {
    /// The customer's external id.
    pub customer: String,
    /// The customer's locale, if known (the page's language).
    pub locale: Option<String>,
    /// The customer's signed preference page (`{{ preferences_url }}`);
    /// absent without `[server] public_url`.
    pub page_url: Option<String>,
    /// The strategy's topics.
    pub topics: Vec<TopicChoice>,
    /// The channels that can reach the customer.
    pub channels: Vec<ChannelChoice>,
}

/// One topic and whether the customer hears about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TopicChoice {
    /// The topic's name.
    pub topic: String,
    /// Whether the customer gets its reminders.
    pub subscribed: bool,
    /// Every rule of the topic is transactional: always sent, cannot be
    /// turned off.
    pub always_sent: bool,
}

/// One channel and whether it may reach the customer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelChoice {
    /// The channel's name.
    pub channel: String,
    /// What address it uses (`email`, `phone`, `push`, `wechat`, `inbox`,
    /// `none`).
    pub kind: String,
    /// Whether it may carry reminders to the customer.
    pub enabled: bool,
    /// Why the customer cannot turn it back on here: the source of its
    /// suppression (`reply`, `provider`, `api`, `import`).
    pub locked: Option<String>,
}

/// A change of preferences: topics and channels by name, `true` = on.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceChange {
    /// Topics to turn on (`true`) or off (`false`).
    #[serde(default)]
    pub topics: BTreeMap<String, bool>,
    /// Channels to turn on (`true`) or off (`false`).
    #[serde(default)]
    pub channels: BTreeMap<String, bool>,
}

impl Herald {
    /// The preferences of live customer `external_id` within `scope`.
    pub async fn preferences(
        &self,
        external_id: &str,
        scope: RegionScope<'_>,
    ) -> Result<Preferences, WriteError> {
        let mut tx = self.store.read().await?;
        let customer = live_in_scope(&mut tx, external_id, scope).await?;
        Ok(self.preferences_of(&mut tx, &customer).await?)
    }

    /// Apply `change` to live customer `external_id` within `scope`, from
    /// `origin` (`page` or `api`), all or nothing; the preferences after it.
    pub async fn set_preferences(
        &self,
        external_id: &str,
        scope: RegionScope<'_>,
        change: &PreferenceChange,
        origin: &'static str,
    ) -> Result<Preferences, WriteError> {
        let now = self.clock.now();
        let mut tx = self.store.write().await?;
        let customer = live_in_scope(&mut tx, external_id, scope).await?;
        let before = self.preferences_of(&mut tx, &customer).await?;
        check_change(&before, change)?;
        for (topic, on) in &change.topics {
            if *on {
                preferences::opt_in(&mut tx, customer.id, topic).await?;
            } else {
                preferences::opt_out(&mut tx, customer.id, topic, origin, now).await?;
            }
        }
        for (channel, on) in &change.channels {
            if *on {
                for from in [source::PREFERENCES, source::UNSUBSCRIBE] {
                    suppressions::remove_from_source(&mut tx, customer.id, channel, from).await?;
                }
            } else {
                let reason = format!("turned off by the customer's preferences ({origin})");
                suppressions::add(
                    &mut tx,
                    customer.id,
                    channel,
                    &reason,
                    source::PREFERENCES,
                    now,
                )
                .await?;
            }
        }
        let after = self.preferences_of(&mut tx, &customer).await?;
        tx.commit().await?;
        Ok(after)
    }

    async fn preferences_of(&self, tx: &mut Tx, customer: &Customer) -> Result<Preferences> {
        let opted_out = preferences::opted_out(tx, &[customer.id])
            .await?
            .remove(&customer.id)
            .unwrap_or_default();
        let suppressed: BTreeMap<String, String> = suppressions::of_customer(tx, customer.id)
            .await?
            .into_iter()
            .map(|(channel, from, _)| (channel, from))
            .collect();
        Ok(Preferences {
            customer: customer.external_id.clone(),
            locale: customer.locale.clone(),
            page_url: self.links.preferences_url(&customer.external_id),
            topics: self.topic_choices(&opted_out),
            channels: self.channel_choices(customer, &suppressed),
        })
    }

    fn topic_choices(&self, opted_out: &HashSet<String>) -> Vec<TopicChoice> {
        let strategy = &self.strategy;
        strategy
            .topics
            .all()
            .iter()
            .map(|topic| {
                let mut rules = strategy
                    .rules
                    .iter()
                    .filter(|r| r.topic.as_deref() == Some(topic.name.as_str()))
                    .peekable();
                let always_sent = rules.peek().is_some() && rules.all(|r| r.transactional);
                TopicChoice {
                    topic: topic.name.clone(),
                    subscribed: always_sent || !opted_out.contains(&topic.name),
                    always_sent,
                }
            })
            .collect()
    }

    /// The channels the strategy's rules use to reach customers (not staff
    /// call lists), that this customer has an address for or has turned
    /// off, in the order rules first name them.
    fn channel_choices(
        &self,
        customer: &Customer,
        suppressed: &BTreeMap<String, String>,
    ) -> Vec<ChannelChoice> {
        let mut seen = HashSet::new();
        let named = self.strategy.rules.iter().flat_map(|r| {
            r.channels
                .iter()
                .chain(r.steps.iter().flat_map(|s| &s.channels))
        });
        let mut out = Vec::new();
        for name in named {
            let Some(channel) = self.channels.get(name) else {
                continue;
            };
            if !seen.insert(name.as_str()) || matches!(channel.delivery, Delivery::Task) {
                continue;
            }
            let from = suppressed.get(name);
            if from.is_none() && address_of(customer, channel.address).is_none() {
                continue;
            }
            let kind = match (&channel.delivery, channel.address) {
                (Delivery::Inbox, _) => "inbox".to_string(),
                (_, AddressKind::None) => "none".to_string(),
                (_, kind) => kind.to_string(),
            };
            out.push(ChannelChoice {
                channel: name.clone(),
                kind,
                enabled: from.is_none(),
                locked: from.filter(|f| !source::customer_may_lift(f)).cloned(),
            });
        }
        out
    }
}

/// Refuse a change naming an unknown topic or channel, turning off a topic
/// that is always sent, or turning on a channel the customer may not lift.
fn check_change(current: &Preferences, change: &PreferenceChange) -> Result<(), WriteError> {
    let invalid = |m: String| Err(WriteError::Invalid(m));
    for (name, on) in &change.topics {
        let Some(topic) = current.topics.iter().find(|t| &t.topic == name) else {
            let known: Vec<&str> = current.topics.iter().map(|t| t.topic.as_str()).collect();
            return invalid(format!("no topic `{name}`; topics: {}", list(&known)));
        };
        if topic.always_sent && !on {
            return invalid(format!(
                "topic `{name}` has only transactional reminders, which are always sent"
            ));
        }
    }
    for (name, on) in &change.channels {
        let Some(channel) = current.channels.iter().find(|c| &c.channel == name) else {
            let known: Vec<&str> = current
                .channels
                .iter()
                .map(|c| c.channel.as_str())
                .collect();
            return invalid(format!(
                "channel `{name}` does not reach this customer; channels: {}",
                list(&known)
            ));
        };
        if let (true, Some(from)) = (on, &channel.locked) {
            return invalid(format!(
                "channel `{name}` was turned off by {}; the customer cannot turn it back on here",
                locked_by(from)
            ));
        }
    }
    Ok(())
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// What a locked suppression's source means, in words.
pub fn locked_by(source: &str) -> &'static str {
    match source {
        source::REPLY => "a STOP reply (only a START reply turns it back on)",
        source::PROVIDER => "the provider, which refuses this address",
        source::IMPORT => "an imported do-not-contact list",
        _ => "the operator",
    }
}
