//! The two databases behind [`Store`] and [`Tx`]: a pool and a connection
//! of either SQLite or PostgreSQL, opened and migrated here, and the small
//! tools the table modules use to write a function once for both —
//! [`On`] with the `on!` macro (the same statement code compiled for each
//! driver), [`Dialect::sql`] (`?` placeholders as PostgreSQL's `$n`) and
//! [`Fields`] (reading a row of either driver). Owns connection setup; no
//! table's SQL lives here.

use super::Location;
use anyhow::{Context, Result};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::Connection as _;
use sqlx::{
    ColumnIndex, PgConnection, PgPool, Postgres, Row, Sqlite, SqliteConnection, SqlitePool,
    Transaction,
};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// The SQLite migrations, embedded at build time.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
/// The PostgreSQL migrations, embedded at build time.
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// One thing of either database: a pool, a connection, a row.
pub(crate) enum On<S, P> {
    /// SQLite's.
    Sqlite(S),
    /// PostgreSQL's.
    Postgres(P),
}

/// Run the same statement code on whichever database `$target` (an
/// [`On`]) holds: `$c` is the driver's connection or pool, `$d` its
/// [`Dialect`].
macro_rules! on {
    ($target:expr, |$c:ident, $d:ident| $body:expr) => {
        match $target {
            $crate::store::On::Sqlite($c) => {
                #[allow(unused_variables)]
                let $d = $crate::store::Dialect::Sqlite;
                $body
            }
            $crate::store::On::Postgres($c) => {
                #[allow(unused_variables)]
                let $d = $crate::store::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on;

/// Which SQL a statement is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite's.
    Sqlite,
    /// PostgreSQL's.
    Postgres,
}

impl Dialect {
    /// `text` for this database. For PostgreSQL, outside quoted strings:
    /// each `?` becomes `$1`, `$2`, ... (a numbered `?N` becomes `$N`);
    /// `json_each(?)` over a JSON list becomes
    /// `json_array_elements_text($n::json) AS value`, so `SELECT value`
    /// reads each element as text (cast it where a number is wanted);
    /// `instr(` becomes `strpos(`.
    pub(crate) fn sql(self, text: &str) -> Cow<'_, str> {
        if self == Dialect::Sqlite {
            return Cow::Borrowed(text);
        }
        let text = text.replace("instr(", "strpos(");
        let mut out = String::with_capacity(text.len() + 32);
        let (mut next, mut quoted, mut in_json_each) = (0, false, false);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted => {
                    let mut digits = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        digits.push(*d);
                        chars.next();
                    }
                    if digits.is_empty() {
                        next += 1;
                        digits = next.to_string();
                    }
                    out.push('$');
                    out.push_str(&digits);
                    if in_json_each {
                        out.push_str("::json");
                    }
                }
                ')' if in_json_each && !quoted => {
                    out.push_str(") AS value");
                    in_json_each = false;
                }
                _ => {
                    out.push(c);
                    if !quoted && out.ends_with("json_each(") {
                        out.truncate(out.len() - "json_each(".len());
                        out.push_str("json_array_elements_text(");
                        in_json_each = true;
                    }
                }
            }
        }
        Cow::Owned(out)
    }

    /// Pick the statement written for this database.
    pub(crate) fn pick<'a>(self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}

/// Reading a column of a row of either driver.
pub(crate) trait Fields {
    /// An integer column.
    fn int<I: ColumnIndex<Self>>(&self, col: I) -> i64
    where
        Self: Sized;
    /// A nullable integer column.
    fn opt_int<I: ColumnIndex<Self>>(&self, col: I) -> Option<i64>
    where
        Self: Sized;
    /// A text column.
    fn text<I: ColumnIndex<Self>>(&self, col: I) -> String
    where
        Self: Sized;
    /// A nullable text column.
    fn opt_text<I: ColumnIndex<Self>>(&self, col: I) -> Option<String>
    where
        Self: Sized;
}

macro_rules! fields_for {
    ($row:ty) => {
        impl Fields for $row {
            fn int<I: ColumnIndex<Self>>(&self, col: I) -> i64 {
                self.get(col)
            }
            fn opt_int<I: ColumnIndex<Self>>(&self, col: I) -> Option<i64> {
                self.get(col)
            }
            fn text<I: ColumnIndex<Self>>(&self, col: I) -> String {
                self.get(col)
            }
            fn opt_text<I: ColumnIndex<Self>>(&self, col: I) -> Option<String> {
                self.get(col)
            }
        }
    };
}
fields_for!(SqliteRow);
fields_for!(PgRow);

/// A handle to the database, cheap to clone and shared by every task.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    location: Location,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One unit of work on one connection: a write transaction
/// ([`Store::write`], committed with [`Tx::commit`], rolled back when dropped)
/// or a read session ([`Store::read`]).
pub struct Tx {
    conn: Conn,
}

enum Conn {
    SqliteWrite(Transaction<'static, Sqlite>),
    SqliteRead(PoolConnection<Sqlite>),
    PostgresWrite(Transaction<'static, Postgres>),
    PostgresRead(PoolConnection<Postgres>),
}

impl Tx {
    /// The connection the store's statements run on.
    pub(crate) fn conn(&mut self) -> On<&mut SqliteConnection, &mut PgConnection> {
        match &mut self.conn {
            Conn::SqliteWrite(tx) => On::Sqlite(&mut **tx),
            Conn::SqliteRead(conn) => On::Sqlite(&mut **conn),
            Conn::PostgresWrite(tx) => On::Postgres(&mut **tx),
            Conn::PostgresRead(conn) => On::Postgres(&mut **conn),
        }
    }

    /// Make the transaction's writes durable (a read session just ends).
    pub async fn commit(self) -> Result<()> {
        match self.conn {
            Conn::SqliteWrite(tx) => tx.commit().await.context("cannot commit"),
            Conn::PostgresWrite(tx) => tx.commit().await.context("cannot commit"),
            Conn::SqliteRead(_) | Conn::PostgresRead(_) => Ok(()),
        }
    }
}

impl Store {
    /// Open (creating a SQLite file if needed) the database at `location`
    /// and run its migrations.
    pub async fn open(location: &Location) -> Result<Store> {
        let pool = match location {
            Location::Embedded(path) => Pool::Sqlite(open_sqlite(path).await?),
            Location::Server(url) => Pool::Postgres(open_postgres(url, location).await?),
        };
        Ok(Store {
            pool,
            location: location.clone(),
        })
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The SQLite file (the bench's probes work on it directly); `None` on
    /// PostgreSQL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.location.sqlite_path()
    }

    /// The SQLite pool, for the bench's probes of SQLite itself; an error
    /// naming what needs it on PostgreSQL.
    pub(crate) fn sqlite_pool(&self) -> Result<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(pool) => Ok(pool),
            Pool::Postgres(_) => anyhow::bail!(
                "this measurement reads SQLite's own counters; run it on a SQLite database"
            ),
        }
    }

    /// The SQLite file, or the same error as [`Store::sqlite_pool`].
    pub(crate) fn sqlite_file(&self) -> Result<&Path> {
        self.sqlite_path().ok_or_else(|| {
            anyhow::anyhow!(
                "this measurement works on the SQLite file; run it on a SQLite database"
            )
        })
    }

    /// Close every connection of this handle (and its clones).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// The pool, for statements that need no transaction.
    pub(crate) fn pool(&self) -> On<&SqlitePool, &PgPool> {
        match &self.pool {
            Pool::Sqlite(pool) => On::Sqlite(pool),
            Pool::Postgres(pool) => On::Postgres(pool),
        }
    }

    /// Start a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`), so a transaction that reads and
    /// then writes waits its turn instead of failing when another writer
    /// got there first; PostgreSQL locks the rows it writes.
    pub async fn write(&self) -> Result<Tx> {
        let conn = match &self.pool {
            Pool::Sqlite(pool) => Conn::SqliteWrite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => Conn::PostgresWrite(pool.begin().await?),
        };
        Ok(Tx { conn })
    }

    /// A session for reads that need not see one snapshot.
    pub async fn read(&self) -> Result<Tx> {
        let conn = match &self.pool {
            Pool::Sqlite(pool) => Conn::SqliteRead(pool.acquire().await?),
            Pool::Postgres(pool) => Conn::PostgresRead(pool.acquire().await?),
        };
        Ok(Tx { conn })
    }
}

async fn open_sqlite(path: &Path) -> Result<SqlitePool> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create database directory {}", dir.display()))?;
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
    // Migrated on a connection of its own, closed before the pool opens: a
    // migration that edits a constraint in place (0008) is read afresh by
    // every connection that opens after it.
    let mut migrating = SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))?;
    SQLITE_MIGRATOR
        .run(&mut migrating)
        .await
        .with_context(|| format!("cannot migrate database {}", path.display()))?;
    migrating.close().await.with_context(|| {
        format!(
            "cannot close database {} after migrating it",
            path.display()
        )
    })?;
    SqlitePoolOptions::new()
        .max_connections(8)
        // An embedded database's connections do not go stale: pinging each
        // one before handing it out costs a round trip to its thread per
        // transaction or read session.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open database {}", path.display()))
}

async fn open_postgres(url: &str, location: &Location) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("bad PostgreSQL URL {location}"))?
        .application_name("herald");
    // One connection first: a server that is down or refuses us is an
    // error at once, not after the pool's acquire timeout.
    let probe = sqlx::ConnectOptions::connect(&options).await.with_context(|| {
        format!("cannot connect to PostgreSQL at {location}: is the server running, and may this user connect?")
    })?;
    sqlx::Connection::close(probe).await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(pool_size())
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .with_context(|| {
            format!("cannot connect to PostgreSQL at {location}: is the server running, and may this user connect?")
        })?;
    // Nodes starting together migrate one at a time (sqlx takes an
    // advisory lock around the migrations).
    POSTGRES_MIGRATOR
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate the PostgreSQL database {location}"))?;
    Ok(pool)
}

/// Connections per node to PostgreSQL: `HERALD_PG_POOL` or 10.
fn pool_size() -> u32 {
    std::env::var("HERALD_PG_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=1000).contains(n))
        .unwrap_or(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_outside_quotes() {
        let d = Dialect::Postgres;
        assert_eq!(
            d.sql("SELECT a FROM t WHERE b = ? AND c = '?' AND instr(k, ?) > 0"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND strpos(k, $2) > 0"
        );
        assert_eq!(Dialect::Sqlite.sql("x = ?"), "x = ?");
        assert_eq!(
            d.sql("a = ?2 AND (?3 IS NULL OR r IN (SELECT value FROM json_each(?3))) AND b = ?1"),
            "a = $2 AND ($3 IS NULL OR r IN (SELECT value FROM json_array_elements_text($3::json) AS value)) AND b = $1"
        );
        assert_eq!(
            d.sql("id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND x = ?"),
            "id IN (SELECT CAST(value AS BIGINT) FROM json_array_elements_text($1::json) AS value) AND x = $2"
        );
    }
}
