//! The store: the only home of SQL and of database driver types. Everything
//! else works through [`Store`] (the database, shared), [`Tx`] (one unit of
//! work on one connection: a write transaction or a read session) and the
//! functions of the submodules, one per table family, which take one of the
//! two and speak in the engine's own types (customers, occurrences,
//! deliveries). Times are stored as Unix milliseconds; every function takes
//! the time it needs from its caller.
//!
//! Two backends sit behind these types ([`backend`]): SQLite, the embedded
//! default (WAL mode, through sqlx, with the tick's hot writes on SQLite's
//! C API in [`tick`]), and PostgreSQL for a fleet of nodes, chosen by the
//! database's [`Location`]. A function whose SQL both databases read alike
//! writes it once (`?` placeholders, translated for PostgreSQL); where they
//! differ, the function says both. Nothing outside this folder names a
//! driver type. May not import anything of the engine: only the records it
//! stores ([`crate::customer`]).

pub mod address_suppressions;
pub mod customers;
pub mod deliveries;
pub mod devices;
pub mod events;
pub mod fleet;
pub mod floor;
pub mod funnel;
pub mod goals;
pub mod held;
pub mod inbox;
pub mod kv;
pub mod meta;
pub mod planning;
pub mod preferences;
pub mod probe;
pub mod probe_pg;
pub mod rates;
mod raw;
pub mod retry;
pub mod schedule;
pub mod snapshot;
pub mod suppressions;
pub mod tasks;
pub mod tick;
pub mod tokens;
pub mod tracking;

mod backend;

pub use crate::database::Location;
pub(crate) use backend::{Dialect, Fields, On};
pub use backend::{Store, Tx};

use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};

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

/// The first `limit` of `rows` (each with its key) and the key of the last
/// of them when more rows follow.
fn split_page<T, K>(rows: &mut Vec<(T, K)>, limit: i64) -> (Vec<T>, Option<K>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for (item, key) in rows.drain(..) {
        items.push(item);
        last = Some(key);
    }
    (items, last.filter(|_| more))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A scratch database for the store's and the engine's unit tests.

    use super::Store;

    /// A fresh, migrated database in a temporary directory (kept alive by
    /// the returned guard).
    pub async fn scratch() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&super::Location::Embedded(dir.path().join("test.db")))
            .await
            .expect("open scratch store");
        (dir, store)
    }
}
