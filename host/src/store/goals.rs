//! The `goals` table: a goal event (e.g. a `login` within 3 days) reached
//! after a reminder, recorded against the delivery that preceded it — for
//! the funnel, and to end the rule's follow-up sequence.

use super::backend::on;
use super::from_millis;
use super::Store;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

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
pub async fn for_customer(store: &Store, customer_id: i64) -> Result<Vec<Goal>> {
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT rule_id, delivery_id, event_kind, reached_at FROM goals WHERE customer_id = ? ORDER BY reached_at"))
    .bind(customer_id)
    .fetch_all(db)
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
    })
}
