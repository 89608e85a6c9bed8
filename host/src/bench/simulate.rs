//! `herald bench`, part 4: simulation speed. The SaaS example strategy
//! (`examples/saas-trial/herald.toml`, embedded at build time, its console
//! plugin pointed at the bench's plugin directory) runs over a year of
//! synthetic customers through the same path `herald simulate` takes
//! ([`herald::simulate::run`] on a virtual clock, plugin HTTP to a sink).
//! The timeline is generated in memory: signups spread evenly over the year,
//! a share of trials converting to paid (an upsert and a payment event), a
//! share of customers deleted later, and a share getting their trial
//! extended. The run is checked against what the strategy must have done
//! (one welcome per signup, one order confirmation per payment).

use super::ConsoleBench;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use herald::config::Config;
use herald::plugin::http_policy::HttpMode;
use herald::simulate::tally::Tally;
use herald::simulate::{self, Op, TimelineOp};
use herald::store::{floor, Location};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The example this benchmark runs.
const SAAS_CONFIG: &str = include_str!("../../../examples/saas-trial/herald.toml");
/// The plugin path as the example writes it (relative to the example directory).
const EXAMPLE_PLUGIN: &str = "../../target/plugins/console.wasm";
const TIMEZONES: [&str; 5] = [
    "Asia/Shanghai",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Tokyo",
    "America/Los_Angeles",
];

/// What the generated timeline contains, to check the run against.
#[derive(Debug, Default)]
struct Plan {
    ops: Vec<TimelineOp>,
    signups: u64,
    payments: u64,
    deletions: u64,
    extensions: u64,
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// `customers` signups spread evenly over `[from, from + 1 year)`. Customer
/// `i`: every 4th converts to paid 20 days after signup (every 3rd of those
/// on a quarterly plan), every 20th is deleted 45 days after signup, every
/// 10th (not converting) gets its trial extended by 14 days on day 25.
/// Operations after `until` are left out.
fn timeline(customers: u64, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<Plan> {
    let year_ms = ChronoDuration::days(365).num_milliseconds();
    let mut plan = Plan::default();
    let mut raw: Vec<(DateTime<Utc>, Op)> = Vec::with_capacity(customers as usize * 2);
    for i in 0..customers {
        let id = format!("c{i:07}");
        let signup = from + ChronoDuration::milliseconds(year_ms * i as i64 / customers as i64);
        let mut customer = json!({
            "external_id": id,
            "name": format!("Customer {i}"),
            "email": format!("{id}@example.com"),
            "timezone": TIMEZONES[i as usize % TIMEZONES.len()],
            "locale": if i % 2 == 0 { "zh-CN" } else { "en" },
            "state": "trial",
            "attributes": {
                "trial_started_at": date(signup),
                "trial_ends_at": date(signup + ChronoDuration::days(30)),
                "plan": "trial",
            },
        });
        if i % 3 == 0 {
            customer["phone"] = json!(format!("+86138{i:08}"));
        }
        raw.push((signup, upsert(customer)?));
        plan.signups += 1;
        if i % 4 == 0 && signup + ChronoDuration::days(21) <= until {
            let paid = signup + ChronoDuration::days(20);
            let term = if i % 12 == 0 { 91 } else { 365 };
            raw.push((
                paid,
                upsert(json!({
                    "external_id": id, "state": "paid",
                    "attributes": {"paid_started_at": date(paid),
                                   "paid_ends_at": date(paid + ChronoDuration::days(term)),
                                   "plan": if term == 91 { "quarterly" } else { "pro" }},
                }))?,
            ));
            raw.push((
                paid + ChronoDuration::minutes(1),
                Op::Event(herald::engine::EventInput {
                    customer: id.clone(),
                    kind: "payment".into(),
                    at: Some(paid + ChronoDuration::minutes(1)),
                    properties: json!({"amount": 990, "currency": "CNY"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    event_id: Some(format!("pay-{id}-1")),
                }),
            ));
            plan.payments += 1;
        } else if i % 10 == 1 && signup + ChronoDuration::days(25) <= until {
            raw.push((
                signup + ChronoDuration::days(25),
                upsert(json!({
                    "external_id": id,
                    "attributes": {"trial_ends_at": date(signup + ChronoDuration::days(44))},
                }))?,
            ));
            plan.extensions += 1;
        }
        if i % 20 == 7 && signup + ChronoDuration::days(45) <= until {
            raw.push((signup + ChronoDuration::days(45), Op::Delete(id)));
            plan.deletions += 1;
        }
    }
    // Stable: a customer's own operations at the same instant keep their order.
    raw.sort_by_key(|(at, _)| *at);
    plan.ops = raw
        .into_iter()
        .enumerate()
        .map(|(n, (at, op))| TimelineOp {
            line: n + 1,
            at,
            op,
        })
        .collect();
    Ok(plan)
}

fn upsert(value: serde_json::Value) -> Result<Op> {
    Ok(Op::Upsert(
        serde_json::from_value(value).context("a generated customer does not parse")?,
    ))
}

/// The example's configuration with its console plugin taken from `plugins_dir`.
fn saas_config(plugins_dir: &Path) -> Result<String> {
    if !SAAS_CONFIG.contains(EXAMPLE_PLUGIN) {
        bail!("examples/saas-trial/herald.toml no longer names {EXAMPLE_PLUGIN}; update bench_simulate.rs");
    }
    let console = plugins_dir
        .join("console.wasm")
        .canonicalize()
        .with_context(|| format!("no console.wasm in {}", plugins_dir.display()))?;
    let quoted = serde_json::to_string(&console.display().to_string())?;
    Ok(SAAS_CONFIG.replace(&format!("\"{EXAMPLE_PLUGIN}\""), &quoted))
}

pub async fn simulate_bench(plugins_dir: &Path, customers: u64) -> Result<()> {
    if customers == 0 {
        bail!("--sim-customers must be at least 1");
    }
    let scratch = tempfile::Builder::new()
        .prefix("herald-bench-sim-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let config_path = scratch.path().join("herald.toml");
    std::fs::write(&config_path, saas_config(plugins_dir)?)
        .context("cannot write the simulation config")?;
    let config = Config::load(&config_path)?;
    let from = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("bad start time")?;
    let until = from + ChronoDuration::days(365);
    let started = Instant::now();
    let mut plan = timeline(customers, from, until)?;
    eprintln!(
        "simulate: {} operations for {customers} customers generated in {:.1} s",
        plan.ops.len(),
        started.elapsed().as_secs_f64()
    );
    let customers_count = usize::try_from(customers).context("too many customers")?;
    let count = simulate::shards::default_shards(&config, customers_count);
    let plan_ops = std::mem::take(&mut plan.ops);
    let op_count = plan_ops.len();
    let shards_plan = simulate::shards::Plan {
        config: &config,
        from,
        until,
        http_mode: HttpMode::Sink(Arc::new(Mutex::new(Vec::new()))),
        databases: (0..count)
            .map(|i| Location::Embedded(scratch.path().join(format!("shard-{i}.db"))))
            .collect(),
    };
    let started = Instant::now();
    let mut tally = Tally::default();
    let summary = tokio::task::block_in_place(|| {
        simulate::shards::run(
            shards_plan,
            simulate::shards::split(plan_ops, count),
            &mut |record| {
                tally.add(record);
                Ok(())
            },
            &mut |_| {},
        )
    })?;
    let wall = started.elapsed().as_secs_f64();
    let messages = tally.messages();
    let delivered_to = |rule: &str| -> i64 {
        messages
            .iter()
            .filter(|(cell, _)| cell.rule == rule)
            .map(|(_, n)| *n as i64)
            .sum()
    };
    let welcomes = delivered_to("trial-welcome");
    let confirms = delivered_to("paid-confirm");
    let delivered: i64 = messages.values().map(|n| *n as i64).sum();
    let mut problems = Vec::new();
    if summary.refused != 0 || summary.applied != op_count {
        problems.push(format!(
            "{} of {} operations applied, {} refused",
            summary.applied, op_count, summary.refused
        ));
    }
    if welcomes != plan.signups as i64 || confirms != plan.payments as i64 {
        problems.push(format!(
            "{welcomes} welcomes and {confirms} order confirmations delivered; expected {} and {}",
            plan.signups, plan.payments
        ));
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error={p}");
        }
        bail!("the simulation did not do what the strategy says");
    }
    let years = (until - from).num_seconds() as f64 / (365.0 * 86400.0);
    println!("simulate_customers={customers}");
    println!("simulate_virtual_years={years:.2}");
    println!("simulate_shards={count}");
    println!("simulate_operations={op_count}");
    println!("simulate_attempts={}", summary.attempts);
    println!("simulate_delivered={delivered}");
    println!("simulate_wall_seconds={wall:.2}");
    println!("simulate_instants={}", summary.instants);
    println!("simulate_ticks={}", summary.ticks);
    // Each shard spends its wall time on its own instants: the cost of one.
    println!(
        "simulate_ms_per_instant_per_shard={:.3}",
        wall * 1e3 * count as f64 / summary.instants.max(1) as f64
    );
    println!(
        "simulate_customer_years_per_s={:.0}",
        customers as f64 * years / wall
    );
    eprintln!(
        "simulate: {} payments, {} trial extensions, {} deletions; {} attempts, {delivered} delivered",
        plan.payments, plan.extensions, plan.deletions, summary.attempts
    );
    let calls = summary.attempts.clamp(100, FLOOR_PLUGIN_CALLS);
    let shard_db = scratch.path().join("shard-0.db");
    match Floor::measure(plugins_dir, &shard_db, until, calls).await? {
        Some(floor) => floor.print(customers as f64 * years, summary.attempts, count),
        None => eprintln!("simulate: no floor: shard 0 has no pending reminder left to measure it on (simulate more customers)"),
    }
    Ok(())
}

/// Plugin calls timed for the floor at most (the plugin part times more).
const FLOOR_PLUGIN_CALLS: usize = 5_000;

/// What one attempt costs at the least on this machine, whatever the engine
/// around it does: its SQL through SQLite's C API in one transaction on a
/// scratch journal ([`floor::Work::Attempt`], on shard 0's own database
/// with every reminder it still has pending), and one call of the real
/// console plugin. Everything else — operations, decisions, rendering,
/// planning the next occurrence, one transaction per instant — counts as
/// free, so the customer-years per second this allows is an upper bound for
/// any simulation through SQLite and the real plugins.
struct Floor {
    sql_rows: u64,
    sql_us_per_row: f64,
    plugin_us: f64,
}

impl Floor {
    /// `None` when shard 0 has nothing pending to measure on.
    async fn measure(
        plugins_dir: &Path,
        shard_db: &Path,
        until: DateTime<Utc>,
        calls: usize,
    ) -> Result<Option<Floor>> {
        eprintln!("simulate: the floor (each pending reminder of shard 0 as one attempt's SQL, C API, one transaction; {calls} console plugin calls)");
        let db = shard_db.to_path_buf();
        let far = (until + ChronoDuration::days(3650)).timestamp_millis();
        let sql = tokio::task::spawn_blocking(move || {
            floor::run(
                &db,
                far,
                i64::MAX,
                floor::Work::Attempt,
                floor::Journal::Scratch,
            )
        })
        .await
        .context("the floor thread failed")??;
        if sql.rows == 0 {
            return Ok(None);
        }
        let plugin = ConsoleBench::load(plugins_dir).await?.timed(calls).await?;
        Ok(Some(Floor {
            sql_rows: sql.rows,
            sql_us_per_row: sql.seconds * 1e6 / sql.rows as f64,
            plugin_us: plugin.mean_us(),
        }))
    }

    /// The floor's figures beside the run's: `attempts` in `customer_years`
    /// on `shards` cores.
    fn print(&self, customer_years: f64, attempts: usize, shards: usize) {
        let per_customer_year = attempts as f64 / customer_years.max(1e-9);
        let us_per_customer_year = per_customer_year * (self.sql_us_per_row + self.plugin_us);
        println!("simulate_floor_sql_rows={}", self.sql_rows);
        println!(
            "simulate_floor_sql_us_per_attempt={:.2}",
            self.sql_us_per_row
        );
        println!("simulate_floor_plugin_us_per_attempt={:.2}", self.plugin_us);
        println!("simulate_attempts_per_customer_year={per_customer_year:.3}");
        println!(
            "simulate_floor_customer_years_per_s={:.0}",
            shards as f64 * 1e6 / us_per_customer_year.max(1e-9)
        );
    }
}
