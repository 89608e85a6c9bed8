//! SQLite persistence (sqlx, WAL mode): opening the database, running the
//! migrations, and one submodule per table family. Times are stored as Unix
//! milliseconds; every function takes the time it needs from its caller.

pub mod customers;
pub mod deliveries;
pub mod events;
pub mod goals;
pub mod inbox;
pub mod kv;
pub mod meta;
pub mod raw;
pub mod schedule;
pub mod suppressions;
pub mod tasks;
pub mod tokens;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A handle to the database.
#[derive(Clone, Debug)]
pub struct Store {
    /// The connection pool.
    pub pool: SqlitePool,
}

impl Store {
    /// Open (creating if needed) the database at `path` and run migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create database directory {}", dir.display())
                })?;
            }
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .with_context(|| format!("bad database path {}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // A tick touches many pages of the schedule, deliveries and
            // customers tables; the default 2 MB page cache made a quarter of
            // a large tick's time re-reading pages (see docs/performance.md).
            .pragma("cache_size", "-65536");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open database {}", path.display()))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("cannot migrate database {}", path.display()))?;
        Ok(Store { pool })
    }
}

impl Store {
    /// Start a transaction that will write. It takes SQLite's write lock at
    /// once (`BEGIN IMMEDIATE`), so a transaction that reads and then writes
    /// waits its turn instead of failing when another writer got there first.
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A UTC instant as stored.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored instant back as UTC.
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
