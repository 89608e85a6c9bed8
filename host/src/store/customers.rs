//! The `customers` table: load, save and soft-delete customer records.
//! Every record read carries its devices ([`super::devices`]).

use super::backend::on;
use super::Fields;
use super::Tx;
use super::{from_millis, to_millis};
use crate::customer::{Customer, Device};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::Row;

const COLUMNS: &str = "id, external_id, name, email, phone, wechat_openid, region, timezone, locale, state, attributes, created_at, updated_at, deleted_at";

fn from_row<R: Fields>(row: &R) -> Result<Customer>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let attributes = row.text("attributes");
    Ok(Customer {
        id: row.int("id"),
        external_id: row.text("external_id"),
        name: row.opt_text("name"),
        email: row.opt_text("email"),
        phone: row.opt_text("phone"),
        wechat_openid: row.opt_text("wechat_openid"),
        region: row.opt_text("region"),
        timezone: row.text("timezone"),
        locale: row.opt_text("locale"),
        state: row.opt_text("state"),
        attributes: serde_json::from_str(&attributes).context("stored attributes are not JSON")?,
        created_at: from_millis(row.int("created_at")),
        updated_at: from_millis(row.int("updated_at")),
        deleted_at: row.opt_int("deleted_at").map(from_millis),
        devices: Vec::new(),
    })
}

/// `customers` with their devices.
async fn with_devices(tx: &mut Tx, mut customers: Vec<Customer>) -> Result<Vec<Customer>> {
    let ids: Vec<i64> = customers.iter().map(|c| c.id).collect();
    let mut devices = super::devices::of_customers(tx, &ids).await?;
    for c in &mut customers {
        c.devices = devices.remove(&c.id).unwrap_or_default();
    }
    Ok(customers)
}

/// `customer` with its devices.
async fn one_with_devices(tx: &mut Tx, customer: Option<Customer>) -> Result<Option<Customer>> {
    Ok(with_devices(tx, customer.into_iter().collect())
        .await?
        .pop())
}

/// The customer with this external id, deleted or not.
pub async fn by_external_id(tx: &mut Tx, external_id: &str) -> Result<Option<Customer>> {
    let found = on!(tx.conn(), |db, d| {
        let row = sqlx::query(&d.sql(&format!(
            "SELECT {COLUMNS} FROM customers WHERE external_id = ?"
        )))
        .bind(external_id)
        .fetch_optional(&mut *db)
        .await?;
        row.as_ref().map(from_row).transpose()
    })?;
    one_with_devices(tx, found).await
}

/// The customer with this row id.
pub async fn by_id(tx: &mut Tx, id: i64) -> Result<Option<Customer>> {
    let found = on!(tx.conn(), |db, d| {
        let row = sqlx::query(&d.sql(&format!("SELECT {COLUMNS} FROM customers WHERE id = ?")))
            .bind(id)
            .fetch_optional(&mut *db)
            .await?;
        row.as_ref().map(from_row).transpose()
    })?;
    one_with_devices(tx, found).await
}

/// One customer as [`by_ids`] reads it back: the columns in [`COLUMNS`]
/// order, with the attributes as a JSON object, then the customer's devices
/// (token, platform, app, registered at), most recent first.
type CustomerTuple = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    serde_json::Map<String, serde_json::Value>,
    i64,
    i64,
    Option<i64>,
    Vec<(String, String, String, i64)>,
);

/// The customers with these row ids, by id.
///
/// The rows come back as one JSON array (`json_group_array`), not as a row
/// set: the driver hands result rows one by one from its SQLite thread to
/// the async task, which cost more per row than SQLite's own lookup for the
/// tick's batches (see docs/performance.md). Ids are looked up in ascending
/// order, so the b-tree is walked front to back. Each customer's devices
/// come in the same statement: a second one would cost the tick another
/// hand-over per batch.
pub async fn by_ids(tx: &mut Tx, ids: &[i64]) -> Result<std::collections::HashMap<i64, Customer>> {
    on!(tx.conn(), |db, d| {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let json: String = sqlx::query(&d.sql(d.pick(
            "SELECT json_group_array(json_array(id, external_id, name, email, phone, wechat_openid, region,
                    timezone, locale, state, json(attributes), created_at, updated_at, deleted_at,
                    (SELECT json_group_array(json_array(token, platform, app, updated_at)
                                             ORDER BY updated_at DESC, id DESC)
                     FROM devices WHERE devices.customer_id = customers.id)))
             FROM customers WHERE id IN (SELECT value FROM json_each(?))",
            "SELECT COALESCE(json_agg(json_build_array(id, external_id, name, email, phone, wechat_openid, region,
                    timezone, locale, state, attributes::json, created_at, updated_at, deleted_at,
                    (SELECT COALESCE(json_agg(json_build_array(token, platform, app, updated_at)
                                              ORDER BY updated_at DESC, id DESC), '[]'::json)
                     FROM devices WHERE devices.customer_id = customers.id))), '[]')::text
             FROM customers WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
        )))
        .bind(serde_json::to_string(&sorted)?)
        .fetch_one(&mut *db)
        .await?
        .get(0);
        let tuples: Vec<CustomerTuple> =
            serde_json::from_str(&json).context("cannot read the stored customers back")?;
        Ok::<_, anyhow::Error>(
            tuples
                .into_iter()
                .map(
                    |(
                        id,
                        external_id,
                        name,
                        email,
                        phone,
                        wechat_openid,
                        region,
                        timezone,
                        locale,
                        state,
                        attributes,
                        created_at,
                        updated_at,
                        deleted_at,
                        devices,
                    )| {
                        (
                            id,
                            Customer {
                                id,
                                external_id,
                                name,
                                email,
                                phone,
                                wechat_openid,
                                region,
                                timezone,
                                locale,
                                state,
                                attributes,
                                created_at: from_millis(created_at),
                                updated_at: from_millis(updated_at),
                                deleted_at: deleted_at.map(from_millis),
                                devices: devices
                                    .into_iter()
                                    .map(|(token, platform, app, at)| Device {
                                        token,
                                        platform,
                                        app,
                                        registered_at: from_millis(at),
                                    })
                                    .collect(),
                            },
                        )
                    },
                )
                .collect::<std::collections::HashMap<_, _>>(),
        )
    })
}

/// Insert or update a record; returns its id. A deleted record that is
/// written again comes back to life.
pub async fn save(tx: &mut Tx, c: &Customer) -> Result<i64> {
    on!(tx.conn(), |db, d| {
        let attributes = serde_json::to_string(&c.attributes)?;
        let row = sqlx::query(&d.sql("INSERT INTO customers (external_id, name, email, phone, wechat_openid, region, timezone, locale, state, attributes, created_at, updated_at, deleted_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
         ON CONFLICT (external_id) DO UPDATE SET
            name = excluded.name, email = excluded.email, phone = excluded.phone,
            wechat_openid = excluded.wechat_openid, region = excluded.region,
            timezone = excluded.timezone, locale = excluded.locale, state = excluded.state,
            attributes = excluded.attributes, created_at = excluded.created_at,
            updated_at = excluded.updated_at, deleted_at = NULL
         RETURNING id"))
    .bind(&c.external_id)
    .bind(&c.name)
    .bind(&c.email)
    .bind(&c.phone)
    .bind(&c.wechat_openid)
    .bind(&c.region)
    .bind(&c.timezone)
    .bind(&c.locale)
    .bind(&c.state)
    .bind(attributes)
    .bind(to_millis(c.created_at))
    .bind(to_millis(c.updated_at))
    .fetch_one(&mut *db)
    .await?;
        Ok(row.get(0))
    })
}

/// Mark a customer deleted. The row stays so that reminders about the
/// deletion itself can still be rendered; nothing else is sent to them.
pub async fn mark_deleted(tx: &mut Tx, id: i64, at: DateTime<Utc>) -> Result<()> {
    on!(tx.conn(), |db, d| {
        sqlx::query(&d.sql("UPDATE customers SET deleted_at = ?, updated_at = ? WHERE id = ?"))
            .bind(to_millis(at))
            .bind(to_millis(at))
            .bind(id)
            .execute(&mut *db)
            .await?;
        Ok(())
    })
}

/// Live customers with row ids above `after_id`, in id order (for walking the whole base).
pub async fn page_by_id(tx: &mut Tx, after_id: i64, limit: i64) -> Result<Vec<Customer>> {
    let page = on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(&format!(
        "SELECT {COLUMNS} FROM customers WHERE deleted_at IS NULL AND id > ? ORDER BY id LIMIT ?"
    )))
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *db)
        .await?;
        rows.iter().map(from_row).collect::<Result<Vec<_>>>()
    })?;
    with_devices(tx, page).await
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// At most this many.
    pub limit: i64,
    /// Start after this external id (paging).
    pub after: Option<String>,
    /// Only this lifecycle state.
    pub state: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only these regions (a staff caller's scope); `None`: every region.
    pub scope: Option<Vec<String>>,
}

/// Live customers ordered by external id, for listings.
pub async fn list(tx: &mut Tx, filter: &CustomerFilter) -> Result<Vec<Customer>> {
    let listed = on!(tx.conn(), |db, d| {
        let scope = filter
            .scope
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let rows = sqlx::query(&d.sql(&format!(
            "SELECT {COLUMNS} FROM customers
         WHERE deleted_at IS NULL AND external_id > ?1
           AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR region = ?3)
           AND (?4 IS NULL OR region IN (SELECT value FROM json_each(?4)))
         ORDER BY external_id LIMIT ?5"
        )))
        .bind(filter.after.as_deref().unwrap_or(""))
        .bind(&filter.state)
        .bind(&filter.region)
        .bind(scope)
        .bind(filter.limit)
        .fetch_all(&mut *db)
        .await?;
        rows.iter().map(from_row).collect::<Result<Vec<_>>>()
    })?;
    with_devices(tx, listed).await
}

/// A contact address of one kind, to find the customer it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address<'a> {
    /// An email address.
    Email(&'a str),
    /// A phone number.
    Phone(&'a str),
    /// A WeChat OpenID.
    Wechat(&'a str),
}

/// Every live customer with exactly this address, in id order (two
/// customers may share a number or an inbox).
pub async fn ids_by_address(tx: &mut Tx, address: Address<'_>) -> Result<Vec<i64>> {
    on!(tx.conn(), |db, d| {
        let (column, value) = match address {
            Address::Email(v) => ("email", v),
            Address::Phone(v) => ("phone", v),
            Address::Wechat(v) => ("wechat_openid", v),
        };
        let rows = sqlx::query(&d.sql(&format!(
            "SELECT id FROM customers WHERE {column} = ? AND deleted_at IS NULL ORDER BY id"
        )))
        .bind(value.trim())
        .fetch_all(&mut *db)
        .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    })
}

/// Every live customer whose phone number, without spaces, dashes,
/// brackets and dots, is `digits` (a `+` and digits), in id order.
pub async fn ids_by_phone_digits(tx: &mut Tx, digits: &str) -> Result<Vec<i64>> {
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT id FROM customers
         WHERE replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), '.', '') = ?
           AND deleted_at IS NULL ORDER BY id"))
    .bind(digits)
    .fetch_all(&mut *db)
    .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    })
}
