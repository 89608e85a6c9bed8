//! `herald import`: customers from CSV. The header names the fields
//! (`external_id,name,email,phone,wechat_openid,region,timezone,locale,state,created_at`)
//! and, for an app installation to register for push, `push_token`,
//! `push_platform` and `push_app` (all three, or none); any other column
//! becomes an attribute, typed by its declaration or, when
//! undeclared, by its look (ISO dates become dates). A bad row is reported by
//! line number and reason and skipped; the rest import.

use crate::customer::{
    infer_text, parse_date_or_datetime, AttributeSchema, CustomerPatch, DateOrTime, Device,
};
use crate::engine::{Herald, WriteError};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{IsTerminal, Read};

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Rows written.
    pub imported: usize,
    /// Rows skipped, with their line and reason.
    pub failed: Vec<(u64, String)>,
    /// Of the addresses written to the do-not-contact list, those no
    /// customer has yet (stored all the same).
    pub unknown: usize,
}

/// One CSV row: the customer's patch and the device it registers, if any.
#[derive(Debug, Default)]
pub struct ImportRow {
    /// What changes in the record.
    pub patch: CustomerPatch,
    /// `push_token`, `push_platform`, `push_app`.
    pub device: Option<[String; 3]>,
}

/// Build the patch (and device) of one CSV row.
pub fn read_row(
    headers: &[String],
    record: &csv::StringRecord,
    declared: &AttributeSchema,
) -> Result<ImportRow, String> {
    if record.len() != headers.len() {
        return Err(format!(
            "has {} fields but the header has {}",
            record.len(),
            headers.len()
        ));
    }
    let mut patch = CustomerPatch::default();
    let mut device: [Option<String>; 3] = Default::default();
    for (header, cell) in headers.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        let text = Some(Some(cell.to_string()));
        match header.as_str() {
            "external_id" => patch.external_id = cell.to_string(),
            "name" => patch.name = text,
            "email" => patch.email = text,
            "phone" => patch.phone = text,
            "wechat_openid" => patch.wechat_openid = text,
            "region" => patch.region = text,
            "timezone" => patch.timezone = Some(cell.to_string()),
            "locale" => patch.locale = text,
            "state" => patch.state = text,
            "push_token" => device[0] = Some(cell.to_string()),
            "push_platform" => device[1] = Some(cell.to_string()),
            "push_app" => device[2] = Some(cell.to_string()),
            "created_at" => {
                patch.created_at = Some(match parse_date_or_datetime(cell) {
                    Some(DateOrTime::Time(t)) => t,
                    Some(DateOrTime::Date(d)) => {
                        d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
                    }
                    None => {
                        return Err(format!(
                            "created_at `{cell}` is not a date (YYYY-MM-DD) or RFC 3339 timestamp"
                        ))
                    }
                })
            }
            attribute => {
                // Declared attributes are checked and typed by the merge;
                // undeclared ones are typed by their look.
                let value = if declared.contains_key(attribute) {
                    Value::String(cell.to_string())
                } else {
                    infer_text(cell)
                };
                patch.attributes.insert(attribute.to_string(), value);
            }
        }
    }
    if patch.external_id.is_empty() {
        return Err("external_id is empty".into());
    }
    let device = match device {
        [None, None, None] => None,
        [Some(token), Some(platform), Some(app)] => {
            Device::check(&token, &platform, &app)?;
            Some([token, platform, app])
        }
        _ => {
            return Err(
                "push_token, push_platform and push_app go together: fill all three or none".into(),
            )
        }
    };
    Ok(ImportRow { patch, device })
}

/// Write one row: the customer, then their device.
async fn write_row(herald: &Herald, row: &ImportRow) -> Result<(), WriteError> {
    herald.upsert_customer(&row.patch).await?;
    if let Some([token, platform, app]) = &row.device {
        herald
            .register_device(&row.patch.external_id, token, platform, app, None)
            .await?;
    }
    Ok(())
}

/// Import every row of a CSV file.
pub async fn import_csv(herald: &Herald, input: impl Read) -> Result<ImportReport> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(UnixLines::new(input));
    let headers: Vec<String> = reader
        .headers()
        .context("cannot read the CSV header")?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if !headers.iter().any(|h| h == "external_id") {
        bail!(
            "the CSV header has no `external_id` column (header: {})",
            headers.join(",")
        );
    }
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} rows {per_sec} {msg}")
                .expect("template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = ImportReport::default();
    for result in reader.records() {
        let (line, outcome) = match result {
            Err(e) => (
                e.position().map(|p| p.line()).unwrap_or(0),
                Err(format!("unreadable row: {e}")),
            ),
            Ok(record) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                let outcome = match read_row(&headers, &record, &herald.strategy.attributes) {
                    Err(e) => Err(e),
                    Ok(row) => match write_row(herald, &row).await {
                        Ok(_) => Ok(()),
                        Err(WriteError::Internal(e)) => {
                            return Err(e.context(format!("line {line}")))
                        }
                        Err(e) => Err(e.to_string()),
                    },
                };
                (line, outcome)
            }
        };
        match outcome {
            Ok(()) => report.imported += 1,
            Err(reason) => {
                progress.suspend(|| eprintln!("line {line}: {reason}"));
                report.failed.push((line, reason));
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(report)
}

/// Reads CRLF line endings (what spreadsheets write) as LF, so the csv
/// reader's line numbers are the file's own: it counts a row's line before
/// it has consumed the `\n` of a preceding `\r\n`.
pub struct UnixLines<R> {
    inner: R,
    /// A `\r` read at the end of the last chunk, not yet known to end a line.
    pending_cr: bool,
    /// Converted bytes not yet handed out, from `ready_at`.
    ready: Vec<u8>,
    ready_at: usize,
    buf: Vec<u8>,
}

impl<R: Read> UnixLines<R> {
    /// Wrap a reader.
    pub fn new(inner: R) -> Self {
        UnixLines {
            inner,
            pending_cr: false,
            ready: Vec::new(),
            ready_at: 0,
            buf: vec![0; 64 * 1024],
        }
    }
}

impl<R: Read> Read for UnixLines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.ready_at == self.ready.len() {
            self.ready.clear();
            self.ready_at = 0;
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                if std::mem::take(&mut self.pending_cr) {
                    self.ready.push(b'\r');
                    break;
                }
                return Ok(0);
            }
            for &b in &self.buf[..n] {
                if std::mem::take(&mut self.pending_cr) && b != b'\n' {
                    self.ready.push(b'\r');
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    self.ready.push(b);
                }
            }
        }
        let n = out.len().min(self.ready.len() - self.ready_at);
        out[..n].copy_from_slice(&self.ready[self.ready_at..self.ready_at + n]);
        self.ready_at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod unix_lines_tests {
    use super::*;

    fn convert(input: &[u8], chunk: usize) -> Vec<u8> {
        struct Chunked<'a>(&'a [u8], usize);
        impl Read for Chunked<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        let mut reader = UnixLines::new(Chunked(input, chunk));
        // Tiny reads too.
        let mut byte = [0u8; 1];
        while reader.read(&mut byte).unwrap() == 1 {
            out.push(byte[0]);
        }
        out
    }

    #[test]
    fn crlf_becomes_lf_across_chunk_boundaries() {
        let input = b"a,b\r\nc\r\n\"x\ry\"\r\n\r";
        for chunk in 1..8 {
            assert_eq!(
                convert(input, chunk),
                b"a,b\nc\n\"x\ry\"\n\r",
                "chunk {chunk}"
            );
        }
    }
}
