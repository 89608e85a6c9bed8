//! The deployment: store, strategy, channels, plugins and clock together
//! ([`Herald`]), opened from a config; the writes that change customers
//! ([`writes`]: upsert, delete, event, each re-planning that customer in
//! the same transaction); and what provider callbacks change
//! ([`callbacks`]). The tick, explain and the HTTP edge borrow a `Herald`;
//! nothing here imports them.

pub mod callbacks;
pub mod preferences;
pub mod segments;
#[cfg(test)]
pub(crate) mod testing;
pub mod writes;

pub use writes::{in_scope, Deleted, EventInput, RegionScope, UpsertOutcome, WriteError};

use crate::channels::Channels;
use crate::clock::SharedClock;
use crate::config::{Config, SchedulerSettings};
use crate::plan;
use crate::plugin::http_policy::HttpMode;
use crate::plugin::{KvBackend, PluginServices, Runtime};
use crate::render::links::Links;
use crate::render::tracking::Tracker;
use crate::store::{customers, fleet, Location, Store};
use crate::strategy::Strategy;
use anyhow::{anyhow, Context, Result};
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
    pub links: Links,
    /// Click tracking and the open pixel (`[tracking]`); checks their tokens.
    pub tracking: Tracker,
    /// The targeting plugins of rules that have one, by rule id.
    pub targeting: std::collections::HashMap<String, Arc<crate::targeting::RuleTargeting>>,
    /// Identifies this process's claims.
    pub instance: String,
    /// Keeps the plugin engine alive.
    pub runtime: Arc<Runtime>,
    /// SHA-256 of the rules, attributes and strategy settings, to tell
    /// whether the schedule was planned with this strategy.
    pub strategy_fingerprint: String,
    /// Limits on provider callbacks and link hits (`[server.inbound]`); a
    /// reload starts them afresh.
    pub inbound: Arc<crate::inbound::Inbound>,
}

/// The fingerprint of a config's strategy (see [`Herald::strategy_fingerprint`]).
fn fingerprint(config: &Config) -> String {
    use sha2::Digest;
    let file = &config.file;
    hex::encode(sha2::Sha256::digest(
        format!("{:?}{:?}{:?}", file.rules, file.attributes, file.strategy).as_bytes(),
    ))
}

/// Whether a node's strategy is the one in force in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrategyState {
    /// It is.
    InForce,
    /// It was new, and this node just planned it for this many customers
    /// and put it in force.
    Planned(usize),
    /// A newer strategy (this fingerprint) is in force: this node's is one
    /// that was before it, and acting on it would roll the fleet back.
    Superseded(String),
}

/// Options for opening a deployment.
pub struct OpenOptions {
    /// Override of the config's database.
    pub db: Option<Location>,
    /// The clock.
    pub clock: SharedClock,
    /// Live network or recording sink.
    pub http_mode: HttpMode,
}

impl Herald {
    /// Open a deployment: database, plugins, strategy. Every configuration
    /// problem is reported before anything runs.
    pub async fn open(config: &Config, options: OpenOptions) -> Result<Herald> {
        let herald = Self::load(config, options).await?;
        herald.refuse_if_superseded(config).await?;
        Ok(herald)
    }

    /// [`Herald::open`] without planning a changed strategy for every
    /// customer: `herald serve` starts listening first and its scheduler does
    /// that walk ([`Herald::replan_if_strategy_changed`]) before its first
    /// tick, so a large customer base does not keep the API down at start.
    pub async fn load(config: &Config, options: OpenOptions) -> Result<Herald> {
        let channel_names = Channels::names(config);
        Strategy::compile(config, &channel_names).map_err(|e| {
            anyhow!(
                "the strategy in {} has problems:\n{e}",
                config.path.display()
            )
        })?;
        config.scheduler()?;
        let location = match options.db {
            Some(location) => location,
            None => config.database()?,
        };
        let store = Store::open(&location).await?;
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
        herald.refuse_if_superseded(config).await?;
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
        let inbound = crate::inbound::Settings::from_config(&config.file.server.inbound)?;
        let runtime = Arc::new(Runtime::new(
            config.cache_dir()?,
            Channels::max_memory(config)?,
        )?);
        let services = PluginServices {
            kv: KvBackend::Store(store.clone()),
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
        let targeting = crate::targeting::load_all(config, config.cache_dir()?, &services)
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
        let links = Links::load(&store, public_url.clone(), link_secret).await?;
        // Links are tracked only to origins the strategy itself writes; the
        // config text holds the rules' templates.
        let tracking = Tracker::new(&config.file.tracking, public_url.as_deref(), &links)?
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
            inbound: Arc::new(crate::inbound::Inbound::new(inbound)),
        };
        Ok(herald)
    }

    /// When the rules differ from those the schedule was planned with (a new
    /// deployment, an edited strategy), plan every live customer's date rules
    /// again, so a new or changed rule reaches existing customers. This walks
    /// the customer base once per strategy change, never per tick. In a
    /// fleet (PostgreSQL) one node at a time does it, under a lock; the
    /// others find it done. A node whose strategy was in force before the
    /// current one is [`StrategyState::Superseded`]: it must not act on it,
    /// and nothing is planned (set `HERALD_ADOPT_STRATEGY=1` on one node to
    /// go back to an earlier strategy on purpose).
    pub async fn replan_if_strategy_changed(&self) -> Result<StrategyState> {
        if let Some(state) = self.strategy_state().await? {
            return Ok(state);
        }
        let lock = fleet::ReplanLock::take(&self.store).await?;
        let result = self.replan_under_lock().await;
        lock.release().await?;
        result
    }

    async fn replan_under_lock(&self) -> Result<StrategyState> {
        // Another node may have planned this strategy while we waited.
        if let Some(state) = self.strategy_state().await? {
            return Ok(state);
        }
        let now = self.clock.now();
        let mut after = 0;
        let mut total = 0;
        loop {
            let mut tx = self.store.write().await?;
            let page = customers::page_by_id(&mut tx, after, 500).await?;
            let Some(last) = page.last() else {
                tx.commit().await?;
                break;
            };
            after = last.id;
            plan::replan_all(&mut tx, &self.strategy, &page, now).await?;
            tx.commit().await?;
            total += page.len();
        }
        if total > 0 {
            tracing::info!(
                customers = total,
                "the strategy changed: date rules planned again for every customer"
            );
        }
        fleet::put_in_force(&self.store, &self.strategy_fingerprint).await?;
        Ok(StrategyState::Planned(total))
    }

    /// Whether this deployment's strategy is the one in force: `None` when
    /// it is new to the database (a re-plan is due).
    pub async fn strategy_state(&self) -> Result<Option<StrategyState>> {
        let mine = &self.strategy_fingerprint;
        let (current, history) = fleet::strategies(&self.store).await?;
        if current.as_deref() == Some(mine.as_str()) {
            return Ok(Some(StrategyState::InForce));
        }
        let fleet = self.store.location().is_server();
        let adopt = std::env::var("HERALD_ADOPT_STRATEGY").is_ok_and(|v| v == "1");
        if fleet && history.contains(mine) && !adopt {
            return Ok(Some(StrategyState::Superseded(current.unwrap_or_default())));
        }
        Ok(None)
    }

    /// Plan a changed strategy, or refuse one older than the one in force.
    async fn refuse_if_superseded(&self, config: &Config) -> Result<()> {
        match self.replan_if_strategy_changed().await? {
            StrategyState::InForce | StrategyState::Planned(_) => Ok(()),
            StrategyState::Superseded(current) => anyhow::bail!(
                "the database runs a newer strategy (fingerprint {current}) than {}, which was in force before it; using it would roll the fleet back: use the current config, or set HERALD_ADOPT_STRATEGY=1 to adopt this one on purpose",
                config.path.display()
            ),
        }
    }

    /// How far this node's clock is from the database server's (PostgreSQL;
    /// `None` on SQLite, which shares the machine's clock).
    pub async fn clock_skew(&self) -> Result<Option<chrono::Duration>> {
        let server = fleet::server_time(&self.store).await?;
        Ok(server.map(|server| self.clock.now() - server))
    }
}
