//! The store: the only home of SQL and of database driver types. Everything
//! else works through [`Store`] (the database, shared), [`Tx`] (one unit of
//! work on one connection: a write transaction or a read session) and the
//! functions of the submodules, one per table family, which take one of the
//! two and speak in the engine's own types (customers, occurrences,
//! deliveries). Times are stored as Unix milliseconds; every function takes
//! the time it needs from its caller.
//!
//! Today the one backend is SQLite (WAL mode, through sqlx, with the tick's
//! hot writes on SQLite's C API in [`tick`]). A second backend is a second
//! implementation behind these types and functions; nothing outside this
//! folder names a driver type. May not import anything of the engine: only
//! the records it stores ([`crate::customer`]).

pub mod customers;
pub mod deliveries;
pub mod events;
pub mod floor;
pub mod funnel;
pub mod goals;
pub mod inbox;
pub mod kv;
pub mod meta;
pub mod planning;
pub mod probe;
mod raw;
pub mod schedule;
pub mod suppressions;
pub mod tasks;
pub mod tick;
pub mod tokens;
pub mod tracking;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The migrations in `migrations/`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A handle to the database, cheap to clone and shared by every task.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// One unit of work on one connection: a write transaction
/// ([`Store::write`], committed with [`Tx::commit`], rolled back when dropped)
/// or a read session ([`Store::read`]).
pub struct Tx {
    conn: Conn,
}

enum Conn {
    Write(Transaction<'static, Sqlite>),
    Read(PoolConnection<Sqlite>),
}

impl Tx {
    /// The connection the store's statements run on.
    fn conn(&mut self) -> &mut SqliteConnection {
        match &mut self.conn {
            Conn::Write(tx) => tx,
            Conn::Read(conn) => conn,
        }
    }

    /// Make the transaction's writes durable (a read session just ends).
    pub async fn commit(self) -> Result<()> {
        match self.conn {
            Conn::Write(tx) => tx.commit().await.context("cannot commit"),
            Conn::Read(_) => Ok(()),
        }
    }
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
        Ok(Store {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Start a transaction that will write. It takes SQLite's write lock at
    /// once (`BEGIN IMMEDIATE`), so a transaction that reads and then writes
    /// waits its turn instead of failing when another writer got there first.
    pub async fn write(&self) -> Result<Tx> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context("cannot start a write transaction")?;
        Ok(Tx {
            conn: Conn::Write(tx),
        })
    }

    /// A session for reads that need not see one snapshot.
    pub async fn read(&self) -> Result<Tx> {
        let conn = self
            .pool
            .acquire()
            .await
            .context("cannot get a database connection")?;
        Ok(Tx {
            conn: Conn::Read(conn),
        })
    }
}

/// A UTC instant as stored.
fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored instant back as UTC.
fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A list as the JSON text SQLite's `json_each` reads.
fn json_list<T: serde::Serialize>(items: &[T]) -> Result<String> {
    serde_json::to_string(items).context("cannot encode a list for the database")
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scratch database for the store's and the engine's unit tests.

    use super::Store;

    /// A fresh, migrated database in a temporary directory (kept alive by
    /// the returned guard).
    pub async fn scratch() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("test.db"))
            .await
            .expect("open scratch store");
        (dir, store)
    }
}
