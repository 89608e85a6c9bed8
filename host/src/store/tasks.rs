//! The `tasks` table: the call list the built-in `task` channel fills — a
//! customer for staff to phone, with the reminder's title and reason — and
//! closing a task with what came of the call. Region scope is applied here,
//! in the statements, for staff callers.

use super::backend::on;
use super::{from_millis, to_millis};
use super::{Store, Tx};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::Row;

/// A task for [`add_many`].
#[derive(Debug, Clone)]
pub struct NewTask<'a> {
    /// The customer's row id.
    pub customer_id: i64,
    /// The occurrence key (makes it idempotent).
    pub occurrence_key: &'a str,
    /// The rule.
    pub rule: &'a str,
    /// The rendered subject.
    pub title: &'a str,
    /// The rendered text: why to call.
    pub reason: &'a str,
}

/// Put many tasks on the list in one statement; repeats are ignored.
pub async fn add_many(tx: &mut Tx, items: &[NewTask<'_>], now: DateTime<Utc>) -> Result<()> {
    on!(tx.conn(), |db, d| {
        if items.is_empty() {
            return Ok(());
        }
        let rows: Vec<Value> = items
        .iter()
        .map(|t| json!({"c": t.customer_id, "k": t.occurrence_key, "r": t.rule, "t": t.title, "why": t.reason}))
        .collect();
        sqlx::query(&d.sql(d.pick(
            "INSERT INTO tasks (customer_id, occurrence_key, rule_id, title, reason, created_at)
             SELECT value->>'c', value->>'k', value->>'r', value->>'t', value->>'why', ?
             FROM json_each(?) WHERE true
             ON CONFLICT (occurrence_key) DO NOTHING",
            "INSERT INTO tasks (customer_id, occurrence_key, rule_id, title, reason, created_at)
             SELECT (v->>'c')::bigint, v->>'k', v->>'r', v->>'t', v->>'why', ?
             FROM jsonb_array_elements(?::jsonb) AS v
             ON CONFLICT (occurrence_key) DO NOTHING",
        )))
        .bind(to_millis(now))
        .bind(serde_json::to_string(&rows)?)
        .execute(&mut *db)
        .await?;
        Ok(())
    })
}

/// A task on the call list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Task {
    /// Row id.
    pub id: i64,
    /// The customer's external id.
    pub customer: String,
    /// The customer's name.
    pub name: Option<String>,
    /// The customer's phone.
    pub phone: Option<String>,
    /// The customer's region.
    pub region: Option<String>,
    /// The rule.
    pub rule: String,
    /// Title.
    pub title: String,
    /// Why to call.
    pub reason: String,
    /// When it was put on the list.
    pub created_at: DateTime<Utc>,
    /// When it was done.
    pub done_at: Option<DateTime<Utc>>,
    /// What came of the call (see [`OUTCOMES`]), once closed with one.
    pub outcome: Option<String>,
    /// The caller's note.
    pub note: Option<String>,
}

/// What a call can come to.
pub const OUTCOMES: &[&str] = &["reached", "no_answer", "wrong_number", "declined", "other"];

/// Which tasks to list.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Closed ones too.
    pub include_done: bool,
    /// Only customers of these regions (a staff caller); `None`: all.
    pub scope: Option<Vec<String>>,
    /// Start after this task id.
    pub after: i64,
    /// At most this many.
    pub limit: i64,
}

const SELECT: &str =
    "SELECT t.id, c.external_id, c.name, c.phone, c.region, t.rule_id, t.title, t.reason,
        t.created_at, t.done_at, t.outcome, t.note
     FROM tasks t JOIN customers c ON c.id = t.customer_id";

/// Open tasks (or all with `include_done`) in id order (the order they
/// were put on the list), within the filter's regions, a page at a time.
pub async fn list(store: &Store, filter: &TaskFilter) -> Result<Vec<Task>> {
    on!(store.pool(), |db, d| {
        let scope = filter
            .scope
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let rows = sqlx::query(&d.sql(&format!(
            "{SELECT}
             WHERE (?1 OR t.done_at IS NULL) AND t.id > ?2
               AND (?3 IS NULL OR c.region IN (SELECT value FROM json_each(?3)))
             ORDER BY t.id LIMIT ?4"
        )))
        .bind(filter.include_done)
        .bind(filter.after)
        .bind(scope)
        .bind(filter.limit)
        .fetch_all(db)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Task {
                id: r.get(0),
                customer: r.get(1),
                name: r.get(2),
                phone: r.get(3),
                region: r.get(4),
                rule: r.get(5),
                title: r.get(6),
                reason: r.get(7),
                created_at: from_millis(r.get(8)),
                done_at: r.get::<Option<i64>, _>(9).map(from_millis),
                outcome: r.get(10),
                note: r.get(11),
            })
            .collect())
    })
}

/// What closing a task came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Closed now.
    Now,
    /// It was closed before (when).
    Already(DateTime<Utc>),
    /// No such task within the scope.
    NotFound,
}

/// Close task `id` (within `scope`'s regions) with what came of the call.
pub async fn close(
    store: &Store,
    id: i64,
    outcome: Option<&str>,
    note: Option<&str>,
    scope: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<Closed> {
    on!(store.pool(), |db, d| {
        let scope = scope.map(serde_json::to_string).transpose()?;
        let found: Option<(Option<i64>,)> = sqlx::query_as(&d.sql(
            "SELECT t.done_at FROM tasks t JOIN customers c ON c.id = t.customer_id
             WHERE t.id = ?1 AND (?2 IS NULL OR c.region IN (SELECT value FROM json_each(?2)))",
        ))
        .bind(id)
        .bind(&scope)
        .fetch_optional(db)
        .await?;
        match found {
            None => return Ok(Closed::NotFound),
            Some((Some(at),)) => return Ok(Closed::Already(from_millis(at))),
            Some((None,)) => {}
        }
        let done = sqlx::query(&d.sql(
            "UPDATE tasks SET done_at = ?, outcome = ?, note = ? WHERE id = ? AND done_at IS NULL",
        ))
        .bind(to_millis(now))
        .bind(outcome)
        .bind(note)
        .bind(id)
        .execute(db)
        .await?;
        Ok(if done.rows_affected() > 0 {
            Closed::Now
        } else {
            Closed::Already(now)
        })
    })
}
