//! The `events` table: what customers did (a payment, a login, a visit).

use super::backend::on;
use super::Fields;
use super::Tx;
use super::{from_millis, to_millis};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Row;

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Row id.
    pub id: i64,
    /// The customer's row id.
    pub customer_id: i64,
    /// Event kind such as `payment`.
    pub kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Free-form properties.
    pub properties: Map<String, Value>,
}

/// Record an event. With an `event_id` already seen, nothing is written and
/// `None` is returned, which makes ingestion idempotent.
pub async fn insert(
    tx: &mut Tx,
    customer_id: i64,
    kind: &str,
    at: DateTime<Utc>,
    properties: &Map<String, Value>,
    event_id: Option<&str>,
    recorded_at: DateTime<Utc>,
) -> Result<Option<EventRecord>> {
    on!(tx.conn(), |db, d| {
        let row = sqlx::query(&d.sql(
            "INSERT INTO events (customer_id, kind, at, properties, event_id, recorded_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING id",
        ))
        .bind(customer_id)
        .bind(kind)
        .bind(to_millis(at))
        .bind(serde_json::to_string(properties)?)
        .bind(event_id)
        .bind(to_millis(recorded_at))
        .fetch_optional(&mut *db)
        .await?;
        Ok(row.map(|r| EventRecord {
            id: r.get(0),
            customer_id,
            kind: kind.to_string(),
            at,
            properties: properties.clone(),
        }))
    })
}

/// The customer's most recent events, oldest first.
pub async fn recent(tx: &mut Tx, customer_id: i64, limit: i64) -> Result<Vec<EventRecord>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT id, kind, at, properties FROM events WHERE customer_id = ? ORDER BY at DESC, id DESC LIMIT ?"))
    .bind(customer_id)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
        oldest_first(&rows, customer_id)
    })
}

/// When the customer last did any of `kinds` (`None`: never).
pub async fn latest_at(
    tx: &mut Tx,
    customer_id: i64,
    kinds: &[String],
) -> Result<Option<DateTime<Utc>>> {
    on!(tx.conn(), |db, d| {
        let row = sqlx::query(&d.sql("SELECT MAX(at) FROM events WHERE customer_id = ? AND kind IN (SELECT value FROM json_each(?))"))
    .bind(customer_id)
    .bind(serde_json::to_string(kinds)?)
    .fetch_one(&mut *db)
    .await?;
        Ok(row.get::<Option<i64>, _>(0).map(from_millis))
    })
}

/// The customer's events at or after `from` (of `kinds`, when given),
/// oldest first, at most the latest `limit`.
pub async fn since(
    tx: &mut Tx,
    customer_id: i64,
    from: DateTime<Utc>,
    kinds: Option<&[String]>,
    limit: i64,
) -> Result<Vec<EventRecord>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT id, kind, at, properties FROM events
         WHERE customer_id = ? AND at >= ? AND (? IS NULL OR kind IN (SELECT value FROM json_each(?)))
         ORDER BY at DESC, id DESC LIMIT ?"))
    .bind(customer_id)
    .bind(to_millis(from))
    .bind(kinds.map(|_| 1))
    .bind(kinds.map(serde_json::to_string).transpose()?)
    .bind(limit)
    .fetch_all(&mut *db)
    .await?;
        oldest_first(&rows, customer_id)
    })
}

/// Rows selected newest first (`id, kind, at, properties`), as records oldest first.
fn oldest_first<R: Fields>(rows: &[R], customer_id: i64) -> Result<Vec<EventRecord>>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let mut out = rows
        .iter()
        .map(|r| {
            let props = r.text("properties");
            Ok(EventRecord {
                id: r.int("id"),
                customer_id,
                kind: r.text("kind"),
                at: from_millis(r.int("at")),
                properties: serde_json::from_str(&props)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// Each of `ids`' event times by kind (Unix ms, oldest first): what
/// segment conditions count (customers without events are absent).
pub async fn histories(
    tx: &mut Tx,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, std::collections::BTreeMap<String, Vec<i64>>>> {
    let mut out: std::collections::HashMap<i64, std::collections::BTreeMap<String, Vec<i64>>> =
        Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT customer_id, kind, at FROM events
             WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))
             ORDER BY customer_id, at, id",
        ))
        .bind(super::json_list(ids)?)
        .fetch_all(&mut *db)
        .await?;
        for r in rows {
            out.entry(r.get(0))
                .or_default()
                .entry(r.get(1))
                .or_default()
                .push(r.get(2));
        }
        Ok(out)
    })
}
