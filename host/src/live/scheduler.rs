//! The scheduler loop of `herald serve`, on the wall clock: first it plans a
//! changed strategy for every customer (while the API already answers, and
//! before any tick runs on the old plans), then it drains what is due, and
//! sleeps until the next tick, or the next due time if sooner, or until a
//! write wakes it. Each tick runs on the deployment in force when it starts;
//! a reload takes effect at the next one. Stops claiming when `stop` turns
//! true; sends in flight finish first.

use super::Live;
use crate::store::schedule;
use crate::tick;
use std::sync::Arc;
use tokio::sync::watch;

/// Run the loop until `stop` turns true.
pub async fn run(live: Arc<Live>, mut stop: watch::Receiver<bool>) {
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
        match tick::run(&herald).await {
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
        if let Ok(Some(due)) = schedule::next_due_at(&herald.store).await {
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
