//! The `deliveries` table: one row per attempt at an occurrence, saying which
//! channel and provider carried it and how it ended.

use super::{from_millis, raw, to_millis};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Row, SqliteConnection, SqlitePool};

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// The provider accepted the message.
    Delivered,
    /// This attempt failed; `retry_at` says whether another follows.
    Failed,
    /// The last allowed attempt failed; no more will be made.
    Dead,
    /// The occurrence was decided against when due (reason in `error`).
    Skipped,
    /// The recipient refused the channel at the provider; they are now
    /// suppressed on it and the reminder moves to the rule's next channel.
    Suppressed,
    /// Held back (outside the send window, over a frequency cap) until
    /// `retry_at`; not an attempt.
    Deferred,
}

impl DeliveryStatus {
    /// The stored and printed name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Deferred => "deferred",
        }
    }
}

/// A delivery attempt to record.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery<'a> {
    /// The schedule row.
    pub schedule_id: i64,
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule.
    pub rule_id: &'a str,
    /// The channel chosen, if one was.
    pub channel: Option<&'a str>,
    /// The plugin or built-in that carried it.
    pub provider: Option<&'a str>,
    /// The channel the rule wanted, when a failover moved the send.
    pub failover_from: Option<&'a str>,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// Outcome.
    pub status: DeliveryStatus,
    /// The provider's message id.
    pub provider_message_id: Option<&'a str>,
    /// Error or skip reason.
    pub error: Option<String>,
    /// Rendered subject.
    pub subject: Option<&'a str>,
    /// When the next attempt is due, for failed attempts that will be retried.
    pub retry_at: Option<DateTime<Utc>>,
    /// When the attempt was made.
    pub at: DateTime<Utc>,
    /// How long the send took.
    pub duration_ms: Option<i64>,
}

/// Record many attempts, inside the caller's transaction on a connection it
/// has locked.
pub fn insert_many(conn: raw::Conn<'_>, items: &[NewDelivery<'_>]) -> Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO deliveries (schedule_id, customer_id, rule_id, channel, provider, attempt, status,
                                 provider_message_id, error, subject, retry_at, at, duration_ms, failover_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for d in items {
        stmt.run(&[
            d.schedule_id.into(),
            d.customer_id.into(),
            d.rule_id.into(),
            d.channel.into(),
            d.provider.into(),
            d.attempt.into(),
            d.status.as_str().into(),
            d.provider_message_id.into(),
            d.error.as_deref().into(),
            d.subject.into(),
            d.retry_at.map(to_millis).into(),
            to_millis(d.at).into(),
            d.duration_ms.into(),
            d.failover_from.into(),
        ])
        .with_context(|| format!("cannot record an attempt at schedule row {}", d.schedule_id))?;
    }
    Ok(())
}

/// A recorded attempt, for listings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The customer's external id.
    pub customer: String,
    /// The rule.
    pub rule: String,
    /// The channel.
    pub channel: Option<String>,
    /// The plugin or built-in that carried it.
    pub provider: Option<String>,
    /// Attempt number.
    pub attempt: i64,
    /// Outcome.
    pub status: String,
    /// The provider's message id.
    pub provider_message_id: Option<String>,
    /// Error or skip reason.
    pub error: Option<String>,
    /// Rendered subject.
    pub subject: Option<String>,
    /// Next attempt, if any.
    pub retry_at: Option<DateTime<Utc>>,
    /// The occurrence key.
    pub occurrence_key: String,
    /// The channel the rule wanted, when a failover moved the send.
    pub failover_from: Option<String>,
    /// The provider's delivery report: delivered or undelivered.
    pub report: Option<String>,
    /// The provider's reason for an undelivered report.
    pub report_reason: Option<String>,
    /// The goal event this reminder led to (its kind), if one was reached.
    pub goal: Option<String>,
    /// When the goal was reached.
    pub goal_at: Option<DateTime<Utc>>,
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this customer (external id).
    pub customer: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// At most this many, newest last.
    pub limit: i64,
}

/// The columns [`delivery_from_row`] reads, over `deliveries d`, `customers
/// c`, `schedule s` and `goals g`.
const LIST_COLUMNS: &str =
    "d.id, d.at, c.external_id, d.rule_id, d.channel, d.provider, d.attempt, d.status,
                   d.provider_message_id, d.error, d.subject, d.retry_at, s.occurrence_key,
                   d.failover_from, d.report, d.report_reason, g.event_kind, g.reached_at";

const LIST_FROM: &str = "FROM deliveries d JOIN customers c ON c.id = d.customer_id JOIN schedule s ON s.id = d.schedule_id
            LEFT JOIN goals g ON g.delivery_id = d.id";

fn delivery_from_row(r: &sqlx::sqlite::SqliteRow) -> DeliveryRow {
    DeliveryRow {
        id: r.get(0),
        at: from_millis(r.get(1)),
        customer: r.get(2),
        rule: r.get(3),
        channel: r.get(4),
        provider: r.get(5),
        attempt: r.get(6),
        status: r.get(7),
        provider_message_id: r.get(8),
        error: r.get(9),
        subject: r.get(10),
        retry_at: r.get::<Option<i64>, _>(11).map(from_millis),
        occurrence_key: r.get(12),
        failover_from: r.get(13),
        report: r.get(14),
        report_reason: r.get(15),
        goal: r.get(16),
        goal_at: r.get::<Option<i64>, _>(17).map(from_millis),
    }
}

/// Recorded attempts, oldest first.
pub async fn list(pool: &SqlitePool, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
    let rows = sqlx::query(&format!(
        "SELECT * FROM (
            SELECT {LIST_COLUMNS} {LIST_FROM}
            WHERE (?1 IS NULL OR c.external_id = ?1) AND (?2 IS NULL OR d.status = ?2) AND (?3 IS NULL OR d.rule_id = ?3)
            ORDER BY d.at DESC, d.id DESC LIMIT ?4
         ) ORDER BY at, id"
    ))
    .bind(&filter.customer)
    .bind(&filter.status)
    .bind(&filter.rule)
    .bind(if filter.limit > 0 { filter.limit } else { i64::MAX })
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(delivery_from_row).collect())
}

/// Filters for [`page`] (the API's listing).
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only this customer (external id).
    pub customer: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Only attempts at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only attempts before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only customers of these regions (a staff caller); `None`: all.
    pub scope: Option<Vec<String>>,
    /// Only rows with an id above this (paging).
    pub after_id: i64,
    /// At most this many.
    pub limit: i64,
}

/// Recorded attempts in id order, for paging through with `after_id`.
pub async fn page(pool: &SqlitePool, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>> {
    let scope = q.scope.as_ref().map(serde_json::to_string).transpose()?;
    let rows = sqlx::query(&format!(
        "SELECT {LIST_COLUMNS} {LIST_FROM}
         WHERE d.id > ?1 AND (?2 IS NULL OR c.external_id = ?2) AND (?3 IS NULL OR d.status = ?3)
           AND (?4 IS NULL OR d.rule_id = ?4) AND (?5 IS NULL OR d.channel = ?5)
           AND (?6 IS NULL OR d.at >= ?6) AND (?7 IS NULL OR d.at < ?7)
           AND (?8 IS NULL OR c.region IN (SELECT value FROM json_each(?8)))
         ORDER BY d.id LIMIT ?9"
    ))
    .bind(q.after_id)
    .bind(&q.customer)
    .bind(&q.status)
    .bind(&q.rule)
    .bind(&q.channel)
    .bind(q.since.map(to_millis))
    .bind(q.until.map(to_millis))
    .bind(scope)
    .bind(q.limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(delivery_from_row).collect())
}

/// Record a provider's delivery report against the delivery it names (by
/// channel and provider message id). Returns how many rows it updated (0 when
/// no delivery has that id, e.g. a report for a message sent elsewhere).
pub async fn apply_report(
    conn: &mut SqliteConnection,
    channel: &str,
    provider_message_id: &str,
    delivered: bool,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE deliveries SET report = ?, report_reason = ?, report_at = ?
         WHERE channel = ? AND provider_message_id = ? AND status = 'delivered'",
    )
    .bind(if delivered {
        "delivered"
    } else {
        "undelivered"
    })
    .bind(reason)
    .bind(to_millis(at))
    .bind(channel)
    .bind(provider_message_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Reminders delivered to each of `ids` since `since` (rule, channel, time),
/// for frequency caps.
pub async fn recent_sends(
    conn: &mut SqliteConnection,
    ids: &[i64],
    since: DateTime<Utc>,
) -> Result<std::collections::HashMap<i64, Vec<(String, String, DateTime<Utc>)>>> {
    let mut out: std::collections::HashMap<i64, Vec<(String, String, DateTime<Utc>)>> =
        std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows = sqlx::query(
        "SELECT customer_id, rule_id, channel, at FROM deliveries
         WHERE customer_id IN (SELECT value FROM json_each(?)) AND at > ? AND status = 'delivered'",
    )
    .bind(serde_json::to_string(ids)?)
    .bind(to_millis(since))
    .fetch_all(conn)
    .await?;
    for r in rows {
        out.entry(r.get(0)).or_default().push((
            r.get(1),
            r.get::<Option<String>, _>(2).unwrap_or_default(),
            from_millis(r.get(3)),
        ));
    }
    Ok(out)
}
