//! The deployment in force while `herald serve` runs. [`Live`] holds the
//! current [`Herald`]: the HTTP API and the scheduler loop ([`scheduler`])
//! ask it on every request and every tick, so a reload ([`reload`]) swaps in
//! a new strategy and new plugins between two ticks while sends already in
//! flight finish on the deployment that started them. Posted events are
//! written in shared transactions by one writer task ([`events`]). Both
//! tasks are restarted if they panic ([`supervise`]). May not import the
//! HTTP edge.

pub mod clock_jumps;
pub mod events;
pub mod reload;
pub mod scheduler;
pub mod supervise;

use crate::engine::Herald;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// The swappable current deployment.
pub struct Live {
    current: RwLock<Arc<Herald>>,
    /// The config file a reload reads again; unset when there is none.
    source: std::sync::OnceLock<PathBuf>,
    /// Held for the whole of a reload, so two never run at once.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    /// The group-commit writer for posted events, started on first use.
    events: std::sync::OnceLock<events::EventWriter>,
    /// The background tasks that panicked and were started again.
    pub restarts: supervise::Restarts,
}

impl Live {
    /// Start with this deployment.
    pub fn new(herald: Arc<Herald>) -> Arc<Live> {
        Arc::new(Live {
            current: RwLock::new(herald),
            source: std::sync::OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
            events: std::sync::OnceLock::new(),
            restarts: supervise::Restarts::default(),
        })
    }

    /// Start with this deployment, loaded from `config`, which a reload
    /// (SIGHUP, `POST /admin/reload`) reads again.
    pub fn reloadable(herald: Arc<Herald>, config: PathBuf) -> Arc<Live> {
        let live = Self::new(herald);
        let _ = live.source.set(config);
        live
    }

    /// The config file a reload reads, if this deployment came from one.
    pub fn source(&self) -> Option<&Path> {
        self.source.get().map(PathBuf::as_path)
    }

    /// The writer that records posted events in shared transactions (on
    /// the deployment in force when each batch is written). Must be called
    /// inside the tokio runtime.
    pub fn event_writer(self: &Arc<Self>) -> &events::EventWriter {
        self.events
            .get_or_init(|| events::EventWriter::start(Arc::downgrade(self)))
    }

    /// The deployment in force now.
    pub fn herald(&self) -> Arc<Herald> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Put a new deployment in force; the old one lives on until the last
    /// request or tick holding it is done.
    pub fn replace(&self, herald: Arc<Herald>) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = herald;
    }
}
