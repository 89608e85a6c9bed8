//! What one tick writes when its sends are done, in one transaction: claim
//! releases, delivery rows, inbox messages, staff tasks, next occurrences,
//! cancellations, suppressions and push tokens the provider no longer knows. On SQLite the bulk goes straight through
//! its C API on the transaction's own connection ([`super::raw`]): per row,
//! the driver's hand-over between threads cost more than the b-tree work
//! (see docs/performance.md). On PostgreSQL each table's rows are one
//! statement.

use super::address_suppressions::{self, NewAddressSuppression};
use super::deliveries::{self, NewDelivery};
use super::devices;
use super::inbox::{self, NewMessage};
use super::schedule::{self, Cancel, PlannedOccurrence, Release};
use super::suppressions::{self, NewSuppression};
use super::tasks::{self, NewTask};
use super::{raw, retry, On, Store, Tx};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

/// Everything a tick records.
#[derive(Debug, Default)]
pub struct TickWrites<'a> {
    /// How each claimed occurrence leaves the tick.
    pub releases: Vec<Release>,
    /// One row per attempt (and per deferral or skip).
    pub deliveries: Vec<NewDelivery<'a>>,
    /// Messages of the built-in inbox channel.
    pub messages: Vec<NewMessage<'a>>,
    /// Entries of the built-in call list.
    pub tasks: Vec<NewTask<'a>>,
    /// Follow-up steps and next occurrences of repeating rules.
    pub next: Vec<PlannedOccurrence>,
    /// Pending occurrences that fired rules no longer want.
    pub cancels: Vec<Cancel>,
    /// Recipients who refused a channel at the provider.
    pub suppressions: Vec<NewSuppression<'a>>,
    /// Push tokens a provider said do not exist: (customer row id, tokens).
    pub dead_devices: Vec<(i64, Vec<&'a str>)>,
    /// Emails and phone numbers a provider said do not exist: onto the
    /// do-not-contact list.
    pub dead_addresses: Vec<NewAddressSuppression>,
}

impl<'a> TickWrites<'a> {
    /// The writes split by customer, in customer order, so that when the
    /// tick's one transaction fails, each customer's can be recorded on its
    /// own and one bad row fails alone.
    pub fn split_by_customer(self) -> Vec<(i64, TickWrites<'a>)> {
        let mut parts: std::collections::BTreeMap<i64, TickWrites<'a>> = Default::default();
        for r in self.releases {
            parts.entry(r.customer_id).or_default().releases.push(r);
        }
        for d in self.deliveries {
            parts.entry(d.customer_id).or_default().deliveries.push(d);
        }
        for m in self.messages {
            parts.entry(m.customer_id).or_default().messages.push(m);
        }
        for t in self.tasks {
            parts.entry(t.customer_id).or_default().tasks.push(t);
        }
        for o in self.next {
            parts.entry(o.customer_id).or_default().next.push(o);
        }
        for c in self.cancels {
            parts.entry(c.customer_id).or_default().cancels.push(c);
        }
        for s in self.suppressions {
            parts.entry(s.customer_id).or_default().suppressions.push(s);
        }
        for (customer_id, tokens) in self.dead_devices {
            let part = parts.entry(customer_id).or_default();
            part.dead_devices.push((customer_id, tokens));
        }
        for a in self.dead_addresses {
            parts
                .entry(a.customer_id)
                .or_default()
                .dead_addresses
                .push(a);
        }
        parts.into_iter().collect()
    }
}

/// Write a tick's outcome in one transaction. Returns how many claims were
/// released: fewer than asked means some leases ran out during the sends
/// (another process may have taken those rows; their releases are skipped).
pub async fn record(store: &Store, writes: &mut TickWrites<'_>, now: DateTime<Utc>) -> Result<u64> {
    // Written in customer order (stable: one customer's rows keep their
    // order), so each index is walked front to back instead of at random
    // places: ~40% less b-tree work for large batches (docs/performance.md).
    writes.deliveries.sort_by_key(|d| d.customer_id);
    writes.messages.sort_by_key(|m| m.customer_id);
    writes.next.sort_by_key(|o| o.customer_id);
    writes.cancels.sort_by_key(|c| c.customer_id);
    let writes = &*writes;
    retry::retrying("recording the tick", retry::is_transient, || {
        record_once(store, writes, now)
    })
    .await
}

async fn record_once(store: &Store, writes: &TickWrites<'_>, now: DateTime<Utc>) -> Result<u64> {
    let mut tx = store.write().await?;
    let released = bulk(&mut tx, writes, now)
        .await
        .context("cannot record the tick")?;
    tasks::add_many(&mut tx, &writes.tasks, now).await?;
    schedule::cancel_rules_many(&mut tx, &writes.cancels, now).await?;
    for s in &writes.suppressions {
        suppressions::add(&mut tx, s.customer_id, s.channel, &s.reason, s.source, now).await?;
    }
    for (customer_id, tokens) in &writes.dead_devices {
        devices::remove(&mut tx, *customer_id, tokens).await?;
    }
    for a in &writes.dead_addresses {
        address_suppressions::add(&mut tx, a.kind, &a.address, &a.reason, a.source, now).await?;
    }
    tx.commit().await?;
    Ok(released)
}

/// Release claimed rows and nothing else, in one transaction: what is left
/// to do for a customer whose tick writes could not be recorded. Returns
/// the ids released.
pub async fn release_only(
    store: &Store,
    releases: &[schedule::Release],
    now: DateTime<Utc>,
) -> Result<std::collections::HashSet<i64>> {
    let mut tx = store.write().await?;
    let released = match tx.conn() {
        On::Sqlite(conn) => {
            let mut handle = conn.lock_handle().await?;
            // SAFETY: as in `bulk`.
            let conn = unsafe { raw::Conn::new(handle.as_raw_handle()) };
            raw::blocking(|| schedule::release_many(conn, releases, now))?
        }
        On::Postgres(conn) => schedule::release_many_pg(conn, releases, now).await?,
    };
    tx.commit().await?;
    Ok(released)
}

/// The per-row writes: through SQLite's C API, or as one statement per
/// table on PostgreSQL (typed arrays). Claims are released first, and only
/// the attempts of rows still ours are recorded: a row whose lease ran out
/// during its send was claimed again elsewhere, and that node records it
/// (its other writes — inbox message, call-list entry, next occurrence,
/// suppression — are keyed and written once whoever writes them).
async fn bulk(tx: &mut Tx, writes: &TickWrites<'_>, now: DateTime<Utc>) -> Result<u64> {
    let ours = |released: &std::collections::HashSet<i64>| -> Vec<NewDelivery<'_>> {
        writes
            .deliveries
            .iter()
            .filter(|d| released.contains(&d.schedule_id))
            .cloned()
            .collect()
    };
    match tx.conn() {
        On::Sqlite(conn) => {
            let mut handle = conn.lock_handle().await?;
            // SAFETY: the locked handle keeps the connection open and ours
            // until it drops, after the raw statements are finalized.
            let conn = unsafe { raw::Conn::new(handle.as_raw_handle()) };
            raw::blocking(|| -> Result<u64> {
                let released = schedule::release_many(conn, &writes.releases, now)?;
                if released.len() == writes.releases.len() {
                    deliveries::insert_many(conn, &writes.deliveries)?;
                } else {
                    deliveries::insert_many(conn, &ours(&released))?;
                }
                inbox::deliver_many(conn, &writes.messages, now)?;
                schedule::upsert_many(conn, &writes.next, now)?;
                Ok(released.len() as u64)
            })
        }
        On::Postgres(conn) => {
            let released = schedule::release_many_pg(conn, &writes.releases, now).await?;
            if released.len() == writes.releases.len() {
                deliveries::insert_many_pg(conn, &writes.deliveries).await?;
            } else {
                deliveries::insert_many_pg(conn, &ours(&released)).await?;
            }
            inbox::deliver_many_pg(conn, &writes.messages, now).await?;
            schedule::upsert_many_pg(conn, &writes.next, now).await?;
            Ok(released.len() as u64)
        }
    }
}
