//! Sharded simulation: customers do not interact in a simulation (caps,
//! sequences, goals and suppressions are per customer), so a timeline is
//! split by customer into shards that run at once, each on a thread of its
//! own (held to one core on Linux, with the database threads it starts) with
//! its own engine on its own scratch database and virtual clock. Their
//! attempts are merged back in time order, an instant at a time, ordered by
//! customer within an instant, so the output does not depend on the number
//! of shards.
//!
//! Per-channel rate limits are the one thing customers share, so a strategy
//! with a rate-limited channel runs in one shard unless the caller asks for
//! more; then each shard gets an equal share of every channel's `rate` (and
//! `burst`), so the shards together send no faster than the one limit would
//! let them (an approximation: a burst that falls in one shard waits longer
//! than under the one limit).
//!
//! Owns splitting, the shard threads and the merge; the loop of one shard is
//! [`super::run`]. May not touch a live database: every shard opens the
//! location its caller gives it.

use super::{AttemptSink, Summary, TimelineOp};
use crate::clock::VirtualClock;
use crate::config::Config;
use crate::engine::{Herald, OpenOptions};
use crate::plugin::http_policy::HttpMode;
use crate::store::Location;
use crate::tick::AttemptRecord;
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Attempts a shard may run ahead of the merge before it waits.
const QUEUE: usize = 16_384;

/// What a sharded simulation runs.
pub struct Plan<'a> {
    /// The deployment (its strategy and channels).
    pub config: &'a Config,
    /// Start of the virtual clock.
    pub from: DateTime<Utc>,
    /// End of the simulation.
    pub until: DateTime<Utc>,
    /// Where plugin HTTP goes.
    pub http_mode: HttpMode,
    /// One database per shard (their number is the number of shards).
    pub databases: Vec<Location>,
}

/// Where the shards are: each one's virtual clock, in Unix milliseconds,
/// for a progress display.
#[derive(Debug)]
pub struct Progress {
    clocks: Vec<AtomicI64>,
}

impl Progress {
    fn new(shards: usize, from: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            clocks: (0..shards)
                .map(|_| AtomicI64::new(from.timestamp_millis()))
                .collect(),
        })
    }

    /// The simulated instant every shard has reached.
    pub fn reached(&self) -> DateTime<Utc> {
        let least = self
            .clocks
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or_default();
        DateTime::from_timestamp_millis(least).unwrap_or_default()
    }
}

/// How many shards to use: one per core, at most one per customer; one
/// when a channel has a rate limit (exact pacing across customers).
pub fn default_shards(config: &Config, customers: usize) -> usize {
    if config.file.channels.values().any(|c| c.rate.is_some()) {
        return 1;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    cores.min(customers).max(1)
}

/// The customer an operation is about.
pub fn customer_of(op: &TimelineOp) -> &str {
    match &op.op {
        super::Op::Upsert(patch) => &patch.external_id,
        super::Op::Event(event) => &event.customer,
        super::Op::Delete(id) => id,
        super::Op::Device(device) => &device.customer,
    }
}

/// The shard of a customer: a stable hash (FNV-1a) of the external id, so a
/// customer lands in the same shard on every run.
fn shard_of(customer: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in customer.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// `ops` split by customer into `shards` timelines, each in time order.
pub fn split(ops: Vec<TimelineOp>, shards: usize) -> Vec<Vec<TimelineOp>> {
    let mut split: Vec<Vec<TimelineOp>> = (0..shards.max(1)).map(|_| Vec::new()).collect();
    for op in ops {
        let shard = shard_of(customer_of(&op), shards);
        split[shard].push(op);
    }
    split
}

/// `config` with every channel's rate limit shared out over `shards`: a
/// rate of N per unit becomes N × (units per day) / shards per day, at
/// least one; a burst is divided, rounded up.
pub fn share_rate_limits(config: &Config, shards: usize) -> Result<Config> {
    let mut shared = config.clone();
    if shards <= 1 {
        return Ok(shared);
    }
    let shards = u64::try_from(shards).context("too many shards")?;
    for section in shared.file.channels.values_mut() {
        if let Some(text) = &section.rate {
            let rate = crate::channels::ratelimit::Rate::parse(text).map_err(|e| anyhow!(e))?;
            let interval = rate.interval.num_milliseconds().max(1) as u64;
            let per_day = (86_400_000 / interval).max(1);
            section.rate = Some(format!("{}/d", (per_day / shards).max(1)));
            section.burst = section.burst.map(|b| {
                u32::try_from(u64::from(b).div_ceil(shards))
                    .unwrap_or(1)
                    .max(1)
            });
        }
    }
    Ok(shared)
}

/// Run `shards` (one timeline per database of `plan`) at once and hand
/// every attempt to `sink` in time order. `on_progress` is called as the
/// merge advances, with the shards' clocks.
pub fn run(
    plan: Plan<'_>,
    shards: Vec<Vec<TimelineOp>>,
    sink: &mut AttemptSink<'_>,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let count = shards.len();
    let config = share_rate_limits(plan.config, count)?;
    let progress = Progress::new(count, plan.from);
    std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(count);
        let mut queues = Vec::with_capacity(count);
        for (index, (ops, db)) in shards.into_iter().zip(plan.databases).enumerate() {
            let (sender, receiver) = sync_channel(QUEUE);
            queues.push(receiver);
            let shard = Shard {
                index,
                config: &config,
                db,
                ops,
                from: plan.from,
                until: plan.until,
                http_mode: plan.http_mode.clone(),
                progress: progress.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("simulate-shard-{index}"))
                .spawn_scoped(scope, move || shard.run(sender))
                .context("cannot start a simulation thread")?;
            handles.push(handle);
        }
        let merged = merge(queues, sink, &mut || on_progress(&progress));
        let mut summary = Summary::default();
        let mut failure = merged.err();
        for (index, handle) in handles.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(part)) => summary.add(&part),
                Ok(Err(e)) => {
                    failure.get_or_insert(e.context(format!("simulation shard {index}")));
                }
                Err(_) => {
                    failure.get_or_insert(anyhow!("simulation shard {index} panicked"));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    })
}

/// One shard: its customers' timeline on its own engine and database.
struct Shard<'a> {
    index: usize,
    config: &'a Config,
    db: Location,
    ops: Vec<TimelineOp>,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    http_mode: HttpMode,
    progress: Arc<Progress>,
}

impl Shard<'_> {
    /// Run on this thread (held to one core first, so the engine's database
    /// threads, started from here, share it and hand work over without
    /// waking another core).
    fn run(self, queue: SyncSender<AttemptRecord>) -> Result<Summary> {
        pin_to_core(self.index);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a simulation runtime")?;
        runtime.block_on(self.simulate(queue))
    }

    async fn simulate(self, queue: SyncSender<AttemptRecord>) -> Result<Summary> {
        let clock = VirtualClock::new(self.from);
        let herald = Herald::open(
            self.config,
            OpenOptions {
                db: Some(self.db.clone()),
                clock: Arc::new(clock.clone()),
                http_mode: self.http_mode.clone(),
            },
        )
        .await?;
        let progress = &self.progress.clocks[self.index];
        let mut forward = |record: &AttemptRecord| {
            progress.store(record.at.timestamp_millis(), Ordering::Relaxed);
            queue
                .send(record.clone())
                .map_err(|_| anyhow!("the simulation's output stopped"))
        };
        let summary = super::run(&herald, &clock, &self.ops, self.until, &mut forward).await;
        progress.store(self.until.timestamp_millis(), Ordering::Relaxed);
        herald.store.close().await;
        summary
    }
}

/// Hold this thread (and the threads it starts) to core `index` modulo the
/// cores this process may use. Best effort: elsewhere than Linux, or when
/// refused, the thread runs where the system puts it.
fn pin_to_core(index: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: `set` is a plain bitmask owned by this frame; the calls read
    // and write only it and this thread's own affinity.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|c| libc::CPU_ISSET(*c, &allowed))
            .collect();
        if cores.is_empty() {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cores[index % cores.len()], &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = index;
}

/// The shards' attempts to `sink`, one instant at a time: every attempt of
/// the earliest instant any shard has yet to hand over, ordered by customer
/// (then as made), then the next instant.
fn merge(
    queues: Vec<Receiver<AttemptRecord>>,
    sink: &mut AttemptSink<'_>,
    on_progress: &mut dyn FnMut(),
) -> Result<()> {
    let mut heads: Vec<Option<AttemptRecord>> = queues.iter().map(|q| q.recv().ok()).collect();
    let mut instant = Vec::new();
    while let Some(at) = heads.iter().flatten().map(|r| r.at).min() {
        for (head, queue) in heads.iter_mut().zip(&queues) {
            while head.as_ref().is_some_and(|r| r.at == at) {
                instant.extend(head.take());
                *head = queue.recv().ok();
            }
        }
        instant.sort_by(|a: &AttemptRecord, b| a.customer.cmp(&b.customer));
        for record in instant.drain(..) {
            sink(&record)?;
        }
        on_progress();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_always_lands_in_the_same_shard_and_customers_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let id = format!("c{i:07}");
            let shard = shard_of(&id, 4);
            assert_eq!(shard, shard_of(&id, 4));
            counts[shard] += 1;
        }
        assert!(counts.iter().all(|n| (800..1200).contains(n)), "{counts:?}");
    }

    #[test]
    fn rate_limits_are_shared_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "[channels.sms]\nplugin = \"x.wasm\"\nrate = \"1/s\"\nburst = 5\n\n[channels.mail]\nplugin = \"x.wasm\"\nrate = \"3/d\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let shared = share_rate_limits(&config, 2).unwrap();
        let sms = &shared.file.channels["sms"];
        assert_eq!(sms.rate.as_deref(), Some("43200/d"));
        assert_eq!(sms.burst, Some(3));
        assert_eq!(shared.file.channels["mail"].rate.as_deref(), Some("1/d"));
        let one = share_rate_limits(&config, 1).unwrap();
        assert_eq!(one.file.channels["sms"].rate.as_deref(), Some("1/s"));
    }
}
