//! Group commit for event ingestion. Every event is a write transaction, and
//! SQLite has one writer: posted one by one, events queue for the write lock
//! and each pays a commit. Here concurrent `POST /events` requests are handed
//! to one writer task that takes whatever has queued up while the previous
//! transaction ran and records it in the next one
//! ([`crate::engine::Herald::record_events`]); each request still gets its
//! own answer. No delay is added: a lone event is written at once.
//!
//! A posted array goes through the same queue a part of [`PART`] events at
//! a time, the next part queued only once the previous one is answered: the
//! writer never holds one transaction for a whole large batch, and single
//! events posted meanwhile join the next transaction instead of waiting for
//! the batch. Each part commits on its own (see [`EventWriter::record_batch`]
//! for what a client sees when one fails).

use super::supervise::{supervise, Backoff};
use super::Live;
use crate::engine::{EventInput, WriteError};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// The most events written in one transaction.
const MAX_BATCH: usize = 512;

/// Events waiting for the writer before posters wait (backpressure).
const QUEUE: usize = 8192;

/// Events of a posted array queued at once: half a transaction, so single
/// posts waiting meanwhile fit in the same one.
pub const PART: usize = MAX_BATCH / 2;

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

    /// Record an array of events (all with the caller's region scope), a
    /// [`PART`] at a time; one answer per event, in order. Each part is
    /// written in transactions of its own, so the batch is not
    /// all-or-nothing: when a part cannot be written, its events are
    /// answered with the error and every later event with `None` (not
    /// tried); nothing of either is stored, and the earlier parts stay
    /// recorded. Sending those events again is safe, and with `event_id`s
    /// so is sending the whole batch again (a repeat answers `false`).
    pub async fn record_batch(
        &self,
        inputs: Vec<EventInput>,
        scope: Option<Vec<String>>,
    ) -> Vec<Option<Result<bool, WriteError>>> {
        let total = inputs.len();
        let mut answers = Vec::with_capacity(total);
        let mut inputs = inputs.into_iter().peekable();
        let mut stopped = false;
        while !stopped && inputs.peek().is_some() {
            let mut waiting = Vec::with_capacity(PART);
            for input in inputs.by_ref().take(PART) {
                let (reply, answer) = oneshot::channel();
                let scope = scope.clone();
                let pending = Pending {
                    input,
                    scope,
                    reply,
                };
                if self.queue.send(pending).await.is_err() {
                    stopped = true;
                    break;
                }
                waiting.push(answer);
            }
            for answer in waiting {
                let result = answer.await.unwrap_or_else(|_| {
                    Err(
                        anyhow::anyhow!("the event writer dropped an event without answering")
                            .into(),
                    )
                });
                stopped |= matches!(result, Err(WriteError::Internal(_)));
                answers.push(Some(result));
            }
        }
        answers.resize_with(total, || None);
        answers
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
