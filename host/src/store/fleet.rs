//! What the nodes of a fleet coordinate through the database, beyond the
//! tables: the lock that lets one node at a time re-plan a changed strategy
//! (a PostgreSQL advisory lock, released if the node dies), the history of
//! strategies in force (so a node still running an older one cannot roll
//! the stored one back), and the database server's clock (against which a
//! node checks its own). On SQLite, the one process needs no lock and
//! shares the machine's clock.

use super::{meta, On, Store};
use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

/// The advisory lock key of a strategy re-plan ("herald:replan").
const REPLAN_LOCK: i64 = 0x6865_7261_6c64_7270;
const CURRENT: &str = "strategy_fingerprint";
const HISTORY: &str = "strategy_history";

/// Held while this node re-plans; [`ReplanLock::release`] lets the next in.
pub struct ReplanLock {
    conn: Option<PoolConnection<Postgres>>,
}

impl ReplanLock {
    /// Wait until no other node re-plans, then hold the lock (on a
    /// connection of its own: the lock goes with the connection).
    pub async fn take(store: &Store) -> Result<ReplanLock> {
        let On::Postgres(pool) = store.pool() else {
            return Ok(ReplanLock { conn: None });
        };
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(REPLAN_LOCK)
            .execute(&mut *conn)
            .await
            .context("cannot take the re-plan lock")?;
        Ok(ReplanLock { conn: Some(conn) })
    }

    /// Let the next node in.
    pub async fn release(mut self) -> Result<()> {
        if let Some(mut conn) = self.conn.take() {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(REPLAN_LOCK)
                .execute(&mut *conn)
                .await
                .context("cannot release the re-plan lock")?;
        }
        Ok(())
    }
}

/// The fingerprint of the strategy in force, and every one that was in
/// force before it (oldest first).
pub async fn strategies(store: &Store) -> Result<(Option<String>, Vec<String>)> {
    let current = meta::get(store, CURRENT).await?;
    let history = match meta::get(store, HISTORY).await? {
        Some(json) => {
            serde_json::from_str(&json).context("the stored strategy history is not JSON")?
        }
        None => Vec::new(),
    };
    Ok((current, history))
}

/// Put `fingerprint` in force, keeping the one it replaces in the history.
pub async fn put_in_force(store: &Store, fingerprint: &str) -> Result<()> {
    let (current, mut history) = strategies(store).await?;
    for old in current.into_iter().chain([fingerprint.to_string()]) {
        history.retain(|h| *h != old);
        history.push(old);
    }
    meta::set(store, HISTORY, &serde_json::to_string(&history)?).await?;
    meta::set(store, CURRENT, fingerprint).await
}

/// The database server's clock; `None` on SQLite (the machine's own).
pub async fn server_time(store: &Store) -> Result<Option<DateTime<Utc>>> {
    let On::Postgres(pool) = store.pool() else {
        return Ok(None);
    };
    let micros: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
            .fetch_one(pool)
            .await
            .context("cannot read the database server's clock")?;
    Ok(Utc.timestamp_micros(micros).single())
}
