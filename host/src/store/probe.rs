//! What `herald bench` (and tests that count rows) do to the database
//! below the engine: seeds large
//! customer bases with their planned reminders in a few bulk statements
//! (as the planner would have written them, which the bench checks on
//! samples), counts what a run left behind, reads SQLite's own counters of
//! the claim statement, and profiles statements. Never used by the engine.

use super::{to_millis, Store};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use libsqlite3_sys as ffi;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::{HashMap, HashSet};
use std::ffi::{c_int, c_uint, c_void, CStr, CString};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The row selection of the tick's claim, as `schedule::claim_due` runs it.
pub const CLAIM_SELECT: &str =
    "SELECT id FROM schedule WHERE status = 'pending' AND due_at <= ?1 ORDER BY due_at LIMIT ?2";

/// How the claim statement begins, to find it among prepared statements.
const CLAIM_UPDATE_PREFIX: &str = "UPDATE schedule SET due_at = ?, claim_token = ?";

/// A connection of the bench's own, with a big page cache and no
/// slow-statement warnings.
async fn bulk_connection(path: &Path) -> Result<SqliteConnection> {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", "-524288")
        .disable_statement_logging()
        .connect()
        .await
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Seed customers `1..=customers`, each with one planned renewal reminder of
/// `rule` (a date rule 7 days before `renews_at` at 10:00 UTC), as the
/// planner would have written it at `planned_at`. Customer `i` is due iff
/// `floor(i*due/customers)` steps at `i`, which picks exactly `due`
/// customers spread evenly over the table: they renew between 52 days
/// before and 7 days after `t0`'s date, the others 8 to 307 days after it.
pub async fn seed_renewals(
    store: &Store,
    customers: u64,
    due: u64,
    t0: DateTime<Utc>,
    planned_at: DateTime<Utc>,
    rule: &str,
) -> Result<()> {
    let mut conn = bulk_connection(store.sqlite_file()?).await?;
    let mut tx = Connection::begin(&mut conn).await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO customers (id, external_id, name, email, timezone, state, attributes, created_at, updated_at)
         SELECT i, 'cust-' || i, 'Customer ' || i, 'cust-' || i || '@example.com', 'UTC', 'paid',
                json_object('renews_at', date(?3, (CASE WHEN (i * ?2) / ?1 != ((i - 1) * ?2) / ?1
                                                        THEN 7 - i % 60 ELSE 8 + i % 300 END) || ' days')),
                ?4, ?4
         FROM n",
    )
    .bind(customers as i64)
    .bind(due as i64)
    .bind(t0.format("%Y-%m-%d").to_string())
    .bind(to_millis(planned_at))
    .execute(&mut *tx)
    .await
    .context("cannot insert the customers")?;
    plan_date_rule(&mut tx, rule, "renews_at", 7, planned_at).await?;
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}

/// Seed `customers` customers for the memory benchmark: even ids paid (a
/// `renews_at`), odd ids on trial (a `trial_ends_at`), each with its two
/// date reminders planned (`renewal`, `renewal-day`, `trial-ending`,
/// `trial-ended`). Paid customers whose id is a multiple of 100 have their
/// renewal reminder due a day before `now`. Returns how many are due.
pub async fn seed_paid_and_trial(store: &Store, customers: u64, now: DateTime<Utc>) -> Result<u64> {
    let mut conn = bulk_connection(store.sqlite_file()?).await?;
    let today = now.format("%Y-%m-%d").to_string();
    let created = now - ChronoDuration::days(400);
    let mut tx = Connection::begin(&mut conn).await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO customers (id, external_id, name, email, timezone, state, attributes, created_at, updated_at)
         SELECT i, 'cust-' || i, 'Customer ' || i, 'cust-' || i || '@example.com', 'UTC',
                CASE WHEN i % 2 = 0 THEN 'paid' ELSE 'trial' END,
                CASE WHEN i % 2 = 0
                     THEN json_object('renews_at', date(?2, (CASE WHEN i % 100 = 0 THEN 6 ELSE 30 + i % 300 END) || ' days'))
                     ELSE json_object('trial_ends_at', date(?2, (10 + i % 20) || ' days')) END,
                ?3, ?3
         FROM n",
    )
    .bind(customers as i64)
    .bind(&today)
    .bind(to_millis(created))
    .execute(&mut *tx)
    .await
    .context("cannot insert the customers")?;
    for (rule, attribute, before) in [
        ("renewal", "renews_at", 7),
        ("renewal-day", "renews_at", 0),
        ("trial-ending", "trial_ends_at", 3),
        ("trial-ended", "trial_ends_at", 0),
    ] {
        plan_date_rule(&mut tx, rule, attribute, before, created).await?;
    }
    let due: i64 = sqlx::query("SELECT COUNT(*) FROM schedule WHERE due_at <= ?")
        .bind(to_millis(now))
        .fetch_one(&mut *tx)
        .await?
        .get(0);
    tx.commit().await?;
    conn.close().await?;
    Ok(due.max(0) as u64)
}

/// Plan `rule` for every customer with the date attribute: `before` days
/// before it at 10:00 UTC, keyed and anchored as the planner does.
async fn plan_date_rule(
    tx: &mut SqliteConnection,
    rule: &str,
    attribute: &str,
    before: i64,
    planned_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor, created_at, updated_at)
         SELECT id, ?1, id || ':' || ?1 || ':' || occ || 'T10:00Z', ms, ms, 'pending', anchor, ?3, ?3
         FROM (SELECT id, anchor, occ, unixepoch(occ || ' 10:00') * 1000 AS ms
               FROM (SELECT id, anchor, date(anchor, '-' || ?4 || ' days') AS occ
                     FROM (SELECT id, json_extract(attributes, '$.' || ?2) AS anchor FROM customers)
                     WHERE anchor IS NOT NULL))
         ORDER BY id",
    )
    .bind(rule)
    .bind(attribute)
    .bind(to_millis(planned_at))
    .bind(before)
    .execute(&mut *tx)
    .await
    .with_context(|| format!("cannot plan the {rule} reminders"))?;
    Ok(())
}

/// Refresh the query planner's statistics and fold the WAL into the file,
/// as a long-running deployment's database would be.
pub async fn settle(store: &Store) -> Result<()> {
    sqlx::query("ANALYZE").execute(store.sqlite_pool()?).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(store.sqlite_pool()?)
        .await?;
    Ok(())
}

/// Something to count after a run.
#[derive(Debug, Clone, Copy)]
pub enum Count<'a> {
    /// Every schedule row.
    Scheduled,
    /// Pending rows due at or before the instant.
    DueBy(DateTime<Utc>),
    /// Done rows.
    Done,
    /// Done rows that occurred at or before the instant.
    DoneBy(DateTime<Utc>),
    /// Rows still carrying a claim.
    Claimed,
    /// Pending rows of this rule.
    PendingOf(&'a str),
    /// Pending rows planned at the instant for a year or more after a done
    /// row of the same customer and anchor: the next occurrences a tick at
    /// that instant planned.
    PlannedNextAt(DateTime<Utc>),
    /// Delivered attempts (of this rule).
    Delivered(Option<&'a str>),
    /// Inbox messages.
    InboxMessages,
    /// Customer rows, deleted ones included.
    Customers,
    /// Recorded events.
    Events,
}

/// Count `what`.
pub async fn count(store: &Store, what: Count<'_>) -> Result<i64> {
    let label = format!("{what:?}");
    let (sql, bind): (&str, Option<Bind<'_>>) = match what {
        Count::Scheduled => ("SELECT COUNT(*) FROM schedule", None),
        Count::DueBy(t) => (
            "SELECT COUNT(*) FROM schedule WHERE status = 'pending' AND due_at <= ?",
            Some(Bind::Int(to_millis(t))),
        ),
        Count::Done => ("SELECT COUNT(*) FROM schedule WHERE status = 'done'", None),
        Count::DoneBy(t) => (
            "SELECT COUNT(*) FROM schedule WHERE status = 'done' AND occurs_at <= ?",
            Some(Bind::Int(to_millis(t))),
        ),
        Count::Claimed => (
            "SELECT COUNT(*) FROM schedule WHERE claim_token IS NOT NULL",
            None,
        ),
        Count::PendingOf(rule) => (
            "SELECT COUNT(*) FROM schedule WHERE rule_id = ? AND status = 'pending'",
            Some(Bind::Text(rule)),
        ),
        Count::PlannedNextAt(t) => (
            "SELECT COUNT(*) FROM schedule n JOIN schedule d ON d.customer_id = n.customer_id AND d.status = 'done'
             WHERE n.status = 'pending' AND n.created_at = ?1 AND n.occurs_at > ?1 AND n.anchor = d.anchor
               AND n.occurs_at >= d.occurs_at + 365 * 86400000",
            Some(Bind::Int(to_millis(t))),
        ),
        Count::Delivered(None) => (
            "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
            None,
        ),
        Count::Delivered(Some(rule)) => (
            "SELECT COUNT(*) FROM deliveries WHERE rule_id = ? AND status = 'delivered'",
            Some(Bind::Text(rule)),
        ),
        Count::InboxMessages => ("SELECT COUNT(*) FROM inbox", None),
        Count::Customers => ("SELECT COUNT(*) FROM customers", None),
        Count::Events => ("SELECT COUNT(*) FROM events", None),
    };
    super::backend::on!(store.pool(), |db, d| {
        let sql = d.sql(sql);
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        query = match bind {
            Some(Bind::Int(v)) => query.bind(v),
            Some(Bind::Text(v)) => query.bind(v),
            None => query,
        };
        query
            .fetch_one(db)
            .await
            .with_context(|| format!("cannot count {label}"))
    })
}

enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// The event ids stored that start with `prefix`.
pub async fn event_ids(store: &Store, prefix: &str) -> Result<HashSet<String>> {
    let rows = sqlx::query("SELECT event_id FROM events WHERE event_id LIKE ? || '%'")
        .bind(prefix)
        .fetch_all(store.sqlite_pool()?)
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// SQLite's counters of one run of the claim's row selection.
#[derive(Debug, Clone)]
pub struct ClaimCounters {
    /// How SQLite plans it (`EXPLAIN QUERY PLAN` details).
    pub plan: Vec<String>,
    /// Rows it returned.
    pub rows: i64,
    /// Rows stepped by full scans (`SQLITE_STMTSTATUS_FULLSCAN_STEP`).
    pub fullscan_steps: i64,
    /// Rows stepped by cursors that are not full scans: `OP_Next`/`OP_Prev`
    /// bump slot 0 of the same counter array unless they are full scans
    /// (slot 0 is not a documented op code, but `sqlite3_stmt_status` reads it).
    pub index_steps: i64,
    /// Sorts (`SQLITE_STMTSTATUS_SORT`); 0 when the index gives the order.
    pub sorts: i64,
    /// Virtual machine operations (`SQLITE_STMTSTATUS_VM_STEP`).
    pub vm_steps: i64,
}

/// Plan and run the claim's row selection at `now` for `limit` rows on a
/// read-only connection of its own, with SQLite's per-statement counters.
pub async fn claim_select(store: &Store, now: DateTime<Utc>, limit: i64) -> Result<ClaimCounters> {
    let mut probe: SqliteConnection = SqliteConnectOptions::new()
        .filename(store.sqlite_file()?)
        .read_only(true)
        .connect()
        .await?;
    let now_ms = to_millis(now);
    let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {CLAIM_SELECT}"))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut probe)
        .await?
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
    let mut counters = {
        let mut handle = probe.lock_handle().await?;
        run_claim_select(handle.as_raw_handle().as_ptr(), now_ms, limit)?
    };
    probe.close().await?;
    counters.plan = plan;
    Ok(counters)
}

fn errmsg(db: *mut ffi::sqlite3) -> String {
    // SAFETY: `db` is a live connection; sqlite3_errmsg returns a NUL-terminated string it owns.
    unsafe {
        CStr::from_ptr(ffi::sqlite3_errmsg(db))
            .to_string_lossy()
            .into_owned()
    }
}

/// Prepare, run to completion and read the counters of the claim's SELECT
/// on `db`. The caller holds the connection's lock.
fn run_claim_select(db: *mut ffi::sqlite3, now_ms: i64, limit: i64) -> Result<ClaimCounters> {
    let sql = CString::new(CLAIM_SELECT)?;
    let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    // SAFETY: `db` is a live connection locked by the caller; `sql` is NUL-terminated.
    let rc =
        unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()) };
    if rc != ffi::SQLITE_OK || stmt.is_null() {
        bail!("cannot prepare the claim query: {}", errmsg(db));
    }
    struct Finalize(*mut ffi::sqlite3_stmt);
    impl Drop for Finalize {
        fn drop(&mut self) {
            // SAFETY: the statement was prepared above and is finalized once.
            unsafe { ffi::sqlite3_finalize(self.0) };
        }
    }
    let guard = Finalize(stmt);
    let mut rows = 0i64;
    // SAFETY: `stmt` is a valid prepared statement with two parameters.
    unsafe {
        ffi::sqlite3_bind_int64(stmt, 1, now_ms);
        ffi::sqlite3_bind_int64(stmt, 2, limit);
        loop {
            match ffi::sqlite3_step(stmt) {
                ffi::SQLITE_ROW => rows += 1,
                ffi::SQLITE_DONE => break,
                _ => bail!("the claim query failed: {}", errmsg(db)),
            }
        }
    }
    // SAFETY: as above; reading counters does not reset them.
    let counter = |op: c_int| i64::from(unsafe { ffi::sqlite3_stmt_status(stmt, op, 0) });
    let counters = ClaimCounters {
        plan: Vec::new(),
        rows,
        fullscan_steps: counter(ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP),
        index_steps: counter(0),
        sorts: counter(ffi::SQLITE_STMTSTATUS_SORT),
        vm_steps: counter(ffi::SQLITE_STMTSTATUS_VM_STEP),
    };
    drop(guard);
    Ok(counters)
}

/// Counters (full-scan steps, index steps, VM steps) of the claim statement
/// as the tick ran it, summed over the statements the driver keeps prepared
/// on every pooled connection; `None` when no connection has it.
pub async fn claim_update_counters(store: &Store) -> Result<Option<(i64, i64, i64)>> {
    let mut total = None;
    let mut conns = Vec::new();
    for _ in 0..store.sqlite_pool()?.size() {
        conns.push(store.sqlite_pool()?.acquire().await?);
    }
    for conn in &mut conns {
        let mut handle = conn.lock_handle().await?;
        if let Some((f, i, v)) = prepared_claim_counters(handle.as_raw_handle().as_ptr()) {
            let (tf, ti, tv) = total.unwrap_or((0, 0, 0));
            total = Some((tf + f, ti + i, tv + v));
        }
    }
    Ok(total)
}

fn prepared_claim_counters(db: *mut ffi::sqlite3) -> Option<(i64, i64, i64)> {
    let mut found = None;
    let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    loop {
        // SAFETY: `db` is a live connection locked by the caller; `stmt` is null or one of its statements.
        stmt = unsafe { ffi::sqlite3_next_stmt(db, stmt) };
        if stmt.is_null() {
            return found;
        }
        // SAFETY: `stmt` is a live statement; sqlite3_sql returns its NUL-terminated text.
        let sql = unsafe { ffi::sqlite3_sql(stmt) };
        if sql.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated, owned by the statement.
        let text = unsafe { CStr::from_ptr(sql) }.to_string_lossy();
        if text.trim_start().starts_with(CLAIM_UPDATE_PREFIX) {
            // SAFETY: `stmt` is live; reading counters does not reset them.
            let counter = |op: c_int| i64::from(unsafe { ffi::sqlite3_stmt_status(stmt, op, 0) });
            let (f, i, v) = found.unwrap_or((0, 0, 0));
            found = Some((
                f + counter(ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP),
                i + counter(0),
                v + counter(ffi::SQLITE_STMTSTATUS_VM_STEP),
            ));
        }
    }
}

/// Per statement text: runs and total nanoseconds, while profiling is on.
static SQL_PROFILE: Mutex<Option<HashMap<String, (u64, u64)>>> = Mutex::new(None);

extern "C" fn profile_callback(
    mask: c_uint,
    _ctx: *mut c_void,
    p: *mut c_void,
    x: *mut c_void,
) -> c_int {
    if mask != ffi::SQLITE_TRACE_PROFILE as c_uint || p.is_null() || x.is_null() {
        return 0;
    }
    // SAFETY: for SQLITE_TRACE_PROFILE, P is the statement and X points to an i64 of nanoseconds.
    let (sql, ns) = unsafe {
        let sql = ffi::sqlite3_sql(p as *mut ffi::sqlite3_stmt);
        if sql.is_null() {
            return 0;
        }
        (CStr::from_ptr(sql).to_string_lossy(), *(x as *const i64))
    };
    let key: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(mut guard) = SQL_PROFILE.lock() {
        if let Some(profile) = guard.as_mut() {
            let entry = profile.entry(key).or_default();
            entry.0 += 1;
            entry.1 += ns.max(0) as u64;
        }
    }
    0
}

/// Start timing every statement on every connection of the store's pool;
/// returns how many connections are traced.
pub async fn start_profile(store: &Store) -> Result<usize> {
    *SQL_PROFILE
        .lock()
        .map_err(|_| anyhow::anyhow!("profile lock"))? = Some(HashMap::new());
    set_profile(store, true).await
}

/// Stop timing statements; each statement's text, runs and total
/// nanoseconds, longest total first.
pub async fn stop_profile(store: &Store) -> Result<Vec<(String, u64, u64)>> {
    set_profile(store, false).await?;
    let profile = SQL_PROFILE
        .lock()
        .map_err(|_| anyhow::anyhow!("profile lock"))?
        .take()
        .unwrap_or_default();
    let mut entries: Vec<(String, u64, u64)> = profile
        .into_iter()
        .map(|(sql, (runs, ns))| (sql, runs, ns))
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.2));
    Ok(entries)
}

async fn set_profile(store: &Store, on: bool) -> Result<usize> {
    // Open all the connections the pool may use, so every one is traced.
    let mut conns = Vec::new();
    for _ in 0..store.sqlite_pool()?.options().get_max_connections() {
        conns.push(store.sqlite_pool()?.acquire().await?);
    }
    for conn in &mut conns {
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // SAFETY: `db` is live and locked; the callback only reads its arguments.
        let rc = unsafe {
            if on {
                ffi::sqlite3_trace_v2(
                    db,
                    ffi::SQLITE_TRACE_PROFILE as c_uint,
                    Some(profile_callback),
                    std::ptr::null_mut(),
                )
            } else {
                ffi::sqlite3_trace_v2(db, 0, None, std::ptr::null_mut())
            }
        };
        if rc != ffi::SQLITE_OK {
            bail!("cannot set the SQL trace: {}", errmsg(db));
        }
    }
    Ok(conns.len())
}

/// Close the store's connections (the bench hands the file to another
/// process, or removes it).
pub async fn close(store: &Store) {
    store.close().await;
}
