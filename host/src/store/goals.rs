//! The `goals` table: a goal event (e.g. a `login` within 3 days) reached
//! after a reminder, recorded against the delivery that preceded it — for
//! the funnel, and to end the rule's follow-up sequence.

use super::{from_millis, to_millis};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Row, SqliteConnection, SqlitePool};

/// The latest delivered reminder of `rule` to the customer in `[from, to]`
/// that has no goal yet: its delivery id.
pub async fn open_delivery(
    conn: &mut SqliteConnection,
    customer_id: i64,
    rule: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<i64>> {
    let row = sqlx::query(
        "SELECT d.id FROM deliveries d
         WHERE d.customer_id = ? AND d.rule_id = ? AND d.status = 'delivered' AND d.at BETWEEN ? AND ?
           AND NOT EXISTS (SELECT 1 FROM goals g WHERE g.delivery_id = d.id)
         ORDER BY d.at DESC, d.id DESC LIMIT 1",
    )
    .bind(customer_id)
    .bind(rule)
    .bind(to_millis(from))
    .bind(to_millis(to))
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Record a reached goal.
pub async fn record(
    conn: &mut SqliteConnection,
    customer_id: i64,
    rule: &str,
    delivery_id: i64,
    event_id: i64,
    event_kind: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO goals (customer_id, rule_id, delivery_id, event_id, event_kind, reached_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(customer_id)
    .bind(rule)
    .bind(delivery_id)
    .bind(event_id)
    .bind(event_kind)
    .bind(to_millis(at))
    .execute(conn)
    .await?;
    Ok(())
}

/// A reached goal, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The rule.
    pub rule: String,
    /// The delivery it is credited to.
    pub delivery_id: i64,
    /// The goal event's kind.
    pub event: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The goals a customer reached, oldest first.
pub async fn for_customer(pool: &SqlitePool, customer_id: i64) -> Result<Vec<Goal>> {
    let rows = sqlx::query(
        "SELECT rule_id, delivery_id, event_kind, reached_at FROM goals WHERE customer_id = ? ORDER BY reached_at",
    )
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Goal {
            rule: r.get(0),
            delivery_id: r.get(1),
            event: r.get(2),
            at: from_millis(r.get(3)),
        })
        .collect())
}
