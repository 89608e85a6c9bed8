//! What provider callbacks change, once the channel's plugin has checked
//! the provider's signature and parsed the request (`POST /hooks/{channel}`
//! at the HTTP edge): delivery reports update the delivery they name; a
//! reply of STOP / TD / 退订 (and the other usual opt-out words) suppresses
//! the customer on that channel, START / YES / UNSTOP lifts it.

use super::Herald;
use crate::config::AddressKind;
use crate::plugin::bindings::channel_api::{CallbackEvent, DeliveryState};
use crate::store::customers::{self, Address};
use crate::store::{deliveries, suppressions, Tx};
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

/// Classify a reply by its first word, ignoring case, punctuation and a
/// leading "回复"/"reply" ("回复TD退订" counts as TD).
pub fn reply_intent(text: &str) -> ReplyIntent {
    let cleaned: String = text
        .trim()
        .trim_start_matches("回复")
        .chars()
        .filter(|c| !c.is_ascii_punctuation() && !"。！，".contains(*c))
        .collect();
    let upper = cleaned.trim().to_uppercase();
    let first = upper.split_whitespace().next().unwrap_or("");
    if OPT_OUT.contains(&first) || OPT_OUT.iter().any(|k| !k.is_ascii() && upper.contains(k)) {
        return ReplyIntent::OptOut;
    }
    // "TD退订" and the like: a Latin keyword run into a Chinese one.
    if upper.starts_with("TD") && upper.chars().skip(2).all(|c| !c.is_ascii_alphanumeric()) {
        return ReplyIntent::OptOut;
    }
    if OPT_IN.contains(&first) {
        return ReplyIntent::OptIn;
    }
    ReplyIntent::Other
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
                }
                CallbackEvent::Reply(reply) => {
                    let intent = reply_intent(&reply.text);
                    if intent == ReplyIntent::Other {
                        continue;
                    }
                    let Some(customer_id) =
                        customer_by_address(&mut tx, address, &reply.sender).await?
                    else {
                        applied.unknown_senders += 1;
                        continue;
                    };
                    if intent == ReplyIntent::OptOut {
                        let reason = format!("replied \"{}\"", reply.text.trim());
                        if suppressions::add(
                            &mut tx,
                            customer_id,
                            channel,
                            &reason,
                            suppressions::source::REPLY,
                            now,
                        )
                        .await?
                        {
                            applied.suppressed += 1;
                        }
                    } else if suppressions::remove(&mut tx, customer_id, channel).await? {
                        applied.resubscribed += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// The live customer with this address, matching phone numbers with or
/// without spaces, dashes and brackets.
async fn customer_by_address(tx: &mut Tx, kind: AddressKind, address: &str) -> Result<Option<i64>> {
    let exact = match kind {
        AddressKind::Email => Address::Email(address),
        AddressKind::Phone => Address::Phone(address),
        AddressKind::Wechat => Address::Wechat(address),
        AddressKind::None => return Ok(None),
    };
    if let Some(id) = customers::id_by_address(tx, exact).await? {
        return Ok(Some(id));
    }
    if kind != AddressKind::Phone {
        return Ok(None);
    }
    let digits: String = address
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    customers::id_by_phone_digits(tx, &digits).await
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
        for text in ["START", "unstop", "Yes"] {
            assert_eq!(reply_intent(text), ReplyIntent::OptIn, "{text}");
        }
        for text in ["thanks!", "stopping by later", "what is TDX", "好的", ""] {
            assert_eq!(reply_intent(text), ReplyIntent::Other, "{text}");
        }
    }
}
