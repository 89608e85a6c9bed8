//! `herald suppressions --import FILE.csv`: a suppression list from another
//! system (a provider's opt-out export, a do-not-contact list). Header
//! `customer,channel,reason` — or `email` / `phone` instead of `customer`
//! to suppress every customer with that address on the channel. Without a
//! `channel` column, `email` / `phone` rows are a do-not-contact list by
//! address ([`super::addresses`]). A bad row is reported by line and
//! reason and skipped; the rest import, in one transaction.

use super::ImportReport;
use crate::config::AddressKind;
use crate::engine::Herald;
use crate::store::customers::{self, Address};
use crate::store::suppressions::{self, source};
use anyhow::{bail, Context, Result};
use std::io::Read;

/// Import a suppression list.
pub async fn import_csv(herald: &Herald, input: impl Read) -> Result<ImportReport> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers: Vec<String> = reader
        .headers()
        .context("cannot read the CSV header")?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    if col("customer").is_none()
        && col("channel").is_none()
        && (col("email").is_some() || col("phone").is_some())
    {
        return super::addresses::import_rows(herald, reader, &headers).await;
    }
    let key = match (col("customer"), col("email"), col("phone")) {
        (Some(i), _, _) => (i, None),
        (None, Some(i), _) => (i, Some(AddressKind::Email)),
        (None, None, Some(i)) => (i, Some(AddressKind::Phone)),
        _ => bail!("the header needs a `customer` (external id), `email` or `phone` column, and `channel`; e.g. customer,channel,reason (or email,phone,reason without `channel` for a do-not-contact list by address)"),
    };
    let Some(channel_col) = col("channel") else {
        bail!("the header needs a `channel` column; e.g. customer,channel,reason");
    };
    let reason_col = col("reason");
    let now = herald.clock.now();
    let mut report = ImportReport::default();
    let mut tx = herald.store.write().await?;
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.failed.push((line, format!("cannot read: {e}")));
                continue;
            }
        };
        let who = record.get(key.0).unwrap_or("").to_string();
        let channel = record.get(channel_col).unwrap_or("").to_string();
        if who.is_empty() || channel.is_empty() {
            report
                .failed
                .push((line, "needs a customer (or address) and a channel".into()));
            continue;
        }
        if herald.channels.get(&channel).is_none() {
            report
                .failed
                .push((line, format!("channel `{channel}` is not configured")));
            continue;
        }
        // An address covers every customer who has it.
        let customer_ids = match key.1 {
            None => customers::by_external_id(&mut tx, &who)
                .await?
                .map(|c| c.id)
                .into_iter()
                .collect(),
            Some(AddressKind::Email) => {
                customers::ids_by_address(&mut tx, Address::Email(&who)).await?
            }
            Some(_) => customers::ids_by_address(&mut tx, Address::Phone(&who)).await?,
        };
        if customer_ids.is_empty() {
            let hint = if key.1.is_some() {
                " (leave out the `channel` column to put addresses no customer has yet on the do-not-contact list)"
            } else {
                ""
            };
            report
                .failed
                .push((line, format!("no customer `{who}`{hint}")));
            continue;
        }
        let reason = reason_col
            .and_then(|c| record.get(c))
            .filter(|r| !r.is_empty())
            .unwrap_or("imported suppression list");
        for customer_id in customer_ids {
            suppressions::add(&mut tx, customer_id, &channel, reason, source::IMPORT, now).await?;
        }
        report.imported += 1;
    }
    tx.commit().await?;
    Ok(report)
}
