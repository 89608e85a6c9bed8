//! Keeps `herald serve`'s background tasks (the scheduler loop, the event
//! writer) running. A task that panics is logged, counted (in
//! [`Restarts`], which `/health` shows, and in
//! `herald_task_restarts_total`) and started again after a pause that
//! doubles up to a minute; a task that returns is done. Reminders a
//! panicking tick had claimed come due again when their lease ends. May not
//! import the HTTP edge.

use super::Live;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, Weak};
use std::time::Duration;

/// What panicked in one task since the process started.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TaskRestarts {
    /// How many times the task panicked and was started again.
    pub count: u64,
    /// The last panic's message.
    pub last_panic: String,
    /// When it happened, on the deployment's clock.
    pub at: DateTime<Utc>,
}

/// Restarts by task name.
#[derive(Debug, Default)]
pub struct Restarts {
    by_task: Mutex<BTreeMap<&'static str, TaskRestarts>>,
}

impl Restarts {
    fn record(&self, task: &'static str, message: String, at: DateTime<Utc>) {
        let mut by_task = self.by_task.lock().unwrap_or_else(|p| p.into_inner());
        let entry = by_task.entry(task).or_insert(TaskRestarts {
            count: 0,
            last_panic: String::new(),
            at,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last_panic = message;
        entry.at = at;
    }

    /// Every task that has restarted, by name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, TaskRestarts> {
        self.by_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long to wait before a restart: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The pause before the first restart.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Backoff {
    /// 100 ms, doubling up to a minute.
    pub const SERVE: Backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_secs(60),
    };
}

/// Run `start()`'s task until it returns, starting it again after each
/// panic. Ends too when `live` is gone.
pub async fn supervise<F, Fut>(live: Weak<Live>, task: &'static str, backoff: Backoff, start: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = backoff.first;
    loop {
        let panic = match tokio::spawn(start()).await {
            Ok(()) => return,
            Err(e) if e.is_cancelled() => return,
            Err(e) => panic_message(e.into_panic()),
        };
        let Some(live) = live.upgrade() else { return };
        tracing::error!(
            task,
            "background task panicked; starting it again in {pause:?}: {panic}"
        );
        live.restarts.record(task, panic, live.herald().clock.now());
        crate::metrics::task_restart(task);
        drop(live);
        tokio::time::sleep(pause).await;
        pause = pause.saturating_mul(2).min(backoff.max);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testing::{deployment, monday_9am, with_inbox};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_task_is_started_again_and_counted() {
        let test = deployment(&with_inbox(""), monday_9am()).await;
        let live = Live::new(Arc::new(test.herald));
        let runs = Arc::new(AtomicU32::new(0));
        let instant = Backoff {
            first: Duration::ZERO,
            max: Duration::ZERO,
        };
        let counter = runs.clone();
        supervise(Arc::downgrade(&live), "flaky", instant, move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom number {}", counter.load(Ordering::SeqCst));
                }
            }
        })
        .await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "two panics, then a clean end"
        );
        let restarts = live.restarts.snapshot();
        assert_eq!(
            restarts["flaky"],
            TaskRestarts {
                count: 2,
                last_panic: "boom number 2".into(),
                at: monday_9am(),
            }
        );
    }
}
