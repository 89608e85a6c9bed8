//! The SQLite floor: the least SQL a tick has to run for each due row on
//! Herald's schema, run straight on SQLite's C API (no driver, no claim, no
//! decisions, no rendering, no planning), so `herald bench` can print how
//! far the real tick (`plan_rows_per_s`) or a simulation
//! (`simulate_customer_years_per_s`) is from what the storage itself allows
//! on this machine, measured in the same run.
//!
//! On a database the caller may throw away, one write transaction: read the
//! due rows through `schedule_due`, read their customers, and for every row
//! mark it done and insert its delivery — and for [`Work::Reminder`] also its
//! inbox message and its next occurrence a year later — in customer order
//! (the cheapest order for the b-trees); then commit. [`Journal::Wal`] runs
//! with the engine's settings (WAL, `synchronous = NORMAL`); a simulation's
//! scratch database needs no durability, so [`Journal::Scratch`] keeps the
//! journal in memory and never syncs. Both: 64 MiB page cache, foreign keys
//! on.

use super::raw::Owned;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;

/// What one floor run measured.
pub struct Floor {
    /// Due rows processed.
    pub rows: u64,
    /// Wall seconds of the transaction, commit included.
    pub seconds: f64,
}

/// One due row as the floor reads it.
struct Due {
    id: i64,
    customer_id: i64,
    rule: String,
    key: String,
    occurs_at: i64,
    anchor: String,
}

const YEAR_MS: i64 = 365 * 86_400_000;

/// What each due row costs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A tick's renewal reminder to the inbox: done, delivery, inbox
    /// message, next occurrence.
    Reminder,
    /// The least any recorded attempt needs: done and its delivery.
    Attempt,
}

/// How the database keeps its changes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// As the engine runs: WAL, `synchronous = NORMAL`.
    Wal,
    /// As a throw-away database may: journal in memory, no syncs.
    Scratch,
}

/// Run the floor on `db_path` (a copy the caller may throw away): every row
/// due at `now_ms`, at most `limit` of them.
pub fn run(db_path: &Path, now_ms: i64, limit: i64, work: Work, journal: Journal) -> Result<Floor> {
    let owned = Owned::open(db_path)?;
    let db = owned.conn();
    // The engine that wrote the file may still be closing its connections
    // (a pool closes in the background): wait for them rather than fail.
    db.exec("PRAGMA busy_timeout = 10000")?;
    db.exec(match journal {
        Journal::Wal => "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        Journal::Scratch => "PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;",
    })?;
    db.exec("PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;")?;
    let started = Instant::now();
    db.exec("BEGIN IMMEDIATE")?;
    let mut due = Vec::new();
    let mut select = db.prepare(
        "SELECT id, customer_id, rule_id, occurrence_key, occurs_at, anchor FROM schedule
         WHERE status = 'pending' AND due_at <= ?1 ORDER BY due_at LIMIT ?2",
    )?;
    let mut rows = select.query(&[now_ms.into(), limit.into()])?;
    while rows.step()? {
        due.push(Due {
            id: rows.int(0),
            customer_id: rows.int(1),
            rule: rows.text(2).unwrap_or_default(),
            key: rows.text(3).unwrap_or_default(),
            occurs_at: rows.int(4),
            anchor: rows.text(5).unwrap_or_default(),
        });
    }
    drop(rows);
    due.sort_by_key(|d| d.customer_id);
    let mut names = Vec::with_capacity(due.len());
    let mut customer = db.prepare(
        "SELECT id, external_id, name, email, phone, wechat_openid, region, timezone, locale,
                state, attributes, created_at, updated_at, deleted_at FROM customers WHERE id = ?1",
    )?;
    for d in &due {
        let mut row = customer.query(&[d.customer_id.into()])?;
        if !row.step()? {
            bail!(
                "customer {} of schedule row {} is missing",
                d.customer_id,
                d.id
            );
        }
        let columns: Vec<Option<String>> = (1..11).map(|c| row.text(c)).collect();
        names.push(columns[1].clone().unwrap_or_default());
    }
    let mut done = db.prepare(
        "UPDATE schedule SET status = 'done', attempts = attempts + 1, claim_token = NULL, updated_at = ?2
         WHERE id = ?1",
    )?;
    let mut delivery = db.prepare(
        "INSERT INTO deliveries (schedule_id, customer_id, rule_id, channel, provider, attempt, status,
                                 provider_message_id, subject, at)
         VALUES (?1, ?2, ?3, 'inbox', 'inbox', 1, 'delivered', ?4, ?5, ?6)",
    )?;
    let mut inbox = db.prepare(
        "INSERT INTO inbox (customer_id, occurrence_key, rule_id, subject, text, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut next = db.prepare(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor,
                               created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4, 'pending', ?5, ?6, ?6)",
    )?;
    for (d, name) in due.iter().zip(&names) {
        let subject = format!("Your plan renews soon, {name}");
        let text = format!("Hello {name}, your plan renews on {}.", d.anchor);
        let message_id = format!("inbox:{}", d.key);
        let next_at = d.occurs_at + YEAR_MS;
        let next_key = format!("{}:{}:next-{next_at}", d.customer_id, d.rule);
        let rule = d.rule.as_str();
        done.run(&[d.id.into(), now_ms.into()])?;
        delivery.run(&[
            d.id.into(),
            d.customer_id.into(),
            rule.into(),
            message_id.as_str().into(),
            subject.as_str().into(),
            now_ms.into(),
        ])?;
        if work == Work::Attempt {
            continue;
        }
        inbox.run(&[
            d.customer_id.into(),
            d.key.as_str().into(),
            rule.into(),
            subject.as_str().into(),
            text.as_str().into(),
            now_ms.into(),
        ])?;
        next.run(&[
            d.customer_id.into(),
            rule.into(),
            next_key.as_str().into(),
            next_at.into(),
            d.anchor.as_str().into(),
            now_ms.into(),
        ])?;
    }
    drop((select, customer, done, delivery, inbox, next));
    db.exec("COMMIT").context("the floor's commit failed")?;
    Ok(Floor {
        rows: due.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}
