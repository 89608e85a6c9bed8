//! `herald bench`: figures, printed as key=value lines on stdout (notes and
//! progress go to stderr). Nothing here asserts on time; the only failures
//! are wrong results (a plugin that answers something else than the native
//! code, a tick that does not finish every due row or plan its next one).
//!
//! 1. Plugin call cost: the real console plugin, one fresh instance per call
//!    (instantiate + call on the pooling allocator), against the same logic
//!    compiled natively into the host.
//! 2. Tick throughput: a fresh database with many customers and their planned
//!    renewal reminders, some of them due; one tick claims and processes all
//!    due rows. SQLite's own statement counters show how many rows the claim
//!    query steps through, and the same rows' minimal SQL run on a copy
//!    through SQLite's C API (`herald::store::floor`) shows what the storage
//!    itself allows. The seeds and counters are the store's
//!    (`herald::store::probe`): no SQL is written here.
//! 3. End-to-end sends ([`sends`]).
//! 4. A simulated year of the SaaS example ([`simulate`]).
//! 5. Memory of a real `herald serve` child ([`serve`]).
//! 6. The HTTP API under an open-loop load while the scheduler sends
//!    ([`api`]).

mod api;
mod postgres;
mod sends;
mod serve;
mod simulate;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use clap::Args;
use herald::clock::{SharedClock, VirtualClock};
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plan::keys;
use herald::plugin::bindings::channel_api::{Message, Recipient};
use herald::plugin::bindings::types::Setting;
use herald::plugin::http_policy::{AllowList, HttpMode};
use herald::plugin::{KvBackend, Limits, PluginServices, Runtime, SendOutcome, DEFAULT_MEMORY};
use herald::store::probe::{self, Count};
use herald::store::Location;
use herald::store::{customers, floor, planning, Store};
use herald::strategy::{date_anchor, Trigger};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WARMUP_CALLS: usize = 500;
const RULE: &str = "renewal";

/// Options of `herald bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Smaller sizes for CI smoke runs: 100000 customers, 10000 due, 2000
    /// calls (explicit options still win).
    #[arg(long)]
    quick: bool,
    /// Plugin calls to time, after 500 warm-up calls [default: 20000].
    #[arg(long)]
    calls: Option<usize>,
    /// Sends through the sms-twilio plugin to the loopback provider, and as
    /// many native ones [default: 5000].
    #[arg(long)]
    sends: Option<usize>,
    /// Customers in the tick database [default: 1000000].
    #[arg(long)]
    customers: Option<u64>,
    /// How many of them have a reminder due at the start [default: 100000].
    #[arg(long)]
    due: Option<u64>,
    /// Directory holding console.wasm and sms-twilio.wasm [default: <dir of the herald
    /// executable>/../plugins, else ./target/plugins].
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
    /// Also time every SQL statement the tick runs (SQLite's profile trace,
    /// summed by statement) and print the breakdown on stderr. Adds a little
    /// overhead to the tick it measures.
    #[arg(long)]
    profile_sql: bool,
    /// Sends in flight during the tick ([scheduler] concurrency of the
    /// generated config) [default: the scheduler's default].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Customers in the simulated year of the SaaS example [default: 100000;
    /// --quick: 2000].
    #[arg(long)]
    sim_customers: Option<u64>,
    /// Customers in the database `herald serve` holds for the memory figure
    /// [default: 1000000; --quick: 20000].
    #[arg(long)]
    rss_customers: Option<u64>,
    /// Events per second posted to `herald serve` by the open-loop API
    /// client [default: 1000].
    #[arg(long)]
    api_rate: Option<u64>,
    /// Seconds of API load [default: 60; --quick: 5].
    #[arg(long)]
    api_seconds: Option<u64>,
    /// Also measure the tick on this PostgreSQL server (a postgres:// URL
    /// of any database on it; the bench creates and drops its own
    /// herald_bench_* databases there).
    #[arg(long)]
    db: Option<String>,
    /// Run only these parts (comma-separated: plugin, sends, tick, simulate,
    /// memory, api) [default: all].
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Part>,
}

/// One part of the benchmark, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Plugin call cost.
    Plugin,
    /// Sends through the sms-twilio plugin to a loopback provider.
    Sends,
    /// One tick over a large database (and on PostgreSQL with `--db`).
    Tick,
    /// A simulated year of the SaaS example.
    Simulate,
    /// The memory `herald serve` holds.
    Memory,
    /// Events posted to `herald serve` under load.
    Api,
}

struct Sizes {
    calls: usize,
    sends: usize,
    customers: u64,
    due: u64,
    sim_customers: u64,
    rss_customers: u64,
    api_rate: u64,
    api_seconds: u64,
}

impl BenchArgs {
    fn sizes(&self) -> Result<Sizes> {
        let (calls, customers, due) = if self.quick {
            (2_000, 100_000, 10_000)
        } else {
            (20_000, 1_000_000, 100_000)
        };
        let sizes = Sizes {
            calls: self.calls.unwrap_or(calls),
            sends: self.sends.unwrap_or(if self.quick { 500 } else { 5_000 }),
            customers: self.customers.unwrap_or(customers),
            due: self.due.unwrap_or(due),
            sim_customers: self
                .sim_customers
                .unwrap_or(if self.quick { 2_000 } else { 100_000 }),
            rss_customers: self.rss_customers.unwrap_or(if self.quick {
                20_000
            } else {
                1_000_000
            }),
            api_rate: self.api_rate.unwrap_or(1_000),
            api_seconds: self.api_seconds.unwrap_or(if self.quick { 5 } else { 60 }),
        };
        if sizes.calls == 0 || sizes.sends == 0 {
            bail!("--calls and --sends must be at least 1");
        }
        if sizes.due == 0 || sizes.due > sizes.customers {
            bail!(
                "--due must be between 1 and --customers ({}); got {}",
                sizes.customers,
                sizes.due
            );
        }
        if sizes.due > u64::from(u32::MAX) {
            bail!(
                "--due must fit the scheduler's batch size (at most {})",
                u32::MAX
            );
        }
        Ok(sizes)
    }
}

/// Print one figure.
macro_rules! figure {
    ($key:expr, $($value:tt)*) => {
        println!("{}={}", $key, format_args!($($value)*))
    };
}
pub(crate) use figure;

/// Run the benchmarks.
pub async fn run(args: BenchArgs) -> Result<()> {
    let sizes = args.sizes()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    figure!("machine_cores", "{cores}");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    figure!("build_profile", "{profile}");
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build (the herald crate is unoptimised); for real figures run `cargo build --release` and `target/release/herald bench`");
    } else {
        eprintln!("note: release build");
    }
    if tracing::enabled!(target: "herald::plugin", tracing::Level::INFO) {
        eprintln!("note: HERALD_LOG enables info logs of herald::plugin: every call below will print a log line, and both sides pay for it");
    }

    let runs = |part: Part| args.only.is_empty() || args.only.contains(&part);
    let plugins_dir = plugins_dir(args.plugins_dir.as_deref())?;
    if runs(Part::Plugin) {
        plugin_bench(&plugins_dir, sizes.calls).await?;
    }
    if runs(Part::Sends) {
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 27, 2, 0, 0)
            .single()
            .context("bad start time")?;
        sends::send_bench(&plugins_dir, sizes.sends, sample_message(t0), t0).await?;
    }
    if runs(Part::Tick) {
        tick_and_postgres(&args, &sizes).await?;
    }
    if runs(Part::Simulate) {
        simulate::simulate_bench(&plugins_dir, sizes.sim_customers).await?;
    }
    // `herald serve` runs on the system clock: its reminders are due relative to now.
    if runs(Part::Memory) {
        serve::rss_bench(sizes.rss_customers, Utc::now()).await?;
    }
    if runs(Part::Api) {
        api::api_bench(sizes.api_rate, sizes.api_seconds, Utc::now()).await?;
    }
    Ok(())
}

/// The tick on SQLite, then on PostgreSQL when `--db` names a server.
async fn tick_and_postgres(args: &BenchArgs, sizes: &Sizes) -> Result<()> {
    let sqlite_rows_per_s = tick_bench(
        sizes.customers,
        sizes.due,
        args.profile_sql,
        args.concurrency,
    )
    .await?;
    if let Some(server) = &args.db {
        if !Location::parse(server, Path::new(""))?.is_server() {
            bail!("--db takes a postgres:// URL (the SQLite figures are always measured)");
        }
        postgres::postgres_bench(server, sizes.customers, sizes.due, sqlite_rows_per_s).await?;
    }
    Ok(())
}

// ── 1. Plugin call cost ──────────────────────────────────────────────────

fn plugins_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if !dir.join("console.wasm").is_file() {
            bail!(
                "{} has no console.wasm: build the plugins first with scripts/build-plugins (they go to target/plugins)",
                dir.display()
            );
        }
        return Ok(dir.to_path_buf());
    }
    let mut candidates = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        candidates.push(exe_dir.join("..").join("plugins"));
    }
    candidates.push(PathBuf::from("target").join("plugins"));
    for dir in &candidates {
        if dir.join("console.wasm").is_file() {
            return Ok(dir.clone());
        }
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|d| d.join("console.wasm").display().to_string())
        .collect();
    bail!(
        "cannot find the console plugin (looked for {}): build the plugins first with scripts/build-plugins, or pass --plugins-dir",
        looked.join(" and ")
    )
}

fn sample_message(t0: DateTime<Utc>) -> Message {
    Message {
        idempotency_key: "herald:42:trial-ending:2026-03-27T02:00Z".into(),
        rule: "trial-ending".into(),
        recipient: Recipient {
            customer_id: "cust-42".into(),
            name: Some("Li Wei".into()),
            email: Some("li.wei@example.com".into()),
            phone: Some("+8613800000042".into()),
            wechat_openid: None,
            locale: Some("zh-CN".into()),
            timezone: "Asia/Shanghai".into(),
            push_tokens: Vec::new(),
        },
        subject: "Your Acme Cloud trial ends in 4 days".into(),
        text: "Hello Li Wei,\n\nYour trial ends on 2026-03-31. To keep your\nprojects, choose a plan at https://acme.example/pricing.\n\nNeed more time to decide? We are happy to extend your trial: reply to this\nmessage or write to trials@acme.example and tell us how long you need.\n\nThe Acme Cloud team\n".into(),
        html: None,
        fields: Vec::new(),
        unsubscribe_url: None,
        callback_url: None,
        sent_at: t0.timestamp_millis(),
    }
}

/// What plugins/console/src/lib.rs does, compiled into the host: find the
/// prefix setting, render the log entry, hand it to the same log path as the
/// host's `log` import, return the same receipt.
#[inline(never)]
fn native_console_send(
    channel: &str,
    settings: &[Setting],
    message: &Message,
) -> Result<String, String> {
    let prefix = settings
        .iter()
        .rev()
        .find(|s| s.key == "prefix")
        .map(|s| s.value.as_str())
        .unwrap_or("console");
    let line = native_console_render(prefix, message);
    tracing::info!(target: "herald::plugin", channel, "{line}");
    Ok(format!("console-{}", message.idempotency_key))
}

fn native_console_render(prefix: &str, message: &Message) -> String {
    let recipient = &message.recipient;
    let address = recipient
        .email
        .as_deref()
        .filter(|s| !s.is_empty())
        .or(recipient.phone.as_deref().filter(|s| !s.is_empty()))
        .unwrap_or("-");
    let mut out = format!(
        "[{prefix}] to {} <{address}>: {}",
        recipient.customer_id, message.subject
    );
    let text = message.text.trim_end();
    if !text.is_empty() {
        out.push('\n');
        out.push_str(text);
    }
    out
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The console plugin loaded as a channel, with the settings and message
/// every timed call sends.
pub(crate) struct ConsoleBench {
    channel: herald::plugin::LoadedChannel,
    settings: Vec<Setting>,
    message: Message,
}

/// `calls` sends through a [`ConsoleBench`]: each call's time and the total.
pub(crate) struct Timed {
    samples: Vec<Duration>,
    total: Duration,
}

impl ConsoleBench {
    /// Load `console.wasm` from `dir` and check that its first answer is the
    /// native code's.
    pub(crate) async fn load(dir: &Path) -> Result<ConsoleBench> {
        let path = dir.join("console.wasm");
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 27, 2, 0, 0)
            .single()
            .context("bad start time")?;
        let clock: SharedClock = Arc::new(VirtualClock::new(t0));
        let services = PluginServices {
            kv: KvBackend::Memory(Arc::new(Mutex::new(HashMap::new()))),
            clock,
        };
        let cache_dir = herald::config::default_cache_dir()?;
        let started = Instant::now();
        let runtime = Arc::new(Runtime::new(cache_dir.clone(), DEFAULT_MEMORY)?);
        let channel = runtime
            .load_channel(
                &path,
                CONSOLE_CHANNEL,
                Limits::default(),
                AllowList::default(),
                services,
            )
            .await
            .with_context(|| {
                format!(
                    "cannot load {} (rebuild it with scripts/build-plugins)",
                    path.display()
                )
            })?;
        eprintln!(
            "plugin: loaded {} ({} {}) in {:.0} ms (compiled-plugin cache: {})",
            path.display(),
            channel.info.name,
            channel.info.version,
            started.elapsed().as_secs_f64() * 1e3,
            cache_dir.display()
        );
        if channel.info.name != "console" {
            bail!(
                "{} is the `{}` plugin, not the console plugin",
                path.display(),
                channel.info.name
            );
        }
        let bench = ConsoleBench {
            channel,
            settings: vec![Setting {
                key: "prefix".into(),
                value: "bench".into(),
            }],
            message: sample_message(t0),
        };
        bench.check_against_native().await?;
        Ok(bench)
    }

    /// Both sides must give the same answer before their times mean anything.
    async fn check_against_native(&self) -> Result<()> {
        let native = native_console_send(CONSOLE_CHANNEL, &self.settings, &self.message)
            .map_err(|e| anyhow::anyhow!(e))?;
        match self
            .channel
            .send(&self.settings, &self.message, HttpMode::Live)
            .await
        {
            SendOutcome::Delivered {
                provider_message_id,
            } if provider_message_id == native => Ok(()),
            other => {
                eprintln!("error=the console plugin answered {other:?}; the native code answers Delivered({native})");
                bail!("the plugin and the native code disagree");
            }
        }
    }

    /// [`WARMUP_CALLS`] untimed sends, then `calls` timed ones (a fresh
    /// instance each); every one must deliver.
    pub(crate) async fn timed(&self, calls: usize) -> Result<Timed> {
        for _ in 0..WARMUP_CALLS {
            black_box(
                self.channel
                    .send(&self.settings, &self.message, HttpMode::Live)
                    .await,
            );
        }
        let mut samples = Vec::with_capacity(calls);
        let mut failures = 0usize;
        let all = Instant::now();
        for _ in 0..calls {
            let one = Instant::now();
            let outcome = self
                .channel
                .send(
                    black_box(&self.settings),
                    black_box(&self.message),
                    HttpMode::Live,
                )
                .await;
            samples.push(one.elapsed());
            if !matches!(outcome, SendOutcome::Delivered { .. }) {
                failures += 1;
            }
            black_box(outcome);
        }
        let total = all.elapsed();
        if failures > 0 {
            eprintln!("error={failures} of {calls} plugin calls did not deliver");
            bail!("plugin calls failed");
        }
        Ok(Timed { samples, total })
    }
}

impl Timed {
    /// Mean microseconds per call.
    pub(crate) fn mean_us(&self) -> f64 {
        micros(self.total) / self.samples.len().max(1) as f64
    }
}

/// The channel name the console plugin is loaded under.
const CONSOLE_CHANNEL: &str = "bench";

async fn plugin_bench(dir: &Path, calls: usize) -> Result<()> {
    let console = ConsoleBench::load(dir).await?;
    eprintln!(
        "plugin: {WARMUP_CALLS} warm-up calls, then {calls} timed calls (fresh instance per call)"
    );
    let mut timed = console.timed(calls).await?;
    timed.samples.sort_unstable();
    let samples = &timed.samples;
    let p = |q: f64| {
        samples[(((samples.len() as f64) * q).ceil() as usize).clamp(1, samples.len()) - 1]
    };
    let plugin_mean = timed.mean_us();
    let (settings, message) = (&console.settings, &console.message);
    for _ in 0..WARMUP_CALLS {
        black_box(
            native_console_send(CONSOLE_CHANNEL, black_box(settings), black_box(message)).ok(),
        );
    }
    let all = Instant::now();
    for _ in 0..calls {
        black_box(
            native_console_send(CONSOLE_CHANNEL, black_box(settings), black_box(message)).ok(),
        );
    }
    let native_mean = micros(all.elapsed()) / calls as f64;

    figure!("plugin_calls", "{calls}");
    figure!("plugin_call_us", "{plugin_mean:.2}");
    figure!("plugin_call_p50_us", "{:.2}", micros(p(0.50)));
    figure!("plugin_call_p99_us", "{:.2}", micros(p(0.99)));
    figure!("plugin_call_max_us", "{:.2}", micros(p(1.0)));
    figure!("native_call_us", "{native_mean:.3}");
    figure!(
        "plugin_native_ratio",
        "{:.1}",
        plugin_mean / native_mean.max(1e-6)
    );
    eprintln!("plugin: target is <= 10 us per instantiate+call; measured mean {plugin_mean:.2} us");
    Ok(())
}

// ── 2. Tick throughput ───────────────────────────────────────────────────

fn bench_config(batch: u64, concurrency: Option<usize>) -> String {
    let concurrency = concurrency
        .map(|c| format!("concurrency = {c}\n"))
        .unwrap_or_default();
    format!(
        r#"# Written by `herald bench`.
[database]
path = "bench.db"

[scheduler]
batch = {batch}
{concurrency}
[channels.inbox]
builtin = "inbox"

[attributes]
renews_at = "date"

[strategy]
default_time = "10:00"
default_timezone = "UTC"

[[rules]]
id = "{RULE}"
trigger = {{ on = "date", attribute = "renews_at", before = "7d", every = "1y" }}
channels = ["inbox"]
subject = "Your plan renews soon, {{{{ customer.name }}}}"
text = "Hello {{{{ customer.name }}}}, your plan renews on {{{{ customer.renews_at }}}}."
"#
    )
}

/// Check a few seeded rows against what the real planner code computes for
/// the same customer at `planned_at`: same due time, same key, same anchor.
async fn check_seed(
    herald: &Herald,
    customers: u64,
    due: u64,
    planned_at: DateTime<Utc>,
) -> Result<()> {
    let rule = herald
        .strategy
        .rule(RULE)
        .context("the bench rule is missing")?;
    let Trigger::Date(trigger) = &rule.trigger else {
        bail!("the bench rule is not a date rule");
    };
    let mut tx = herald.store.read().await?;
    let mut samples = vec![1, customers, customers / 2 + 1, (customers / due).max(1)];
    samples.dedup();
    for id in samples {
        let id = id as i64;
        let customer = customers::by_id(&mut tx, id)
            .await?
            .context("a seeded customer is missing")?;
        let (anchor, date) =
            date_anchor(trigger, &customer).context("a seeded customer has no renews_at")?;
        let at = trigger
            .next_occurrence(date, customer.tz(), planned_at)
            .context("the planner finds no occurrence")?;
        let facts = planning::facts(&mut tx, id, &[], &[]).await?;
        let [row] = facts.pending.as_slice() else {
            bail!(
                "customer {id} has {} pending rows; expected 1",
                facts.pending.len()
            );
        };
        let key = keys::date(id, RULE, at);
        if row.key != key
            || row.due_at != at
            || row.occurs_at != at
            || row.anchor.as_deref() != Some(anchor.as_str())
        {
            bail!(
                "seeded row of customer {id} ({} due {} anchor {:?}) differs from the planner's ({key} due {at} anchor {anchor})",
                row.key,
                row.due_at,
                row.anchor
            );
        }
    }
    Ok(())
}

fn print_sql_profile(entries: &[(String, u64, u64)], wall: Duration, rows: u64) {
    let total_ns: u64 = entries.iter().map(|e| e.2).sum();
    eprintln!(
        "sql profile of the tick: {:.2} s of statement time on all connections in {:.2} s of wall time ({:.1} us of SQL per due row)",
        total_ns as f64 / 1e9,
        wall.as_secs_f64(),
        total_ns as f64 / 1e3 / rows.max(1) as f64
    );
    eprintln!(
        "  {:>8} {:>9} {:>9} {:>6}  statement",
        "runs", "total_s", "mean_us", "share"
    );
    for (sql, runs, ns) in entries {
        let short: String = sql.chars().take(110).collect();
        eprintln!(
            "  {:>8} {:>9.3} {:>9.1} {:>5.1}%  {}",
            runs,
            *ns as f64 / 1e9,
            *ns as f64 / 1e3 / (*runs).max(1) as f64,
            100.0 * *ns as f64 / total_ns.max(1) as f64,
            short
        );
    }
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`,
/// 100 ticks per second); `None` elsewhere.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The tick throughput benchmark's deployment: a scratch directory with its
/// config and database, and the engine open on it at `t0`.
struct TickBench {
    scratch: tempfile::TempDir,
    herald: Herald,
    t0: DateTime<Utc>,
    planned_at: DateTime<Utc>,
}

impl TickBench {
    async fn open(due: u64, concurrency: Option<usize>) -> Result<TickBench> {
        let scratch = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("cannot create a scratch directory")?;
        let dir = scratch.path();
        let config_path = dir.join("herald.toml");
        std::fs::write(&config_path, bench_config(due, concurrency))
            .context("cannot write the bench config")?;
        let config = Config::load(&config_path)?;
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .single()
            .context("bad start time")?;
        let db_path = dir.join("bench.db");
        let herald = Herald::open(
            &config,
            OpenOptions {
                db: Some(Location::Embedded(db_path.clone())),
                clock: Arc::new(VirtualClock::new(t0)),
                http_mode: HttpMode::Live,
            },
        )
        .await?;
        eprintln!(
            "tick: database {} (scheduler batch {}, concurrency {})",
            db_path.display(),
            herald.scheduler.batch,
            herald.scheduler.concurrency
        );
        Ok(TickBench {
            scratch,
            herald,
            t0,
            planned_at: t0 - ChronoDuration::days(90),
        })
    }

    fn store(&self) -> &Store {
        &self.herald.store
    }

    /// Seed the customers and their reminders, check them against the
    /// planner, and keep a copy of the database for the floor.
    async fn seed(&self, customers: u64, due: u64) -> Result<PathBuf> {
        let started = Instant::now();
        probe::seed_renewals(self.store(), customers, due, self.t0, self.planned_at, RULE).await?;
        let populate_s = started.elapsed().as_secs_f64();
        eprintln!("tick: {customers} customers and their reminders seeded in {populate_s:.1} s");
        let started = Instant::now();
        probe::settle(self.store()).await?;
        eprintln!(
            "tick: ANALYZE and checkpoint in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        check_seed(&self.herald, customers, due, self.planned_at).await?;
        // The same starting state for the SQLite floor (run after the tick).
        let floor_db = self.scratch.path().join("floor.db");
        std::fs::copy(
            self.store()
                .sqlite_path()
                .context("the tick bench runs on SQLite")?,
            &floor_db,
        )
        .context("cannot copy the database for the floor")?;
        let seeded_due = probe::count(self.store(), Count::DueBy(self.t0)).await?;
        if seeded_due != due as i64 {
            eprintln!("error=the seed has {seeded_due} due rows; expected {due}");
            bail!("bench seed is wrong");
        }
        figure!("customers", "{customers}");
        figure!(
            "scheduler_concurrency",
            "{}",
            self.herald.scheduler.concurrency
        );
        figure!("due_rows", "{due}");
        figure!("populate_seconds", "{populate_s:.2}");
        Ok(floor_db)
    }

    /// Rows read by the claim: its SELECT on its own connection, with
    /// SQLite's per-statement counters.
    async fn claim_figures(&self, due: u64) -> Result<()> {
        let counters = probe::claim_select(self.store(), self.t0, due as i64).await?;
        eprintln!("tick: claim query plan: {}", counters.plan.join(" | "));
        if counters.rows != due as i64 {
            eprintln!(
                "error=the claim query returned {} rows; expected {due}",
                counters.rows
            );
            bail!("claim query is wrong");
        }
        // Rows visited: the first is reached by the seek, each further one by a step.
        let rows_read = counters.fullscan_steps + counters.index_steps + 1;
        figure!(
            "claim_plan_uses_schedule_due",
            "{}",
            u8::from(counters.plan.iter().any(|d| d.contains("schedule_due")))
        );
        figure!("fullscan_steps", "{}", counters.fullscan_steps);
        figure!("claim_index_steps", "{}", counters.index_steps);
        figure!("claim_sorts", "{}", counters.sorts);
        figure!(
            "claim_vm_steps_per_due_row",
            "{:.2}",
            counters.vm_steps as f64 / due as f64
        );
        figure!(
            "rows_read_per_due_row",
            "{:.4}",
            rows_read as f64 / due as f64
        );
        Ok(())
    }

    /// What the tick should have left: every due row done, delivered once,
    /// in an inbox, its next occurrence planned, nothing still claimed.
    async fn problems_after_tick(
        &self,
        customers: u64,
        due: u64,
        records: &[herald::tick::AttemptRecord],
    ) -> Result<Vec<String>> {
        let store = self.store();
        let t0 = self.t0;
        let done = probe::count(store, Count::DoneBy(t0)).await?;
        let still_due = probe::count(store, Count::DueBy(t0)).await?;
        let claimed = probe::count(store, Count::Claimed).await?;
        let planned_next = probe::count(store, Count::PlannedNextAt(t0)).await?;
        let total_rows = probe::count(store, Count::Scheduled).await?;
        let delivered = probe::count(store, Count::Delivered(None)).await?;
        let inbox = probe::count(store, Count::InboxMessages).await?;
        let delivered_records = records.iter().filter(|r| r.status == "delivered").count() as i64;
        figure!("done_rows", "{done}");
        figure!("planned_next", "{planned_next}");
        let mut problems = Vec::new();
        let due_i = due as i64;
        if delivered_records != due_i || records.len() as i64 != due_i {
            problems.push(format!("the tick reported {} attempts, {delivered_records} delivered; expected {due} delivered", records.len()));
        }
        if done != due_i {
            problems.push(format!("{done} due rows are done; expected {due}"));
        }
        if still_due != 0 || claimed != 0 {
            problems.push(format!(
                "{still_due} rows are still due and {claimed} still claimed after the tick"
            ));
        }
        if planned_next != due_i || total_rows != customers as i64 + due_i {
            problems.push(format!(
                "{planned_next} next occurrences planned ({total_rows} schedule rows); expected {due} ({} rows)",
                customers + due
            ));
        }
        if delivered != due_i || inbox != due_i {
            problems.push(format!(
                "{delivered} deliveries and {inbox} inbox messages; expected {due} of each"
            ));
        }
        Ok(problems)
    }
}

async fn tick_bench(
    customers: u64,
    due: u64,
    profile_sql: bool,
    concurrency: Option<usize>,
) -> Result<f64> {
    let bench = TickBench::open(due, concurrency).await?;
    let floor_db = bench.seed(customers, due).await?;
    bench.claim_figures(due).await?;
    if profile_sql {
        let n = probe::start_profile(bench.store()).await?;
        eprintln!("tick: SQL profile trace on {n} connections");
    }
    eprintln!("tick: one tick over {due} due rows ...");
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let records = herald::tick::run(&bench.herald).await?;
    let tick = started.elapsed();
    let tick_cpu = process_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    if profile_sql {
        let entries = probe::stop_profile(bench.store()).await?;
        print_sql_profile(&entries, tick, due);
    }
    // The real claim statement, as the tick ran it.
    let in_tick = probe::claim_update_counters(bench.store()).await?;
    let secs = tick.as_secs_f64();
    figure!("tick_seconds", "{secs:.3}");
    figure!("plan_rows_per_s", "{:.0}", due as f64 / secs);
    if let Some(cpu) = tick_cpu {
        // CPU time of every thread of this process (SQLite runs on the
        // driver's threads): less disturbed than wall time when other work
        // shares the machine.
        figure!("tick_cpu_seconds", "{cpu:.3}");
        figure!("plan_rows_per_cpu_s", "{:.0}", due as f64 / cpu.max(1e-6));
    }
    let mut problems = bench.problems_after_tick(customers, due, &records).await?;
    if let Some((f, i, v)) = in_tick {
        figure!("claim_update_fullscan_steps", "{f}");
        figure!("claim_update_index_steps", "{i}");
        figure!(
            "claim_update_vm_steps_per_due_row",
            "{:.2}",
            v as f64 / due as f64
        );
    } else {
        eprintln!("note: the claim statement was not found among the pool's prepared statements");
    }

    let started = Instant::now();
    let replay = herald::tick::run(&bench.herald).await?;
    let replay_secs = started.elapsed().as_secs_f64();
    if !replay.is_empty() {
        problems.push(format!(
            "the second tick made {} attempts; nothing should be due",
            replay.len()
        ));
    }
    figure!("replay_tick_seconds", "{replay_secs:.6}");
    figure!("replay_ratio", "{:.6}", replay_secs / secs);

    eprintln!("tick: the SQLite floor (the same rows' minimal SQL on a copy, C API) ...");
    let t0_ms = bench.t0.timestamp_millis();
    let floor = tokio::task::spawn_blocking(move || {
        herald::store::floor::run(
            &floor_db,
            t0_ms,
            due as i64,
            floor::Work::Reminder,
            floor::Journal::Wal,
        )
    })
    .await
    .context("the floor thread failed")??;
    if floor.rows != due {
        problems.push(format!(
            "the floor processed {} rows; expected {due}",
            floor.rows
        ));
    }
    let floor_rate = floor.rows as f64 / floor.seconds;
    figure!("sqlite_floor_seconds", "{:.3}", floor.seconds);
    figure!("sqlite_floor_rows_per_s", "{floor_rate:.0}");
    figure!(
        "plan_floor_ratio",
        "{:.2}",
        (due as f64 / secs) / floor_rate.max(1e-6)
    );

    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error={p}");
        }
        bail!("the tick did not do what was expected");
    }
    probe::close(bench.store()).await;
    Ok(due as f64 / secs)
}
