//! The tick: one pass of the reminder path over what is due.
//!
//! ```text
//! claim ──► decide ──► deliver ──► record
//! due rows   still wanted?        plugin sends,    releases, deliveries,
//! under a    route, render,       concurrently,    inbox, tasks, next
//! lease      targeting, windows,  outside any      occurrences: one
//!            caps, rate limit     transaction      transaction
//! ```
//!
//! [`claim`] takes due occurrences under a lease and loads what deciding
//! needs; [`decide`] says for each what happens now (the same steps serve
//! `herald preview` and `explain`); [`deliver`] hands sends to their
//! channels' plugins; [`record`] writes every outcome and what follows.
//! Functions here borrow the deployment ([`Herald`]); none of them reads the
//! wall clock or writes SQL.

pub mod claim;
pub mod decide;
pub mod deliver;
pub mod record;

use crate::engine::Herald;
use crate::store::schedule;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Instant;

/// One recorded attempt, as `herald simulate` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt was made (UTC).
    pub at: DateTime<Utc>,
    /// The customer's external id.
    pub customer: String,
    /// The rule.
    pub rule: String,
    /// The channel used (empty when none was chosen).
    pub channel: String,
    /// delivered, failed, skipped, dead, suppressed or deferred.
    pub status: String,
    /// The rendered subject (empty when nothing was rendered).
    pub subject: String,
}

/// Claim and process one batch of due occurrences. Returns the attempts
/// made, in due order. An empty result means nothing was due.
///
/// The batch goes through in phases so the database sees a handful of
/// statements per tick rather than several per reminder: claim and load;
/// decide and render in memory; send through plugins concurrently (outside
/// any transaction); then record every outcome, inbox message and next
/// occurrence in one transaction.
pub async fn run(herald: &Herald) -> Result<Vec<AttemptRecord>> {
    Ok(step(herald).await?.unwrap_or_default())
}

/// [`run`], saying whether anything was claimed: `None` when nothing was
/// due, otherwise the attempts made (none when every claimed row was
/// canceled or put back to wait).
pub async fn step(herald: &Herald) -> Result<Option<Vec<AttemptRecord>>> {
    let now = herald.clock.now();
    // Wall time per phase, for `HERALD_LOG=herald::tick=debug`.
    let phase = Instant::now();
    let Some(claimed) = claim::claim(herald, now).await? else {
        return Ok(None);
    };
    let claim_ms = phase.elapsed().as_secs_f64() * 1e3;
    let phase = Instant::now();
    let mut work = decide::decide_claimed(herald, claimed.rows, &claimed.context, now).await;
    note_sends(herald, &mut work).await?;
    deliver::send_all(herald, &mut work, &claimed.context.customers, now).await;
    let decide_send_ms = phase.elapsed().as_secs_f64() * 1e3;
    let phase = Instant::now();
    let records = record::record(herald, &work, &claimed.context.customers, now).await;
    tracing::debug!(
        rows = work.len(),
        claim_ms,
        decide_send_ms,
        record_ms = phase.elapsed().as_secs_f64() * 1e3,
        "tick phases"
    );
    records.map(Some)
}

/// Run ticks until nothing is due at the current time.
pub async fn drain(herald: &Herald) -> Result<Vec<AttemptRecord>> {
    let mut all = Vec::new();
    while let Some(batch) = step(herald).await? {
        all.extend(batch);
    }
    Ok(all)
}

/// Before any plugin is called, note which claimed rows are about to go
/// out through one ([`schedule::mark_sending`]); if that fails, nothing is
/// sent and the claims come due again when their lease ends. A row whose
/// lease ran out meanwhile (this node was slow: another may hold it, or
/// its customer, now) is not sent but put back to come due at once.
async fn note_sends(herald: &Herald, work: &mut [decide::Work<'_>]) -> Result<()> {
    // Built-in channels (inbox, call list) deliver in the record
    // transaction itself: nothing leaves before it commits.
    let sends = |w: &decide::Work<'_>| matches!(&w.decision, decide::Decision::Send { channel, .. } if !channel.delivery.is_builtin());
    let sending: Vec<i64> = work.iter().filter(|w| sends(w)).map(|w| w.row.id).collect();
    let Some(token) = work.iter().find_map(|w| w.row.claim_token.clone()) else {
        return Ok(());
    };
    let now = herald.clock.now();
    let marked = schedule::mark_sending(&herald.store, &sending, &token, now).await?;
    for w in work
        .iter_mut()
        .filter(|w| sends(w) && !marked.contains(&w.row.id))
    {
        tracing::warn!(id = w.row.id, "this node's claim on a reminder ran out before it was sent; not sending it (it comes due again)");
        w.decision = decide::Decision::Wait(now);
    }
    Ok(())
}
