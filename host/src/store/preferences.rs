//! The `topic_opt_outs` table: the topics of the strategy each customer
//! turned off (the preference page, the API). A customer hears about every
//! topic unless a row here says otherwise. Which topics exist, and which
//! rules ignore opt-outs, is the strategy's business, not this module's.

use super::backend::on;
use super::{json_list, to_millis, Tx};
use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Where an opt-out came from.
pub mod source {
    /// The customer's signed preference page.
    pub const PAGE: &str = "page";
    /// An operator or the operator's app through the API.
    pub const API: &str = "api";
}

/// Turn `topic` off for `customer_id`; an existing opt-out is kept as it
/// was. Returns whether it was on.
pub async fn opt_out(
    tx: &mut Tx,
    customer_id: i64,
    topic: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "INSERT INTO topic_opt_outs (customer_id, topic, source, created_at)
             VALUES (?, ?, ?, ?) ON CONFLICT (customer_id, topic) DO NOTHING",
        ))
        .bind(customer_id)
        .bind(topic)
        .bind(source)
        .bind(to_millis(now))
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// Turn `topic` back on for `customer_id`. Returns whether it was off.
pub async fn opt_in(tx: &mut Tx, customer_id: i64, topic: &str) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done =
            sqlx::query(&d.sql("DELETE FROM topic_opt_outs WHERE customer_id = ? AND topic = ?"))
                .bind(customer_id)
                .bind(topic)
                .execute(&mut *db)
                .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// The topics each of `ids` turned off (customers with none are absent).
pub async fn opted_out(tx: &mut Tx, ids: &[i64]) -> Result<HashMap<i64, HashSet<String>>> {
    let mut out: HashMap<i64, HashSet<String>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT customer_id, topic FROM topic_opt_outs
             WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
        ))
        .bind(json_list(ids)?)
        .fetch_all(&mut *db)
        .await?;
        for r in rows {
            out.entry(r.get(0)).or_default().insert(r.get(1));
        }
        Ok(out)
    })
}
