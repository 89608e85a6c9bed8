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

/// How many live keys `namespace` holds besides `key`, and their bytes
/// (keys and values): what a quota weighs a write of `key` against.
pub async fn usage_besides(
    store: &Store,
    namespace: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<(u64, u64)> {
    on!(store.pool(), |db, d| {
        let row = sqlx::query(&d.sql(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) FROM plugin_kv
         WHERE namespace = ? AND key <> ? AND (expires_at IS NULL OR expires_at > ?)",
        ))
        .bind(namespace)
        .bind(key)
        .bind(to_millis(now))
        .fetch_one(db)
        .await?;
        Ok((row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64))
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
