//! A do-not-contact list by address from a CSV file: header with `email`
//! and/or `phone` (and optionally `reason`), no `customer` or `channel`
//! column. Each non-empty cell goes on the list in its normalised form
//! ([`crate::address`]), whether or not a customer has it yet (those are
//! counted in [`ImportReport::unknown`]). A row with an address that cannot
//! be normalised is refused whole, with its line and what to fix; the rest
//! import, in one transaction.

use super::ImportReport;
use crate::address::{self, Kind};
use crate::engine::Herald;
use crate::store::address_suppressions::{self as list, source};
use anyhow::Result;
use std::collections::BTreeSet;
use std::io::Read;

/// Import the rows of `reader` (its header already read as `headers`,
/// lower-cased).
pub async fn import_rows(
    herald: &Herald,
    mut reader: csv::Reader<impl Read>,
    headers: &[String],
) -> Result<ImportReport> {
    let col = |name: &str| headers.iter().position(|h| h == name);
    let columns: Vec<(Kind, usize)> = [(Kind::Email, col("email")), (Kind::Phone, col("phone"))]
        .into_iter()
        .filter_map(|(kind, c)| Some((kind, c?)))
        .collect();
    let reason_col = col("reason");
    let now = herald.clock.now();
    let mut report = ImportReport::default();
    let mut written: [BTreeSet<String>; 2] = Default::default();
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
        let entries = match row_addresses(&record, &columns) {
            Ok(entries) => entries,
            Err(why) => {
                report.failed.push((line, why));
                continue;
            }
        };
        let reason = reason_col
            .and_then(|c| record.get(c))
            .filter(|r| !r.is_empty())
            .unwrap_or("imported do-not-contact list");
        for (kind, addr) in entries {
            list::add(&mut tx, kind.as_str(), &addr, reason, source::IMPORT, now).await?;
            written[kind as usize].insert(addr);
            report.imported += 1;
        }
    }
    for kind in [Kind::Email, Kind::Phone] {
        let mine: Vec<&str> = written[kind as usize].iter().map(String::as_str).collect();
        let known = list::known(&mut tx, kind.as_str(), &mine).await?;
        report.unknown += mine.iter().filter(|a| !known.contains(**a)).count();
    }
    tx.commit().await?;
    Ok(report)
}

/// The normalised addresses of one row, or what to fix: at least one, and
/// every non-empty cell must normalise.
fn row_addresses(
    record: &csv::StringRecord,
    columns: &[(Kind, usize)],
) -> Result<Vec<(Kind, String)>, String> {
    let mut out = Vec::new();
    for (kind, c) in columns {
        let raw = record.get(*c).unwrap_or("");
        if raw.is_empty() {
            continue;
        }
        out.push((*kind, address::normalise(*kind, raw)?));
    }
    if out.is_empty() {
        return Err("no address: fill the `email` or `phone` cell".into());
    }
    Ok(out)
}
