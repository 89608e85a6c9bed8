//! Held reminders: dead letters (`dead`: the channel's last attempt failed)
//! and sends whose outcome is unknown (`unknown`: the plugin timed out or
//! trapped mid-send, or a node died between send and record, on a channel
//! with `uncertain = "hold"`). Lists them, sends them again (`redrive`:
//! pending and due now, attempts counted afresh, the same occurrence key,
//! so a provider that honours Herald's idempotency key drops a repeat) and
//! lets unknown ones go (`drop`). Owns these statements only; who may run
//! them is decided at the edge (CLI, API).

use super::backend::on;
use super::{from_millis, json_list, to_millis, Store};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

/// Most rows one listing returns.
pub const MAX_LIST: u32 = 1000;

/// Which held rows to list or act on.
#[derive(Debug, Clone, Default)]
pub struct HeldFilter {
    /// `dead` or `unknown`; both when `None`.
    pub status: Option<String>,
    /// Only rows whose last attempt went on this channel.
    pub channel: Option<String>,
    /// Only rows of this rule.
    pub rule: Option<String>,
    /// Only rows with an id above this (paging).
    pub after: Option<i64>,
    /// At most this many rows (capped at [`MAX_LIST`]).
    pub limit: u32,
}

/// One held reminder.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HeldRow {
    /// The schedule row id (what `redrive` and `drop` take).
    pub id: i64,
    /// The customer's external id.
    pub customer: String,
    /// The customer's region, if any.
    pub region: Option<String>,
    /// The rule.
    pub rule: String,
    /// The occurrence key (also the provider's idempotency key).
    pub occurrence_key: String,
    /// `dead` or `unknown`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The channel of the last attempt.
    pub channel: Option<String>,
    /// Why it is held.
    pub reason: Option<String>,
    /// When it was held.
    pub since: DateTime<Utc>,
}

/// The statuses a held row can have, checked at the edge.
pub const STATUSES: [&str; 2] = ["dead", "unknown"];

/// Held rows matching `filter`, in id order.
pub async fn list(store: &Store, filter: &HeldFilter) -> Result<Vec<HeldRow>> {
    let statuses: Vec<&str> = match &filter.status {
        Some(s) => vec![s.as_str()],
        None => STATUSES.to_vec(),
    };
    let limit = i64::from(filter.limit.clamp(1, MAX_LIST));
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT * FROM (
                 SELECT s.id, c.external_id, c.region, s.rule_id, s.occurrence_key, s.status,
                        s.attempts, s.last_error, s.updated_at,
                        (SELECT dl.channel FROM deliveries dl WHERE dl.schedule_id = s.id
                         ORDER BY dl.id DESC LIMIT 1) AS channel
                 FROM schedule s JOIN customers c ON c.id = s.customer_id
                 WHERE s.status IN (SELECT value FROM json_each(?)) AND s.id > ?
                   AND (? IS NULL OR s.rule_id = ?)) AS held
             WHERE ? IS NULL OR held.channel = ?
             ORDER BY held.id LIMIT ?",
        ))
        .bind(json_list(&statuses)?)
        .bind(filter.after.unwrap_or(0))
        .bind(filter.rule.as_deref())
        .bind(filter.rule.as_deref())
        .bind(filter.channel.as_deref())
        .bind(filter.channel.as_deref())
        .bind(limit)
        .fetch_all(db)
        .await
        .context("cannot list held reminders")?;
        let rows = rows.iter().map(|r| HeldRow {
            id: r.get(0),
            customer: r.get(1),
            region: r.get(2),
            rule: r.get(3),
            occurrence_key: r.get(4),
            status: r.get(5),
            attempts: r.get(6),
            reason: r.get(7),
            since: from_millis(r.get(8)),
            channel: r.get(9),
        });
        Ok(rows.collect())
    })
}

/// Send these held rows again: pending, due at `at`, attempts counted
/// afresh, the occurrence key kept. Rows that are not held (any more) are
/// left alone; returns the ids redriven.
pub async fn redrive(store: &Store, ids: &[i64], at: DateTime<Utc>) -> Result<Vec<i64>> {
    change(
        store,
        ids,
        "UPDATE schedule SET status = 'pending', due_at = ?, attempts = 0, last_error = NULL,
                claim_token = NULL, send_started_at = NULL, updated_at = ?
         WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND status IN ('dead', 'unknown')
         RETURNING id",
        at,
    )
    .await
    .context("cannot redrive held reminders")
}

/// Let these unknown sends go: `dropped`, never sent again. Returns the ids
/// dropped (rows not `unknown` are left alone).
pub async fn drop_unknown(store: &Store, ids: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>> {
    change(
        store,
        ids,
        "UPDATE schedule SET status = 'dropped', due_at = ?, updated_at = ?
         WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND status = 'unknown'
         RETURNING id",
        now,
    )
    .await
    .context("cannot drop unknown sends")
}

/// Run one of the updates above over `ids` in a write transaction.
async fn change(store: &Store, ids: &[i64], sql: &str, now: DateTime<Utc>) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write().await?;
    let mut changed: Vec<i64> = on!(tx.conn(), |db, d| {
        sqlx::query_scalar(&d.sql(sql))
            .bind(to_millis(now))
            .bind(to_millis(now))
            .bind(json_list(ids)?)
            .fetch_all(&mut *db)
            .await
    })?;
    tx.commit().await?;
    changed.sort_unstable();
    Ok(changed)
}
