//! The `schedule` table: planned reminder occurrences, claimed by the tick
//! under a lease, and finished as done, skipped, canceled, failed or dead.

use super::{from_millis, raw, to_millis};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{Row, SqliteConnection, SqlitePool};

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

fn from_row(r: &sqlx::sqlite::SqliteRow) -> ScheduledRow {
    let context: Option<String> = r.get("context");
    ScheduledRow {
        id: r.get("id"),
        customer_id: r.get("customer_id"),
        rule_id: r.get("rule_id"),
        key: r.get("occurrence_key"),
        occurs_at: from_millis(r.get("occurs_at")),
        due_at: from_millis(r.get("due_at")),
        status: r.get("status"),
        attempts: r.get("attempts"),
        claim_token: r.get("claim_token"),
        anchor: r.get("anchor"),
        context: context.and_then(|c| serde_json::from_str(&c).ok()),
        last_error: r.get("last_error"),
    }
}

/// Make an occurrence pending. An existing pending (unclaimed) or canceled
/// row with the same key is updated; a row already done, claimed, failed or
/// dead is left alone, so the same occurrence is never sent twice.
pub async fn upsert(
    conn: &mut SqliteConnection,
    occ: &PlannedOccurrence,
    now: DateTime<Utc>,
) -> Result<()> {
    let context = occ
        .context
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    sqlx::query(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor, context, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
         ON CONFLICT (occurrence_key) DO UPDATE SET
            occurs_at = excluded.occurs_at, due_at = excluded.due_at, status = 'pending',
            anchor = excluded.anchor, context = excluded.context, last_error = NULL,
            updated_at = excluded.updated_at
         WHERE schedule.status IN ('pending', 'canceled') AND schedule.claim_token IS NULL",
    )
    .bind(occ.customer_id)
    .bind(&occ.rule_id)
    .bind(&occ.key)
    .bind(to_millis(occ.due_at))
    .bind(to_millis(occ.due_at))
    .bind(&occ.anchor)
    .bind(context)
    .bind(to_millis(now))
    .bind(to_millis(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancel the customer's unclaimed pending occurrences of a rule, except `keep`.
pub async fn cancel_rule(
    conn: &mut SqliteConnection,
    customer_id: i64,
    rule_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE schedule SET status = 'canceled', last_error = ?, updated_at = ?
         WHERE customer_id = ? AND rule_id = ? AND status = 'pending' AND claim_token IS NULL
           AND occurrence_key != ?",
    )
    .bind(reason)
    .bind(to_millis(now))
    .bind(customer_id)
    .bind(rule_id)
    .bind(keep.unwrap_or(""))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Cancel the customer's unclaimed pending follow-up steps of a rule.
pub async fn cancel_steps(
    conn: &mut SqliteConnection,
    customer_id: i64,
    rule_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE schedule SET status = 'canceled', last_error = ?, updated_at = ?
         WHERE customer_id = ? AND rule_id = ? AND status = 'pending' AND claim_token IS NULL
           AND occurrence_key LIKE '%#step%'",
    )
    .bind(reason)
    .bind(to_millis(now))
    .bind(customer_id)
    .bind(rule_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The customer's pending occurrences (claimed or not), earliest first.
pub async fn pending_for(
    conn: &mut SqliteConnection,
    customer_id: i64,
) -> Result<Vec<ScheduledRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedule WHERE customer_id = ? AND status = 'pending' ORDER BY occurs_at, id"
    ))
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every occurrence of the customer, most recently changed first.
pub async fn all_for(conn: &mut SqliteConnection, customer_id: i64) -> Result<Vec<ScheduledRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM schedule WHERE customer_id = ? ORDER BY updated_at DESC, id DESC"
    ))
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(from_row).collect())
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
/// The claiming `UPDATE` (one statement, as cheap as before when nothing is
/// due), then the claimed rows read back as one JSON array: they are the
/// pending rows due at `lease_until` with this token, found through the
/// same index, and nobody else writes them while the lease holds (a row
/// whose lease ran out and was claimed again by another process is simply
/// not read back, and is that process's to send). Reading
/// them as one value rather than as a `RETURNING` row set matters for large
/// batches: the driver hands rows over one by one between threads, which
/// cost more than SQLite's own work per row (see docs/performance.md).
pub async fn claim_due(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    batch: u32,
    token: &str,
) -> Result<Vec<ScheduledRow>> {
    let claimed = sqlx::query(
        "UPDATE schedule SET due_at = ?, claim_token = ?, claimed_at = ?, updated_at = ?
         WHERE id IN (SELECT id FROM schedule WHERE status = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?)",
    )
    .bind(to_millis(lease_until))
    .bind(token)
    .bind(to_millis(now))
    .bind(to_millis(now))
    .bind(to_millis(now))
    .bind(batch as i64)
    .execute(pool)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(Vec::new());
    }
    let json: String = sqlx::query(&format!(
        "SELECT json_group_array(json_array({COLUMNS})) FROM schedule
         WHERE status = 'pending' AND due_at = ? AND claim_token = ?"
    ))
    .bind(to_millis(lease_until))
    .bind(token)
    .fetch_one(pool)
    .await?
    .get(0);
    let tuples: Vec<ClaimedTuple> = serde_json::from_str(&json)
        .map_err(|e| anyhow::anyhow!("cannot read the claimed rows back: {e}"))?;
    if tuples.len() as u64 != claimed {
        tracing::warn!(
            claimed,
            read_back = tuples.len(),
            "some claims expired before they were read back; another process may have taken them"
        );
    }
    let mut claimed: Vec<ScheduledRow> = tuples
        .into_iter()
        .map(
            |(
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
            )| {
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
            },
        )
        .collect();
    claimed.sort_by_key(|r| (r.occurs_at, r.id));
    Ok(claimed)
}

/// The earliest due time among pending occurrences.
pub async fn next_due_at(pool: &SqlitePool) -> Result<Option<DateTime<Utc>>> {
    let row = sqlx::query("SELECT MIN(due_at) FROM schedule WHERE status = 'pending'")
        .fetch_one(pool)
        .await?;
    Ok(row.get::<Option<i64>, _>(0).map(from_millis))
}

/// How a claimed occurrence leaves this tick (see [`release_many`]).
#[derive(Debug, Clone)]
pub struct Release {
    /// Row id.
    pub id: i64,
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
pub fn release_many(conn: raw::Conn<'_>, items: &[Release], now: DateTime<Utc>) -> Result<u64> {
    let mut stmt = conn.prepare(
        "UPDATE schedule SET status = ?1, last_error = ?2, due_at = COALESCE(?3, due_at),
                attempts = attempts + ?4, claim_token = NULL, updated_at = ?5
         WHERE id = ?6 AND claim_token = ?7",
    )?;
    let mut order: Vec<&Release> = items.iter().collect();
    order.sort_by_key(|r| r.id);
    let now = to_millis(now);
    let mut released = 0;
    for r in order {
        released += stmt
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
    }
    Ok(released)
}

/// [`upsert`] for many occurrences, in order, inside the caller's
/// transaction on a connection it has locked.
pub fn upsert_many(
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

/// [`cancel_rule`] for many (customer, rule, keep, reason) in one statement.
pub async fn cancel_rules_many(
    conn: &mut SqliteConnection,
    items: &[(i64, String, Option<String>, String)],
    now: DateTime<Utc>,
) -> Result<u64> {
    if items.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|(c, r, k, reason)| json!({"c": c, "r": r, "k": k.as_deref().unwrap_or(""), "why": reason}))
        .collect();
    let done = sqlx::query(
        "UPDATE schedule SET status = 'canceled', last_error = j.why, updated_at = ?
         FROM (SELECT value->>'c' AS c, value->>'r' AS r, value->>'k' AS k, value->>'why' AS why FROM json_each(?)) AS j
         WHERE schedule.customer_id = j.c AND schedule.rule_id = j.r AND schedule.status = 'pending'
           AND schedule.claim_token IS NULL AND schedule.occurrence_key != j.k",
    )
    .bind(to_millis(now))
    .bind(serde_json::to_string(&rows)?)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
