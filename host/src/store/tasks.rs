//! The `tasks` table: the call list the built-in `task` channel fills — a
//! customer for staff to phone, with the reminder's title and reason.

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
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Row id.
    pub id: i64,
    /// The customer's external id.
    pub customer: String,
    /// The customer's name.
    pub name: Option<String>,
    /// The customer's phone.
    pub phone: Option<String>,
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
}

/// Open tasks (or all with `include_done`), oldest first.
pub async fn list(store: &Store, include_done: bool) -> Result<Vec<Task>> {
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT t.id, c.external_id, c.name, c.phone, t.rule_id, t.title, t.reason, t.created_at, t.done_at
         FROM tasks t JOIN customers c ON c.id = t.customer_id
         WHERE ? OR t.done_at IS NULL ORDER BY t.created_at, t.id"))
    .bind(include_done)
    .fetch_all(db)
    .await?;
        Ok(rows
            .iter()
            .map(|r| Task {
                id: r.get(0),
                customer: r.get(1),
                name: r.get(2),
                phone: r.get(3),
                rule: r.get(4),
                title: r.get(5),
                reason: r.get(6),
                created_at: from_millis(r.get(7)),
                done_at: r.get::<Option<i64>, _>(8).map(from_millis),
            })
            .collect())
    })
}

/// Mark a task done; false when there is no such open task.
pub async fn mark_done(store: &Store, id: i64, now: DateTime<Utc>) -> Result<bool> {
    on!(store.pool(), |db, d| {
        let done =
            sqlx::query(&d.sql("UPDATE tasks SET done_at = ? WHERE id = ? AND done_at IS NULL"))
                .bind(to_millis(now))
                .bind(id)
                .execute(db)
                .await?;
        Ok(done.rows_affected() > 0)
    })
}
