//! The database a test runs on. By default each test's database is a
//! SQLite file in its scratch directory; with `HERALD_TEST_DB=postgres`
//! (scripts/test sets it for a second run of the core modules) each is a
//! fresh database on the test PostgreSQL server (`HERALD_TEST_PG`, started
//! by scripts/test-postgres.sh). Either way the test body is the same: it
//! passes the location to `--db` as it is. Also a scalar query for the
//! few facts no herald command shows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// True when this run's databases are on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("HERALD_TEST_DB").is_ok_and(|v| v == "postgres")
}

/// The test server's URL (the `postgres` database), or a panic that says
/// how to get one.
fn server_url() -> String {
    std::env::var("HERALD_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "HERALD_TEST_DB=postgres needs HERALD_TEST_PG, a PostgreSQL server URL: run scripts/test, which starts one{}",
            std::env::var("HERALD_TEST_PG_MISSING")
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        )
    })
}

/// A fresh database on the test server; returns its URL.
pub fn fresh_postgres_database() -> String {
    use sqlx::{Connection, Executor};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "herald_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let server = server_url();
    let url = server.clone();
    let create = format!("CREATE DATABASE {name}");
    block_on(async move {
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {url}: {e}"));
        conn.execute(create.as_str())
            .await
            .expect("create a test database");
    });
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// The location of a new database named `name` for a test: `dir/name`, or
/// a fresh PostgreSQL database's URL (as a path, which `--db` takes).
pub fn test_database(dir: &Path, name: &str) -> PathBuf {
    if on_postgres() {
        PathBuf::from(fresh_postgres_database())
    } else {
        dir.join(name)
    }
}

/// Run `work` to completion on a runtime of its own, on a thread of its
/// own (so async tests may call these helpers too).
fn block_on<T: Send + 'static>(work: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(work)
    })
    .join()
    .expect("the database helper's thread")
}

/// The first column of the first row of `sql` (no parameters), if any, on
/// the database at `db` of either kind.
pub fn query_i64(db: &Path, sql: &str) -> Option<i64> {
    use sqlx::Connection;
    let location = db.to_string_lossy().into_owned();
    let sql = sql.to_string();
    block_on(async move {
        if location.starts_with("postgres://") {
            let mut conn = sqlx::PgConnection::connect(&location)
                .await
                .expect("connect");
            sqlx::query_scalar(&sql)
                .fetch_optional(&mut conn)
                .await
                .expect("query")
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{location}"))
                .await
                .expect("open the database");
            sqlx::query_scalar(&sql)
                .fetch_optional(&mut conn)
                .await
                .expect("query")
        }
    })
}
