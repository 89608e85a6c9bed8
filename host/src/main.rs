//! The `herald` command line: serve, import, simulate, deliveries, inbox, bench.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use herald::clock::{SharedClock, SystemClock, VirtualClock};
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
use herald::store::{customers, deliveries, inbox, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod bench;

/// Herald: lifecycle reminders, planned per customer and delivered through
/// sandboxed WebAssembly channel plugins.
#[derive(Parser)]
#[command(name = "herald", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines (to stderr); also `HERALD_LOG_FORMAT=json`.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArgs {
    /// The deployment file.
    #[arg(long, short, env = "HERALD_CONFIG", default_value = "herald.toml")]
    config: PathBuf,
    /// Use this database instead of the one the config names.
    #[arg(long, env = "HERALD_DB")]
    db: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler on the wall clock and the HTTP API.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        /// Listen here instead of the config's [server] listen.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Import customers from a CSV file (header: external_id,name,email,phone,
    /// wechat_openid,region,timezone,locale,state,created_at; other columns
    /// become attributes). Bad rows are reported and skipped; the exit code is
    /// non-zero if any row failed.
    Import {
        #[command(flatten)]
        config: ConfigArgs,
        /// The CSV file (`-` for stdin).
        file: PathBuf,
    },
    /// Replay a timeline through the real engine and plugins on a virtual
    /// clock; print one JSON line per delivery attempt.
    Simulate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Timeline, one JSON operation per line (upsert, event, delete).
        #[arg(long)]
        timeline: PathBuf,
        /// Start: YYYY-MM-DD (UTC midnight) or RFC 3339.
        #[arg(long, value_parser = parse_instant)]
        from: chrono::DateTime<chrono::Utc>,
        /// End: YYYY-MM-DD (UTC midnight) or RFC 3339.
        #[arg(long, value_parser = parse_instant)]
        until: chrono::DateTime<chrono::Utc>,
        /// Let plugins reach the network (their allow-lists still apply);
        /// by default their HTTP goes to a recording sink.
        #[arg(long)]
        live: bool,
    },
    /// List delivery attempts.
    Deliveries {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this customer (external id).
        #[arg(long)]
        customer: Option<String>,
        /// Only this status: delivered, failed, dead, skipped, suppressed or deferred.
        #[arg(long)]
        status: Option<String>,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        /// At most this many (the latest).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List live customers, ordered by external id.
    Customers {
        #[command(flatten)]
        config: ConfigArgs,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Start after this external id (for paging).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a customer's in-app inbox.
    Inbox {
        #[command(flatten)]
        config: ConfigArgs,
        /// The customer's external id.
        customer: String,
        /// Print JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List customers suppressed on a channel (they refused it: a STOP reply,
    /// an unsubscribe at the provider).
    Suppressions {
        #[command(flatten)]
        config: ConfigArgs,
        /// Only this customer (external id).
        #[arg(long)]
        customer: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// Import a suppression list instead of listing: CSV with
        /// `customer,channel,reason` (or `email`/`phone` instead of `customer`).
        #[arg(long, value_name = "FILE.csv")]
        import: Option<PathBuf>,
    },
    /// Render exactly what a customer would receive from a rule now (routing,
    /// targeting, send windows and caps applied; nothing is sent).
    Preview {
        #[command(flatten)]
        config: ConfigArgs,
        /// The rule id.
        #[arg(long)]
        rule: String,
        /// The customer's external id.
        #[arg(long)]
        customer: String,
        /// The follow-up step (0: the rule's own message).
        #[arg(long, default_value_t = 0)]
        step: usize,
        /// Preview at this time instead of now (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_parser = parse_instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A customer's upcoming reminders, and for each rule that will not
    /// fire, why (condition false, unsubscribed, capped, goal reached, ended).
    Explain {
        #[command(flatten)]
        config: ConfigArgs,
        /// The customer's external id.
        customer: String,
        /// Explain at this time instead of now (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_parser = parse_instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The staff call list the built-in `task` channel fills.
    Tasks {
        #[command(flatten)]
        config: ConfigArgs,
        /// Include tasks already done.
        #[arg(long)]
        all: bool,
        /// Mark this task done (by its id) instead of listing.
        #[arg(long)]
        done: Option<i64>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// API bearer tokens: create (shown once), list, revoke.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Check a config without running it: loads every plugin and reports
    /// every problem (worlds and versions, settings, secrets, templates,
    /// allowed hosts, rules' channels) as a table with how to fix each.
    /// Exit code non-zero on any error; warnings alone pass.
    Check {
        /// The deployment file.
        #[arg(long, short, env = "HERALD_CONFIG", default_value = "herald.toml")]
        config: PathBuf,
        /// Print the report as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// The funnel of a period, per rule and per channel: planned, sent,
    /// delivered, failed, opened, clicked, converted, rates, and the median
    /// time from send to the first open or click.
    Report {
        #[command(flatten)]
        config: ConfigArgs,
        /// Start: a span back from now (7d, 12h, 1mo), YYYY-MM-DD (UTC) or RFC 3339.
        #[arg(long, default_value = "7d")]
        since: String,
        /// End (exclusive), in the same forms; default now.
        #[arg(long)]
        until: Option<String>,
        /// Count only customers of this region (repeatable).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure plugin call cost and tick throughput; prints key=value lines.
    Bench(bench::BenchArgs),
    /// Tools for plugin developers: inspect, test against HTTP fixtures, scaffold.
    #[command(subcommand)]
    Plugin(herald::plugin_tools::PluginCommand),
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it (only its hash is stored: copy it now).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// admin (head office, every region), staff (only --region's
        /// customers) or ingest (may only post customers and events).
        #[arg(long)]
        role: herald::store::tokens::Role,
        /// A region a staff token may see (repeat for several).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// A label for listings.
        #[arg(long)]
        name: Option<String>,
    },
    /// List tokens (never the secret).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id.
    Revoke {
        #[command(flatten)]
        config: ConfigArgs,
        /// The id from `herald token list`.
        id: i64,
    },
}

fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    herald::simulate::parse_instant(text)
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match &cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    let json_env = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    init_logging(cli.log_json || json_env, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_config(path: &Path) -> Result<Config> {
    Config::load(path)
}

/// Open an existing database for the listing commands; they never create one.
async fn open_store(args: &ConfigArgs) -> Result<Store> {
    let config = load_config(&args.config)?;
    let path = args
        .db
        .clone()
        .unwrap_or_else(|| config.resolve(&config.file.database.path));
    if !path.exists() {
        anyhow::bail!(
            "no database at {}: nothing has run with this config yet (start `herald serve` or `herald import`), or pass --db",
            path.display()
        );
    }
    Store::open(&path).await
}

/// Print what an import did; failure when any row failed.
fn import_summary(report: &herald::import::ImportReport, what: &str) -> std::process::ExitCode {
    eprintln!(
        "imported {} {what}; {} row(s) failed",
        report.imported,
        report.failed.len()
    );
    if report.failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// Open an existing deployment for a read-only look at `at` (default now);
/// plugin HTTP goes to a recording sink so nothing leaves the machine.
async fn open_at(
    args: &ConfigArgs,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Herald, chrono::DateTime<chrono::Utc>)> {
    drop(open_store(args).await?);
    let cfg = load_config(&args.config)?;
    let now = at.unwrap_or_else(chrono::Utc::now);
    let herald = Herald::open(
        &cfg,
        OpenOptions {
            db: args.db.as_deref(),
            clock: Arc::new(VirtualClock::new(now)),
            http_mode: HttpMode::Sink(Arc::new(Mutex::new(Vec::new()))),
        },
    )
    .await?;
    Ok((herald, now))
}

async fn run(command: Command) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match command {
        Command::Serve { config, listen } => {
            let cfg = load_config(&config.config)?;
            let clock: SharedClock = Arc::new(SystemClock);
            // A changed strategy is planned for every customer by the
            // scheduler once the API is up (see serve::scheduler_loop).
            let herald = Arc::new(
                Herald::load(
                    &cfg,
                    OpenOptions {
                        db: config.db.as_deref(),
                        clock,
                        http_mode: HttpMode::Live,
                    },
                )
                .await?,
            );
            let listen = listen.unwrap_or_else(|| cfg.file.server.listen.clone());
            let live = herald::live::Live::reloadable(herald, config.config.clone());
            herald::serve::run(live, &listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { config, file } => {
            let cfg = load_config(&config.config)?;
            let herald = Herald::open(
                &cfg,
                OpenOptions {
                    db: config.db.as_deref(),
                    clock: Arc::new(SystemClock),
                    http_mode: HttpMode::Live,
                },
            )
            .await?;
            let report = if file.as_os_str() == "-" {
                herald::import::import_csv(&herald, std::io::stdin().lock()).await?
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("cannot open {}", file.display()))?;
                herald::import::import_csv(&herald, std::io::BufReader::new(f)).await?
            };
            Ok(import_summary(&report, "customer(s)"))
        }
        Command::Simulate {
            config,
            timeline,
            from,
            until,
            live,
        } => {
            if until < from {
                anyhow::bail!("--until ({until}) is before --from ({from})");
            }
            let cfg = load_config(&config.config)?;
            let ops = herald::simulate::load_timeline(&timeline)?;
            let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
            let db = config
                .db
                .clone()
                .unwrap_or_else(|| scratch.path().join("simulate.db"));
            let clock = VirtualClock::new(from);
            let sink = Arc::new(Mutex::new(Vec::new()));
            let herald = Herald::open(
                &cfg,
                OpenOptions {
                    db: Some(&db),
                    clock: Arc::new(clock.clone()),
                    http_mode: if live {
                        HttpMode::Live
                    } else {
                        HttpMode::Sink(sink.clone())
                    },
                },
            )
            .await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let summary = herald::simulate::run(&herald, &clock, &ops, until, &mut out).await?;
            out.flush()?;
            eprintln!(
                "simulated {} → {}: {} operation(s) applied, {} refused, {} after --until; {} attempt(s); {} HTTP request(s) recorded",
                from.to_rfc3339(),
                until.to_rfc3339(),
                summary.applied,
                summary.refused,
                summary.after_until,
                summary.attempts,
                sink.lock().map(|s| s.len()).unwrap_or(0)
            );
            Ok(if summary.refused == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Deliveries {
            config,
            customer,
            status,
            rule,
            limit,
            json,
        } => {
            let store = open_store(&config).await?;
            let rows = deliveries::list(
                &store.pool,
                &deliveries::DeliveryFilter {
                    customer,
                    status,
                    rule,
                    limit,
                },
            )
            .await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if json {
                for row in &rows {
                    writeln!(out, "{}", serde_json::to_string(row)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<20} {:<14} {:<16} {:<10} {:<12} {:>3} {:<10} DETAIL",
                    "AT (UTC)", "CUSTOMER", "RULE", "CHANNEL", "PROVIDER", "#", "STATUS"
                )?;
                for r in &rows {
                    let mut detail = match (&r.error, &r.provider_message_id) {
                        (Some(e), _) => e.clone(),
                        (None, Some(id)) => format!("id {id}"),
                        _ => String::new(),
                    };
                    if let Some(from) = &r.failover_from {
                        detail.push_str(&format!(" (failover from {from})"));
                    }
                    if let Some(report) = &r.report {
                        detail.push_str(&format!("; provider report: {report}"));
                        if let Some(reason) = &r.report_reason {
                            detail.push_str(&format!(" ({reason})"));
                        }
                    }
                    writeln!(
                        out,
                        "{:<20} {:<14} {:<16} {:<10} {:<12} {:>3} {:<10} {}",
                        r.at.format("%Y-%m-%d %H:%M:%S"),
                        r.customer,
                        r.rule,
                        r.channel.as_deref().unwrap_or("-"),
                        r.provider.as_deref().unwrap_or("-"),
                        r.attempt,
                        r.status,
                        detail
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Customers {
            config,
            limit,
            after,
            json,
        } => {
            let store = open_store(&config).await?;
            let mut conn = store.pool.acquire().await?;
            let list = customers::list(
                &mut conn,
                &customers::CustomerFilter {
                    limit,
                    after: after.clone(),
                    ..Default::default()
                },
            )
            .await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if !json {
                writeln!(
                    out,
                    "{:<16} {:<24} {:<10} {:<10} {:<20} CONTACT",
                    "EXTERNAL ID", "NAME", "STATE", "REGION", "TIMEZONE"
                )?;
            }
            for c in &list {
                if json {
                    writeln!(out, "{}", serde_json::to_string(c)?)?;
                } else {
                    writeln!(
                        out,
                        "{:<16} {:<24} {:<10} {:<10} {:<20} {}",
                        c.external_id,
                        c.name.as_deref().unwrap_or("-"),
                        c.state.as_deref().unwrap_or("-"),
                        c.region.as_deref().unwrap_or("-"),
                        c.timezone,
                        [
                            c.email.as_deref(),
                            c.phone.as_deref(),
                            c.wechat_openid.as_deref()
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Inbox {
            config,
            customer,
            json,
        } => {
            let store = open_store(&config).await?;
            let mut conn = store.pool.acquire().await?;
            let Some(c) = customers::by_external_id(&mut conn, &customer).await? else {
                anyhow::bail!("no customer with external_id `{customer}`");
            };
            drop(conn);
            let messages = inbox::list(&store.pool, c.id).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for m in &messages {
                if json {
                    writeln!(out, "{}", serde_json::to_string(m)?)?;
                } else {
                    writeln!(
                        out,
                        "── {} [{}] {}{}\n{}\n",
                        m.created_at.format("%Y-%m-%d %H:%M"),
                        m.rule,
                        m.subject,
                        if m.read_at.is_some() {
                            ""
                        } else {
                            "  (unread)"
                        },
                        m.text.trim_end()
                    )?;
                }
            }
            if messages.is_empty() && !json {
                writeln!(out, "(no messages for {customer})")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Suppressions {
            config,
            customer,
            json,
            import: Some(file),
        } => {
            let _ = (customer, json);
            let (herald, _) = open_at(&config, None).await?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let report =
                herald::suppression_import::import_csv(&herald, std::io::BufReader::new(f)).await?;
            for (line, why) in &report.failed {
                eprintln!("{}:{line}: {why}; row skipped", file.display());
            }
            Ok(import_summary(&report, "suppression(s)"))
        }
        Command::Suppressions {
            config,
            customer,
            json,
            import: None,
        } => {
            let store = open_store(&config).await?;
            let rows =
                herald::store::suppressions::list(&store.pool, customer.as_deref(), None).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if json {
                for row in &rows {
                    writeln!(out, "{}", serde_json::to_string(row)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<20} {:<14} {:<10} {:<9} REASON",
                    "SINCE (UTC)", "CUSTOMER", "CHANNEL", "SOURCE"
                )?;
                for r in &rows {
                    writeln!(
                        out,
                        "{:<20} {:<14} {:<10} {:<9} {}",
                        r.at.format("%Y-%m-%d %H:%M:%S"),
                        r.customer,
                        r.channel,
                        r.source,
                        r.reason
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview {
            config,
            rule,
            customer,
            step,
            at,
            json,
        } => {
            let (herald, now) = open_at(&config, at).await?;
            let p = herald.preview(&rule, &customer, step, now).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!("outcome:  {}", p.outcome);
                if let Some(c) = &p.channel {
                    match &p.failover_from {
                        Some(f) => println!("channel:  {c} (failover from {f})"),
                        None => println!("channel:  {c}"),
                    }
                }
                if let Some(r) = &p.reason {
                    println!("reason:   {r}");
                }
                if let Some(u) = &p.until {
                    println!("until:    {}", u.to_rfc3339());
                }
                if let Some(s) = &p.subject {
                    println!("subject:  {s}");
                }
                for (k, v) in &p.fields {
                    println!("field:    {k} = {v}");
                }
                if let Some(u) = &p.unsubscribe_url {
                    println!("unsubscribe: {u}");
                }
                if let Some(t) = &p.text {
                    println!("\n{}", t.trim_end());
                }
                if let Some(h) = &p.html {
                    println!("\n--- html ---\n{}", h.trim_end());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            config,
            customer,
            at,
            json,
        } => {
            let (herald, now) = open_at(&config, at).await?;
            let states = herald.explain(&customer, now).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if json {
                for s in &states {
                    writeln!(out, "{}", serde_json::to_string(s)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:<24} {:<14} {:<21} DETAIL",
                    "RULE", "STATE", "DUE (UTC)"
                )?;
                for s in &states {
                    let due = s
                        .due
                        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".into());
                    let rule = if s.step > 0 {
                        format!("{} (step {})", s.rule, s.step)
                    } else {
                        s.rule.clone()
                    };
                    writeln!(out, "{rule:<24} {:<14} {due:<21} {}", s.state, s.detail)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tasks {
            config,
            all,
            done,
            json,
        } => {
            let store = open_store(&config).await?;
            if let Some(id) = done {
                if !herald::store::tasks::mark_done(&store.pool, id, chrono::Utc::now()).await? {
                    anyhow::bail!("no open task with id {id}; `herald tasks` lists them");
                }
                println!("task {id} done");
                return Ok(ExitCode::SUCCESS);
            }
            let rows = herald::store::tasks::list(&store.pool, all).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            if json {
                for row in &rows {
                    writeln!(out, "{}", serde_json::to_string(row)?)?;
                }
            } else {
                writeln!(
                    out,
                    "{:>5} {:<17} {:<14} {:<18} {:<16} TASK",
                    "ID", "SINCE (UTC)", "CUSTOMER", "PHONE", "RULE"
                )?;
                for t in &rows {
                    writeln!(
                        out,
                        "{:>5} {:<17} {:<14} {:<18} {:<16} {}{}: {}",
                        t.id,
                        t.created_at.format("%Y-%m-%d %H:%M"),
                        t.customer,
                        t.phone.as_deref().unwrap_or("-"),
                        t.rule,
                        t.title,
                        if t.done_at.is_some() { " (done)" } else { "" },
                        t.reason.trim().replace('\n', " ")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { action } => {
            use herald::store::tokens;
            let config = match &action {
                TokenAction::Create { config, .. }
                | TokenAction::List { config, .. }
                | TokenAction::Revoke { config, .. } => config,
            };
            // Tokens are usually made before the first `serve`, so the
            // database is created here when it does not exist yet.
            let cfg = load_config(&config.config)?;
            let path = config
                .db
                .clone()
                .unwrap_or_else(|| cfg.resolve(&cfg.file.database.path));
            let store = Store::open(&path).await?;
            let now = chrono::Utc::now();
            match action {
                TokenAction::Create {
                    config: _,
                    role,
                    regions,
                    name,
                } => {
                    let (token, info) =
                        tokens::create(&store.pool, role, &regions, name.as_deref(), now).await?;
                    eprintln!(
                        "created {} token {} (id {}){}; it is shown only now:",
                        info.role.as_str(),
                        info.prefix,
                        info.id,
                        if regions.is_empty() {
                            String::new()
                        } else {
                            format!(" for region(s) {}", regions.join(", "))
                        }
                    );
                    println!("{token}");
                }
                TokenAction::List { json, .. } => {
                    for t in tokens::list(&store.pool).await? {
                        if json {
                            println!("{}", serde_json::to_string(&t)?);
                        } else {
                            println!(
                                "{:>4}  {:<12} {:<7} {:<20} {:<16} {}",
                                t.id,
                                t.prefix,
                                t.role.as_str(),
                                if t.regions.is_empty() {
                                    "-".to_string()
                                } else {
                                    t.regions.join(",")
                                },
                                t.name.as_deref().unwrap_or("-"),
                                t.revoked_at
                                    .map(|r| format!("revoked {r}"))
                                    .unwrap_or_else(|| "active".into())
                            );
                        }
                    }
                }
                TokenAction::Revoke { id, .. } => {
                    if !tokens::revoke(&store.pool, id, now).await? {
                        anyhow::bail!("no active token with id {id}; see `herald token list`");
                    }
                    eprintln!("revoked token {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config, json } => {
            let report = herald::check::check_file(&config).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(if report.has_errors() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Report {
            config,
            since,
            until,
            regions,
            json,
        } => {
            let store = open_store(&config).await?;
            let now = chrono::Utc::now();
            let since = herald::funnel::parse_bound(&since, now)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let until = match until {
                Some(text) => herald::funnel::parse_bound(&text, now)
                    .map_err(|e| anyhow::anyhow!("--until: {e}"))?,
                None => now,
            };
            if until < since {
                anyhow::bail!("--until ({until}) is before --since ({since})");
            }
            let scope = (!regions.is_empty()).then_some(regions.as_slice());
            let report = herald::funnel::report(&store.pool, since, until, scope).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", herald::funnel::table(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(command) => herald::plugin_tools::run(command, Arc::new(SystemClock)).await,
    }
}
