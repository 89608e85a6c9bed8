//! The scheduler loop of `herald serve`, on the wall clock: first it plans a
//! changed strategy for every customer (while the API already answers, and
//! before any tick runs on the old plans), then it drains what is due, and
//! sleeps until the next tick, or the next due time if sooner, or until a
//! write wakes it. Each tick runs on the deployment in force when it starts;
//! a reload takes effect at the next one. Stops claiming when `stop` turns
//! true; sends in flight finish first. In a fleet (PostgreSQL) a node also
//! stops claiming while its strategy is older than the one in force, or its
//! clock is off from the database's by more than a quarter of the lease
//! ([`FleetGuard`]), and says so.

use super::{clock_jumps, Live};
use crate::engine::{Herald, StrategyState};
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
            Ok(StrategyState::InForce | StrategyState::Planned(_)) => {
                tracing::debug!(
                    seconds = started.elapsed().as_secs_f64(),
                    "schedule matches the strategy"
                );
                break;
            }
            Ok(StrategyState::Superseded(current)) => tracing::warn!(
                in_force = %current,
                "this node's strategy is older than the one in force; it claims nothing until it is reloaded with the current config"
            ),
            Err(e) => {
                tracing::error!("planning the changed strategy failed (will try again): {e:#}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(live.herald().scheduler.tick) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
    let mut guard = FleetGuard::default();
    let mut jumps = clock_jumps::JumpWatch::default();
    loop {
        if *stop.borrow() {
            return;
        }
        // The deployment in force for this tick; a reload takes effect at
        // the next one, and this tick's sends finish on the deployment that
        // claimed them.
        let herald = live.herald();
        clock_jumps::watch(&mut jumps, &herald).await;
        if !guard.may_claim(&herald).await {
            tokio::select! {
                _ = tokio::time::sleep(herald.scheduler.tick) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
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

/// The checks before each claim that keep one node from acting on a wrong
/// picture of the fleet. Each problem is logged when it starts and when it
/// ends, not on every tick.
#[derive(Default)]
struct FleetGuard {
    stopped_by: Option<String>,
}

impl FleetGuard {
    /// True when this node may claim now.
    async fn may_claim(&mut self, herald: &Herald) -> bool {
        let problem = fleet_problem(herald).await;
        match (&self.stopped_by, &problem) {
            (None, Some(why)) => tracing::warn!("not claiming reminders: {why}"),
            (Some(_), None) => tracing::info!("claiming reminders again"),
            _ => {}
        }
        let ok = problem.is_none();
        self.stopped_by = problem;
        ok
    }
}

/// Why this node must not claim now, if it must not: on PostgreSQL, a
/// strategy older than the one in force, or a clock more than a quarter of
/// the lease off the database server's.
pub async fn fleet_problem(herald: &Herald) -> Option<String> {
    if !herald.store.location().is_server() {
        return None;
    }
    match herald.strategy_state().await {
        Ok(Some(StrategyState::InForce | StrategyState::Planned(_))) => {}
        Ok(Some(StrategyState::Superseded(current))) => {
            return Some(format!("another node put a newer strategy in force ({current}); reload this one with the current config"))
        }
        Ok(None) => return Some("this node's strategy is not planned yet".into()),
        Err(e) => return Some(format!("cannot read the strategy in force: {e:#}")),
    }
    let limit =
        chrono::Duration::from_std(herald.scheduler.lease / 4).unwrap_or(chrono::Duration::MAX);
    match herald.clock_skew().await {
        Ok(Some(skew)) if skew.abs() > limit => Some(format!(
            "this node's clock is {} ms off the database server's (more than a quarter of the {:?} lease); fix its time sync",
            skew.num_milliseconds(),
            herald.scheduler.lease
        )),
        Ok(_) => None,
        Err(e) => Some(format!("cannot read the database server's clock: {e:#}")),
    }
}
