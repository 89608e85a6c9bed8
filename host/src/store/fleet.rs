//! What the nodes of a fleet coordinate through the database, beyond the
//! tables: the lock that lets one node at a time re-plan a changed strategy
//! (a PostgreSQL advisory lock, released if the node dies), the history of
//! strategies in force (so a node still running an older one cannot roll
//! the stored one back), and the database server's clock (against which a
//! node checks its own). On SQLite, the one process needs no lock and
//! shares the machine's clock.

use super::backend::on;
use super::{On, Store, Tx};
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
    let mut tx = store.read().await?;
    strategies_in(&mut tx).await
}

/// Put `fingerprint` in force, keeping the one it replaces in the history
/// (which never holds the one in force), both in one transaction: a node
/// reading them meanwhile sees the old pair or the new one.
pub async fn put_in_force(store: &Store, fingerprint: &str) -> Result<()> {
    let mut tx = store.write().await?;
    let (current, mut history) = strategies_in(&mut tx).await?;
    history.retain(|h| h != fingerprint);
    if let Some(old) = current.filter(|c| c != fingerprint) {
        history.retain(|h| *h != old);
        history.push(old);
    }
    let history = serde_json::to_string(&history)?;
    for (key, value) in [(HISTORY, history.as_str()), (CURRENT, fingerprint)] {
        on!(tx.conn(), |db, d| {
            sqlx::query(&d.sql(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            ))
            .bind(key)
            .bind(value)
            .execute(&mut *db)
            .await
            .context("cannot record the strategy in force")?;
        });
    }
    tx.commit().await
}

async fn strategies_in(tx: &mut Tx) -> Result<(Option<String>, Vec<String>)> {
    let mut values = Vec::new();
    for key in [CURRENT, HISTORY] {
        let value: Option<String> = on!(tx.conn(), |db, d| {
            sqlx::query_scalar(&d.sql("SELECT value FROM meta WHERE key = ?"))
                .bind(key)
                .fetch_optional(&mut *db)
                .await?
        });
        values.push(value);
    }
    let history = match values.pop().flatten() {
        Some(json) => {
            serde_json::from_str(&json).context("the stored strategy history is not JSON")?
        }
        None => Vec::new(),
    };
    Ok((values.pop().flatten(), history))
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
