//! The `meta` table: small facts about the deployment (e.g. the fingerprint
//! of the strategy the schedule was planned with).

use super::backend::on;
use super::Store;
use anyhow::Result;
use sqlx::Row;

/// Read a value.
pub async fn get(store: &Store, key: &str) -> Result<Option<String>> {
    on!(store.pool(), |db, d| {
        let row = sqlx::query(&d.sql("SELECT value FROM meta WHERE key = ?"))
            .bind(key)
            .fetch_optional(db)
            .await?;
        Ok(row.map(|r| r.get(0)))
    })
}

/// Write a value.
pub async fn set(store: &Store, key: &str, value: &str) -> Result<()> {
    on!(store.pool(), |db, d| {
        sqlx::query(&d.sql("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"))
        .bind(key)
        .bind(value)
        .execute(db)
        .await?;
        Ok(())
    })
}

/// Write a value unless the key has one already (another process may have
/// raced to write it); returns the value that is stored now.
pub async fn set_if_absent(store: &Store, key: &str, value: &str) -> Result<String> {
    on!(store.pool(), |db, d| {
        sqlx::query(
            &d.sql("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"),
        )
        .bind(key)
        .bind(value)
        .execute(db)
        .await?;
        Ok(get(store, key).await?.unwrap_or_default())
    })
}
