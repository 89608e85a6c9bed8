//! The `devices` table: customers' app installations registered for push.
//! A token is unique (one installation); registering it for another
//! customer moves it. At most [`limits::DEVICES`] per customer: a new one
//! forgets the one registered longest ago.

use super::backend::on;
use super::{from_millis, json_list, to_millis, Tx};
use crate::customer::{limits, Device};
use anyhow::Result;
use chrono::{DateTime, Utc};
use sqlx::Row;
use std::collections::HashMap;

/// Register (or refresh) `device` for `customer_id` at `now`. Returns
/// whether the token was new to this customer.
pub async fn register(
    tx: &mut Tx,
    customer_id: i64,
    token: &str,
    platform: &str,
    app: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let known: Option<i64> =
            sqlx::query(&d.sql("SELECT customer_id FROM devices WHERE token = ?"))
                .bind(token)
                .fetch_optional(&mut *db)
                .await?
                .map(|row| row.get(0));
        sqlx::query(&d.sql(
            "INSERT INTO devices (customer_id, token, platform, app, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (token) DO UPDATE SET customer_id = excluded.customer_id,
                 platform = excluded.platform, app = excluded.app, updated_at = excluded.updated_at",
        ))
        .bind(customer_id)
        .bind(token)
        .bind(platform)
        .bind(app)
        .bind(to_millis(now))
        .bind(to_millis(now))
        .execute(&mut *db)
        .await?;
        sqlx::query(&d.sql(
            "DELETE FROM devices WHERE customer_id = ? AND id NOT IN (
                 SELECT id FROM devices WHERE customer_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?)",
        ))
        .bind(customer_id)
        .bind(customer_id)
        .bind(limits::DEVICES as i64)
        .execute(&mut *db)
        .await?;
        Ok(known != Some(customer_id))
    })
}

/// Forget these tokens of `customer_id` (an uninstall, a provider that no
/// longer knows them). Returns how many were registered.
pub async fn remove(tx: &mut Tx, customer_id: i64, tokens: &[&str]) -> Result<u64> {
    if tokens.is_empty() {
        return Ok(0);
    }
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "DELETE FROM devices WHERE customer_id = ? AND token IN (SELECT value FROM json_each(?))",
        ))
        .bind(customer_id)
        .bind(json_list(tokens)?)
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected())
    })
}

/// Forget every device of `customer_id`, or only those of `app`. Returns
/// how many there were.
pub async fn remove_all(tx: &mut Tx, customer_id: i64, app: Option<&str>) -> Result<u64> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(
            &d.sql("DELETE FROM devices WHERE customer_id = ? AND (? IS NULL OR app = ?)"),
        )
        .bind(customer_id)
        .bind(app)
        .bind(app)
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected())
    })
}

/// The devices of these customers, most recently registered first. Only
/// customers with devices have an entry.
pub async fn of_customers(tx: &mut Tx, ids: &[i64]) -> Result<HashMap<i64, Vec<Device>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT customer_id, token, platform, app, updated_at FROM devices
             WHERE customer_id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))
             ORDER BY customer_id, updated_at DESC, id DESC",
        ))
        .bind(json_list(ids)?)
        .fetch_all(&mut *db)
        .await?;
        let mut out: HashMap<i64, Vec<Device>> = HashMap::new();
        for row in &rows {
            out.entry(row.get(0)).or_default().push(Device {
                token: row.get(1),
                platform: row.get(2),
                app: row.get(3),
                registered_at: from_millis(row.get(4)),
            });
        }
        Ok(out)
    })
}
