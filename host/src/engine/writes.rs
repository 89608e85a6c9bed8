//! The writes that change customers — upsert, delete, event — each in one
//! write transaction that also re-plans that customer's reminders
//! ([`crate::plan::reconcile`]); region scopes checked inside it; and the
//! lookups the HTTP edge and the tools need around them.

use super::Herald;
use crate::customer::{Customer, CustomerPatch, Device};
use crate::plan::{self, Change};
use crate::store::suppressions::{self, source};
use crate::store::{customers, devices, events, retry};
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Which customers a write may touch: `None`, every one; `Some(regions)`,
/// only customers whose region is one of these (a staff token's regions).
pub type RegionScope<'a> = Option<&'a [String]>;

/// Whether a customer in `region` is within `scope`.
pub fn in_scope(scope: RegionScope<'_>, region: Option<&str>) -> bool {
    match scope {
        None => true,
        Some(regions) => region.is_some_and(|r| regions.iter().any(|mine| mine == r)),
    }
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The input was wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// No such customer.
    #[error("no customer with external_id `{0}`")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A storage failure that was a lost race with a concurrent transaction.
fn lost_race(e: &WriteError) -> bool {
    matches!(e, WriteError::Internal(e) if retry::is_transient(e))
}

/// What an upsert naming a deleted customer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Create them again (admin and staff writes, imports, simulations).
    Revive,
    /// Refuse the write (a feeding system's ingest token).
    Refuse,
}

/// An event to record.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The customer's external id.
    #[schema(min_length = 1, max_length = 256, pattern = "\\S")]
    pub customer: String,
    /// Event kind (not blank).
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub kind: String,
    /// When it happened (default: now).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Properties.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Optional id that makes ingestion idempotent.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub event_id: Option<String>,
}

/// The result of an upsert.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UpsertOutcome {
    /// The record as stored.
    pub customer: Customer,
    /// Whether it was new.
    pub created: bool,
    /// What changed.
    pub changed: Vec<String>,
}

impl Herald {
    /// Insert or update a customer and re-plan their reminders.
    pub async fn upsert_customer(
        &self,
        patch: &CustomerPatch,
    ) -> Result<UpsertOutcome, WriteError> {
        self.upsert_customer_in(patch, None).await
    }

    /// [`Herald::upsert_customer`] limited to a region scope, checked inside
    /// the write's transaction: a customer (live or deleted) outside the
    /// scope is a `NotFound`, and the result must stay within it.
    pub async fn upsert_customer_in(
        &self,
        patch: &CustomerPatch,
        scope: RegionScope<'_>,
    ) -> Result<UpsertOutcome, WriteError> {
        self.upsert_customer_as(patch, scope, Deleted::Revive).await
    }

    /// [`Herald::upsert_customer_in`], saying what a write naming a
    /// deleted customer does: a feeding system (an ingest token) may not
    /// bring back someone an operator deleted.
    pub async fn upsert_customer_as(
        &self,
        patch: &CustomerPatch,
        scope: RegionScope<'_>,
        deleted: Deleted,
    ) -> Result<UpsertOutcome, WriteError> {
        retry::retrying("a customer write", lost_race, || {
            self.upsert_once(patch, scope, deleted)
        })
        .await
    }

    async fn upsert_once(
        &self,
        patch: &CustomerPatch,
        scope: RegionScope<'_>,
        deleted: Deleted,
    ) -> Result<UpsertOutcome, WriteError> {
        let now = self.clock.now();
        let mut tx = self.store.write().await?;
        let existing = customers::by_external_id(&mut tx, patch.external_id.trim()).await?;
        if existing
            .as_ref()
            .is_some_and(|c| !in_scope(scope, c.region.as_deref()))
        {
            return Err(WriteError::NotFound(patch.external_id.trim().to_string()));
        }
        if deleted == Deleted::Refuse && existing.as_ref().is_some_and(|c| c.deleted_at.is_some()) {
            return Err(WriteError::Invalid(format!(
                "customer `{}` was deleted; an ingest token cannot bring them back (an admin or staff token can)",
                patch.external_id.trim()
            )));
        }
        let live = existing.as_ref().filter(|c| c.deleted_at.is_none());
        let merged = patch
            .merge(
                live,
                &self.strategy.attributes,
                &self.strategy.default_timezone,
                now,
            )
            .map_err(|e| WriteError::Invalid(format!("customer `{}`: {e}", patch.external_id)))?;
        let mut customer = merged.customer;
        if let Some(regions) = scope.filter(|_| !in_scope(scope, customer.region.as_deref())) {
            return Err(WriteError::Invalid(format!(
                "your token may only write customers of region(s) {}; set \"region\" to one of them",
                regions.join(", ")
            )));
        }
        let created = live.is_none();
        if !created && merged.changed.is_empty() {
            tx.commit().await?;
            return Ok(UpsertOutcome {
                customer,
                created,
                changed: merged.changed,
            });
        }
        customer.id = customers::save(&mut tx, &customer).await?;
        let change = if created {
            Change::Created
        } else {
            Change::Updated(&merged.changed)
        };
        plan::reconcile(&mut tx, &self.strategy, &customer, change, now).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(UpsertOutcome {
            customer,
            created,
            changed: merged.changed,
        })
    }

    /// Delete a customer: pending reminders are canceled (except rules
    /// triggered by the deletion itself).
    pub async fn delete_customer(&self, external_id: &str) -> Result<(), WriteError> {
        self.delete_customer_in(external_id, None).await
    }

    /// [`Herald::delete_customer`] limited to a region scope (checked in
    /// the transaction; outside it is a `NotFound`).
    pub async fn delete_customer_in(
        &self,
        external_id: &str,
        scope: RegionScope<'_>,
    ) -> Result<(), WriteError> {
        let now = self.clock.now();
        let mut tx = self.store.write().await?;
        let mut customer = customers::by_external_id(&mut tx, external_id)
            .await?
            .filter(|c| c.deleted_at.is_none() && in_scope(scope, c.region.as_deref()))
            .ok_or_else(|| WriteError::NotFound(external_id.to_string()))?;
        customers::mark_deleted(&mut tx, customer.id, now).await?;
        customer.deleted_at = Some(now);
        plan::reconcile(&mut tx, &self.strategy, &customer, Change::Deleted, now).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Register an app installation of a customer for push (or refresh it:
    /// a token registered for someone else moves to this customer). Returns
    /// whether the token was new to them. Within `scope`, like every write.
    pub async fn register_device(
        &self,
        external_id: &str,
        token: &str,
        platform: &str,
        app: &str,
        scope: RegionScope<'_>,
    ) -> Result<bool, WriteError> {
        Device::check(token, platform, app).map_err(WriteError::Invalid)?;
        let now = self.clock.now();
        let mut tx = self.store.write().await?;
        let customer = live_in_scope(&mut tx, external_id, scope).await?;
        let new = devices::register(&mut tx, customer.id, token, platform, app, now).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Forget an app installation of a customer (the app was uninstalled or
    /// signed out). Returns whether it was registered.
    pub async fn forget_device(
        &self,
        external_id: &str,
        token: &str,
        scope: RegionScope<'_>,
    ) -> Result<bool, WriteError> {
        let mut tx = self.store.write().await?;
        let customer = live_in_scope(&mut tx, external_id, scope).await?;
        let removed = devices::remove(&mut tx, customer.id, &[token]).await?;
        tx.commit().await?;
        Ok(removed > 0)
    }

    /// Record an event and re-plan. Returns false when `event_id` was seen before.
    pub async fn record_event(&self, input: &EventInput) -> Result<bool, WriteError> {
        self.record_event_in(input, None).await
    }

    /// [`Herald::record_event`] limited to a region scope (checked in the
    /// transaction; a customer outside it is a `NotFound`).
    pub async fn record_event_in(
        &self,
        input: &EventInput,
        scope: RegionScope<'_>,
    ) -> Result<bool, WriteError> {
        let mut results = self.record_events(&[(input, scope)]).await?;
        results.pop().unwrap_or(Ok(false))
    }

    /// Record many events in one write transaction (group commit: one
    /// commit instead of one per event, which is what lets the API keep up
    /// with many concurrent posts). Each item is answered on its own — a
    /// refused item (unknown customer, outside the scope, empty kind) writes
    /// nothing and the others still go in, in order; the outer error is a
    /// storage failure, which writes nothing at all.
    pub async fn record_events(
        &self,
        items: &[(&EventInput, RegionScope<'_>)],
    ) -> Result<Vec<Result<bool, WriteError>>, WriteError> {
        retry::retrying("recording events", lost_race, || {
            self.record_events_once(items)
        })
        .await
    }

    async fn record_events_once(
        &self,
        items: &[(&EventInput, RegionScope<'_>)],
    ) -> Result<Vec<Result<bool, WriteError>>, WriteError> {
        let now = self.clock.now();
        let mut tx = self.store.write().await?;
        let mut results = Vec::with_capacity(items.len());
        let mut planned = false;
        for (input, scope) in items {
            let kind = input.kind.trim();
            if let Err(e) = event_sizes(input, kind) {
                results.push(Err(e));
                continue;
            }
            let Some(customer) = customers::by_external_id(&mut tx, &input.customer)
                .await?
                .filter(|c| c.deleted_at.is_none() && in_scope(*scope, c.region.as_deref()))
            else {
                results.push(Err(WriteError::NotFound(input.customer.clone())));
                continue;
            };
            let at = match input.at.map(|at| crate::clock::in_range(at, "`at`")) {
                None => now,
                Some(Ok(at)) => at,
                Some(Err(e)) => {
                    results.push(Err(WriteError::Invalid(format!("event: {e}"))));
                    continue;
                }
            };
            let Some(event) = events::insert(
                &mut tx,
                customer.id,
                kind,
                at,
                &input.properties,
                input.event_id.as_deref(),
                now,
            )
            .await?
            else {
                results.push(Ok(false));
                continue;
            };
            if kind == APP_UNINSTALLED {
                forget_uninstalled(&mut tx, customer.id, &input.properties).await?;
            }
            plan::reconcile(
                &mut tx,
                &self.strategy,
                &customer,
                Change::Event(&event),
                now,
            )
            .await?;
            planned = true;
            results.push(Ok(true));
        }
        tx.commit().await?;
        if planned {
            self.wake.notify_one();
        }
        Ok(results)
    }

    /// A customer by external id (live or deleted).
    pub async fn customer(&self, external_id: &str) -> Result<Option<Customer>> {
        let mut tx = self.store.read().await?;
        customers::by_external_id(&mut tx, external_id).await
    }

    /// Suppress a customer (by external id) on a channel, from `source`;
    /// false when there is no such customer. An existing suppression is
    /// kept as it was.
    pub async fn suppress(
        &self,
        external_id: &str,
        channel: &str,
        reason: &str,
        source: &'static str,
    ) -> Result<bool> {
        let now = self.clock.now();
        let mut tx = self.store.write().await?;
        let Some(c) = customers::by_external_id(&mut tx, external_id).await? else {
            return Ok(false);
        };
        suppressions::add(&mut tx, c.id, channel, reason, source, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The opt-out of a signed unsubscribe link (already verified).
    pub async fn unsubscribe_by_link(&self, external_id: &str, channel: &str) -> Result<bool> {
        self.suppress(
            external_id,
            channel,
            "unsubscribed by link",
            source::UNSUBSCRIBE,
        )
        .await
    }
}

/// Refuse an event whose kind is blank or whose kind or `event_id` is
/// longer than Herald stores, saying which and the limit.
fn event_sizes(input: &EventInput, kind: &str) -> Result<(), WriteError> {
    use crate::customer::limits;
    let long = |what: &str, len: usize, max: usize| {
        Err(WriteError::Invalid(format!(
            "event {what} is {len} bytes; the limit is {max}"
        )))
    };
    if kind.is_empty() {
        return Err(WriteError::Invalid("event kind must not be empty".into()));
    }
    if input.kind.len() > limits::EVENT_KIND {
        return long("kind", input.kind.len(), limits::EVENT_KIND);
    }
    match &input.event_id {
        Some(id) if id.len() > limits::EVENT_ID => long("event_id", id.len(), limits::EVENT_ID),
        _ => Ok(()),
    }
}

/// The live customer `external_id` within `scope`; outside it, or deleted,
/// it is a [`WriteError::NotFound`].
pub(super) async fn live_in_scope(
    tx: &mut crate::store::Tx,
    external_id: &str,
    scope: RegionScope<'_>,
) -> Result<Customer, WriteError> {
    customers::by_external_id(tx, external_id)
        .await?
        .filter(|c| c.deleted_at.is_none() && in_scope(scope, c.region.as_deref()))
        .ok_or_else(|| WriteError::NotFound(external_id.to_string()))
}

/// The event kind that says the app was uninstalled: it forgets the device
/// whose `token` it names, else every device of its `app`, else all of the
/// customer's devices. Rules can trigger on it like on any event.
pub const APP_UNINSTALLED: &str = "app_uninstalled";

async fn forget_uninstalled(
    tx: &mut crate::store::Tx,
    customer_id: i64,
    properties: &Map<String, Value>,
) -> Result<u64> {
    let text = |key: &str| properties.get(key).and_then(Value::as_str);
    match (text("token"), text("app")) {
        (Some(token), _) => devices::remove(tx, customer_id, &[token]).await,
        (None, app) => devices::remove_all(tx, customer_id, app).await,
    }
}
