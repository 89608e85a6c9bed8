//! `herald serve`: the HTTP API plus the scheduler loop on the wall clock.
//! The loop drains what is due, then sleeps until the next tick (or the
//! next due time, if sooner) or until a write wakes it. SIGINT/SIGTERM stop new claims and let sends in flight
//! finish before exit; SIGHUP reloads the config ([`crate::reload`]).

use crate::live::Live;
use anyhow::{Context, Result};
use std::sync::Arc;
use tokio::sync::watch;

/// Serve until a shutdown signal.
pub async fn run(live: Arc<Live>, listen: &str) -> Result<()> {
    let herald = live.herald();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another process using it? (set [server] listen or --listen)"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, channels = herald.channels.iter().count(), rules = herald.strategy.rules.len(), "herald serving");
    crate::reload::watch_sighup(live.clone())?;
    // A line on stdout that scripts and tests can wait for.
    println!("listening on http://{addr}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(scheduler_loop(live.clone(), stop_rx.clone()));
    let mut server_stop = stop_rx.clone();
    let server = axum::serve(listener, crate::api::router(live.clone())).with_graceful_shutdown(
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
    );
    let signals = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing sends in flight");
        let _ = stop_tx.send(true);
    };
    let (server_result, _) = tokio::join!(server, signals);
    server_result.context("the HTTP server failed")?;
    scheduler.await.context("the scheduler task panicked")?;
    Ok(())
}

async fn scheduler_loop(live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    // A strategy that changed since the schedule was planned (a new
    // deployment over imported customers, an edited file) is planned for
    // every customer first — while the API already answers — and no tick
    // runs on the old plans meanwhile.
    loop {
        let started = std::time::Instant::now();
        match live.herald().replan_if_strategy_changed().await {
            Ok(()) => {
                tracing::debug!(
                    seconds = started.elapsed().as_secs_f64(),
                    "schedule matches the strategy"
                );
                break;
            }
            Err(e) => {
                tracing::error!("planning the changed strategy failed (will try again): {e:#}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(live.herald().scheduler.tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
    loop {
        if *stop.borrow() {
            return;
        }
        // The deployment in force for this tick; a reload takes effect at
        // the next one, and this tick's sends finish on the deployment that
        // claimed them.
        let herald = live.herald();
        match herald.tick().await {
            Ok(records) if !records.is_empty() => {
                for r in &records {
                    tracing::info!(customer = %r.customer, rule = %r.rule, channel = %r.channel, status = %r.status, "attempt");
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::error!("tick failed (will try again): {e:#}"),
        }
        // Sleep until the next tick, or sooner when something (a rate-limited
        // send waiting its turn, a retry) is due before then.
        let mut nap = herald.scheduler.tick;
        if let Ok(Some(due)) = crate::store::schedule::next_due_at(&herald.store.pool).await {
            if let Ok(until) = (due - herald.clock.now()).to_std() {
                nap = nap.min(until.max(std::time::Duration::from_millis(1)));
            } else {
                nap = std::time::Duration::from_millis(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = herald.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
