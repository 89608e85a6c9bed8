//! What the funnel report reads: planned occurrences per rule (counted by
//! the database), and every attempt of a period with its first open, first
//! click and goal, streamed an occurrence at a time. The counting itself is
//! [`crate::funnel`]'s.

use super::backend::on;
use super::{from_millis, to_millis, Store};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::Row;

/// One recorded attempt of the period, with what followed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The schedule row (occurrence).
    pub schedule_id: i64,
    /// The customer's row id.
    pub customer_id: i64,
    /// Its rule.
    pub rule: String,
    /// The channel that carried or held it.
    pub channel: String,
    /// delivered, failed, dead, suppressed or deferred.
    pub status: String,
    /// Whether another attempt was planned after this one.
    pub retried: bool,
    /// The provider's delivery report, if any.
    pub report: Option<String>,
    /// When the attempt was made.
    pub at: DateTime<Utc>,
    /// The first open of this delivery.
    pub first_open: Option<DateTime<Utc>>,
    /// The first click of this delivery.
    pub first_click: Option<DateTime<Utc>>,
    /// Whether the rule's goal was credited to it.
    pub converted: bool,
}

/// A regions filter as bound: `None` counts every customer.
fn regions_json(regions: Option<&[String]>) -> Result<Option<String>> {
    regions.map(super::json_list).transpose()
}

/// Per rule, the occurrences planned in `[since, until)` and not canceled,
/// counting only customers of `regions` when given.
pub async fn planned_by_rule(
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    regions: Option<&[String]>,
) -> Result<Vec<(String, u64)>> {
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT s.rule_id, COUNT(*) FROM schedule s JOIN customers c ON c.id = s.customer_id
         WHERE s.occurs_at >= ?1 AND s.occurs_at < ?2 AND s.status != 'canceled'
           AND (?3 IS NULL OR c.region IN (SELECT value FROM json_each(?3)))
         GROUP BY s.rule_id",
        ))
        .bind(to_millis(since))
        .bind(to_millis(until))
        .bind(regions_json(regions)?)
        .fetch_all(db)
        .await
        .context("cannot count the planned reminders")?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<i64, _>(1).max(0) as u64))
            .collect())
    })
}

/// Hand `each` the attempts on a channel in `[since, until)` (sent or held
/// back), counting only customers of `regions` when given, as the database
/// streams them: grouped by occurrence (schedule row), each occurrence's
/// attempts by channel and then in time order. Nothing of the period is
/// held here; what `each` keeps is its own.
pub async fn each_attempt(
    store: &Store,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    regions: Option<&[String]>,
    mut each: impl FnMut(Attempt) -> Result<()>,
) -> Result<()> {
    use futures::TryStreamExt;
    let regions = regions_json(regions)?;
    on!(store.pool(), |db, d| {
        let sql = d.sql("SELECT d.schedule_id, d.rule_id, d.channel, d.status, d.retry_at, d.report, d.at,
                (SELECT MIN(t.at) FROM tracking_events t WHERE t.delivery_id = d.id AND t.kind = 'open'),
                (SELECT MIN(t.at) FROM tracking_events t WHERE t.delivery_id = d.id AND t.kind = 'click'),
                EXISTS (SELECT 1 FROM goals g WHERE g.delivery_id = d.id), d.customer_id
         FROM deliveries d JOIN customers c ON c.id = d.customer_id
         WHERE d.at >= ?1 AND d.at < ?2 AND d.channel IS NOT NULL
           AND d.status IN ('delivered', 'failed', 'dead', 'suppressed', 'deferred')
           AND (?3 IS NULL OR c.region IN (SELECT value FROM json_each(?3)))
         ORDER BY d.schedule_id, d.channel, d.at, d.id");
        let mut rows = sqlx::query(&sql)
            .bind(to_millis(since))
            .bind(to_millis(until))
            .bind(regions.as_deref())
            .fetch(db);
        while let Some(r) = rows
            .try_next()
            .await
            .context("cannot read the deliveries of the period")?
        {
            each(Attempt {
                schedule_id: r.get(0),
                rule: r.get(1),
                channel: r.get(2),
                status: r.get(3),
                retried: r.get::<Option<i64>, _>(4).is_some(),
                report: r.get(5),
                at: from_millis(r.get(6)),
                first_open: r.get::<Option<i64>, _>(7).map(from_millis),
                first_click: r.get::<Option<i64>, _>(8).map(from_millis),
                converted: r.get(9),
                customer_id: r.get(10),
            })?;
        }
        Ok(())
    })
}

/// The events of `kinds` that `ids` had in `[from, until]`, per customer
/// (kind, Unix ms), for counting goal stages; read 1,000 customers a statement.
pub async fn stage_events(
    store: &Store,
    ids: &[i64],
    kinds: &[String],
    (from, until): (i64, i64),
) -> Result<std::collections::HashMap<i64, Vec<(String, i64)>>> {
    let mut out: std::collections::HashMap<i64, Vec<(String, i64)>> = Default::default();
    for chunk in ids.chunks(1000) {
        let rows = on!(store.pool(), |db, d| {
            sqlx::query(&d.sql(
                "SELECT customer_id, kind, at FROM events
                 WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?1))
                   AND kind IN (SELECT value FROM json_each(?2)) AND at >= ?3 AND at <= ?4",
            ))
            .bind(super::json_list(chunk)?)
            .bind(super::json_list(kinds)?)
            .bind(from)
            .bind(until)
            .fetch_all(db)
            .await
            .context("cannot read the events of goal stages")?
            .iter()
            .map(|r| {
                Ok((
                    r.get::<i64, _>(0),
                    r.get::<String, _>(1),
                    r.get::<i64, _>(2),
                ))
            })
            .collect::<Result<Vec<_>>>()
        })?;
        for (id, kind, at) in rows {
            out.entry(id).or_default().push((kind, at));
        }
    }
    Ok(out)
}
