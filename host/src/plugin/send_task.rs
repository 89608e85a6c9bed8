//! Each channel plugin send on its own tokio task.
//!
//! The tick hands a batch of sends to one `buffer_unordered` stream, which a
//! single task polls: every plugin call of the batch ran on one thread, so a
//! batch used one core, and a plugin spinning until its run-time budget held
//! that thread, and every send interleaved with it, for the whole budget.
//! Spawned, the calls spread over the runtime's worker threads. A send whose
//! tick is dropped (shutdown) is aborted with it, as the call itself would be.

use super::bindings::channel_api::Message;
use super::bindings::types::Setting;
use super::http_policy::HttpMode;
use super::{LoadedChannel, SendOutcome};
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
    let mut task = AbortOnDrop(tokio::spawn(async move {
        channel.send(&settings, &message, mode).await
    }));
    match (&mut task.0).await {
        Ok(outcome) => outcome,
        Err(e) => SendOutcome::Retryable {
            reason: format!("the host failed while sending through the plugin: {e}"),
            retry_after: None,
        },
    }
}
