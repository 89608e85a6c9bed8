//! The `plugin_kv` table: each plugin's small key-value store (tokens,
//! cursors), namespaced by channel so no plugin reads another's keys.

use super::to_millis;
use super::Store;
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

/// Read a live value.
pub async fn get(
    store: &Store,
    namespace: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<Vec<u8>>> {
    let row = sqlx::query(
        "SELECT value FROM plugin_kv WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
    )
    .bind(namespace)
    .bind(key)
    .bind(to_millis(now))
    .fetch_optional(&store.pool)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Write a value, optionally expiring `ttl_seconds` after `now`.
pub async fn set(
    store: &Store,
    namespace: &str,
    key: &str,
    value: &[u8],
    ttl_seconds: Option<u64>,
    now: DateTime<Utc>,
) -> Result<()> {
    let expires = ttl_seconds
        .map(|s| to_millis(now + Duration::seconds(s.min(i64::MAX as u64 / 1000) as i64)));
    sqlx::query(
        "INSERT INTO plugin_kv (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
    )
    .bind(namespace)
    .bind(key)
    .bind(value)
    .bind(expires)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Remove a value.
pub async fn delete(store: &Store, namespace: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM plugin_kv WHERE namespace = ? AND key = ?")
        .bind(namespace)
        .bind(key)
        .execute(&store.pool)
        .await?;
    Ok(())
}
