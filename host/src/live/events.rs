//! Group commit for event ingestion. Every event is a write transaction, and
//! SQLite has one writer: posted one by one, events queue for the write lock
//! and each pays a commit. Here concurrent `POST /events` requests are handed
//! to one writer task that takes whatever has queued up while the previous
//! transaction ran and records it in the next one
//! ([`crate::engine::Herald::record_events`]); each request still gets its
//! own answer. No delay is added: a lone event is written at once.

use super::supervise::{supervise, Backoff};
use super::Live;
use crate::engine::{EventInput, WriteError};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// The most events written in one transaction.
const MAX_BATCH: usize = 512;

/// Events waiting for the writer before posters wait (backpressure).
const QUEUE: usize = 8192;

struct Pending {
    input: EventInput,
    scope: Option<Vec<String>>,
    reply: oneshot::Sender<Result<bool, WriteError>>,
}

/// The queue in front of the event writer.
pub struct EventWriter {
    queue: mpsc::Sender<Pending>,
}

impl EventWriter {
    /// Start the writer task for `live` (it ends when `live` is dropped).
    /// The task is supervised: after a panic (whose batch's posters get an
    /// error) a new one takes over the same queue.
    pub fn start(live: Weak<Live>) -> EventWriter {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let writer_live = live.clone();
        tokio::spawn(supervise(live, "event-writer", Backoff::SERVE, move || {
            write_batches(writer_live.clone(), rx.clone())
        }));
        EventWriter { queue }
    }

    /// Record one event (with the caller's region scope) in the next batch.
    pub async fn record(
        &self,
        input: EventInput,
        scope: Option<Vec<String>>,
    ) -> Result<bool, WriteError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            input,
            scope,
            reply,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| anyhow::anyhow!("the event writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the event writer dropped an event without answering"))?
    }
}

async fn write_batches(live: Weak<Live>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>) {
    let mut rx = rx.lock().await;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let Some(live) = live.upgrade() else { return };
        let herald = live.herald();
        let items: Vec<(&EventInput, Option<&[String]>)> = batch
            .iter()
            .map(|p| (&p.input, p.scope.as_deref()))
            .collect();
        match herald.record_events(&items).await {
            Ok(results) => {
                for (pending, result) in batch.drain(..).zip(results) {
                    let _ = pending.reply.send(result);
                }
            }
            Err(e) => {
                let reason = format!("{:#}", anyhow::Error::from(e));
                tracing::error!(
                    events = batch.len(),
                    "recording a batch of events failed: {reason}"
                );
                for pending in batch.drain(..) {
                    let _ = pending
                        .reply
                        .send(Err(WriteError::Internal(anyhow::anyhow!("{reason}"))));
                }
            }
        }
    }
}
