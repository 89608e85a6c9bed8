//! Who is in a segment now: the live customers (within a staff caller's
//! regions) whose record and event history meet the segment's condition,
//! counted or listed a page at a time. Reads only; one pass over the base in
//! pages of [`PAGE`] customers, each page's events in one statement.

use super::writes::{in_scope, RegionScope, WriteError};
use super::Herald;
use crate::customer::Customer;
use crate::store::customers::{self, CustomerFilter};
use crate::store::events;
use chrono::{DateTime, Utc};

/// Customers read per statement while walking the base.
const PAGE: i64 = 500;

/// One page of a segment's members.
#[derive(Debug, Clone)]
pub struct Members {
    /// The members, by external id.
    pub customers: Vec<Customer>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next_after: Option<String>,
}

impl Herald {
    /// How many customers within `scope` are in segment `name` at `at`.
    pub async fn segment_count(
        &self,
        name: &str,
        scope: RegionScope<'_>,
        at: DateTime<Utc>,
    ) -> Result<u64, WriteError> {
        let mut count = 0u64;
        self.walk_segment(name, scope, at, None, |_| {
            count += 1;
            true
        })
        .await?;
        Ok(count)
    }

    /// Up to `limit` members of segment `name` at `at` within `scope`, by
    /// external id, after `after`.
    pub async fn segment_members(
        &self,
        name: &str,
        scope: RegionScope<'_>,
        at: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Members, WriteError> {
        let mut found = Vec::new();
        let limit = limit.max(1);
        let last = self
            .walk_segment(name, scope, at, after, |c| {
                found.push(c.clone());
                found.len() < limit
            })
            .await?;
        let next_after = last.filter(|_| found.len() >= limit);
        Ok(Members {
            customers: found,
            next_after,
        })
    }

    /// Call `member` for each member in external-id order from `after` until
    /// it returns false; the external id it stopped at, if it stopped.
    async fn walk_segment(
        &self,
        name: &str,
        scope: RegionScope<'_>,
        at: DateTime<Utc>,
        after: Option<&str>,
        mut member: impl FnMut(&Customer) -> bool,
    ) -> Result<Option<String>, WriteError> {
        if self.strategy.segment(name).is_none() {
            let known: Vec<&str> = self
                .strategy
                .segments
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(WriteError::Invalid(format!(
                "no segment `{name}`; segments: {}",
                if known.is_empty() {
                    "none (declare one under [segments.NAME])".into()
                } else {
                    known.join(", ")
                }
            )));
        }
        let mut filter = CustomerFilter {
            limit: PAGE,
            after: after.map(str::to_string),
            scope: scope.map(<[String]>::to_vec),
            ..Default::default()
        };
        loop {
            let mut tx = self.store.read().await?;
            let page = customers::list(&mut tx, &filter).await?;
            let ids: Vec<i64> = page.iter().map(|c| c.id).collect();
            let mut histories = events::histories(&mut tx, &ids).await?;
            drop(tx);
            for customer in &page {
                if !in_scope(scope, customer.region.as_deref()) {
                    continue;
                }
                let history = histories.remove(&customer.id).unwrap_or_default();
                let holds = self
                    .strategy
                    .in_segment(name, customer, at, &history)
                    .map_err(|e| {
                        WriteError::Invalid(format!("customer `{}`: {e}", customer.external_id))
                    })?;
                if holds && !member(customer) {
                    return Ok(Some(customer.external_id.clone()));
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => {
                    filter.after = Some(last.external_id.clone())
                }
                _ => return Ok(None),
            }
        }
    }
}
