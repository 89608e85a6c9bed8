//! Provider callbacks: `POST /hooks/{channel}` hands the request to the
//! channel's plugin (`handle-callback`), which checks the provider's
//! signature and parses it into delivery reports and inbound replies. Reports
//! update the delivery they name; a reply of STOP / TD / 退订 (and the other
//! usual opt-out words) suppresses the customer on that channel, START / YES
//! / UNSTOP lifts it. The provider gets the answer the plugin chose.

use crate::config::AddressKind;
use crate::dispatch::Delivery;
use crate::engine::Herald;
use crate::plugin::bindings::channel_api::{
    CallbackError, CallbackEvent, CallbackRequest, DeliveryState,
};
use crate::store::{deliveries, suppressions};
use anyhow::Result;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sqlx::Row;

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
        let mut tx = self.store.write_tx().await?;
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
async fn customer_by_address(
    conn: &mut sqlx::SqliteConnection,
    kind: AddressKind,
    address: &str,
) -> Result<Option<i64>> {
    let column = match kind {
        AddressKind::Email => "email",
        AddressKind::Phone => "phone",
        AddressKind::Wechat => "wechat_openid",
        AddressKind::None => return Ok(None),
    };
    let exact = sqlx::query(&format!(
        "SELECT id FROM customers WHERE {column} = ? AND deleted_at IS NULL ORDER BY id LIMIT 1"
    ))
    .bind(address.trim())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = exact {
        return Ok(Some(row.get(0)));
    }
    if kind != AddressKind::Phone {
        return Ok(None);
    }
    let digits: String = address
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '+')
        .collect();
    let row = sqlx::query(
        "SELECT id FROM customers
         WHERE replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), '.', '') = ?
           AND deleted_at IS NULL ORDER BY id LIMIT 1",
    )
    .bind(&digits)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// The largest callback body accepted.
pub const MAX_CALLBACK_BODY: usize = 1 << 20;

/// `POST /hooks/{channel}`.
pub async fn handle(
    crate::live::Current(herald): crate::live::Current,
    Path(channel_name): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channel) = herald.channels.get(&channel_name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_channel",
            format!("no channel `{channel_name}` is configured"),
        );
    };
    let Delivery::Plugin { plugin, settings } = &channel.delivery else {
        return error(
            StatusCode::NOT_FOUND,
            "no_callbacks",
            format!("channel `{channel_name}` is built in and takes no callbacks"),
        );
    };
    if !plugin.info.accepts_callbacks {
        return error(
            StatusCode::NOT_FOUND,
            "no_callbacks",
            format!(
                "the plugin of channel `{channel_name}` ({}) takes no callbacks",
                plugin.info.name
            ),
        );
    }
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // Providers sign the URL they called; behind a proxy that is the public URL.
    let url = match &herald.public_url {
        Some(base) => format!("{base}{path_and_query}"),
        None => format!(
            "http://{}{path_and_query}",
            headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
        ),
    };
    let request = CallbackRequest {
        method: method.to_string(),
        url,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    let parsed = match plugin.handle_callback(settings, &request).await {
        Err(failure) => {
            tracing::error!(channel = %channel_name, "callback plugin failed: {failure}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_failed",
                format!("the channel's plugin failed on this callback: {failure}"),
            );
        }
        Ok(Err(CallbackError::Unauthorized(why))) => {
            tracing::warn!(channel = %channel_name, "callback refused: {why}");
            return error(StatusCode::FORBIDDEN, "bad_signature", why);
        }
        Ok(Err(CallbackError::BadRequest(why))) => {
            return error(StatusCode::BAD_REQUEST, "bad_callback", why);
        }
        Ok(Err(CallbackError::Unsupported)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no_callbacks",
                format!("the plugin of channel `{channel_name}` takes no callbacks"),
            );
        }
        Ok(Ok(parsed)) => parsed,
    };
    match herald
        .apply_callback_events(&channel_name, channel.address, &parsed.events)
        .await
    {
        Ok(applied) => {
            tracing::info!(channel = %channel_name, ?applied, "callback applied");
        }
        Err(e) => {
            tracing::error!(channel = %channel_name, "callback not recorded: {e:#}");
            // A 5xx makes the provider send it again.
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the callback could not be recorded; see the server log",
            );
        }
    }
    let status = StatusCode::from_u16(parsed.response.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            parsed.response.content_type.clone(),
        )],
        parsed.response.body,
    )
        .into_response()
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
