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
//!    through SQLite's C API (`herald::bench_floor`) shows what the storage
//!    itself allows.
//! 3. End-to-end sends (`herald::bench_sends`).
//! 4. A simulated year of the SaaS example (`herald::bench_simulate`).
//! 5. Memory of a real `herald serve` child (`herald::bench_serve`).
//! 6. The HTTP API under an open-loop load while the scheduler sends
//!    (`herald::bench_api`).

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use clap::Args;
use herald::clock::{SharedClock, VirtualClock};
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::bindings::channel_api::{Message, Recipient};
use herald::plugin::bindings::types::Setting;
use herald::plugin::http_policy::{AllowList, HttpMode};
use herald::plugin::{KvBackend, Limits, PluginServices, Runtime, SendOutcome, DEFAULT_MEMORY};
use herald::store::{customers, schedule};
use herald::strategy::{date_anchor, date_occurrence_key, Trigger};
use libsqlite3_sys as ffi;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row, SqlitePool};
use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_void, CStr, CString};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WARMUP_CALLS: usize = 500;
const RULE: &str = "renewal";
/// The claim's row selection, as `store::schedule::claim_due` runs it inside its UPDATE.
const CLAIM_SELECT: &str =
    "SELECT id FROM schedule WHERE status = 'pending' AND due_at <= ? ORDER BY due_at LIMIT ?";
/// How the claim statement starts, to find it among a connection's cached statements.
const CLAIM_UPDATE_PREFIX: &str = "UPDATE schedule SET due_at = ?, claim_token = ?";

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

    let plugins_dir = plugins_dir(args.plugins_dir.as_deref())?;
    plugin_bench(&plugins_dir, sizes.calls).await?;
    let t0 = Utc
        .with_ymd_and_hms(2026, 3, 27, 2, 0, 0)
        .single()
        .context("bad start time")?;
    herald::bench_sends::send_bench(&plugins_dir, sizes.sends, sample_message(t0), t0).await?;
    tick_bench(
        sizes.customers,
        sizes.due,
        args.profile_sql,
        args.concurrency,
    )
    .await?;
    herald::bench_simulate::simulate_bench(&plugins_dir, sizes.sim_customers).await?;
    // `herald serve` runs on the system clock: its reminders are due relative to now.
    herald::bench_serve::rss_bench(sizes.rss_customers, Utc::now()).await?;
    herald::bench_api::api_bench(sizes.api_rate, sizes.api_seconds, Utc::now()).await?;
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

async fn plugin_bench(dir: &Path, calls: usize) -> Result<()> {
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
    let cache_dir = herald::config::default_cache_dir();
    let started = Instant::now();
    let runtime = Arc::new(Runtime::new(cache_dir.clone(), DEFAULT_MEMORY)?);
    let channel_name = "bench";
    let channel = runtime
        .load_channel(
            &path,
            channel_name,
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
    let settings = vec![Setting {
        key: "prefix".into(),
        value: "bench".into(),
    }];
    let message = sample_message(t0);

    // Both sides must give the same answer before their times mean anything.
    let native =
        native_console_send(channel_name, &settings, &message).map_err(|e| anyhow::anyhow!(e))?;
    match channel.send(&settings, &message, HttpMode::Live).await {
        SendOutcome::Delivered {
            provider_message_id,
        } if provider_message_id == native => {}
        other => {
            eprintln!("error=the console plugin answered {other:?}; the native code answers Delivered({native})");
            bail!("the plugin and the native code disagree");
        }
    }

    eprintln!(
        "plugin: {WARMUP_CALLS} warm-up calls, then {calls} timed calls (fresh instance per call)"
    );
    for _ in 0..WARMUP_CALLS {
        black_box(channel.send(&settings, &message, HttpMode::Live).await);
    }
    let mut samples = Vec::with_capacity(calls);
    let mut failures = 0usize;
    let all = Instant::now();
    for _ in 0..calls {
        let one = Instant::now();
        let outcome = channel
            .send(black_box(&settings), black_box(&message), HttpMode::Live)
            .await;
        samples.push(one.elapsed());
        if !matches!(outcome, SendOutcome::Delivered { .. }) {
            failures += 1;
        }
        black_box(outcome);
    }
    let plugin_total = all.elapsed();
    if failures > 0 {
        eprintln!("error={failures} of {calls} plugin calls did not deliver");
        bail!("plugin calls failed");
    }
    samples.sort_unstable();
    let p = |q: f64| {
        samples[(((samples.len() as f64) * q).ceil() as usize).clamp(1, samples.len()) - 1]
    };
    let plugin_mean = micros(plugin_total) / calls as f64;

    for _ in 0..WARMUP_CALLS {
        black_box(
            native_console_send(channel_name, black_box(&settings), black_box(&message)).ok(),
        );
    }
    let all = Instant::now();
    for _ in 0..calls {
        black_box(
            native_console_send(channel_name, black_box(&settings), black_box(&message)).ok(),
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

/// Customers `1..=customers` and one planned renewal reminder each, as the
/// planner would have written them at `planned_at`. Customer `i` is due iff
/// `floor(i*due/customers)` steps at `i`, which picks exactly `due` customers
/// spread evenly over the table. Due customers renew between 52 days before
/// and 7 days after `t0`'s date (reminder 7 days earlier at 10:00 UTC, so at
/// or before t0 = 12:00); the others renew 8 to 307 days after it.
async fn populate(
    db_path: &Path,
    customers: u64,
    due: u64,
    t0: DateTime<Utc>,
    planned_at: DateTime<Utc>,
) -> Result<()> {
    // A connection of its own (the engine's pool stays as the engine set it
    // up), with a big page cache and no slow-statement warnings.
    let mut conn = SqliteConnectOptions::new()
        .filename(db_path)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", "-524288")
        .disable_statement_logging()
        .connect()
        .await
        .with_context(|| format!("cannot open {}", db_path.display()))?;
    let mut tx = Connection::begin(&mut conn).await?;
    let started = Instant::now();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO customers (id, external_id, name, email, timezone, state, attributes, created_at, updated_at)
         SELECT i, 'cust-' || i, 'Customer ' || i, 'cust-' || i || '@example.com', 'UTC', 'paid',
                json_object('renews_at', date(?3, (CASE WHEN (i * ?2) / ?1 != ((i - 1) * ?2) / ?1
                                                        THEN 7 - i % 60 ELSE 8 + i % 300 END) || ' days')),
                ?4, ?4
         FROM n",
    )
    .bind(customers as i64)
    .bind(due as i64)
    .bind(t0.format("%Y-%m-%d").to_string())
    .bind(planned_at.timestamp_millis())
    .execute(&mut *tx)
    .await
    .context("cannot insert the customers")?;
    eprintln!(
        "tick: {customers} customers inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, anchor, created_at, updated_at)
         SELECT id, ?1, id || ':' || ?1 || ':' || occ || 'T10:00Z', ms, ms, 'pending', renews, ?2, ?2
         FROM (SELECT id, renews, occ, unixepoch(occ || ' 10:00') * 1000 AS ms
               FROM (SELECT id, renews, date(renews, '-7 days') AS occ
                     FROM (SELECT id, json_extract(attributes, '$.renews_at') AS renews FROM customers)))
         ORDER BY id",
    )
    .bind(RULE)
    .bind(planned_at.timestamp_millis())
    .execute(&mut *tx)
    .await
    .context("cannot insert the schedule")?;
    eprintln!(
        "tick: {customers} schedule rows inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    tx.commit().await?;
    conn.close().await?;
    eprintln!(
        "tick: committed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
    let mut conn = herald.store.pool.acquire().await?;
    let mut samples = vec![1, customers, customers / 2 + 1, (customers / due).max(1)];
    samples.dedup();
    for id in samples {
        let id = id as i64;
        let customer = customers::by_id(&mut conn, id)
            .await?
            .context("a seeded customer is missing")?;
        let (anchor, date) =
            date_anchor(trigger, &customer).context("a seeded customer has no renews_at")?;
        let at = trigger
            .next_occurrence(date, customer.tz(), planned_at)
            .context("the planner finds no occurrence")?;
        let rows = schedule::pending_for(&mut conn, id).await?;
        let [row] = rows.as_slice() else {
            bail!("customer {id} has {} pending rows; expected 1", rows.len());
        };
        let key = date_occurrence_key(id, RULE, at);
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

/// SQLite's counters of one run of the claim's row selection.
struct ClaimCounters {
    rows: i64,
    /// Rows stepped by full scans (`SQLITE_STMTSTATUS_FULLSCAN_STEP`).
    fullscan_steps: i64,
    /// Rows stepped by cursors that are not full scans: `OP_Next`/`OP_Prev`
    /// bump slot 0 of the same counter array unless they are full scans
    /// (slot 0 is not a documented op code, but `sqlite3_stmt_status` reads it).
    index_steps: i64,
    /// Sorts (`SQLITE_STMTSTATUS_SORT`); 0 when the index gives the order.
    sorts: i64,
    /// Virtual machine operations (`SQLITE_STMTSTATUS_VM_STEP`).
    vm_steps: i64,
}

fn errmsg(db: *mut ffi::sqlite3) -> String {
    // SAFETY: `db` is a live connection; sqlite3_errmsg returns a NUL-terminated string it owns.
    unsafe {
        CStr::from_ptr(ffi::sqlite3_errmsg(db))
            .to_string_lossy()
            .into_owned()
    }
}

/// Prepare, run to completion and read the counters of the claim's SELECT
/// on `db`. The caller holds the connection's lock.
fn run_claim_select(db: *mut ffi::sqlite3, now_ms: i64, limit: i64) -> Result<ClaimCounters> {
    let sql = CString::new(CLAIM_SELECT)?;
    let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    // SAFETY: `db` is a live connection locked by the caller; `sql` is NUL-terminated.
    let rc =
        unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut()) };
    if rc != ffi::SQLITE_OK || stmt.is_null() {
        bail!("cannot prepare the claim query: {}", errmsg(db));
    }
    struct Finalize(*mut ffi::sqlite3_stmt);
    impl Drop for Finalize {
        fn drop(&mut self) {
            // SAFETY: the statement was prepared above and is finalized once.
            unsafe { ffi::sqlite3_finalize(self.0) };
        }
    }
    let guard = Finalize(stmt);
    let mut rows = 0i64;
    // SAFETY: `stmt` is a valid prepared statement with two parameters.
    unsafe {
        ffi::sqlite3_bind_int64(stmt, 1, now_ms);
        ffi::sqlite3_bind_int64(stmt, 2, limit);
        loop {
            match ffi::sqlite3_step(stmt) {
                ffi::SQLITE_ROW => rows += 1,
                ffi::SQLITE_DONE => break,
                _ => bail!("the claim query failed: {}", errmsg(db)),
            }
        }
    }
    // SAFETY: as above; reading counters does not reset them.
    let counter = |op: c_int| i64::from(unsafe { ffi::sqlite3_stmt_status(stmt, op, 0) });
    let counters = ClaimCounters {
        rows,
        fullscan_steps: counter(ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP),
        index_steps: counter(0),
        sorts: counter(ffi::SQLITE_STMTSTATUS_SORT),
        vm_steps: counter(ffi::SQLITE_STMTSTATUS_VM_STEP),
    };
    drop(guard);
    Ok(counters)
}

/// Counters of the real claim statement as the tick ran it: found among the
/// statements sqlx keeps prepared on each pooled connection.
fn claim_update_counters(db: *mut ffi::sqlite3) -> Option<(i64, i64, i64)> {
    let mut found = None;
    let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
    loop {
        // SAFETY: `db` is a live connection locked by the caller; `stmt` is null or one of its statements.
        stmt = unsafe { ffi::sqlite3_next_stmt(db, stmt) };
        if stmt.is_null() {
            return found;
        }
        // SAFETY: `stmt` is a live statement; sqlite3_sql returns its NUL-terminated text.
        let sql = unsafe { ffi::sqlite3_sql(stmt) };
        if sql.is_null() {
            continue;
        }
        // SAFETY: non-null, NUL-terminated, owned by the statement.
        let text = unsafe { CStr::from_ptr(sql) }.to_string_lossy();
        if text.trim_start().starts_with(CLAIM_UPDATE_PREFIX) {
            // SAFETY: `stmt` is live; reading counters does not reset them.
            let counter = |op: c_int| i64::from(unsafe { ffi::sqlite3_stmt_status(stmt, op, 0) });
            let (f, i, v) = found.unwrap_or((0, 0, 0));
            found = Some((
                f + counter(ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP),
                i + counter(0),
                v + counter(ffi::SQLITE_STMTSTATUS_VM_STEP),
            ));
        }
    }
}

// ── SQL profile (--profile-sql) ──────────────────────────────────────────

#[derive(Default)]
struct SqlProfile {
    /// Per statement text: runs, total nanoseconds.
    by_sql: HashMap<String, (u64, u64)>,
}

static SQL_PROFILE: Mutex<Option<SqlProfile>> = Mutex::new(None);

extern "C" fn profile_callback(
    mask: c_uint,
    _ctx: *mut c_void,
    p: *mut c_void,
    x: *mut c_void,
) -> c_int {
    if mask != ffi::SQLITE_TRACE_PROFILE as c_uint || p.is_null() || x.is_null() {
        return 0;
    }
    // SAFETY: for SQLITE_TRACE_PROFILE, P is the statement and X points to an i64 of nanoseconds.
    let (sql, ns) = unsafe {
        let sql = ffi::sqlite3_sql(p as *mut ffi::sqlite3_stmt);
        if sql.is_null() {
            return 0;
        }
        (CStr::from_ptr(sql).to_string_lossy(), *(x as *const i64))
    };
    let key: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(mut guard) = SQL_PROFILE.lock() {
        if let Some(profile) = guard.as_mut() {
            let entry = profile.by_sql.entry(key).or_default();
            entry.0 += 1;
            entry.1 += ns.max(0) as u64;
        }
    }
    0
}

/// Install (or remove) the profile trace on every connection of the pool.
async fn set_sql_profile(pool: &SqlitePool, on: bool) -> Result<usize> {
    // Open all the connections the pool may use, so every one is traced.
    let mut conns = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        conns.push(pool.acquire().await?);
    }
    for conn in &mut conns {
        let mut handle = conn.lock_handle().await?;
        let db = handle.as_raw_handle().as_ptr();
        // SAFETY: `db` is live and locked; the callback only reads its arguments.
        let rc = unsafe {
            if on {
                ffi::sqlite3_trace_v2(
                    db,
                    ffi::SQLITE_TRACE_PROFILE as c_uint,
                    Some(profile_callback),
                    std::ptr::null_mut(),
                )
            } else {
                ffi::sqlite3_trace_v2(db, 0, None, std::ptr::null_mut())
            }
        };
        if rc != ffi::SQLITE_OK {
            bail!("cannot set the SQL trace: {}", errmsg(db));
        }
    }
    Ok(conns.len())
}

fn print_sql_profile(wall: Duration, rows: u64) {
    let Some(profile) = SQL_PROFILE.lock().ok().and_then(|mut g| g.take()) else {
        return;
    };
    let mut entries: Vec<(String, (u64, u64))> = profile.by_sql.into_iter().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.1 .1));
    let total_ns: u64 = entries.iter().map(|e| e.1 .1).sum();
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
    for (sql, (runs, ns)) in entries {
        let short: String = sql.chars().take(110).collect();
        eprintln!(
            "  {:>8} {:>9.3} {:>9.1} {:>5.1}%  {}",
            runs,
            ns as f64 / 1e9,
            ns as f64 / 1e3 / runs.max(1) as f64,
            100.0 * ns as f64 / total_ns.max(1) as f64,
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

async fn count(pool: &SqlitePool, sql: &str, binds: &[i64]) -> Result<i64> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.fetch_one(pool)
        .await
        .with_context(|| format!("cannot run {sql}"))?
        .get(0))
}

async fn tick_bench(
    customers: u64,
    due: u64,
    profile_sql: bool,
    concurrency: Option<usize>,
) -> Result<()> {
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
    let planned_at = t0 - ChronoDuration::days(90);
    let db_path = dir.join("bench.db");
    let clock = VirtualClock::new(t0);
    let herald = Herald::open(
        &config,
        OpenOptions {
            db: Some(&db_path),
            clock: Arc::new(clock),
            http_mode: HttpMode::Live,
        },
    )
    .await?;
    let pool = herald.store.pool.clone();
    eprintln!(
        "tick: database {} (scheduler batch {}, concurrency {})",
        db_path.display(),
        herald.scheduler.batch,
        herald.scheduler.concurrency
    );

    let started = Instant::now();
    populate(&db_path, customers, due, t0, planned_at).await?;
    let populate_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    sqlx::query("ANALYZE").execute(&pool).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    eprintln!(
        "tick: ANALYZE and checkpoint in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    check_seed(&herald, customers, due, planned_at).await?;
    // The same starting state for the SQLite floor (run after the tick).
    let floor_db = dir.join("floor.db");
    std::fs::copy(&db_path, &floor_db).context("cannot copy the database for the floor")?;
    let t0_ms = t0.timestamp_millis();
    let seeded_due = count(
        &pool,
        "SELECT COUNT(*) FROM schedule WHERE status = 'pending' AND due_at <= ?",
        &[t0_ms],
    )
    .await?;
    if seeded_due != due as i64 {
        eprintln!("error=the seed has {seeded_due} due rows; expected {due}");
        bail!("bench seed is wrong");
    }
    figure!("customers", "{customers}");
    figure!("scheduler_concurrency", "{}", herald.scheduler.concurrency);
    figure!("due_rows", "{due}");
    figure!("populate_seconds", "{populate_s:.2}");

    // Rows read by the claim: its SELECT, run on its own connection, with
    // SQLite's per-statement counters.
    let options = SqliteConnectOptions::new()
        .filename(&db_path)
        .read_only(true);
    let mut probe: SqliteConnection = options.connect().await?;
    let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {CLAIM_SELECT}"))
        .bind(t0_ms)
        .bind(due as i64)
        .fetch_all(&mut probe)
        .await?
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
    eprintln!("tick: claim query plan: {}", plan.join(" | "));
    let counters = {
        let mut handle = probe.lock_handle().await?;
        run_claim_select(handle.as_raw_handle().as_ptr(), t0_ms, due as i64)?
    };
    probe.close().await?;
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
        u8::from(plan.iter().any(|d| d.contains("schedule_due")))
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

    let profiled = if profile_sql {
        *SQL_PROFILE
            .lock()
            .map_err(|_| anyhow::anyhow!("profile lock"))? = Some(SqlProfile::default());
        let n = set_sql_profile(&pool, true).await?;
        eprintln!("tick: SQL profile trace on {n} connections");
        true
    } else {
        false
    };

    eprintln!("tick: one tick over {due} due rows ...");
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let records = herald.tick().await?;
    let tick = started.elapsed();
    let tick_cpu = process_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    if profiled {
        set_sql_profile(&pool, false).await?;
        print_sql_profile(tick, due);
    }

    // The real claim statement, as the tick ran it.
    let mut in_tick = None;
    {
        let mut conns = Vec::new();
        for _ in 0..pool.size() {
            conns.push(pool.acquire().await?);
        }
        for conn in &mut conns {
            let mut handle = conn.lock_handle().await?;
            if let Some((f, i, v)) = claim_update_counters(handle.as_raw_handle().as_ptr()) {
                let (tf, ti, tv) = in_tick.unwrap_or((0, 0, 0));
                in_tick = Some((tf + f, ti + i, tv + v));
            }
        }
    }

    let done = count(
        &pool,
        "SELECT COUNT(*) FROM schedule WHERE status = 'done' AND occurs_at <= ?",
        &[t0_ms],
    )
    .await?;
    let still_due = count(
        &pool,
        "SELECT COUNT(*) FROM schedule WHERE status = 'pending' AND due_at <= ?",
        &[t0_ms],
    )
    .await?;
    let claimed = count(
        &pool,
        "SELECT COUNT(*) FROM schedule WHERE claim_token IS NOT NULL",
        &[],
    )
    .await?;
    let planned_next = count(
        &pool,
        "SELECT COUNT(*) FROM schedule n JOIN schedule d ON d.customer_id = n.customer_id AND d.status = 'done'
         WHERE n.status = 'pending' AND n.created_at = ?1 AND n.occurs_at > ?1 AND n.anchor = d.anchor
           AND n.occurs_at >= d.occurs_at + 365 * 86400000",
        &[t0_ms],
    )
    .await?;
    let total_rows = count(&pool, "SELECT COUNT(*) FROM schedule", &[]).await?;
    let delivered = count(
        &pool,
        "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
        &[],
    )
    .await?;
    let inbox = count(&pool, "SELECT COUNT(*) FROM inbox", &[]).await?;
    let delivered_records = records.iter().filter(|r| r.status == "delivered").count() as i64;

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
    figure!("done_rows", "{done}");
    figure!("planned_next", "{planned_next}");
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

    let started = Instant::now();
    let replay = herald.tick().await?;
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
    let floor =
        tokio::task::spawn_blocking(move || herald::bench_floor::run(&floor_db, t0_ms, due as i64))
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
    pool.close().await;
    drop(herald);
    drop(scratch);
    Ok(())
}
