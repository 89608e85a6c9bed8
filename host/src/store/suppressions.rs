//! The `suppressions` table: customers who refused a channel. A suppressed
//! customer gets nothing more on that channel; the rule falls back to its
//! next channel.

use super::backend::on;
use super::{from_millis, to_millis};
use super::{json_list, Store, Tx};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Where a suppression came from.
pub mod source {
    /// The provider refused the recipient at send time (e.g. Twilio 21610).
    pub const PROVIDER: &str = "provider";
    /// The customer replied STOP / TD / 退订.
    pub const REPLY: &str = "reply";
    /// An operator added it through the API.
    pub const API: &str = "api";
    /// The customer followed a signed unsubscribe link.
    pub const UNSUBSCRIBE: &str = "unsubscribe";
    /// An imported suppression list.
    pub const IMPORT: &str = "import";
    /// The customer turned the channel off on their preference page (or the
    /// operator's app did, through the preferences API).
    pub const PREFERENCES: &str = "preferences";

    /// Whether the customer may lift a suppression from `source` themselves
    /// (their own link or preference choice), as opposed to a STOP reply
    /// (lifted only by a START reply), a provider's refusal, or an
    /// operator's list.
    pub fn customer_may_lift(source: &str) -> bool {
        source == UNSUBSCRIBE || source == PREFERENCES
    }
}

/// A suppression to add (see [`add`]).
#[derive(Debug, Clone)]
pub struct NewSuppression<'a> {
    /// The customer's row id.
    pub customer_id: i64,
    /// The channel they refused.
    pub channel: &'a str,
    /// Why.
    pub reason: String,
    /// One of [`source`].
    pub source: &'static str,
}

/// Suppress `customer_id` on `channel`; an existing suppression is kept as it was.
pub async fn add(
    tx: &mut Tx,
    customer_id: i64,
    channel: &str,
    reason: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "INSERT INTO suppressions (customer_id, channel, reason, source, created_at)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer_id, channel) DO NOTHING",
        ))
        .bind(customer_id)
        .bind(channel)
        .bind(reason)
        .bind(source)
        .bind(to_millis(now))
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// Lift the suppression of `customer_id` on `channel` (a START reply).
pub async fn remove(tx: &mut Tx, customer_id: i64, channel: &str) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done =
            sqlx::query(&d.sql("DELETE FROM suppressions WHERE customer_id = ? AND channel = ?"))
                .bind(customer_id)
                .bind(channel)
                .execute(&mut *db)
                .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// Lift the customer's suppression on `channel` only if it came from
/// `source`: a START reply undoes a STOP reply, never an unsubscribe link,
/// an operator's suppression or an imported list.
pub async fn remove_from_source(
    tx: &mut Tx,
    customer_id: i64,
    channel: &str,
    source: &str,
) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(
            &d.sql("DELETE FROM suppressions WHERE customer_id = ? AND channel = ? AND source = ?"),
        )
        .bind(customer_id)
        .bind(channel)
        .bind(source)
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// The suppressions of one customer: (channel, source, reason).
pub async fn of_customer(tx: &mut Tx, customer_id: i64) -> Result<Vec<(String, String, String)>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT channel, source, reason FROM suppressions WHERE customer_id = ? ORDER BY channel",
        ))
        .bind(customer_id)
        .fetch_all(&mut *db)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    })
}

/// The suppressed channels of each of `ids` that has any.
pub async fn for_customers(tx: &mut Tx, ids: &[i64]) -> Result<HashMap<i64, HashSet<String>>> {
    on!(tx.conn(), |db, d| {
        let mut out: HashMap<i64, HashSet<String>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let rows = sqlx::query(&d.sql(
            "SELECT customer_id, channel FROM suppressions
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

/// A suppression, for listings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Suppression {
    /// The customer's external id.
    pub customer: String,
    /// The channel.
    pub channel: String,
    /// Why.
    pub reason: String,
    /// provider, reply, ...
    pub source: String,
    /// Since when.
    pub at: DateTime<Utc>,
}

/// Every suppression, optionally of one customer, oldest first.
/// `scope` limits it to customers of those regions (a staff caller).
pub async fn list(
    store: &Store,
    customer: Option<&str>,
    scope: Option<&[String]>,
) -> Result<Vec<Suppression>> {
    on!(store.pool(), |db, d| {
        let scope = scope.map(serde_json::to_string).transpose()?;
        let rows = sqlx::query(&d.sql(
            "SELECT c.external_id, s.channel, s.reason, s.source, s.created_at
         FROM suppressions s JOIN customers c ON c.id = s.customer_id
         WHERE (?1 IS NULL OR c.external_id = ?1)
           AND (?2 IS NULL OR c.region IN (SELECT value FROM json_each(?2)))
         ORDER BY s.created_at, c.external_id, s.channel",
        ))
        .bind(customer)
        .bind(scope)
        .fetch_all(db)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Suppression {
                customer: r.get(0),
                channel: r.get(1),
                reason: r.get(2),
                source: r.get(3),
                at: from_millis(r.get(4)),
            })
            .collect())
    })
}

/// Where a page of suppressions ends, in their listing order (time added,
/// customer row, channel): the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionKey {
    /// When it was added (Unix milliseconds).
    pub at_ms: i64,
    /// The customer's row id.
    pub customer_id: i64,
    /// The channel.
    pub channel: String,
}

/// One page of suppressions, oldest first (ties by customer row and
/// channel, a stable order), after `after` and at most `limit` (at least
/// 1): optionally of one customer, and only customers of `scope`'s regions
/// when given. The key to pass as `after` for the next page comes with it,
/// `None` on the last page. Reads at most `limit + 1` rows.
pub async fn page(
    store: &Store,
    customer: Option<&str>,
    scope: Option<&[String]>,
    after: Option<&SuppressionKey>,
    limit: i64,
) -> Result<(Vec<Suppression>, Option<SuppressionKey>)> {
    let limit = limit.max(1);
    let mut rows: Vec<(Suppression, SuppressionKey)> = on!(store.pool(), |db, d| {
        let scope = scope.map(serde_json::to_string).transpose()?;
        let rows = sqlx::query(&d.sql(
            "SELECT c.external_id, s.channel, s.reason, s.source, s.created_at, s.customer_id
         FROM suppressions s JOIN customers c ON c.id = s.customer_id
         WHERE (?1 IS NULL OR c.external_id = ?1)
           AND (?2 IS NULL OR c.region IN (SELECT value FROM json_each(?2)))
           AND (?3 IS NULL OR (s.created_at, s.customer_id, s.channel) > (?3, ?4, ?5))
         ORDER BY s.created_at, s.customer_id, s.channel
         LIMIT ?6",
        ))
        .bind(customer)
        .bind(scope)
        .bind(after.map(|k| k.at_ms))
        .bind(after.map(|k| k.customer_id))
        .bind(after.map(|k| k.channel.as_str()))
        .bind(limit.saturating_add(1))
        .fetch_all(db)
        .await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| {
                    let suppression = Suppression {
                        customer: r.get(0),
                        channel: r.get(1),
                        reason: r.get(2),
                        source: r.get(3),
                        at: from_millis(r.get(4)),
                    };
                    let key = SuppressionKey {
                        at_ms: r.get(4),
                        customer_id: r.get(5),
                        channel: r.get(1),
                    };
                    (suppression, key)
                })
                .collect(),
        )
    })?;
    Ok(super::split_page(&mut rows, limit))
}
