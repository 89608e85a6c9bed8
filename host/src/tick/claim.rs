//! Claim: due occurrences taken under a lease (they stay pending with their
//! due time moved to the lease's end, so a process that dies leaves them to
//! come due again), and what deciding needs about their customers, read in
//! one go: the records, their suppressions (their own and their addresses
//! on the do-not-contact list: [`refusals`], explain's too), their topic
//! opt-outs, their recent sends for the caps.

use crate::address;
use crate::channels::Refusals;
use crate::customer::Customer;
use crate::engine::Herald;
use crate::store::schedule::{self, ScheduledRow};
use crate::store::{address_suppressions, customers, deliveries, preferences, suppressions};
use crate::strategy::caps::Sent;
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// What deciding reads about the claimed rows' customers.
#[derive(Debug, Default)]
pub struct Context {
    /// The customers, by row id (deleted ones included).
    pub customers: HashMap<i64, Customer>,
    /// The channels each customer refused and their addresses on the
    /// do-not-contact list (customers with neither are absent).
    pub suppressed: HashMap<i64, Refusals>,
    /// The topics each customer turned off (read only when the strategy
    /// has topics).
    pub opted_out: HashMap<i64, HashSet<String>>,
    /// The reminders each customer received recently that count towards
    /// the frequency caps (transactional rules do not count).
    pub history: HashMap<i64, Vec<Sent>>,
    /// Claimed rows whose previous claim ran out without a release (a node
    /// died holding them): their last attempt may have reached the
    /// provider, so they count towards the caps as sent.
    pub in_doubt: std::collections::HashSet<i64>,
}

/// A claimed batch.
#[derive(Debug)]
pub struct Claimed {
    /// The rows, in due order.
    pub rows: Vec<ScheduledRow>,
    /// What deciding needs about them.
    pub context: Context,
}

static CLAIMS: AtomicU64 = AtomicU64::new(0);

/// Claim up to a batch of occurrences due at `now` and load their context;
/// `None` when nothing is due.
pub async fn claim(herald: &Herald, now: DateTime<Utc>) -> Result<Option<Claimed>> {
    let lease_until = now + Duration::from_std(herald.scheduler.lease)?;
    let token = format!(
        "{}-{}",
        herald.instance,
        CLAIMS.fetch_add(1, Ordering::Relaxed)
    );
    let (rows, in_doubt) = schedule::claim_due_in_doubt(
        &herald.store,
        now,
        lease_until,
        herald.scheduler.batch,
        &token,
    )
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.customer_id).collect();
    let claimed: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut context = Context::load_claimed(herald, &ids, now, &claimed).await?;
    context.in_doubt = in_doubt;
    Ok(Some(Claimed { rows, context }))
}

impl Context {
    /// The context of these customers at `now`.
    pub async fn load(herald: &Herald, ids: &[i64], now: DateTime<Utc>) -> Result<Context> {
        Self::load_claimed(herald, ids, now, &[]).await
    }

    /// [`Context::load`] for a claim of these schedule rows: their own
    /// sends in doubt are left out of the cap history (the claim decides
    /// them), other claims' are counted.
    pub async fn load_claimed(
        herald: &Herald,
        ids: &[i64],
        now: DateTime<Utc>,
        claimed: &[i64],
    ) -> Result<Context> {
        let mut tx = herald.store.read().await?;
        let customers = customers::by_ids(&mut tx, ids).await?;
        let suppressed = refusals(&mut tx, &customers).await?;
        let opted_out = if herald.strategy.topics.is_empty() {
            HashMap::new()
        } else {
            preferences::opted_out(&mut tx, ids).await?
        };
        let history = cap_history(herald, &mut tx, ids, now, claimed).await?;
        Ok(Context {
            customers,
            suppressed,
            opted_out,
            history,
            in_doubt: Default::default(),
        })
    }
}

/// What keeps each of `customers` off channels: their suppressions and
/// their addresses on the do-not-contact list, in two queries for the
/// whole batch (addresses normalised here with [`address`], the list's own
/// form). The tick, preview and explain all route with this.
pub async fn refusals(
    tx: &mut crate::store::Tx,
    customers: &HashMap<i64, Customer>,
) -> Result<HashMap<i64, Refusals>> {
    let ids: Vec<i64> = customers.keys().copied().collect();
    let mut out: HashMap<i64, Refusals> = suppressions::for_customers(tx, &ids)
        .await?
        .into_iter()
        .map(|(id, channels)| {
            (
                id,
                Refusals {
                    channels,
                    addresses: Vec::new(),
                },
            )
        })
        .collect();
    let mut mine: Vec<(i64, &'static str, String)> = Vec::new();
    for c in customers.values() {
        if let Some(email) = c.email.as_deref().and_then(|e| address::email(e).ok()) {
            mine.push((c.id, "email", email));
        }
        if let Some(phone) = c.phone.as_deref().and_then(|p| address::phone(p).ok()) {
            mine.push((c.id, "phone", phone));
        }
    }
    let of = |kind: &str| -> Vec<&str> {
        let set: HashSet<&str> = mine
            .iter()
            .filter(|m| m.1 == kind)
            .map(|m| m.2.as_str())
            .collect();
        set.into_iter().collect()
    };
    let listed = address_suppressions::for_addresses(tx, &of("email"), &of("phone")).await?;
    if listed.is_empty() {
        return Ok(out);
    }
    let by_address: HashMap<(&str, &str), _> = listed
        .iter()
        .map(|e| ((e.kind.as_str(), e.address.as_str()), e))
        .collect();
    for (id, kind, addr) in &mine {
        if let Some(entry) = by_address.get(&(*kind, addr.as_str())) {
            out.entry(*id).or_default().addresses.push((*entry).clone());
        }
    }
    Ok(out)
}

/// The reminders each customer received within the longest cap's period,
/// leaving out transactional rules.
async fn cap_history(
    herald: &Herald,
    tx: &mut crate::store::Tx,
    ids: &[i64],
    now: DateTime<Utc>,
    claimed: &[i64],
) -> Result<HashMap<i64, Vec<Sent>>> {
    let strategy = &herald.strategy;
    let Some(longest) = strategy.caps.iter().map(|c| c.per).max() else {
        return Ok(HashMap::new());
    };
    let recent = deliveries::recent_sends(tx, ids, now - longest, claimed).await?;
    Ok(recent
        .into_iter()
        .map(|(id, sends)| {
            let counted = sends
                .into_iter()
                .filter(|(rule, _, _)| strategy.rule(rule).is_none_or(|r| !r.transactional))
                .map(|(_, channel, at)| Sent { at, channel })
                .collect();
            (id, counted)
        })
        .collect())
}
