//! The `inbox` table: in-app messages, the built-in `inbox` channel's output.

use super::backend::on;
use super::Store;
use super::{from_millis, raw, to_millis};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgConnection;
use sqlx::Row;

/// An in-app message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboxMessage {
    /// Row id.
    pub id: i64,
    /// The rule that produced it.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// Text body.
    pub text: String,
    /// HTML body.
    pub html: Option<String>,
    /// When it arrived.
    pub created_at: DateTime<Utc>,
    /// When the customer read it.
    pub read_at: Option<DateTime<Utc>>,
}

/// A message for [`deliver_many`].
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The customer's row id.
    pub customer_id: i64,
    /// The occurrence key (makes delivery idempotent).
    pub occurrence_key: &'a str,
    /// The rule.
    pub rule: &'a str,
    /// Subject.
    pub subject: &'a str,
    /// Text body.
    pub text: &'a str,
    /// HTML body.
    pub html: Option<&'a str>,
}

/// Put many messages in inboxes, inside the caller's transaction on a
/// connection it has locked; repeats are ignored.
pub(super) fn deliver_many(
    conn: raw::Conn<'_>,
    items: &[NewMessage<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO inbox (customer_id, occurrence_key, rule_id, subject, text, html, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (occurrence_key) DO NOTHING",
    )?;
    let now = to_millis(now);
    for m in items {
        stmt.run(&[
            m.customer_id.into(),
            m.occurrence_key.into(),
            m.rule.into(),
            m.subject.into(),
            m.text.into(),
            m.html.into(),
            now.into(),
        ])
        .with_context(|| format!("cannot put message {} in the inbox", m.occurrence_key))?;
    }
    Ok(())
}

/// [`deliver_many`] on PostgreSQL, in one statement.
pub(super) async fn deliver_many_pg(
    conn: &mut PgConnection,
    items: &[NewMessage<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let rows = items
        .iter()
        .map(|m| {
            json!({"c": m.customer_id, "k": m.occurrence_key, "r": m.rule, "s": m.subject,
                   "t": m.text, "h": m.html})
        })
        .collect();
    sqlx::query(
        "INSERT INTO inbox (customer_id, occurrence_key, rule_id, subject, text, html, created_at)
         SELECT (v->>'c')::bigint, v->>'k', v->>'r', v->>'s', v->>'t', v->>'h', $1
         FROM jsonb_array_elements($2::jsonb) AS v
         ON CONFLICT (occurrence_key) DO NOTHING",
    )
    .bind(to_millis(now))
    .bind(Value::Array(rows).to_string())
    .execute(conn)
    .await
    .context("cannot put the messages in the inboxes")?;
    Ok(())
}

/// A customer's messages, oldest first.
pub async fn list(store: &Store, customer_id: i64) -> Result<Vec<InboxMessage>> {
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT id, rule_id, subject, text, html, created_at, read_at FROM inbox WHERE customer_id = ? ORDER BY created_at, id"))
    .bind(customer_id)
    .fetch_all(db)
    .await?;
        Ok(rows
            .iter()
            .map(|r| InboxMessage {
                id: r.get(0),
                rule: r.get(1),
                subject: r.get(2),
                text: r.get(3),
                html: r.get(4),
                created_at: from_millis(r.get(5)),
                read_at: r.get::<Option<i64>, _>(6).map(from_millis),
            })
            .collect())
    })
}

/// Where a page of a customer's messages ends, in their listing order
/// (arrival, then row id): the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxKey {
    /// When it arrived (Unix milliseconds).
    pub at_ms: i64,
    /// The message's row id.
    pub id: i64,
}

/// One page of a customer's messages, oldest first, after `after` and at
/// most `limit` (at least 1), with the key to pass as `after` for the next
/// page (`None` on the last page). Reads at most `limit + 1` rows, along
/// the customer's index.
pub async fn page(
    store: &Store,
    customer_id: i64,
    after: Option<InboxKey>,
    limit: i64,
) -> Result<(Vec<InboxMessage>, Option<InboxKey>)> {
    let limit = limit.max(1);
    let mut rows: Vec<(InboxMessage, InboxKey)> = on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT id, rule_id, subject, text, html, created_at, read_at FROM inbox
         WHERE customer_id = ?1 AND (?2 IS NULL OR (created_at, id) > (?2, ?3))
         ORDER BY created_at, id LIMIT ?4",
        ))
        .bind(customer_id)
        .bind(after.map(|k| k.at_ms))
        .bind(after.map(|k| k.id))
        .bind(limit.saturating_add(1))
        .fetch_all(db)
        .await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| {
                    let key = InboxKey {
                        at_ms: r.get(5),
                        id: r.get(0),
                    };
                    let message = InboxMessage {
                        id: r.get(0),
                        rule: r.get(1),
                        subject: r.get(2),
                        text: r.get(3),
                        html: r.get(4),
                        created_at: from_millis(r.get(5)),
                        read_at: r.get::<Option<i64>, _>(6).map(from_millis),
                    };
                    (message, key)
                })
                .collect(),
        )
    })?;
    Ok(super::split_page(&mut rows, limit))
}

/// Mark one of a customer's messages read (the first time only); false when
/// the customer has no such message.
pub async fn mark_read(
    store: &Store,
    customer_id: i64,
    message_id: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    on!(store.pool(), |db, d| {
        let found = sqlx::query(&d.sql(
            "UPDATE inbox SET read_at = COALESCE(read_at, ?) WHERE id = ? AND customer_id = ?",
        ))
        .bind(to_millis(now))
        .bind(message_id)
        .bind(customer_id)
        .execute(db)
        .await?;
        Ok(found.rows_affected() == 1)
    })
}
