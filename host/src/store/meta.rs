//! The `meta` table: small facts about the deployment (e.g. the fingerprint
//! of the strategy the schedule was planned with).

use super::Store;
use anyhow::Result;
use sqlx::Row;

/// Read a value.
pub async fn get(store: &Store, key: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_optional(&store.pool)
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Write a value.
pub async fn set(store: &Store, key: &str, value: &str) -> Result<()> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(&store.pool)
        .await?;
    Ok(())
}

/// Write a value unless the key has one already (another process may have
/// raced to write it); returns the value that is stored now.
pub async fn set_if_absent(store: &Store, key: &str, value: &str) -> Result<String> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&store.pool)
        .await?;
    Ok(get(store, key).await?.unwrap_or_default())
}
