//! Routing: the first channel of a reminder's preference list (the rule's
//! channels that apply to the customer, their preferred one first:
//! [`crate::strategy::Strategy::channel_preference`]) that can reach the
//! customer — enabled, not refused by them, with their address, that
//! address not on the do-not-contact list — or its failover backup while
//! its provider is failing. Says why every channel before it was passed over.

use super::{Channel, Channels, Route};
use crate::config::AddressKind;
use crate::customer::Customer;
use crate::store::address_suppressions::AddressSuppression;
use crate::strategy::ChannelPreference;
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// What keeps one customer off channels: the channels they refused and
/// their addresses on the do-not-contact list (each entry is one of this
/// customer's own addresses, matched after normalising).
#[derive(Debug, Default, Clone)]
pub struct Refusals {
    /// Channels the customer refused (their suppressions).
    pub channels: HashSet<String>,
    /// The customer's addresses on the do-not-contact list.
    pub addresses: Vec<AddressSuppression>,
}

impl Refusals {
    /// Why the list keeps `channel` from the customer, if it does: an entry
    /// for the kind of address the channel sends to.
    fn do_not_contact(&self, channel: &Channel) -> Option<String> {
        let kind = match channel.address {
            AddressKind::Email => "email",
            AddressKind::Phone => "phone",
            _ => return None,
        };
        let entry = self.addresses.iter().find(|a| a.kind == kind)?;
        Some(format!(
            "{}: {} is on the do-not-contact list ({}, {})",
            channel.name,
            entry.address,
            entry.reason,
            entry.at.format("%Y-%m-%d %H:%M UTC")
        ))
    }
}

impl Channels {
    /// Why `channel` cannot carry a reminder to this customer, if it cannot.
    fn unusable(
        channel: &Channel,
        customer: &Customer,
        suppressed: Option<&Refusals>,
    ) -> Option<String> {
        if suppressed.is_some_and(|s| s.channels.contains(&channel.name)) {
            return Some(format!("{} (the customer unsubscribed)", channel.name));
        }
        if let Some(why) = suppressed.and_then(|s| s.do_not_contact(channel)) {
            return Some(why);
        }
        if address_of(customer, channel.address).is_none() {
            return Some(match channel.address {
                AddressKind::Push => format!("{} (no device registered for push)", channel.name),
                kind => format!("{} (needs {kind})", channel.name),
            });
        }
        None
    }

    /// The first channel among `preference` that can reach the customer:
    /// enabled (disabled channels are passed over like unreachable ones), not
    /// refused by them, and with their address. When that
    /// channel names a failover backup and its provider is failing (its
    /// circuit is open, or this reminder already failed `failover_after`
    /// times in a row on it), the backup carries it instead.
    pub fn route(
        &self,
        preference: &ChannelPreference,
        customer: &Customer,
        suppressed: Option<&Refusals>,
        failed_attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<Route<'_>, String> {
        let mut tried = Vec::new();
        let mut conditions_out = 0;
        let mut disabled = Vec::new();
        for (name, left_out) in &preference.channels {
            if let Some(why) = left_out {
                tried.push(why.clone());
                conditions_out += 1;
                continue;
            }
            let Some(channel) = self.by_name.get(name) else {
                if self.disabled.contains(name) {
                    disabled.push(name.as_str());
                    tried.push(format!("{name} (disabled)"));
                }
                continue;
            };
            if let Some(why) = Self::unusable(channel, customer, suppressed) {
                tried.push(why);
                continue;
            }
            if let Some(f) = &channel.failover {
                let failing =
                    channel.breaker.is_open(now) || failed_attempts >= f.after.max(1) as i64;
                if let Some(backup) = self.by_name.get(&f.backup) {
                    if failing && Self::unusable(backup, customer, suppressed).is_none() {
                        return Ok(Route {
                            channel: backup,
                            failover_from: Some(&channel.name),
                            passed_over: tried,
                        });
                    }
                }
            }
            return Ok(Route {
                channel,
                failover_from: None,
                passed_over: tried,
            });
        }
        // Every channel of the list is disabled (none was left out by its
        // condition): say that, it is the operator's to fix.
        if !disabled.is_empty() && conditions_out == 0 && disabled.len() == tried.len() {
            return Err(format!(
                "every channel of this rule is disabled in the config ({}); enable one (enabled = true) or give the rule another channel",
                disabled.join(", ")
            ));
        }
        Err(format!(
            "no channel can reach the customer: {}",
            tried.join(", ")
        ))
    }
}

/// The customer's address of a kind (`Some("")` for kind `none`).
pub fn address_of(customer: &Customer, kind: AddressKind) -> Option<&str> {
    match kind {
        AddressKind::Email => customer.email.as_deref(),
        AddressKind::Phone => customer.phone.as_deref(),
        AddressKind::Wechat => customer.wechat_openid.as_deref(),
        // The most recently registered device stands for them all: the
        // plugin gets every token.
        AddressKind::Push => customer.devices.first().map(|d| d.token.as_str()),
        AddressKind::None => Some(""),
    }
}
