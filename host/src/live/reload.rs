//! Reloading a running `herald serve` (SIGHUP, `POST /admin/reload`): the
//! config file is read again and checked as `herald check` does; a config
//! with errors is refused with the same texts and the deployment in force
//! keeps running. A good one is opened on the same database and clock (a
//! changed strategy is planned again for every customer, as at a restart)
//! and swapped in between two ticks: new plugins and rules take effect at
//! once, a send in flight finishes on the deployment that claimed it, and
//! the claims in the database keep anything from being lost or sent twice.
//! Reloads run one at a time.

use super::Live;
use crate::config::Config;
use crate::engine::Herald;
use serde::Serialize;
use std::sync::Arc;

/// What a reload put in force.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// The config file read.
    pub config: String,
    /// Channels loaded (disabled ones not counted).
    pub channels: usize,
    /// Rules in the strategy.
    pub rules: usize,
    /// What `herald check` warns about in the new config.
    pub warnings: Vec<String>,
}

/// Read the config again and put it in force, or refuse it with every
/// error found (the deployment in force keeps running).
pub async fn reload(live: &Live) -> Result<Reloaded, Vec<String>> {
    let _one_at_a_time = live.reloading.lock().await;
    let result = attempt(live).await;
    match &result {
        Ok(r) => {
            crate::metrics::reload("ok");
            tracing::info!(
                config = %r.config,
                channels = r.channels,
                rules = r.rules,
                warnings = r.warnings.len(),
                "reloaded: the new config is in force"
            );
            for w in &r.warnings {
                tracing::warn!("{w}");
            }
        }
        Err(errors) => {
            crate::metrics::reload("refused");
            tracing::error!(
                "reload refused; the running config stays in force. Problems:\n{}",
                errors.join("\n")
            );
        }
    }
    result
}

async fn attempt(live: &Live) -> Result<Reloaded, Vec<String>> {
    let path = live.source().ok_or_else(|| {
        vec!["this deployment was not started from a config file; nothing to reload".to_string()]
    })?;
    let config = Config::load(path).map_err(|e| vec![format!("{e:#}")])?;
    let report = crate::check::check(&config).await;
    if report.has_errors() {
        return Err(report.errors());
    }
    let old = live.herald();
    let new = Herald::open_on(
        &config,
        old.store.clone(),
        old.clock.clone(),
        old.http_mode.clone(),
    )
    .await
    .map_err(|e| vec![format!("{e:#}")])?;
    let reloaded = Reloaded {
        config: path.display().to_string(),
        channels: new.channels.iter().count(),
        rules: new.strategy.rules.len(),
        warnings: report.warnings(),
    };
    live.replace(Arc::new(new));
    // The scheduler loop may be asleep on the old deployment's wake-up:
    // rouse it so the next tick runs on the new one now.
    old.wake.notify_one();
    Ok(reloaded)
}

/// Reload on every SIGHUP. The handler is installed before this returns,
/// so a SIGHUP right after `serve` starts reloads instead of killing it.
pub fn watch_sighup(live: Arc<Live>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use anyhow::Context;
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot install the SIGHUP handler")?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                let _ = reload(&live).await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = live;
    Ok(())
}
