//! The `schedule` table: planned reminder occurrences, claimed by the tick
//! under a lease, and finished as done, skipped, canceled, failed or dead.

use super::backend::on;
use super::Fields;
use super::{from_millis, raw, to_millis, On, Store, Tx};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgConnection, Row};
use std::collections::HashMap;

/// An occurrence the planner wants to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOccurrence {
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule.
    pub rule_id: String,
    /// Stable, unique key: (customer, rule, occurrence).
    pub key: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// The value it was computed from (a date rule's attribute), checked again when due.
    pub anchor: Option<String>,
    /// Extra context for rendering (the triggering event).
    pub context: Option<Value>,
}

/// A row of the schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRow {
    /// Row id.
    pub id: i64,
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule.
    pub rule_id: String,
    /// Unique occurrence key, also the provider's idempotency key.
    pub key: String,
    /// The planned time of the occurrence.
    pub occurs_at: DateTime<Utc>,
    /// When it is (next) due.
    pub due_at: DateTime<Utc>,
    /// pending, done, skipped, canceled, failed or dead.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// The claim this process holds, if claimed.
    pub claim_token: Option<String>,
    /// See [`PlannedOccurrence::anchor`].
    pub anchor: Option<String>,
    /// See [`PlannedOccurrence::context`].
    pub context: Option<Value>,
    /// The last error or skip reason.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, customer_id, rule_id, occurrence_key, occurs_at, due_at, status, attempts, claim_token, anchor, context, last_error";

fn from_row<R: Fields>(r: &R) -> ScheduledRow
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let context = r.opt_text("context");
    ScheduledRow {
        id: r.int("id"),
        customer_id: r.int("customer_id"),
        rule_id: r.text("rule_id"),
        key: r.text("occurrence_key"),
        occurs_at: from_millis(r.int("occurs_at")),
        due_at: from_millis(r.int("due_at")),
        status: r.text("status"),
        attempts: r.int("attempts"),
        claim_token: r.opt_text("claim_token"),
        anchor: r.opt_text("anchor"),
        context: context.and_then(|c| serde_json::from_str(&c).ok()),
        last_error: r.opt_text("last_error"),
    }
}

/// Make an occurrence pending. An existing pending (unclaimed) or canceled
/// row with the same key is updated; a row already done, claimed, failed or
/// dead is left alone, so the same occurrence is never sent twice.
pub async fn upsert(tx: &mut Tx, occ: &PlannedOccurrence, now: DateTime<Utc>) -> Result<()> {
    on!(tx.conn(), |db, d| {
        let context = occ
            .context
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        sqlx::query(&d.sql("INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor, context, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
         ON CONFLICT (occurrence_key) DO UPDATE SET
            occurs_at = excluded.occurs_at, due_at = excluded.due_at, status = 'pending',
            anchor = excluded.anchor, context = excluded.context, last_error = NULL,
            updated_at = excluded.updated_at
         WHERE schedule.status IN ('pending', 'canceled') AND schedule.claim_token IS NULL"))
    .bind(occ.customer_id)
    .bind(&occ.rule_id)
    .bind(&occ.key)
    .bind(to_millis(occ.due_at))
    .bind(to_millis(occ.due_at))
    .bind(&occ.anchor)
    .bind(context)
    .bind(to_millis(now))
    .bind(to_millis(now))
    .execute(&mut *db)
    .await?;
        Ok(())
    })
}

/// Cancel the customer's unclaimed pending occurrences of a rule, except `keep`.
pub async fn cancel_rule(
    tx: &mut Tx,
    customer_id: i64,
    rule_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "UPDATE schedule SET status = 'canceled', last_error = ?, updated_at = ?
         WHERE customer_id = ? AND rule_id = ? AND status = 'pending' AND claim_token IS NULL
           AND occurrence_key != ?",
        ))
        .bind(reason)
        .bind(to_millis(now))
        .bind(customer_id)
        .bind(rule_id)
        .bind(keep.unwrap_or(""))
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected())
    })
}

/// Cancel the customer's unclaimed pending occurrences of a rule whose key
/// contains `marker` (the planner marks follow-up steps so).
pub async fn cancel_marked(
    tx: &mut Tx,
    customer_id: i64,
    rule_id: &str,
    marker: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "UPDATE schedule SET status = 'canceled', last_error = ?, updated_at = ?
         WHERE customer_id = ? AND rule_id = ? AND status = 'pending' AND claim_token IS NULL
           AND instr(occurrence_key, ?) > 0",
        ))
        .bind(reason)
        .bind(to_millis(now))
        .bind(customer_id)
        .bind(rule_id)
        .bind(marker)
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected())
    })
}

/// The pending occurrences (claimed or not) of each of `ids`, by customer,
/// earliest first.
pub async fn pending_of_many(tx: &mut Tx, ids: &[i64]) -> Result<Vec<ScheduledRow>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(&format!(
            "SELECT {COLUMNS} FROM schedule
         WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND status = 'pending'
         ORDER BY customer_id, occurs_at, id"
        )))
        .bind(super::json_list(ids)?)
        .fetch_all(&mut *db)
        .await
        .context("cannot read the customers' pending reminders")?;
        Ok(rows.iter().map(from_row).collect())
    })
}

/// Every occurrence of the customer, most recently changed first.
pub async fn all_for(tx: &mut Tx, customer_id: i64) -> Result<Vec<ScheduledRow>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(&format!(
        "SELECT {COLUMNS} FROM schedule WHERE customer_id = ? ORDER BY updated_at DESC, id DESC"
    )))
        .bind(customer_id)
        .fetch_all(&mut *db)
        .await?;
        Ok(rows.iter().map(from_row).collect())
    })
}

/// A claimed row as [`claim_due`] reads it back: the [`COLUMNS`] in order.
type ClaimedTuple = (
    i64,
    i64,
    String,
    String,
    i64,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Claim up to `batch` due occurrences: they stay pending, but their due
/// time moves to `lease_until` and they carry `token`. Reads only due rows,
/// through the partial index on pending due times.
///
/// On SQLite: the claiming `UPDATE` (one statement, as cheap as before when nothing is
/// due), then the claimed rows read back as one JSON array: they are the
/// pending rows due at `lease_until` with this token, found through the
/// same index, and nobody else writes them while the lease holds (a row
/// whose lease ran out and was claimed again by another process is simply
/// not read back, and is that process's to send). Reading
/// them as one value rather than as a `RETURNING` row set matters for large
/// batches: the driver hands rows over one by one between threads, which
/// cost more than SQLite's own work per row (see docs/performance.md). On
/// PostgreSQL, see [`claim_on_postgres`].
pub async fn claim_due(
    store: &Store,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    batch: u32,
    token: &str,
) -> Result<Vec<ScheduledRow>> {
    Ok(claim_due_in_doubt(store, now, lease_until, batch, token)
        .await?
        .0)
}

/// [`claim_due`], and the ids of the claimed rows whose previous claim
/// ran out without a release after its send had begun (PostgreSQL; empty
/// on SQLite): a node died holding them, so that attempt may have reached
/// the provider. See [`mark_sending`].
pub async fn claim_due_in_doubt(
    store: &Store,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    batch: u32,
    token: &str,
) -> Result<(Vec<ScheduledRow>, std::collections::HashSet<i64>)> {
    let claim = Claim {
        now: to_millis(now),
        lease_until: to_millis(lease_until),
        batch: i64::from(batch),
        token,
    };
    let (mut claimed, in_doubt) = match store.pool() {
        On::Sqlite(pool) => claim_on_sqlite(pool, &claim).await?,
        On::Postgres(pool) => claim_on_postgres(pool, &claim).await?,
    };
    claimed.sort_by_key(|r| (r.occurs_at, r.id));
    Ok((claimed, in_doubt))
}

/// What one claim asks for, in stored units.
struct Claim<'a> {
    now: i64,
    lease_until: i64,
    batch: i64,
    token: &'a str,
}

/// PostgreSQL: the due rows are picked `FOR UPDATE SKIP LOCKED` in a
/// materialized CTE, so two nodes claiming at once each take rows the other
/// did not lock (never the same row twice, never more than `batch`: without
/// `MATERIALIZED` the planner may run the subquery once per row), and the
/// claimed rows come back with `RETURNING`. A customer is one node's at a
/// time: rows of a customer with a live claim elsewhere are skipped, and
/// two claims that ran at once and split a customer are settled once they
/// have committed ([`yield_shared_customers`]), so frequency caps, checked
/// against the customer's stored deliveries, hold for the fleet.
async fn claim_on_postgres(
    pool: &sqlx::PgPool,
    claim: &Claim<'_>,
) -> Result<(Vec<ScheduledRow>, std::collections::HashSet<i64>)> {
    let returning = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = sqlx::query(&format!(
        "WITH due AS MATERIALIZED (
             SELECT id, claim_token IS NOT NULL AND send_started_at IS NOT NULL AS in_doubt
             FROM schedule AS s
             WHERE status = 'pending' AND due_at <= $1
               AND NOT EXISTS (SELECT 1 FROM schedule AS o
                               WHERE o.customer_id = s.customer_id AND o.status = 'pending'
                                 AND o.claim_token IS NOT NULL AND o.due_at > $1)
             ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE schedule AS s SET due_at = $3, claim_token = $4, claimed_at = $1, updated_at = $1,
                                  send_started_at = CASE WHEN due.in_doubt THEN s.send_started_at END
         FROM due WHERE s.id = due.id
         RETURNING {returning}, due.in_doubt"
    ))
    .bind(claim.now)
    .bind(claim.batch)
    .bind(claim.lease_until)
    .bind(claim.token)
    .fetch_all(pool)
    .await
    .context("cannot claim due reminders")?;
    let mut claimed: Vec<ScheduledRow> = rows.iter().map(from_row).collect();
    let mut in_doubt: std::collections::HashSet<i64> = rows
        .iter()
        .filter(|r| r.get::<bool, _>("in_doubt"))
        .map(|r| r.get::<i64, _>("id"))
        .collect();
    if !claimed.is_empty() {
        let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
        let yielded = yield_shared_customers(pool, claim, &ids).await?;
        claimed.retain(|row| !yielded.contains(&row.id));
        in_doubt.retain(|id| !yielded.contains(id));
    }
    Ok((claimed, in_doubt))
}

/// Two claims running at once cannot see each other (each statement reads
/// its own snapshot), so they can split one customer's rows. Once ours has
/// committed, any other claim on the customer that committed first is
/// visible: ours then gives back its rows of that customer (due now again,
/// for a later tick, when the other node's sends are recorded and count
/// towards the caps). Of two such claims the second to commit always sees
/// the first (or finds its sends already recorded), so they never both
/// keep the customer; if both see each other, both give back, and the
/// customer waits one tick.
async fn yield_shared_customers(
    pool: &sqlx::PgPool,
    claim: &Claim<'_>,
    claimed: &[i64],
) -> Result<std::collections::HashSet<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE schedule AS s SET due_at = $1, claim_token = NULL, claimed_at = NULL
         WHERE s.id = ANY($3) AND s.claim_token = $2 AND s.status = 'pending'
           AND EXISTS (SELECT 1 FROM schedule AS o
                       WHERE o.customer_id = s.customer_id AND o.status = 'pending'
                         AND o.claim_token IS NOT NULL AND o.claim_token <> $2 AND o.due_at > $1)
         RETURNING s.id",
    )
    .bind(claim.now)
    .bind(claim.token)
    .bind(claimed)
    .fetch_all(pool)
    .await
    .context("cannot give back reminders of customers another node holds")?;
    if !ids.is_empty() {
        tracing::debug!(
            rows = ids.len(),
            "gave back reminders of customers another node holds"
        );
    }
    Ok(ids.into_iter().collect())
}

/// SQLite (one writer at a time): the claiming `UPDATE`, then the claimed
/// rows read back as one JSON array. A row whose previous claim ran out
/// after its send began keeps its `send_started_at` and comes back in
/// doubt; on every other row the note is cleared.
async fn claim_on_sqlite(
    pool: &sqlx::SqlitePool,
    claim: &Claim<'_>,
) -> Result<(Vec<ScheduledRow>, std::collections::HashSet<i64>)> {
    let claimed = sqlx::query(
        "UPDATE schedule SET due_at = ?, claim_token = ?, claimed_at = ?, updated_at = ?,
                send_started_at = CASE WHEN claim_token IS NOT NULL THEN send_started_at END
         WHERE id IN (SELECT id FROM schedule WHERE status = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?)",
    )
    .bind(claim.lease_until)
    .bind(claim.token)
    .bind(claim.now)
    .bind(claim.now)
    .bind(claim.now)
    .bind(claim.batch)
    .execute(pool)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(Default::default());
    }
    let json: String = sqlx::query(&format!(
        "SELECT json_group_array(json_array(json_array({COLUMNS}), send_started_at IS NOT NULL))
         FROM schedule WHERE status = 'pending' AND due_at = ? AND claim_token = ?"
    ))
    .bind(claim.lease_until)
    .bind(claim.token)
    .fetch_one(pool)
    .await?
    .get(0);
    let tuples: Vec<(ClaimedTuple, i64)> = serde_json::from_str(&json)
        .map_err(|e| anyhow::anyhow!("cannot read the claimed rows back: {e}"))?;
    if tuples.len() as u64 != claimed {
        tracing::warn!(
            claimed,
            read_back = tuples.len(),
            "some claims expired before they were read back; another process may have taken them"
        );
    }
    let in_doubt = tuples
        .iter()
        .filter(|(_, in_doubt)| *in_doubt != 0)
        .map(|(row, _)| row.0)
        .collect();
    let rows = tuples.into_iter().map(|(row, _)| from_tuple(row)).collect();
    Ok((rows, in_doubt))
}

fn from_tuple(
    (
        id,
        customer_id,
        rule_id,
        key,
        occurs_at,
        due_at,
        status,
        attempts,
        claim_token,
        anchor,
        context,
        last_error,
    ): ClaimedTuple,
) -> ScheduledRow {
    ScheduledRow {
        id,
        customer_id,
        rule_id,
        key,
        occurs_at: from_millis(occurs_at),
        due_at: from_millis(due_at),
        status,
        attempts,
        claim_token,
        anchor,
        context: context.and_then(|c| serde_json::from_str(&c).ok()),
        last_error,
    }
}

/// Note that the sends of these claimed rows begin now: should this node
/// die (or its claim run out) before recording them, the next claim knows
/// they are in doubt, and the channel's `uncertain` setting decides. Only
/// rows this claim still holds a live lease on are noted (their lease runs
/// until `due_at`): the ids returned may be sent; a row whose lease ran out
/// may already be another node's, which decided its customer's other
/// reminders without knowing of this send, so it must not go out.
pub async fn mark_sending(
    store: &Store,
    ids: &[i64],
    token: &str,
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<i64>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let marked: Result<Vec<i64>, sqlx::Error> = match store.pool() {
        On::Postgres(pool) => {
            sqlx::query_scalar(
                "UPDATE schedule SET send_started_at = $1
                 WHERE id = ANY($2) AND claim_token = $3 AND due_at > $1 RETURNING id",
            )
            .bind(to_millis(now))
            .bind(ids)
            .bind(token)
            .fetch_all(pool)
            .await
        }
        On::Sqlite(pool) => {
            let ids = serde_json::to_string(ids)?;
            sqlx::query_scalar(
                "UPDATE schedule SET send_started_at = ?1
                 WHERE id IN (SELECT CAST(value AS INTEGER) FROM json_each(?2))
                   AND claim_token = ?3 AND due_at > ?1 RETURNING id",
            )
            .bind(to_millis(now))
            .bind(ids)
            .bind(token)
            .fetch_all(pool)
            .await
        }
    };
    Ok(marked
        .context("cannot note the sends about to begin")?
        .into_iter()
        .collect())
}

/// After the wall clock went back by `back`: pending rows that wait for a
/// relative delay — moved from their planned time (retries, rate-limit
/// slots, deferrals) or claimed under a lease — are brought back by as
/// much (never before `now`). Rows at their planned time keep it. Returns
/// how many rows moved.
pub async fn pull_back(store: &Store, back: chrono::Duration, now: DateTime<Utc>) -> Result<u64> {
    let back = back.num_milliseconds();
    on!(store.pool(), |db, d| {
        let sql = d.sql(d.pick(
            "UPDATE schedule SET due_at = MAX(due_at - ?, ?), updated_at = ?
             WHERE status = 'pending' AND due_at > ? AND (claim_token IS NOT NULL OR due_at <> occurs_at)",
            "UPDATE schedule SET due_at = GREATEST(due_at - ?, ?), updated_at = ?
             WHERE status = 'pending' AND due_at > ? AND (claim_token IS NOT NULL OR due_at <> occurs_at)",
        ));
        let moved = sqlx::query(&sql)
            .bind(back)
            .bind(to_millis(now))
            .bind(to_millis(now))
            .bind(to_millis(now))
            .execute(db)
            .await
            .context("cannot bring the schedule's waits back after the clock went back")?
            .rows_affected();
        Ok(moved)
    })
}

/// The earliest due time among pending occurrences.
pub async fn next_due_at(store: &Store) -> Result<Option<DateTime<Utc>>> {
    on!(store.pool(), |db, d| {
        let row = sqlx::query(&d.sql("SELECT MIN(due_at) FROM schedule WHERE status = 'pending'"))
            .fetch_one(db)
            .await?;
        Ok(row.get::<Option<i64>, _>(0).map(from_millis))
    })
}

/// How a claimed occurrence leaves this tick (see [`release_many`]).
#[derive(Debug, Clone)]
pub struct Release {
    /// Row id.
    pub id: i64,
    /// The customer's row id (a failed record is retried customer by
    /// customer).
    pub customer_id: i64,
    /// The claim token it was claimed with.
    pub token: String,
    /// New status: `pending` (to be retried at `due_at`), `done`, `skipped`,
    /// `canceled`, `failed` or `dead`.
    pub status: &'static str,
    /// Error or reason.
    pub error: Option<String>,
    /// New due time (retries).
    pub due_at: Option<DateTime<Utc>>,
    /// Whether this counts as an attempt.
    pub attempted: bool,
}

/// Release many claimed occurrences, inside the caller's transaction on a
/// connection it has locked. Rows whose claim was lost (the lease ran out
/// and another process took them) are left alone; returns how many rows
/// were released. Rows go in id order, so the b-trees are walked front to
/// back.
pub(super) fn release_many(
    conn: raw::Conn<'_>,
    items: &[Release],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<i64>> {
    let mut stmt = conn.prepare(
        "UPDATE schedule SET status = ?1, last_error = ?2, due_at = COALESCE(?3, due_at),
                attempts = attempts + ?4, claim_token = NULL, updated_at = ?5, send_started_at = NULL
         WHERE id = ?6 AND claim_token = ?7",
    )?;
    let mut order: Vec<&Release> = items.iter().collect();
    order.sort_by_key(|r| r.id);
    let now = to_millis(now);
    let mut released = std::collections::HashSet::with_capacity(items.len());
    for r in order {
        let changed = stmt
            .run(&[
                r.status.into(),
                r.error.as_deref().into(),
                r.due_at.map(to_millis).into(),
                i64::from(r.attempted).into(),
                now.into(),
                r.id.into(),
                r.token.as_str().into(),
            ])
            .with_context(|| format!("cannot release schedule row {}", r.id))?;
        if changed > 0 {
            released.insert(r.id);
        }
    }
    Ok(released)
}

/// [`upsert`] for many occurrences, in order, inside the caller's
/// transaction on a connection it has locked.
pub(super) fn upsert_many(
    conn: raw::Conn<'_>,
    occs: &[PlannedOccurrence],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor, context, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4, 'pending', ?5, ?6, ?7, ?7)
         ON CONFLICT (occurrence_key) DO UPDATE SET
            occurs_at = excluded.occurs_at, due_at = excluded.due_at, status = 'pending',
            anchor = excluded.anchor, context = excluded.context, last_error = NULL,
            updated_at = excluded.updated_at
         WHERE schedule.status IN ('pending', 'canceled') AND schedule.claim_token IS NULL",
    )?;
    let now = to_millis(now);
    for o in occs {
        let context = o.context.as_ref().map(|c| c.to_string());
        stmt.run(&[
            o.customer_id.into(),
            o.rule_id.as_str().into(),
            o.key.as_str().into(),
            to_millis(o.due_at).into(),
            o.anchor.as_deref().into(),
            context.as_deref().into(),
            now.into(),
        ])
        .with_context(|| format!("cannot plan occurrence {}", o.key))?;
    }
    Ok(())
}

/// [`upsert`] for many occurrences, in order, in the caller's write
/// transaction: through SQLite's C API, or one statement on PostgreSQL.
pub async fn upsert_batch(
    tx: &mut Tx,
    occs: &[PlannedOccurrence],
    now: DateTime<Utc>,
) -> Result<()> {
    if occs.is_empty() {
        return Ok(());
    }
    match tx.conn() {
        On::Sqlite(conn) => {
            let mut handle = conn.lock_handle().await?;
            // SAFETY: the locked handle keeps the connection open and ours
            // until it drops, after the raw statement is finalized.
            let conn = unsafe { raw::Conn::new(handle.as_raw_handle()) };
            raw::blocking(|| upsert_many(conn, occs, now))
        }
        On::Postgres(conn) => upsert_many_pg(conn, occs, now).await,
    }
}

/// [`release_many`] on PostgreSQL, in one statement: each only if it still
/// carries its claim token. Returns the ids released.
pub(crate) async fn release_many_pg(
    conn: &mut PgConnection,
    items: &[Release],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<i64>> {
    if items.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<i64> = items.iter().map(|r| r.id).collect();
    let tokens: Vec<&str> = items.iter().map(|r| r.token.as_str()).collect();
    let statuses: Vec<&str> = items.iter().map(|r| r.status).collect();
    let errors: Vec<Option<&str>> = items.iter().map(|r| r.error.as_deref()).collect();
    let dues: Vec<Option<i64>> = items.iter().map(|r| r.due_at.map(to_millis)).collect();
    let attempted: Vec<i64> = items.iter().map(|r| i64::from(r.attempted)).collect();
    // Typed arrays, unnested by the server: no JSON to build or parse.
    let released: Vec<i64> = sqlx::query_scalar(
        "UPDATE schedule AS s SET status = j.status, last_error = j.error,
                due_at = COALESCE(j.due, s.due_at), attempts = s.attempts + j.attempted,
                claim_token = NULL, updated_at = $1, send_started_at = NULL
         FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
              AS j(id, token, status, error, due, attempted)
         WHERE s.id = j.id AND s.claim_token = j.token
         RETURNING s.id",
    )
    .bind(to_millis(now))
    .bind(ids)
    .bind(tokens)
    .bind(statuses)
    .bind(errors)
    .bind(dues)
    .bind(attempted)
    .fetch_all(conn)
    .await
    .context("cannot release the claimed reminders")?;
    Ok(released.into_iter().collect())
}

/// [`upsert`] for many occurrences in one statement. A
/// key planned twice in one batch keeps its last plan (PostgreSQL refuses
/// to update one row twice in a statement).
pub(super) async fn upsert_many_pg(
    conn: &mut PgConnection,
    occs: &[PlannedOccurrence],
    now: DateTime<Utc>,
) -> Result<()> {
    if occs.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(occs.len());
    for (i, o) in occs.iter().enumerate() {
        last.insert(o.key.as_str(), i);
    }
    let kept: Vec<&PlannedOccurrence> = occs
        .iter()
        .enumerate()
        .filter(|(i, o)| last.get(o.key.as_str()) == Some(i))
        .map(|(_, o)| o)
        .collect();
    let customers: Vec<i64> = kept.iter().map(|o| o.customer_id).collect();
    let rules: Vec<&str> = kept.iter().map(|o| o.rule_id.as_str()).collect();
    let keys: Vec<&str> = kept.iter().map(|o| o.key.as_str()).collect();
    let dues: Vec<i64> = kept.iter().map(|o| to_millis(o.due_at)).collect();
    let anchors: Vec<Option<&str>> = kept.iter().map(|o| o.anchor.as_deref()).collect();
    let contexts: Vec<Option<String>> = kept
        .iter()
        .map(|o| o.context.as_ref().map(Value::to_string))
        .collect();
    sqlx::query(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status,
                               anchor, context, created_at, updated_at)
         SELECT c, r, k, due, due, 'pending', anchor, context, $1, $1
         FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])
              AS v(c, r, k, due, anchor, context)
         ON CONFLICT (occurrence_key) DO UPDATE SET
            occurs_at = excluded.occurs_at, due_at = excluded.due_at, status = 'pending',
            anchor = excluded.anchor, context = excluded.context, last_error = NULL,
            updated_at = excluded.updated_at
         WHERE schedule.status IN ('pending', 'canceled') AND schedule.claim_token IS NULL",
    )
    .bind(to_millis(now))
    .bind(customers)
    .bind(rules)
    .bind(keys)
    .bind(dues)
    .bind(anchors)
    .bind(contexts)
    .execute(conn)
    .await
    .context("cannot plan the occurrences")?;
    Ok(())
}

/// Pending occurrences of one customer's rule to cancel, all but `keep`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancel {
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule.
    pub rule_id: String,
    /// An occurrence key to leave alone (the one just planned).
    pub keep: Option<String>,
    /// Why, recorded on each canceled row.
    pub reason: String,
}

/// [`cancel_rule`] for many customers and rules in one statement.
pub async fn cancel_rules_many(tx: &mut Tx, items: &[Cancel], now: DateTime<Utc>) -> Result<u64> {
    on!(tx.conn(), |db, d| {
        if items.is_empty() {
            return Ok(0);
        }
        let rows: Vec<Value> = items
        .iter()
        .map(|c| json!({"c": c.customer_id, "r": c.rule_id, "k": c.keep.as_deref().unwrap_or(""), "why": c.reason}))
        .collect();
        let done = sqlx::query(&d.sql(d.pick(
            "UPDATE schedule SET status = 'canceled', last_error = j.why, updated_at = ?
             FROM (SELECT value->>'c' AS c, value->>'r' AS r, value->>'k' AS k, value->>'why' AS why FROM json_each(?)) AS j
             WHERE schedule.customer_id = j.c AND schedule.rule_id = j.r AND schedule.status = 'pending'
               AND schedule.claim_token IS NULL AND schedule.occurrence_key != j.k",
            "UPDATE schedule SET status = 'canceled', last_error = j.why, updated_at = ?
             FROM (SELECT (v->>'c')::bigint AS c, v->>'r' AS r, v->>'k' AS k, v->>'why' AS why
                   FROM jsonb_array_elements(?::jsonb) AS v) AS j
             WHERE schedule.customer_id = j.c AND schedule.rule_id = j.r AND schedule.status = 'pending'
               AND schedule.claim_token IS NULL AND schedule.occurrence_key != j.k",
        )))
    .bind(to_millis(now))
    .bind(serde_json::to_string(&rows)?)
    .execute(&mut *db)
    .await?;
        Ok(done.rows_affected())
    })
}

/// Reminders due at `now` and not yet claimed: how many, and the due time of
/// the oldest (for the backlog and lag metrics).
pub async fn due_backlog(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<(i64, Option<DateTime<Utc>>)> {
    on!(store.pool(), |db, d| {
        let row = sqlx::query(&d.sql(
            "SELECT COUNT(*), MIN(due_at) FROM schedule WHERE status = 'pending' AND due_at <= ?",
        ))
        .bind(to_millis(now))
        .fetch_one(db)
        .await?;
        Ok((row.get(0), row.get::<Option<i64>, _>(1).map(from_millis)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::Customer;
    use crate::store::planning::{self, Changes};
    use crate::store::testing::scratch;
    use crate::store::tick::{self, TickWrites};
    use chrono::{Duration, TimeZone};

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn occ(customer_id: i64, key: &str, due: DateTime<Utc>) -> PlannedOccurrence {
        PlannedOccurrence {
            customer_id,
            rule_id: "r".into(),
            key: key.into(),
            due_at: due,
            anchor: None,
            context: Some(json!({"step": 0})),
        }
    }

    async fn with_customer() -> (tempfile::TempDir, Store, i64) {
        let (dir, store) = scratch().await;
        let mut tx = store.write().await.unwrap();
        let id = crate::store::customers::save(&mut tx, &Customer::new("c1", t(0)))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (dir, store, id)
    }

    async fn plan(store: &Store, upserts: Vec<PlannedOccurrence>, cancels: Vec<Cancel>) {
        let mut tx = store.write().await.unwrap();
        let changes = Changes {
            upserts,
            cancels,
            ..Changes::default()
        };
        planning::apply(&mut tx, &changes, t(0)).await.unwrap();
        tx.commit().await.unwrap();
    }

    fn release(row: &ScheduledRow, status: &'static str, token: &str) -> Release {
        Release {
            id: row.id,
            customer_id: row.customer_id,
            token: token.into(),
            status,
            error: None,
            due_at: None,
            attempted: true,
        }
    }

    #[tokio::test]
    async fn a_send_is_noted_only_under_a_live_lease() {
        let (_dir, store, id) = with_customer().await;
        plan(&store, vec![occ(id, "a", t(1)), occ(id, "b", t(1))], vec![]).await;
        let claimed = claim_due(&store, t(1), t(4), 10, "tok-1").await.unwrap();
        let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
        // The lease (until t(4)) ran out: another node may hold the customer.
        assert!(mark_sending(&store, &ids, "tok-1", t(4))
            .await
            .unwrap()
            .is_empty());
        assert!(
            mark_sending(&store, &ids, "tok-2", t(2))
                .await
                .unwrap()
                .is_empty(),
            "not this claim's"
        );
        let marked = mark_sending(&store, &ids, "tok-1", t(3)).await.unwrap();
        assert_eq!(marked, ids.iter().copied().collect());
    }

    #[tokio::test]
    async fn a_claim_takes_due_rows_in_due_order_under_a_lease() {
        let (_dir, store, id) = with_customer().await;
        plan(
            &store,
            vec![
                occ(id, "b", t(2)),
                occ(id, "a", t(1)),
                occ(id, "later", t(60)),
            ],
            vec![],
        )
        .await;
        let claimed = claim_due(&store, t(5), t(10), 10, "tok-1").await.unwrap();
        let keys: Vec<&str> = claimed.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(claimed
            .iter()
            .all(|r| r.claim_token.as_deref() == Some("tok-1")));
        assert_eq!(claimed[0].context, Some(json!({"step": 0})));
        // Leased: not due again until the lease ends, then due again.
        assert!(claim_due(&store, t(9), t(14), 10, "tok-2")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(next_due_at(&store).await.unwrap(), Some(t(10)));
        let again = claim_due(&store, t(10), t(15), 1, "tok-3").await.unwrap();
        assert_eq!(again.len(), 1, "the batch size bounds a claim");
    }

    #[tokio::test]
    async fn a_release_needs_the_claim_token_it_was_claimed_with() {
        let (_dir, store, id) = with_customer().await;
        plan(&store, vec![occ(id, "a", t(1))], vec![]).await;
        let first = claim_due(&store, t(1), t(2), 10, "old").await.unwrap();
        // The lease ran out and another process claimed the row again.
        let second = claim_due(&store, t(2), t(3), 10, "new").await.unwrap();
        assert_eq!(second.len(), 1);
        let mut stale = TickWrites {
            releases: vec![release(&first[0], "done", "old")],
            ..TickWrites::default()
        };
        stale
            .deliveries
            .push(crate::store::deliveries::NewDelivery {
                schedule_id: first[0].id,
                customer_id: id,
                rule_id: "r",
                channel: Some("inbox"),
                provider: Some("inbox"),
                failover_from: None,
                attempt: 1,
                status: crate::store::deliveries::DeliveryStatus::Delivered,
                provider_message_id: None,
                error: None,
                subject: None,
                retry_at: None,
                at: t(2),
                duration_ms: None,
            });
        assert_eq!(tick::record(&store, &mut stale, t(2)).await.unwrap(), 0);
        let recorded =
            crate::store::probe::count(&store, crate::store::probe::Count::Delivered(None))
                .await
                .unwrap();
        assert_eq!(recorded, 0, "a stale claim's attempt is not recorded");
        let mut fresh = TickWrites {
            releases: vec![release(&second[0], "done", "new")],
            ..TickWrites::default()
        };
        assert_eq!(tick::record(&store, &mut fresh, t(2)).await.unwrap(), 1);
        let mut tx = store.read().await.unwrap();
        let rows = all_for(&mut tx, id).await.unwrap();
        assert_eq!(rows[0].status, "done");
        assert_eq!(rows[0].attempts, 1);
        assert_eq!(rows[0].claim_token, None);
    }

    /// The clock read a day later when a retry was set 10 minutes ahead
    /// and a lease taken; set back, they come back by the day (the retry
    /// due 10 minutes from the new now, the lease ended), while a reminder
    /// at its planned time keeps it.
    #[tokio::test]
    async fn a_clock_set_back_brings_relative_waits_back_not_planned_times() {
        let (_dir, store, id) = with_customer().await;
        let day = Duration::days(1);
        plan(
            &store,
            vec![
                occ(id, "retry", t(0) + day),
                occ(id, "leased", t(0) + day),
                occ(id, "planned", t(30) + day),
            ],
            vec![],
        )
        .await;
        let claimed = claim_due(&store, t(0) + day, t(5) + day, 2, "tok")
            .await
            .unwrap();
        let retry = claimed.iter().find(|r| r.key == "retry").unwrap();
        let mut retried = TickWrites {
            releases: vec![Release {
                status: "pending",
                due_at: Some(t(10) + day),
                ..release(retry, "pending", "tok")
            }],
            ..TickWrites::default()
        };
        tick::record(&store, &mut retried, t(0) + day)
            .await
            .unwrap();
        let moved = pull_back(&store, day, t(0)).await.unwrap();
        assert_eq!(moved, 2, "the retry and the lease");
        let mut tx = store.read().await.unwrap();
        let rows = all_for(&mut tx, id).await.unwrap();
        let due = |key: &str| rows.iter().find(|r| r.key == key).unwrap().due_at;
        assert_eq!(due("retry"), t(10));
        assert_eq!(due("leased"), t(5));
        assert_eq!(due("planned"), t(30) + day);
    }

    #[tokio::test]
    async fn planning_never_revives_a_finished_or_claimed_occurrence() {
        let (_dir, store, id) = with_customer().await;
        plan(&store, vec![occ(id, "a", t(1)), occ(id, "b", t(1))], vec![]).await;
        let claimed = claim_due(&store, t(1), t(2), 10, "tok").await.unwrap();
        let mut done = TickWrites {
            releases: vec![release(&claimed[0], "done", "tok")],
            ..TickWrites::default()
        };
        tick::record(&store, &mut done, t(1)).await.unwrap();
        // "a" is done, "b" still claimed: planning both again moves neither.
        plan(
            &store,
            vec![occ(id, "a", t(30)), occ(id, "b", t(30))],
            vec![],
        )
        .await;
        let mut tx = store.read().await.unwrap();
        for row in all_for(&mut tx, id).await.unwrap() {
            assert_ne!(row.due_at, t(30), "{} was moved", row.key);
        }
    }

    #[tokio::test]
    async fn cancelling_a_rule_keeps_the_one_just_planned_and_claimed_rows() {
        let (_dir, store, id) = with_customer().await;
        plan(
            &store,
            vec![
                occ(id, "old", t(1)),
                occ(id, "claimed", t(1)),
                occ(id, "new", t(50)),
            ],
            vec![],
        )
        .await;
        claim_due(&store, t(1), t(5), 1, "tok").await.unwrap();
        let cancel = Cancel {
            customer_id: id,
            rule_id: "r".into(),
            keep: Some("new".into()),
            reason: "date moved".into(),
        };
        plan(&store, vec![], vec![cancel]).await;
        let mut tx = store.read().await.unwrap();
        let by_key: std::collections::HashMap<String, ScheduledRow> = all_for(&mut tx, id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect();
        let claimed_key = if by_key["old"].claim_token.is_some() {
            "old"
        } else {
            "claimed"
        };
        let other = if claimed_key == "old" {
            "claimed"
        } else {
            "old"
        };
        assert_eq!(by_key[claimed_key].status, "pending");
        assert_eq!(by_key[other].status, "canceled");
        assert_eq!(by_key[other].last_error.as_deref(), Some("date moved"));
        assert_eq!(by_key["new"].status, "pending");
    }

    #[tokio::test]
    async fn the_backlog_counts_due_unclaimed_rows_and_the_oldest_due_time() {
        let (_dir, store, id) = with_customer().await;
        assert_eq!(due_backlog(&store, t(10)).await.unwrap(), (0, None));
        plan(
            &store,
            vec![occ(id, "a", t(1)), occ(id, "b", t(8)), occ(id, "c", t(20))],
            vec![],
        )
        .await;
        assert_eq!(due_backlog(&store, t(10)).await.unwrap(), (2, Some(t(1))));
        // A claimed row is not waiting any more.
        claim_due(&store, t(10), t(30), 1, "tok").await.unwrap();
        assert_eq!(due_backlog(&store, t(10)).await.unwrap(), (1, Some(t(8))));
    }
}
