//! Which providers drop a repeat of a message sent with the same Herald
//! idempotency key, and the `herald check` warning for a plugin channel
//! that leaves `uncertain` unset (a send whose outcome is unknown is then
//! sent again, which reaches the customer twice on a provider that does not
//! deduplicate). Knows plugins by the name they declare; touches nothing.

use super::Finding;
use crate::config::ChannelSection;

/// What the plugins shipped with Herald do with Herald's idempotency key.
const SHIPPED: &[(&str, &str)] = &[
    ("webhook", "sends it as the `Idempotency-Key` header: the receiver drops a repeat only if it honours that header"),
    ("sms-aliyun", "passes it as `OutId`, which Alibaba Cloud echoes but does not deduplicate by"),
    ("sms-twilio", "cannot pass it: Twilio's Messages API has no idempotency key"),
    ("email-http", "passes it as a custom argument, which SendGrid records but does not deduplicate by"),
    ("email-smtp", "puts it in the Message-ID, which mail servers do not deduplicate by"),
    ("wechat-template", "cannot pass it: WeChat's template message API has no idempotency key"),
    ("push-fcm", "cannot pass it: FCM's HTTP v1 API has no idempotency key (a repeat shows a second notification)"),
    ("push-jpush", "cannot pass it: JPush's push API has no idempotency key (`sendno` is only echoed back)"),
];

/// How plugin `plugin` treats a repeated send, in words.
pub fn dedup_of(plugin: &str) -> &'static str {
    SHIPPED
        .iter()
        .find(|(name, _)| *name == plugin)
        .map(|(_, how)| *how)
        .unwrap_or("is not one Herald ships: check whether its provider drops a repeat of the same idempotency key")
}

/// A warning when channel `name` (plugin `plugin`) leaves `uncertain` unset.
pub fn uncertain_findings(plugin: &str, name: &str, section: &ChannelSection) -> Option<Finding> {
    if section.uncertain.is_some() || plugin == "console" {
        return None;
    }
    Some(Finding::warning(format!(
        "channel `{name}` does not say what to do with a send whose outcome is unknown (the plugin timed out or failed mid-send, or Herald stopped between send and record): it is sent again, and plugin `{plugin}` {}; set `uncertain = \"hold\"` under [channels.{name}] to keep such sends for an operator (`herald held`, `herald redrive`, `herald drop`), or `uncertain = \"resend\"` to accept a possible repeat",
        dedup_of(plugin)
    )))
}
