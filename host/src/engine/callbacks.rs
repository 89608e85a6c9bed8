//! What provider callbacks change, once the channel's plugin has checked
//! the provider's signature and parsed the request (`POST /hooks/{channel}`
//! at the HTTP edge): delivery reports update the delivery they name; a
//! reply of STOP / TD / 退订 (and the other usual opt-out words) suppresses
//! the customer on that channel, START / YES / UNSTOP lifts it; a `bounced`
//! report also puts the recipient's address on the do-not-contact list.

use super::Herald;
use crate::address::Kind;
use crate::config::AddressKind;
use crate::plugin::bindings::channel_api::{CallbackEvent, DeliveryState};
use crate::store::customers::{self, Address};
use crate::store::{address_suppressions, deliveries, suppressions, Tx};
use anyhow::Result;

/// Replies that mean "send me nothing more on this channel": the carrier
/// standard English keywords and the Chinese 退订 / TD.
const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "TD",
    "T",
    "退订",
    "取消",
    "退訂",
];
/// Replies that lift an opt-out.
const OPT_IN: &[&str] = &["START", "YES", "UNSTOP", "订阅"];

/// What a reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyIntent {
    /// Stop messages on this channel.
    OptOut,
    /// Resume them.
    OptIn,
    /// Anything else.
    Other,
}

/// Classify a reply, ignoring case, punctuation and a leading
/// "回复"/"reply": its first word is a keyword ("STOP", "unsubscribe me"),
/// or the whole reply is keywords run together ("TD退订"). A reply that
/// merely contains one ("取消订单", cancel the order) is neither.
pub fn reply_intent(text: &str) -> ReplyIntent {
    let cleaned: String = text
        .trim()
        .trim_start_matches("回复")
        .chars()
        .filter(|c| !c.is_ascii_punctuation() && !"。！，".contains(*c))
        .collect();
    let upper = cleaned.trim().to_uppercase();
    let first = upper.split_whitespace().next().unwrap_or("");
    if OPT_OUT.contains(&first) || only_keywords(&upper, OPT_OUT) {
        return ReplyIntent::OptOut;
    }
    if OPT_IN.contains(&first) || only_keywords(&upper, OPT_IN) {
        return ReplyIntent::OptIn;
    }
    ReplyIntent::Other
}

/// True when `text` (without spaces) is one or more of `words` and
/// nothing else.
fn only_keywords(text: &str, words: &[&str]) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let longest = words
            .iter()
            .filter(|w| rest.starts_with(*w))
            .max_by_key(|w| w.len());
        match longest {
            Some(word) => rest = &rest[word.len()..],
            None => return false,
        }
    }
    !compact.is_empty()
}

/// What a callback did, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Delivery reports that matched a delivery.
    pub reports: u64,
    /// Delivery reports naming no known delivery.
    pub unknown_reports: u64,
    /// Customers newly suppressed.
    pub suppressed: u64,
    /// Suppressions lifted.
    pub resubscribed: u64,
    /// Replies from an address no customer has.
    pub unknown_senders: u64,
    /// Addresses a bounce report put on the do-not-contact list.
    pub listed: u64,
}

/// Put the address (of the channel's kind) of whoever message `id` went to
/// on the do-not-contact list: its report said the address does not exist.
/// How many were newly listed.
async fn list_recipients(
    tx: &mut Tx,
    channel: &str,
    address: AddressKind,
    id: &str,
    reason: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let kind = match address {
        AddressKind::Email => Kind::Email,
        AddressKind::Phone => Kind::Phone,
        _ => return Ok(0),
    };
    let mut listed = 0;
    for (email, phone) in deliveries::recipients(tx, channel, id).await? {
        let raw = if kind == Kind::Email { email } else { phone };
        let Some(normalised) = raw.and_then(|a| crate::address::normalise(kind, &a).ok()) else {
            continue;
        };
        let source = address_suppressions::source::BOUNCE;
        if address_suppressions::add(tx, kind.as_str(), &normalised, reason, source, now).await? {
            listed += 1;
        }
    }
    Ok(listed)
}

impl Herald {
    /// Apply the events a plugin parsed from a callback, in one transaction.
    pub async fn apply_callback_events(
        &self,
        channel: &str,
        address: AddressKind,
        events: &[CallbackEvent],
    ) -> Result<Applied> {
        let now = self.clock.now();
        let mut applied = Applied::default();
        let mut tx = self.store.write().await?;
        for event in events {
            match event {
                CallbackEvent::Report(report) => {
                    let n = deliveries::apply_report(
                        &mut tx,
                        channel,
                        &report.provider_message_id,
                        matches!(report.state, DeliveryState::Delivered),
                        report.reason.as_deref(),
                        now,
                    )
                    .await?;
                    if n == 0 {
                        applied.unknown_reports += 1;
                    }
                    applied.reports += n;
                    if matches!(report.state, DeliveryState::Bounced) {
                        let reason = report.reason.as_deref().unwrap_or("bounced");
                        let (id, why) = (
                            &report.provider_message_id,
                            format!("{reason} (on {channel})"),
                        );
                        applied.listed +=
                            list_recipients(&mut tx, channel, address, id, &why, now).await?;
                    }
                }
                CallbackEvent::Reply(reply) => {
                    let intent = reply_intent(&reply.text);
                    if intent == ReplyIntent::Other {
                        continue;
                    }
                    // A number (or address) shared by several customers
                    // speaks for all of them.
                    let customer_ids =
                        customers_by_address(&mut tx, address, &reply.sender).await?;
                    if customer_ids.is_empty() {
                        applied.unknown_senders += 1;
                    }
                    for customer_id in customer_ids {
                        if intent == ReplyIntent::OptOut {
                            let reason = format!("replied \"{}\"", reply.text.trim());
                            let source = suppressions::source::REPLY;
                            if suppressions::add(
                                &mut tx,
                                customer_id,
                                channel,
                                &reason,
                                source,
                                now,
                            )
                            .await?
                            {
                                applied.suppressed += 1;
                            }
                        } else if suppressions::remove_from_source(
                            &mut tx,
                            customer_id,
                            channel,
                            suppressions::source::REPLY,
                        )
                        .await?
                        {
                            applied.resubscribed += 1;
                        }
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// The live customers with this address, matching phone numbers with or
/// without spaces, dashes and brackets.
async fn customers_by_address(tx: &mut Tx, kind: AddressKind, address: &str) -> Result<Vec<i64>> {
    let exact = match kind {
        AddressKind::Email => Address::Email(address),
        AddressKind::Phone => Address::Phone(address),
        AddressKind::Wechat => Address::Wechat(address),
        // A push token identifies a device, not a sender of replies.
        AddressKind::Push | AddressKind::None => return Ok(Vec::new()),
    };
    let mut ids = customers::ids_by_address(tx, exact).await?;
    if kind == AddressKind::Phone {
        let digits: String = address
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        ids.extend(customers::ids_by_phone_digits(tx, &digits).await?);
        ids.sort_unstable();
        ids.dedup();
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_out_and_in_words() {
        for text in [
            "STOP",
            "stop",
            " Stop.",
            "TD",
            "td",
            "退订",
            "回复TD退订",
            "TD退订",
            "unsubscribe me",
            "取消",
        ] {
            assert_eq!(reply_intent(text), ReplyIntent::OptOut, "{text}");
        }
        for text in ["START", "unstop", "Yes", "订阅"] {
            assert_eq!(reply_intent(text), ReplyIntent::OptIn, "{text}");
        }
        for text in [
            "thanks!",
            "stopping by later",
            "what is TDX",
            "好的",
            "",
            "取消订单",
            "我不想取消",
            "可以取消吗",
        ] {
            assert_eq!(reply_intent(text), ReplyIntent::Other, "{text}");
        }
    }
}
