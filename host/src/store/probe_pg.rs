//! `herald bench`'s PostgreSQL measurements: fresh databases on a server,
//! the same seed as the SQLite tick bench (customers with a `renews_at`
//! date, their renewal reminder planned as the planner would, `due` of them
//! due now) written by the server itself, and the claim + release floor
//! (the two statements a reminder cannot do without on PostgreSQL). Not
//! part of a deployment.

use super::schedule::{self, Release};
use super::{to_millis, On, Store};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use sqlx::{Connection, Executor};

/// Create the database `name` on the server of `server_url` (a URL of any
/// of its databases); returns the new database's URL.
pub async fn create_database(server_url: &str, name: &str) -> Result<String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("a bench database name is letters, digits and _ only");
    }
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .with_context(|| {
            format!(
                "cannot reach PostgreSQL at {}",
                crate::database::Location::Server(server_url.into())
            )
        })?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
        .await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let base = server_url
        .split('?')
        .next()
        .and_then(|u| u.rsplit_once('/'))
        .map_or(server_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// [`super::probe::seed_renewals`] on PostgreSQL.
pub async fn seed_renewals(
    store: &Store,
    customers: u64,
    due: u64,
    t0: DateTime<Utc>,
    planned_at: DateTime<Utc>,
    rule: &str,
) -> Result<()> {
    let On::Postgres(pool) = store.pool() else {
        bail!("seed_renewals_pg needs PostgreSQL");
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO customers (id, external_id, name, email, timezone, state, attributes, created_at, updated_at)
         SELECT i, 'cust-' || i, 'Customer ' || i, 'cust-' || i || '@example.com', 'UTC', 'paid',
                json_build_object('renews_at', to_char($3::date + (CASE WHEN (i * $2) / $1 <> ((i - 1) * $2) / $1
                                                                       THEN 7 - i % 60 ELSE 8 + i % 300 END)::int,
                                                       'YYYY-MM-DD'))::text,
                $4, $4
         FROM generate_series(1::bigint, $1) AS i",
    )
    .bind(customers as i64)
    .bind(due as i64)
    .bind(t0.format("%Y-%m-%d").to_string())
    .bind(to_millis(planned_at))
    .execute(&mut *tx)
    .await
    .context("cannot insert the customers")?;
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT MAX(id) FROM customers))",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor, created_at, updated_at)
         SELECT id, $1, id || ':' || $1 || ':' || to_char(occ, 'YYYY-MM-DD') || 'T10:00Z', ms, ms, 'pending', anchor, $3, $3
         FROM (SELECT id, anchor, occ,
                      (extract(epoch FROM (occ + time '10:00') AT TIME ZONE 'UTC') * 1000)::bigint AS ms
               FROM (SELECT id, anchor, anchor::date - 7 AS occ
                     FROM (SELECT id, attributes::json ->> $2 AS anchor FROM customers) AS a
                     WHERE anchor IS NOT NULL) AS b) AS c
         ORDER BY id",
    )
    .bind(rule)
    .bind("renews_at")
    .bind(to_millis(planned_at))
    .execute(&mut *tx)
    .await
    .with_context(|| format!("cannot plan the {rule} reminders"))?;
    tx.commit().await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    Ok(())
}

/// The floor: claim the `due` rows due at `t0` in one statement and
/// release them all as done in another, as the tick does with nothing
/// between. Returns how many rows went through.
pub async fn claim_release_floor(store: &Store, t0: DateTime<Utc>, due: u64) -> Result<u64> {
    let lease = t0 + chrono::Duration::minutes(5);
    let rows = schedule::claim_due(store, t0, lease, u32::try_from(due)?, "floor").await?;
    let releases: Vec<Release> = rows
        .iter()
        .map(|r| Release {
            id: r.id,
            customer_id: r.customer_id,
            token: "floor".into(),
            status: "done",
            error: None,
            due_at: None,
            attempted: true,
        })
        .collect();
    let On::Postgres(pool) = store.pool() else {
        bail!("the PostgreSQL floor needs PostgreSQL");
    };
    let mut conn = pool.acquire().await?;
    Ok(schedule::release_many_pg(&mut conn, &releases, t0)
        .await?
        .len() as u64)
}
