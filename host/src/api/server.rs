//! `herald serve`'s listener: bind the address, start the scheduler loop
//! ([`crate::live::scheduler`]) and the SIGHUP reload watcher, serve the
//! router until SIGINT/SIGTERM, then stop claiming and let sends in flight
//! finish before returning.

use crate::live::supervise::{supervise, Backoff};
use crate::live::{reload, scheduler, Live};
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
    reload::watch_sighup(live.clone())?;
    // A line on stdout that scripts and tests can wait for.
    println!("listening on http://{addr}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let (scheduler_live, scheduler_stop) = (live.clone(), stop_rx.clone());
    let scheduler = tokio::spawn(supervise(
        Arc::downgrade(&live),
        "scheduler",
        Backoff::SERVE,
        move || scheduler::run(scheduler_live.clone(), scheduler_stop.clone()),
    ));
    let mut server_stop = stop_rx.clone();
    let server = axum::serve(
        listener,
        super::router(live.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = server_stop.wait_for(|s| *s).await;
    });
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
    scheduler
        .await
        .context("the scheduler's supervisor panicked")?;
    Ok(())
}
