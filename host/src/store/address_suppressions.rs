//! The `address_suppressions` table: the do-not-contact list, keyed by
//! address (kind `email` or `phone`, already normalised by the caller) and
//! not by customer, so it holds addresses no customer has yet. Stores and
//! finds entries; deciding what an address is and whom it stops is the
//! engine's.

use super::backend::on;
use super::{from_millis, json_list, to_millis, Store, Tx};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashSet;

/// Where an entry came from.
pub mod source {
    /// A send the provider refused for good: a hard bounce, an invalid number.
    pub const INVALID_ADDRESS: &str = "invalid_address";
    /// A provider's delivery report said the address does not exist.
    pub const BOUNCE: &str = "bounce";
    /// An operator added it through the API.
    pub const API: &str = "api";
    /// An imported do-not-contact list.
    pub const IMPORT: &str = "import";
}

/// An address on the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AddressSuppression {
    /// `email` or `phone`.
    pub kind: String,
    /// The normalised address: lower-cased email, E.164 phone.
    pub address: String,
    /// Why.
    pub reason: String,
    /// invalid_address, bounce, api, import.
    pub source: String,
    /// Since when.
    pub at: DateTime<Utc>,
}

/// An entry a tick adds (a send the provider refused for good).
#[derive(Debug, Clone)]
pub struct NewAddressSuppression {
    /// The customer the send went to (the tick's writes are split by
    /// customer when their one transaction fails).
    pub customer_id: i64,
    /// `email` or `phone`.
    pub kind: &'static str,
    /// The normalised address.
    pub address: String,
    /// Why.
    pub reason: String,
    /// One of [`source`].
    pub source: &'static str,
}

/// Put `address` of `kind` on the list; an entry already there is kept as
/// it was (returns false).
pub async fn add(
    tx: &mut Tx,
    kind: &str,
    address: &str,
    reason: &str,
    source: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done = sqlx::query(&d.sql(
            "INSERT INTO address_suppressions (kind, address, reason, source, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, address) DO NOTHING",
        ))
        .bind(kind)
        .bind(address)
        .bind(reason)
        .bind(source)
        .bind(to_millis(now))
        .execute(&mut *db)
        .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// Take `address` of `kind` off the list; false when it was not on it.
pub async fn remove(tx: &mut Tx, kind: &str, address: &str) -> Result<bool> {
    on!(tx.conn(), |db, d| {
        let done =
            sqlx::query(&d.sql("DELETE FROM address_suppressions WHERE kind = ? AND address = ?"))
                .bind(kind)
                .bind(address)
                .execute(&mut *db)
                .await?;
        Ok(done.rows_affected() > 0)
    })
}

/// The entries among these normalised emails and phones, in one statement
/// (a tick batch's addresses at once).
pub async fn for_addresses(
    tx: &mut Tx,
    emails: &[&str],
    phones: &[&str],
) -> Result<Vec<AddressSuppression>> {
    if emails.is_empty() && phones.is_empty() {
        return Ok(Vec::new());
    }
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT kind, address, reason, source, created_at FROM address_suppressions
             WHERE (kind = 'email' AND address IN (SELECT value FROM json_each(?)))
                OR (kind = 'phone' AND address IN (SELECT value FROM json_each(?)))",
        ))
        .bind(json_list(emails)?)
        .bind(json_list(phones)?)
        .fetch_all(&mut *db)
        .await?;
        Ok(rows
            .iter()
            .map(|r| entry(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect())
    })
}

/// Which of these normalised addresses of `kind` some customer (deleted
/// ones left out) has. Customers' stored addresses are compared the way
/// [`crate::customer`] records may hold them: emails trimmed and
/// lower-cased, phones without spaces, dashes, dots and parentheses and
/// with `00` read as `+` (the rules of the engine's normaliser, for
/// counting an import's unknown addresses).
pub async fn known(tx: &mut Tx, kind: &str, addresses: &[&str]) -> Result<HashSet<String>> {
    if addresses.is_empty() {
        return Ok(HashSet::new());
    }
    let text = if kind == "email" {
        "SELECT DISTINCT lower(trim(email)) FROM customers
         WHERE deleted_at IS NULL AND lower(trim(email)) IN (SELECT value FROM json_each(?))"
    } else {
        "SELECT DISTINCT a FROM (
             SELECT CASE WHEN p LIKE '00%' THEN '+' || substr(p, 3) ELSE p END AS a
             FROM (SELECT replace(replace(replace(replace(replace(trim(phone),
                       ' ', ''), '-', ''), '.', ''), '(', ''), ')', '') AS p
                   FROM customers WHERE deleted_at IS NULL AND phone IS NOT NULL) AS s) AS t
         WHERE a IN (SELECT value FROM json_each(?))"
    };
    on!(tx.conn(), |db, d| {
        let rows = sqlx::query(&d.sql(text))
            .bind(json_list(addresses)?)
            .fetch_all(&mut *db)
            .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    })
}

/// Where a page of entries ends, in listing order (time added, kind,
/// address): the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryKey {
    /// When it was added (Unix milliseconds).
    pub at_ms: i64,
    /// `email` or `phone`.
    pub kind: String,
    /// The address.
    pub address: String,
}

/// One page of the list, oldest first, optionally of one kind, after
/// `after` and at most `limit` (at least 1), with the key of the next page
/// (`None` on the last).
pub async fn page(
    store: &Store,
    kind: Option<&str>,
    after: Option<&EntryKey>,
    limit: i64,
) -> Result<(Vec<AddressSuppression>, Option<EntryKey>)> {
    let limit = limit.max(1);
    let mut rows: Vec<(AddressSuppression, EntryKey)> = on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql(
            "SELECT kind, address, reason, source, created_at FROM address_suppressions
             WHERE (?1 IS NULL OR kind = ?1)
               AND (?2 IS NULL OR (created_at, kind, address) > (?2, ?3, ?4))
             ORDER BY created_at, kind, address
             LIMIT ?5",
        ))
        .bind(kind)
        .bind(after.map(|k| k.at_ms))
        .bind(after.map(|k| k.kind.as_str()))
        .bind(after.map(|k| k.address.as_str()))
        .bind(limit.saturating_add(1))
        .fetch_all(db)
        .await?;
        anyhow::Ok(
            rows.iter()
                .map(|r| {
                    let key = EntryKey {
                        at_ms: r.get(4),
                        kind: r.get(0),
                        address: r.get(1),
                    };
                    (entry(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)), key)
                })
                .collect(),
        )
    })?;
    Ok(super::split_page(&mut rows, limit))
}

/// A row as a record.
fn entry(
    kind: String,
    address: String,
    reason: String,
    source: String,
    at: i64,
) -> AddressSuppression {
    AddressSuppression {
        kind,
        address,
        reason,
        source,
        at: from_millis(at),
    }
}
