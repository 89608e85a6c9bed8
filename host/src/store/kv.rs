//! The `plugin_kv` table: each plugin's small key-value store (tokens,
//! cursors), namespaced by channel so no plugin reads another's keys.

use super::backend::on;
use super::to_millis;
use super::Store;
use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Read a live value.
pub async fn get(
    store: &Store,
    namespace: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<Vec<u8>>> {
    on!(store.pool(), |db, d| {
        let row = sqlx::query(&d.sql("SELECT value FROM plugin_kv WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"))
    .bind(namespace)
    .bind(key)
    .bind(to_millis(now))
    .fetch_optional(db)
    .await?;
        Ok(row.map(|r| r.get(0)))
    })
}

/// Write a value, expiring at `expires_at` if given.
pub async fn set(
    store: &Store,
    namespace: &str,
    key: &str,
    value: &[u8],
    expires_at: Option<DateTime<Utc>>,
) -> Result<()> {
    on!(store.pool(), |db, d| {
        sqlx::query(&d.sql("INSERT INTO plugin_kv (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"))
    .bind(namespace)
    .bind(key)
    .bind(value)
    .bind(expires_at.map(to_millis))
    .execute(db)
    .await?;
        Ok(())
    })
}

/// What a channel's live keys weigh against its quotas, besides the key
/// being written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Live keys that are not markers.
    pub keys: u64,
    /// Their bytes (keys and values).
    pub bytes: u64,
    /// Live markers: small values that expire within `marker_ttl` of now
    /// (a callback's signature remembered for its freshness window).
    pub markers: u64,
}

/// Drop `namespace`'s expired keys, then weigh its live ones besides `key`
/// (see [`Usage`]; a marker is a value of at most `marker_bytes` expiring
/// by `marker_until`). Expired keys never pile up: a plugin remembering
/// one key per callback leaves only the live ones.
pub async fn usage_besides(
    store: &Store,
    namespace: &str,
    key: &str,
    now: DateTime<Utc>,
    (marker_until, marker_bytes): (DateTime<Utc>, usize),
) -> Result<Usage> {
    on!(store.pool(), |db, d| {
        sqlx::query(&d.sql(
            "DELETE FROM plugin_kv WHERE namespace = ? AND expires_at IS NOT NULL AND expires_at <= ?",
        ))
        .bind(namespace)
        .bind(to_millis(now))
        .execute(db)
        .await?;
        let marker = "(expires_at IS NOT NULL AND expires_at <= ?3 AND LENGTH(value) <= ?4)";
        let row = sqlx::query(&d.sql(&format!(
            "SELECT COALESCE(SUM(CASE WHEN {marker} THEN 0 ELSE 1 END), 0),
                    COALESCE(SUM(CASE WHEN {marker} THEN 0 ELSE LENGTH(key) + LENGTH(value) END), 0),
                    COALESCE(SUM(CASE WHEN {marker} THEN 1 ELSE 0 END), 0)
             FROM plugin_kv WHERE namespace = ?1 AND key <> ?2"
        )))
        .bind(namespace)
        .bind(key)
        .bind(to_millis(marker_until))
        .bind(i64::try_from(marker_bytes).unwrap_or(i64::MAX))
        .fetch_one(db)
        .await?;
        let count = |i: usize| u64::try_from(row.get::<i64, _>(i)).unwrap_or(0);
        Ok(Usage {
            keys: count(0),
            bytes: count(1),
            markers: count(2),
        })
    })
}

/// Remove a value.
pub async fn delete(store: &Store, namespace: &str, key: &str) -> Result<()> {
    on!(store.pool(), |db, d| {
        sqlx::query(&d.sql("DELETE FROM plugin_kv WHERE namespace = ? AND key = ?"))
            .bind(namespace)
            .bind(key)
            .execute(db)
            .await?;
        Ok(())
    })
}

/// How many rows `namespace` has, live or not (tests: expired keys are dropped).
#[cfg(test)]
pub async fn rows_of(store: &Store, namespace: &str) -> Result<i64> {
    on!(store.pool(), |db, d| {
        let row = sqlx::query(&d.sql("SELECT COUNT(*) FROM plugin_kv WHERE namespace = ?"))
            .bind(namespace)
            .fetch_one(db)
            .await?;
        Ok(row.get::<i64, _>(0))
    })
}
