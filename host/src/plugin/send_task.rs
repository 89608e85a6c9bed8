//! Each channel plugin send on its own tokio task.
//!
//! The tick polls a batch's sends as one `buffer_unordered` stream from a
//! single task. Run inside it, every plugin call of the batch would share one
//! thread: the batch would use one core, and a plugin spinning until its
//! run-time budget would stall every send interleaved with it. Spawned, the
//! calls spread over the runtime's worker threads. A send whose tick is
//! dropped (shutdown) is aborted with it, as the call itself would be.

use super::bindings::channel_api::Message;
use super::bindings::types::Setting;
use super::http_policy::HttpMode;
use super::{LoadedChannel, SendOutcome};
use std::future::Future;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Aborts the task when dropped before it finished.
struct AbortOnDrop(JoinHandle<SendOutcome>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// [`LoadedChannel::send`] on a task of its own; a panic inside the host
/// during the call becomes a retryable outcome, so the reminder is not lost.
pub async fn send_on_own_task(
    channel: Arc<LoadedChannel>,
    settings: Arc<[Setting]>,
    message: Message,
    mode: HttpMode,
) -> SendOutcome {
    on_own_task(async move { channel.send(&settings, &message, mode).await }).await
}

/// Runs `call` as a task, aborted if this future is dropped first.
async fn on_own_task(call: impl Future<Output = SendOutcome> + Send + 'static) -> SendOutcome {
    let mut task = AbortOnDrop(tokio::spawn(call));
    match (&mut task.0).await {
        Ok(outcome) => outcome,
        Err(e) => SendOutcome::Uncertain {
            reason: format!("the host failed while sending through the plugin: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_send_is_uncertain_not_lost() {
        let outcome = on_own_task(async { panic!("host bug") }).await;
        match outcome {
            SendOutcome::Uncertain { reason } => {
                assert!(reason.contains("panicked"), "{reason}")
            }
            other => panic!("expected an uncertain outcome, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn dropping_the_send_aborts_its_task() {
        let held = Arc::new(());
        let in_task = Arc::clone(&held);
        let send = on_own_task(async move {
            let _keep = in_task;
            std::future::pending::<SendOutcome>().await
        });
        // Poll once so the task is spawned, then drop the send.
        let mut send = Box::pin(send);
        assert!(futures::poll!(send.as_mut()).is_pending());
        drop(send);
        // The aborted task drops its future (and the Arc) when next scheduled.
        for _ in 0..100 {
            if Arc::strong_count(&held) == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the task outlived its send");
    }
}
