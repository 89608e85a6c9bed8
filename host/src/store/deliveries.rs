//! The `deliveries` table: one row per attempt at an occurrence, saying which
//! channel and provider carried it and how it ended.

use super::backend::on;
use super::Fields;
use super::{from_millis, raw, to_millis};
use super::{json_list, Store, Tx};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::Row;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// The provider accepted the message.
    Delivered,
    /// This attempt failed; `retry_at` says whether another follows.
    Failed,
    /// The last allowed attempt failed; no more will be made.
    Dead,
    /// The occurrence was decided against when due (reason in `error`).
    Skipped,
    /// The recipient refused the channel at the provider; they are now
    /// suppressed on it and the reminder moves to the rule's next channel.
    Suppressed,
    /// Held back (outside the send window, over a frequency cap) until
    /// `retry_at`; not an attempt.
    Deferred,
    /// The send may or may not have reached the provider, and the channel
    /// holds such sends for an operator (`herald redrive` / `herald drop`).
    /// Counts towards frequency caps as a send.
    Unknown,
}

impl DeliveryStatus {
    /// The stored and printed name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Unknown => "unknown",
        }
    }
}

/// A delivery attempt to record.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery<'a> {
    /// The schedule row.
    pub schedule_id: i64,
    /// The customer's row id.
    pub customer_id: i64,
    /// The rule.
    pub rule_id: &'a str,
    /// The channel chosen, if one was.
    pub channel: Option<&'a str>,
    /// The plugin or built-in that carried it.
    pub provider: Option<&'a str>,
    /// The channel the rule wanted, when a failover moved the send.
    pub failover_from: Option<&'a str>,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// Outcome.
    pub status: DeliveryStatus,
    /// The provider's message id.
    pub provider_message_id: Option<&'a str>,
    /// Error or skip reason.
    pub error: Option<String>,
    /// Rendered subject.
    pub subject: Option<&'a str>,
    /// When the next attempt is due, for failed attempts that will be retried.
    pub retry_at: Option<DateTime<Utc>>,
    /// When the attempt was made.
    pub at: DateTime<Utc>,
    /// How long the send took.
    pub duration_ms: Option<i64>,
}

/// Record many attempts, inside the caller's transaction on a connection it
/// has locked.
pub(super) fn insert_many(conn: raw::Conn<'_>, items: &[NewDelivery<'_>]) -> Result<()> {
    let mut stmt = conn.prepare(
        "INSERT INTO deliveries (schedule_id, customer_id, rule_id, channel, provider, attempt, status,
                                 provider_message_id, error, subject, retry_at, at, duration_ms, failover_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for d in items {
        stmt.run(&[
            d.schedule_id.into(),
            d.customer_id.into(),
            d.rule_id.into(),
            d.channel.into(),
            d.provider.into(),
            d.attempt.into(),
            d.status.as_str().into(),
            d.provider_message_id.into(),
            d.error.as_deref().into(),
            d.subject.into(),
            d.retry_at.map(to_millis).into(),
            to_millis(d.at).into(),
            d.duration_ms.into(),
            d.failover_from.into(),
        ])
        .with_context(|| format!("cannot record an attempt at schedule row {}", d.schedule_id))?;
    }
    Ok(())
}

/// [`insert_many`] on PostgreSQL, in one statement.
pub(super) async fn insert_many_pg(
    conn: &mut PgConnection,
    items: &[NewDelivery<'_>],
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&NewDelivery<'_>) -> Option<String>| -> Vec<Option<String>> {
        items.iter().map(f).collect()
    };
    let ints = |f: fn(&NewDelivery<'_>) -> Option<i64>| -> Vec<Option<i64>> {
        items.iter().map(f).collect()
    };
    // Typed arrays, unnested by the server: no JSON to build or parse.
    sqlx::query(
        "INSERT INTO deliveries (schedule_id, customer_id, rule_id, channel, provider, attempt, status,
                                 provider_message_id, error, subject, retry_at, at, duration_ms, failover_from)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                              $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[],
                              $13::bigint[], $14::text[])",
    )
    .bind(ints(|d| Some(d.schedule_id)))
    .bind(ints(|d| Some(d.customer_id)))
    .bind(column(|d| Some(d.rule_id.to_string())))
    .bind(column(|d| d.channel.map(str::to_string)))
    .bind(column(|d| d.provider.map(str::to_string)))
    .bind(ints(|d| Some(d.attempt)))
    .bind(column(|d| Some(d.status.as_str().to_string())))
    .bind(column(|d| d.provider_message_id.map(str::to_string)))
    .bind(column(|d| d.error.clone()))
    .bind(column(|d| d.subject.map(str::to_string)))
    .bind(ints(|d| d.retry_at.map(to_millis)))
    .bind(ints(|d| Some(to_millis(d.at))))
    .bind(ints(|d| d.duration_ms))
    .bind(column(|d| d.failover_from.map(str::to_string)))
    .execute(conn)
    .await
    .context("cannot record the attempts")?;
    Ok(())
}

/// A recorded attempt, for listings.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The customer's external id.
    pub customer: String,
    /// The rule.
    pub rule: String,
    /// The channel.
    pub channel: Option<String>,
    /// The plugin or built-in that carried it.
    pub provider: Option<String>,
    /// Attempt number.
    pub attempt: i64,
    /// Outcome.
    pub status: String,
    /// The provider's message id.
    pub provider_message_id: Option<String>,
    /// Error or skip reason.
    pub error: Option<String>,
    /// Rendered subject.
    pub subject: Option<String>,
    /// Next attempt, if any.
    pub retry_at: Option<DateTime<Utc>>,
    /// The occurrence key.
    pub occurrence_key: String,
    /// The channel the rule wanted, when a failover moved the send.
    pub failover_from: Option<String>,
    /// The provider's delivery report: delivered or undelivered.
    pub report: Option<String>,
    /// The provider's reason for an undelivered report.
    pub report_reason: Option<String>,
    /// The goal event this reminder led to (its kind), if one was reached.
    pub goal: Option<String>,
    /// When the goal was reached.
    pub goal_at: Option<DateTime<Utc>>,
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this customer (external id).
    pub customer: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// At most this many, newest last.
    pub limit: i64,
}

/// The columns [`delivery_from_row`] reads, over `deliveries d`, `customers
/// c`, `schedule s` and `goals g`.
const LIST_COLUMNS: &str =
    "d.id, d.at, c.external_id, d.rule_id, d.channel, d.provider, d.attempt, d.status,
                   d.provider_message_id, d.error, d.subject, d.retry_at, s.occurrence_key,
                   d.failover_from, d.report, d.report_reason, g.event_kind, g.reached_at";

const LIST_FROM: &str = "FROM deliveries d JOIN customers c ON c.id = d.customer_id JOIN schedule s ON s.id = d.schedule_id
            LEFT JOIN goals g ON g.delivery_id = d.id";

fn delivery_from_row<R: Fields>(r: &R) -> DeliveryRow
where
    usize: sqlx::ColumnIndex<R>,
{
    DeliveryRow {
        id: r.int(0),
        at: from_millis(r.int(1)),
        customer: r.text(2),
        rule: r.text(3),
        channel: r.opt_text(4),
        provider: r.opt_text(5),
        attempt: r.int(6),
        status: r.text(7),
        provider_message_id: r.opt_text(8),
        error: r.opt_text(9),
        subject: r.opt_text(10),
        retry_at: r.opt_int(11).map(from_millis),
        occurrence_key: r.text(12),
        failover_from: r.opt_text(13),
        report: r.opt_text(14),
        report_reason: r.opt_text(15),
        goal: r.opt_text(16),
        goal_at: r.opt_int(17).map(from_millis),
    }
}

/// Recorded attempts, oldest first.
pub async fn list(store: &Store, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>> {
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql(&format!(
        "SELECT * FROM (
            SELECT {LIST_COLUMNS} {LIST_FROM}
            WHERE (?1 IS NULL OR c.external_id = ?1) AND (?2 IS NULL OR d.status = ?2) AND (?3 IS NULL OR d.rule_id = ?3)
            ORDER BY d.at DESC, d.id DESC LIMIT ?4
         ) AS latest ORDER BY at, id"
    )))
    .bind(&filter.customer)
    .bind(&filter.status)
    .bind(&filter.rule)
    .bind(if filter.limit > 0 { filter.limit } else { i64::MAX })
    .fetch_all(db)
    .await?;
        Ok(rows.iter().map(delivery_from_row).collect())
    })
}

/// Filters for [`page`] (the API's listing).
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    /// Only this customer (external id).
    pub customer: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Only this channel.
    pub channel: Option<String>,
    /// Only attempts at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only attempts before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only customers of these regions (a staff caller); `None`: all.
    pub scope: Option<Vec<String>>,
    /// Only rows with an id above this (paging).
    pub after_id: i64,
    /// At most this many.
    pub limit: i64,
}

/// Recorded attempts in id order, for paging through with `after_id`.
pub async fn page(store: &Store, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>> {
    on!(store.pool(), |db, d| {
        let scope = q.scope.as_ref().map(serde_json::to_string).transpose()?;
        let rows = sqlx::query(&d.sql(&format!(
            "SELECT {LIST_COLUMNS} {LIST_FROM}
         WHERE d.id > ?1 AND (?2 IS NULL OR c.external_id = ?2) AND (?3 IS NULL OR d.status = ?3)
           AND (?4 IS NULL OR d.rule_id = ?4) AND (?5 IS NULL OR d.channel = ?5)
           AND (?6 IS NULL OR d.at >= ?6) AND (?7 IS NULL OR d.at < ?7)
           AND (?8 IS NULL OR c.region IN (SELECT value FROM json_each(?8)))
         ORDER BY d.id LIMIT ?9"
        )))
        .bind(q.after_id)
        .bind(&q.customer)
        .bind(&q.status)
        .bind(&q.rule)
        .bind(&q.channel)
        .bind(q.since.map(to_millis))
        .bind(q.until.map(to_millis))
        .bind(scope)
        .bind(q.limit)
        .fetch_all(db)
        .await?;
        Ok(rows.iter().map(delivery_from_row).collect())
    })
}

/// Record a provider's delivery report against the delivery it names (by
/// channel and provider message id). Returns how many rows it updated (0 when
/// no delivery has that id, e.g. a report for a message sent elsewhere).
pub async fn apply_report(
    tx: &mut Tx,
    channel: &str,
    provider_message_id: &str,
    delivered: bool,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<u64> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "UPDATE deliveries SET report = ?, report_reason = ?, report_at = ?
         WHERE channel = ? AND provider_message_id = ? AND status = 'delivered'",
        ))
        .bind(if delivered {
            "delivered"
        } else {
            "undelivered"
        })
        .bind(reason)
        .bind(to_millis(at))
        .bind(channel)
        .bind(provider_message_id)
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected())
    })
}

/// The email and phone of the customers a message (by channel and
/// provider message id) was delivered to: whom a bounce report is about.
pub async fn recipients(
    tx: &mut Tx,
    channel: &str,
    provider_message_id: &str,
) -> Result<Vec<(Option<String>, Option<String>)>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT DISTINCT c.email, c.phone FROM deliveries d JOIN customers c ON c.id = d.customer_id
             WHERE d.channel = ? AND d.provider_message_id = ? AND d.status = 'delivered'",
        ))
        .bind(channel)
        .bind(provider_message_id)
        .fetch_all(&mut *db)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    })
}

/// Reminders delivered to each of `ids` since `since` (rule, channel, time),
/// for frequency caps.
pub async fn recent_sends(
    tx: &mut Tx,
    ids: &[i64],
    since: DateTime<Utc>,
    claimed: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<(String, String, DateTime<Utc>)>>> {
    on!(tx.conn(), |db, d| {
        let mut out: std::collections::HashMap<i64, Vec<(String, String, DateTime<Utc>)>> =
            std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        // Sends in doubt count too: a claim that ran out between a plugin
        // call and its record (the node died) may have reached the
        // provider; its channel is not known. The rows of the caller's own
        // claim are left out (it decides them itself).
        let rows = sqlx::query(&d.sql(
            "SELECT customer_id, rule_id, channel, at FROM deliveries
         WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?1)) AND at > ?2 AND status IN ('delivered', 'unknown')
         UNION ALL
         SELECT customer_id, rule_id, NULL, send_started_at FROM schedule
         WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?1)) AND status = 'pending'
           AND claim_token IS NOT NULL AND send_started_at > ?2
           AND id NOT IN (SELECT CAST(value AS BIGINT) FROM json_each(?3))",
        ))
        .bind(json_list(ids)?)
        .bind(to_millis(since))
        .bind(json_list(claimed)?)
        .fetch_all(&mut *db)
        .await?;
        for r in rows {
            out.entry(r.get(0)).or_default().push((
                r.get(1),
                r.get::<Option<String>, _>(2).unwrap_or_default(),
                from_millis(r.get(3)),
            ));
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::Customer;
    use crate::store::planning::{self, Changes};
    use crate::store::schedule::{self, PlannedOccurrence};
    use crate::store::testing::scratch;
    use crate::store::tick::{self, TickWrites};
    use chrono::{Duration, TimeZone};

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn attempt<'a>(
        schedule_id: i64,
        customer_id: i64,
        rule: &'a str,
        status: DeliveryStatus,
        at: DateTime<Utc>,
    ) -> NewDelivery<'a> {
        NewDelivery {
            schedule_id,
            customer_id,
            rule_id: rule,
            channel: Some("sms"),
            provider: Some("twilio"),
            failover_from: None,
            attempt: 1,
            status,
            provider_message_id: (status == DeliveryStatus::Delivered).then_some("SM1"),
            error: None,
            subject: Some("Hi"),
            retry_at: None,
            at,
            duration_ms: Some(12),
        }
    }

    /// Two customers (north, south), one occurrence each, and attempts.
    async fn seeded() -> (tempfile::TempDir, Store, [i64; 2]) {
        let (dir, store) = scratch().await;
        let mut tx = store.write().await.unwrap();
        let mut ids = [0; 2];
        for (i, region) in ["north", "south"].into_iter().enumerate() {
            let mut c = Customer::new(&format!("c{i}"), t(0));
            c.region = Some(region.into());
            ids[i] = crate::store::customers::save(&mut tx, &c).await.unwrap();
        }
        let upserts = ids
            .iter()
            .map(|&id| PlannedOccurrence {
                customer_id: id,
                rule_id: "welcome".into(),
                key: format!("{id}:welcome:created"),
                due_at: t(0),
                anchor: None,
                context: None,
            })
            .collect();
        let changes = Changes {
            upserts,
            ..Changes::default()
        };
        planning::apply(&mut tx, &changes, t(0)).await.unwrap();
        tx.commit().await.unwrap();
        let rows = schedule::claim_due(&store, t(0), t(5), 10, "tok")
            .await
            .unwrap();
        let mut writes = TickWrites::default();
        writes.deliveries.push(attempt(
            rows[0].id,
            rows[0].customer_id,
            "welcome",
            DeliveryStatus::Delivered,
            t(1),
        ));
        writes.deliveries.push(attempt(
            rows[1].id,
            rows[1].customer_id,
            "welcome",
            DeliveryStatus::Failed,
            t(2),
        ));
        tick::record(&store, &mut writes, t(2)).await.unwrap();
        (dir, store, ids)
    }

    #[tokio::test]
    async fn listings_filter_by_customer_status_and_region() {
        let (_dir, store, ids) = seeded().await;
        let all = list(&store, &DeliveryFilter::default()).await.unwrap();
        assert_eq!(all.len(), 2);
        assert!(all[0].at <= all[1].at, "oldest first");
        let failed = list(
            &store,
            &DeliveryFilter {
                status: Some("failed".into()),
                ..DeliveryFilter::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(failed.len(), 1);
        let north = page(
            &store,
            &DeliveryQuery {
                scope: Some(vec!["north".into()]),
                limit: 10,
                ..DeliveryQuery::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(north.len(), 1);
        assert_eq!(north[0].customer, "c0");
        assert_eq!(
            north[0].occurrence_key,
            format!("{}:welcome:created", ids[0])
        );
    }

    #[tokio::test]
    async fn a_provider_report_finds_its_delivery_by_channel_and_message_id() {
        let (_dir, store, _) = seeded().await;
        let mut tx = store.write().await.unwrap();
        assert_eq!(
            apply_report(&mut tx, "sms", "SM1", false, Some("30006"), t(3))
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            apply_report(&mut tx, "email", "SM1", true, None, t(3))
                .await
                .unwrap(),
            0
        );
        tx.commit().await.unwrap();
        let delivered = list(&store, &DeliveryFilter::default()).await.unwrap();
        let row = delivered.iter().find(|r| r.status == "delivered").unwrap();
        assert_eq!(row.report.as_deref(), Some("undelivered"));
        assert_eq!(row.report_reason.as_deref(), Some("30006"));
    }

    /// A row claimed and marked sending, never recorded (its node died):
    /// counted for other claims, not for the claim that holds it.
    #[tokio::test]
    async fn a_send_in_doubt_counts_except_for_its_own_claim() {
        let (_dir, store) = scratch().await;
        let mut tx = store.write().await.unwrap();
        let id = crate::store::customers::save(&mut tx, &Customer::new("c", t(0)))
            .await
            .unwrap();
        let changes = Changes {
            upserts: vec![PlannedOccurrence {
                customer_id: id,
                rule_id: "tips".into(),
                key: format!("{id}:tips:created"),
                due_at: t(0),
                anchor: None,
                context: None,
            }],
            ..Changes::default()
        };
        planning::apply(&mut tx, &changes, t(0)).await.unwrap();
        tx.commit().await.unwrap();
        let rows = schedule::claim_due(&store, t(0), t(5), 10, "tok")
            .await
            .unwrap();
        let mut tx = store.read().await.unwrap();
        let claimed = [rows[0].id];
        assert!(
            recent_sends(&mut tx, &[id], t(-60), &[])
                .await
                .unwrap()
                .is_empty(),
            "claimed, not sending"
        );
        drop(tx);
        schedule::mark_sending(&store, &claimed, "tok", t(1))
            .await
            .unwrap();
        let mut tx = store.read().await.unwrap();
        let recent = recent_sends(&mut tx, &[id], t(-60), &[]).await.unwrap();
        assert_eq!(recent[&id], [("tips".to_string(), String::new(), t(1))]);
        assert!(recent_sends(&mut tx, &[id], t(-60), &claimed)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn recent_sends_are_the_delivered_ones_since_the_cutoff() {
        let (_dir, store, ids) = seeded().await;
        let mut tx = store.read().await.unwrap();
        let recent = recent_sends(&mut tx, &ids, t(0), &[]).await.unwrap();
        assert_eq!(recent.len(), 1, "only the delivered attempt counts");
        let sends: Vec<_> = recent.values().flatten().collect();
        assert_eq!(sends[0].1, "sms");
        assert!(recent_sends(&mut tx, &ids, t(1), &[])
            .await
            .unwrap()
            .is_empty());
    }
}
