//! The running deployment: store, strategy, channels and clock together,
//! and the writes that change customers (upsert, delete, event), each of
//! which re-plans that customer's reminders in the same transaction.

use crate::clock::SharedClock;
use crate::config::{Config, SchedulerSettings};
use crate::customer::{Customer, CustomerPatch};
use crate::dispatch::Channels;
use crate::planner::{self, Change};
use crate::plugin::http_policy::HttpMode;
use crate::plugin::{KvBackend, PluginServices, Runtime};
use crate::store::{customers, events, Store};
use crate::strategy::Strategy;
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Notify;

/// A deployment ready to plan and send.
pub struct Herald {
    /// The database.
    pub store: Store,
    /// The compiled strategy.
    pub strategy: Arc<Strategy>,
    /// The loaded channels.
    pub channels: Arc<Channels>,
    /// The clock everything reads.
    pub clock: SharedClock,
    /// Scheduler settings.
    pub scheduler: SchedulerSettings,
    /// Where plugin HTTP goes.
    pub http_mode: HttpMode,
    /// Woken when a write may have made something due sooner.
    pub wake: Notify,
    /// The URL providers reach this deployment at (`[server] public_url`),
    /// without a trailing slash.
    pub public_url: Option<String>,
    /// Signs and checks unsubscribe links.
    pub links: crate::links::Links,
    /// Click tracking and the open pixel (`[tracking]`); checks their tokens.
    pub tracking: crate::funnel::Tracker,
    /// The targeting plugins of rules that have one, by rule id.
    pub targeting: std::collections::HashMap<String, Arc<crate::targeting::RuleTargeting>>,
    /// Identifies this process's claims.
    pub instance: String,
    /// Keeps the plugin engine alive.
    pub runtime: Arc<Runtime>,
    /// SHA-256 of the rules, attributes and strategy settings, to tell
    /// whether the schedule was planned with this strategy.
    pub strategy_fingerprint: String,
}

/// The fingerprint of a config's strategy (see [`Herald::strategy_fingerprint`]).
fn fingerprint(config: &Config) -> String {
    use sha2::Digest;
    let file = &config.file;
    hex::encode(sha2::Sha256::digest(
        format!("{:?}{:?}{:?}", file.rules, file.attributes, file.strategy).as_bytes(),
    ))
}

/// Options for opening a deployment.
pub struct OpenOptions<'a> {
    /// Override of the config's database path.
    pub db: Option<&'a Path>,
    /// The clock.
    pub clock: SharedClock,
    /// Live network or recording sink.
    pub http_mode: HttpMode,
}

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

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Internal(e.into())
    }
}

/// An event to record.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The customer's external id.
    #[schema(min_length = 1)]
    pub customer: String,
    /// Event kind.
    #[schema(min_length = 1)]
    pub kind: String,
    /// When it happened (default: now).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Properties.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// Optional id that makes ingestion idempotent.
    #[serde(default)]
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
    /// Open a deployment: database, plugins, strategy. Every configuration
    /// problem is reported before anything runs.
    pub async fn open(config: &Config, options: OpenOptions<'_>) -> Result<Herald> {
        let herald = Self::load(config, options).await?;
        herald.replan_if_strategy_changed().await?;
        Ok(herald)
    }

    /// [`Herald::open`] without planning a changed strategy for every
    /// customer: `herald serve` starts listening first and its scheduler does
    /// that walk ([`Herald::replan_if_strategy_changed`]) before its first
    /// tick, so a large customer base does not keep the API down at start.
    pub async fn load(config: &Config, options: OpenOptions<'_>) -> Result<Herald> {
        let channel_names = Channels::names(config);
        Strategy::compile(config, &channel_names).map_err(|e| {
            anyhow!(
                "the strategy in {} has problems:\n{e}",
                config.path.display()
            )
        })?;
        config.scheduler()?;
        let db_path = match options.db {
            Some(p) => p.to_path_buf(),
            None => config.resolve(&config.file.database.path),
        };
        let store = Store::open(&db_path).await?;
        Self::load_on(config, store, options.clock, options.http_mode).await
    }

    /// Open a deployment on a database that is already open: what a reload
    /// does, so the new strategy and plugins work on the same schedule (a
    /// changed strategy is planned again for every customer, as at a start).
    pub async fn open_on(
        config: &Config,
        store: Store,
        clock: SharedClock,
        http_mode: HttpMode,
    ) -> Result<Herald> {
        let herald = Self::load_on(config, store, clock, http_mode).await?;
        herald.replan_if_strategy_changed().await?;
        Ok(herald)
    }

    /// [`Herald::open_on`] without the re-plan of a changed strategy.
    async fn load_on(
        config: &Config,
        store: Store,
        clock: SharedClock,
        http_mode: HttpMode,
    ) -> Result<Herald> {
        let options = OpenOptions {
            db: None,
            clock,
            http_mode,
        };
        let channel_names = Channels::names(config);
        let strategy = Strategy::compile(config, &channel_names).map_err(|e| {
            anyhow!(
                "the strategy in {} has problems:\n{e}",
                config.path.display()
            )
        })?;
        let scheduler = config.scheduler()?;
        let runtime = Arc::new(Runtime::new(
            config.cache_dir(),
            Channels::max_memory(config)?,
        )?);
        let services = PluginServices {
            kv: KvBackend::Sqlite(store.pool.clone()),
            clock: options.clock.clone(),
        };
        let channels = Channels::load(config, &runtime, &services)
            .await
            .with_context(|| format!("the channels in {} have problems", config.path.display()))?;
        for rule in &strategy.rules {
            for step in 0..=rule.steps.len() {
                let wanted = rule.channels_of(step);
                if !wanted.is_empty() && wanted.iter().all(|c| channels.is_disabled(c)) {
                    tracing::warn!(rule = %rule.id, step, "every channel of this rule is disabled; its reminders will be skipped until one is enabled");
                }
            }
        }
        let targeting = crate::targeting::load_all(config, config.cache_dir(), &services)
            .await
            .with_context(|| {
                format!(
                    "the targeting plugins in {} have problems",
                    config.path.display()
                )
            })?;
        let instance = format!(
            "{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let public_url = config
            .file
            .server
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string());
        let link_secret = match &config.file.server.link_secret {
            Some(v) => Some(v.resolve_at(config, "[server] link_secret")?),
            None => None,
        };
        let links = crate::links::Links::load(&store.pool, public_url.clone(), link_secret).await?;
        // Links are tracked only to origins the strategy itself writes; the
        // config text holds the rules' templates.
        let tracking =
            crate::funnel::Tracker::new(&config.file.tracking, public_url.as_deref(), &links)?
                .trusting_origins_in(&config.source);
        let herald = Herald {
            store,
            strategy: Arc::new(strategy),
            channels: Arc::new(channels),
            clock: options.clock,
            scheduler,
            http_mode: options.http_mode,
            wake: Notify::new(),
            public_url,
            links,
            tracking,
            targeting,
            instance,
            runtime,
            strategy_fingerprint: fingerprint(config),
        };
        Ok(herald)
    }

    /// When the rules differ from those the schedule was planned with (a new
    /// deployment, an edited strategy), plan every live customer's date rules
    /// again, so a new or changed rule reaches existing customers. This walks
    /// the customer base once per strategy change, never per tick.
    pub async fn replan_if_strategy_changed(&self) -> Result<()> {
        const KEY: &str = "strategy_fingerprint";
        let fingerprint = &self.strategy_fingerprint;
        if crate::store::meta::get(&self.store.pool, KEY)
            .await?
            .as_deref()
            == Some(fingerprint.as_str())
        {
            return Ok(());
        }
        let now = self.clock.now();
        let mut after = 0;
        let mut total = 0;
        loop {
            let mut tx = self.store.write_tx().await?;
            let page = customers::page_by_id(&mut tx, after, 500).await?;
            let Some(last) = page.last() else {
                tx.commit().await?;
                break;
            };
            after = last.id;
            for customer in &page {
                planner::plan(&mut tx, &self.strategy, customer, Change::Replan, now).await?;
            }
            tx.commit().await?;
            total += page.len();
        }
        if total > 0 {
            tracing::info!(
                customers = total,
                "the strategy changed: date rules planned again for every customer"
            );
        }
        crate::store::meta::set(&self.store.pool, KEY, fingerprint).await
    }

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
        let now = self.clock.now();
        let mut tx = self.store.write_tx().await?;
        let existing = customers::by_external_id(&mut tx, patch.external_id.trim()).await?;
        if existing
            .as_ref()
            .is_some_and(|c| !in_scope(scope, c.region.as_deref()))
        {
            return Err(WriteError::NotFound(patch.external_id.trim().to_string()));
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
        planner::plan(&mut tx, &self.strategy, &customer, change, now).await?;
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
        let mut tx = self.store.write_tx().await?;
        let mut customer = customers::by_external_id(&mut tx, external_id)
            .await?
            .filter(|c| c.deleted_at.is_none() && in_scope(scope, c.region.as_deref()))
            .ok_or_else(|| WriteError::NotFound(external_id.to_string()))?;
        customers::mark_deleted(&mut tx, customer.id, now).await?;
        customer.deleted_at = Some(now);
        planner::plan(&mut tx, &self.strategy, &customer, Change::Deleted, now).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
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
        let now = self.clock.now();
        let mut tx = self.store.write_tx().await?;
        let mut results = Vec::with_capacity(items.len());
        let mut planned = false;
        for (input, scope) in items {
            let kind = input.kind.trim();
            if kind.is_empty() {
                results.push(Err(WriteError::Invalid(
                    "event kind must not be empty".into(),
                )));
                continue;
            }
            let Some(customer) = customers::by_external_id(&mut tx, &input.customer)
                .await?
                .filter(|c| c.deleted_at.is_none() && in_scope(*scope, c.region.as_deref()))
            else {
                results.push(Err(WriteError::NotFound(input.customer.clone())));
                continue;
            };
            let at = input.at.unwrap_or(now);
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
            planner::plan(
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
        let mut conn = self.store.pool.acquire().await?;
        customers::by_external_id(&mut conn, external_id).await
    }
}
