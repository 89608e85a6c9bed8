//! The run-time budget of one channel plugin call: how long the call may
//! spend running (its code, and host work done while it runs), as opposed to
//! waiting on the network, which only the wall-clock `timeout` bounds.
//!
//! A plugin stuck in a loop otherwise holds an executor thread, and the
//! tick's batch with it, for its whole `timeout` (5 s by default) while a
//! provider call that waits on the network costs no CPU at all. The budget
//! (`cpu` of the channel, 50 ms by default) stops the loop early.
//!
//! Measured as the wall time the call's future spends inside `poll`, by
//! [`Budgeted`] around it: a call waiting on I/O is not being polled, so that
//! time is not counted; time the operating system takes the thread away
//! inside a poll is (it is still time the call kept a thread). The epoch
//! callback ([`RunBudget::exceeded`]) checks it every epoch tick (10 ms)
//! while the guest runs; two clock reads per poll cost ~40 ns.
//!
//! Host calls are the exception to "waiting is free": the time a call spends
//! waiting on a key-value read or write is counted against an allowance of
//! its own ([`KEY_VALUE_WAITS`], [`RunBudget::host_call`]), and such a call
//! is abandoned when the allowance runs out, so a plugin cannot hold a send
//! slot for its whole `timeout` by making slow (or endless) key-value calls,
//! which also load the database. The allowance is separate from `cpu`
//! because a key-value write waits for the database's writer, which a busy
//! tick or a slow disk holds for tens of milliseconds through no fault of
//! the plugin: charged to the 50 ms budget, such waits failed signed
//! callbacks (a replay marker is written on each) on a loaded machine.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The default run-time budget of one send.
///
/// 50 ms, as Fastly Compute allows one request: a send formats one request
/// and reads one answer (~10 µs of running for `sms-twilio`), and the budget
/// is what a looping plugin costs on every attempt. With 1% of sends faulty
/// (a third of them looping, each retried once) 100 ms cost as much CPU as
/// all the good sends together (docs/performance.md).
pub const DEFAULT_CPU: Duration = Duration::from_millis(50);

/// How long one call may wait on key-value reads and writes in all: long
/// enough for a writer held by a busy tick, far below the 5 s `timeout`.
pub const KEY_VALUE_WAITS: Duration = Duration::from_secs(1);

/// The error a call ends with when it runs past its budget.
#[derive(Debug)]
pub enum BudgetExceeded {
    /// It ran longer than its `cpu`.
    Running(Duration),
    /// It waited longer than [`KEY_VALUE_WAITS`] on key-value calls.
    KeyValueWaits(Duration),
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running(budget) => write!(
                f,
                "ran for more than its {budget:?} of run time (a loop? raise the channel's `cpu` if the plugin needs more)"
            ),
            Self::KeyValueWaits(allowance) => write!(
                f,
                "waited more than {allowance:?} on key-value calls in one call (endless key-value calls, or a database held by another writer)"
            ),
        }
    }
}

impl std::error::Error for BudgetExceeded {}

/// Run time used by one call, shared by [`Budgeted`] (which adds each poll)
/// and the epoch callback (which reads it).
#[derive(Debug)]
pub struct RunBudget {
    budget: Duration,
    /// How long key-value calls may wait in all ([`KEY_VALUE_WAITS`]).
    waits_allowed: Duration,
    /// Reference point of the two clocks below.
    origin: Instant,
    /// Nanoseconds spent in finished polls.
    used: AtomicU64,
    /// When the poll in progress started (nanoseconds after `origin`, plus
    /// one), or 0 when the call is not being polled.
    poll_started: AtomicU64,
    /// Nanoseconds host calls spent waiting outside the call's polls.
    host_waits: AtomicU64,
}

/// A host call in progress: when it started and the poll time counted by then.
#[derive(Debug, Clone, Copy)]
pub struct HostCall {
    started: Instant,
    polled: Duration,
}

impl RunBudget {
    /// A budget of `budget` for a call starting at `origin`.
    pub fn new(budget: Duration, origin: Instant) -> Arc<Self> {
        Arc::new(Self {
            budget,
            waits_allowed: KEY_VALUE_WAITS,
            origin,
            used: AtomicU64::new(0),
            poll_started: AtomicU64::new(0),
            host_waits: AtomicU64::new(0),
        })
    }

    /// The budget.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Time spent in polls up to `now`, the poll in progress included.
    fn polled(&self, now: Instant) -> Duration {
        let mut used = self.used.load(Ordering::Relaxed);
        let started = self.poll_started.load(Ordering::Relaxed);
        if started > 0 {
            used += self.nanos(now).saturating_sub(started - 1);
        }
        Duration::from_nanos(used)
    }

    /// Run time used up to `now`: the polls, the one in progress included.
    pub fn used(&self, now: Instant) -> Duration {
        self.polled(now)
    }

    /// Time finished host calls spent waiting outside the call's polls.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.host_waits.load(Ordering::Relaxed))
    }

    /// What is left of the key-value wait allowance.
    fn waits_left(&self) -> Duration {
        self.waits_allowed.saturating_sub(self.waited())
    }

    /// Marks the start of a host call at `now`; pass the mark to
    /// [`RunBudget::host_call_ended`].
    pub fn host_call_started(&self, now: Instant) -> HostCall {
        HostCall {
            started: now,
            polled: self.polled(now),
        }
    }

    /// Charges the host call marked by `call`, ended at `now`: its whole
    /// duration, less what the polls during it already counted.
    pub fn host_call_ended(&self, call: HostCall, now: Instant) {
        let took = now.saturating_duration_since(call.started);
        let polled = self.polled(now).saturating_sub(call.polled);
        let wait = took.saturating_sub(polled).as_nanos() as u64;
        self.host_waits.fetch_add(wait, Ordering::Relaxed);
    }

    /// Runs the host call `call` charged to this budget: abandoned with
    /// [`BudgetExceeded`] once the key-value wait allowance runs out, and
    /// refused after it when the budget or the allowance is used up.
    pub async fn host_call<T>(&self, call: impl Future<Output = T>) -> Result<T, BudgetExceeded> {
        let mark = self.host_call_started(Instant::now());
        let result = tokio::time::timeout(self.waits_left(), call).await;
        let now = Instant::now();
        self.host_call_ended(mark, now);
        match (result, self.exceeded(now)) {
            (Err(_), _) => Err(BudgetExceeded::KeyValueWaits(self.waits_allowed)),
            (Ok(_), Some(over)) => Err(over),
            (Ok(value), None) => Ok(value),
        }
    }

    /// The error to end the call with, if it has used up its budget or its
    /// key-value wait allowance by `now`.
    pub fn exceeded(&self, now: Instant) -> Option<BudgetExceeded> {
        if self.used(now) > self.budget {
            Some(BudgetExceeded::Running(self.budget))
        } else if self.waited() > self.waits_allowed {
            Some(BudgetExceeded::KeyValueWaits(self.waits_allowed))
        } else {
            None
        }
    }
}

/// `call`, with the time spent in each of its polls added to `budget`.
pub struct Budgeted<F> {
    call: F,
    budget: Arc<RunBudget>,
}

impl<F> Budgeted<F> {
    /// Meter `call` against `budget`.
    pub fn new(call: F, budget: Arc<RunBudget>) -> Self {
        Self { call, budget }
    }
}

impl<F: Future + Unpin> Future for Budgeted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let budget = self.budget.clone();
        let started = budget.nanos(Instant::now()) + 1;
        budget.poll_started.store(started, Ordering::Relaxed);
        let result = Pin::new(&mut self.call).poll(cx);
        let ended = budget.nanos(Instant::now());
        budget.poll_started.store(0, Ordering::Relaxed);
        budget
            .used
            .fetch_add(ended.saturating_sub(started - 1), Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that spins for `per_poll` in each poll, then waits (wakes
    /// itself) until it has been polled `polls` times.
    struct Spin {
        per_poll: Duration,
        polls: u32,
    }

    impl Future for Spin {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let until = Instant::now() + self.per_poll;
            while Instant::now() < until {}
            self.polls -= 1;
            if self.polls == 0 {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[tokio::test]
    async fn counts_time_in_polls_and_not_the_waits_between_them() {
        let budget = RunBudget::new(Duration::from_millis(100), Instant::now());
        let spin = Spin {
            per_poll: Duration::from_millis(2),
            polls: 5,
        };
        let waited = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        Budgeted::new(std::pin::pin!(spin), budget.clone()).await;
        Budgeted::new(std::pin::pin!(waited), budget.clone()).await;
        let used = budget.used(Instant::now());
        assert!(used >= Duration::from_millis(10), "{used:?}");
        // The margin is wide on purpose: a loaded machine may take the thread
        // away inside a poll, but never for the whole sleep.
        assert!(
            used < Duration::from_millis(200),
            "the 300 ms sleep is not run time: {used:?}"
        );
    }

    #[test]
    fn a_poll_in_progress_counts_and_the_budget_runs_out() {
        let origin = Instant::now();
        let budget = RunBudget::new(Duration::from_millis(100), origin);
        budget.poll_started.store(1, Ordering::Relaxed);
        assert!(budget
            .exceeded(origin + Duration::from_millis(90))
            .is_none());
        let over = budget
            .exceeded(origin + Duration::from_millis(101))
            .expect("over budget");
        assert!(over.to_string().contains("100ms"), "{over}");
        assert!(over.to_string().contains("`cpu`"), "{over}");
    }

    #[tokio::test]
    async fn a_host_call_counts_its_wait_and_ends_with_the_allowance() {
        let budget = RunBudget::new(Duration::from_millis(10), Instant::now());
        let quick = budget
            .host_call(tokio::time::sleep(Duration::from_millis(30)))
            .await;
        assert!(quick.is_ok(), "a wait longer than `cpu` is not run time");
        let waited = budget.waited();
        assert!(
            waited >= Duration::from_millis(30),
            "the wait counts: {waited:?}"
        );
        let started = Instant::now();
        let stalled = budget.host_call(std::future::pending::<()>()).await;
        let over = stalled.expect_err("a stalled host call ends with the allowance");
        assert!(over.to_string().contains("key-value"), "{over}");
        let took = started.elapsed();
        assert!(
            took >= KEY_VALUE_WAITS - Duration::from_millis(40) && took < Duration::from_secs(3),
            "ended at the allowance, not later: {took:?}"
        );
        assert!(budget.exceeded(Instant::now()).is_some());
    }

    #[test]
    fn a_host_call_inside_a_poll_is_not_counted_twice() {
        let origin = Instant::now();
        let budget = RunBudget::new(Duration::from_secs(1), origin);
        // A poll runs from 0 to 50 ms; a host call inside it from 10 to 40 ms.
        budget.poll_started.store(1, Ordering::Relaxed);
        let call = budget.host_call_started(origin + Duration::from_millis(10));
        budget.host_call_ended(call, origin + Duration::from_millis(40));
        let used = budget.used(origin + Duration::from_millis(50));
        assert_eq!(used, Duration::from_millis(50));
        assert_eq!(budget.waited(), Duration::ZERO);
    }
}
