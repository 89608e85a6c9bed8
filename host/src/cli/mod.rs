//! The `herald` command line: the commands and their arguments (clap), one
//! file per command group, and the one printer every listing uses
//! ([`print`]). Commands call the library; none holds SQL or engine logic.

mod data;
mod held;
mod import;
mod inspect;
mod load;
pub mod print;
mod report;
mod run;
mod segment;
mod serve;
mod sim_outputs;
mod simulate;
mod token;
mod what_if;

use clap::{Args, Parser, Subcommand};
use herald::clock::parse_instant;
use herald::store::Location;
use std::path::PathBuf;

pub use run::run;

/// Herald: lifecycle reminders, planned per customer and delivered through
/// sandboxed WebAssembly channel plugins.
#[derive(Parser)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines (to stderr); also `HERALD_LOG_FORMAT=json`.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the deployment's config and database are.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// The deployment file.
    #[arg(long, short, env = "HERALD_CONFIG", default_value = "herald.toml")]
    pub config: PathBuf,
    /// Use this database instead of the one the config names: a SQLite
    /// file path or a postgres:// URL.
    #[arg(long = "db", env = "HERALD_DB")]
    pub db_text: Option<String>,
}

/// Every `herald` command.
#[derive(Subcommand)]
pub enum Command {
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
    /// clock, or run the strategy over the deployment's own customers
    /// (--from-db, on a copy); print one JSON line per delivery attempt and
    /// a summary (messages, busiest hours against rate limits, costs) on
    /// stderr, or with --compare what another strategy would change.
    Simulate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Timeline, one JSON operation per line (upsert, event, delete);
        /// optional with --from-db (applied on top of the copy).
        #[arg(long)]
        timeline: Option<PathBuf>,
        /// Start: YYYY-MM-DD (UTC midnight) or RFC 3339; with --from-db,
        /// default now.
        #[arg(long, value_parser = parse_instant)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// End: YYYY-MM-DD (UTC midnight) or RFC 3339 (or --for).
        #[arg(long, value_parser = parse_instant)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        scope: what_if::Scope,
        /// Let plugins reach the network (their allow-lists still apply);
        /// by default their HTTP goes to a recording sink.
        #[arg(long)]
        live: bool,
        /// Answer plugins' HTTP requests from fixtures (the JSON list
        /// `herald plugin test --http` takes; the first match answers)
        /// instead of the recording sink's `200 {}`, so providers' real
        /// answers (ids, errors) reach the strategy; nothing leaves the machine.
        #[arg(long, value_name = "FIXTURES", conflicts_with = "live")]
        http: Option<PathBuf>,
        /// Simulate the customers in this many shards at once, each on its
        /// own scratch database [default: one per core, or one when a channel
        /// has a rate limit (with more, each shard paces its share of the
        /// limit); not with --db or --live].
        #[arg(long)]
        shards: Option<usize>,
        #[command(flatten)]
        outputs: sim_outputs::Outputs,
    },
    /// How many customers a segment (`[segments.NAME]`) holds, and who.
    #[command(subcommand)]
    Segment(segment::SegmentCommand),
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
        /// `customer,channel,reason` (or `email`/`phone` instead of
        /// `customer`). Without a `channel` column, `email`/`phone` rows
        /// (`email,phone,reason`) go on the do-not-contact list by address:
        /// every channel of that kind, every customer with the address now
        /// or later; addresses no customer has are kept and counted.
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
        /// With --done: what came of the call (reached, no_answer,
        /// wrong_number, declined, other).
        #[arg(long, requires = "done")]
        outcome: Option<String>,
        /// With --done: a note about the call.
        #[arg(long, requires = "done")]
        note: Option<String>,
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
    /// Reminders held for an operator: dead letters (`dead`: every attempt
    /// failed) and sends whose outcome is unknown (`unknown`: on channels
    /// with `uncertain = "hold"`), oldest first.
    Held {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        which: held::HeldArgs,
        /// Only ids above this (the last id of the previous page).
        #[arg(long)]
        after: Option<i64>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send held reminders again (dead letters or unknown sends): pending
    /// and due now, attempts counted afresh, the same occurrence key (so a
    /// provider that honours Herald's idempotency key drops a repeat).
    Redrive {
        #[command(flatten)]
        config: ConfigArgs,
        /// The ids `herald held` lists.
        ids: Vec<i64>,
        /// Every held reminder the filters match instead of ids.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        which: held::HeldArgs,
        /// When to send them (YYYY-MM-DD or RFC 3339); default now.
        #[arg(long, value_parser = parse_instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Let sends held with an unknown outcome go: never sent again (use
    /// when the provider shows the message did arrive).
    Drop {
        #[command(flatten)]
        config: ConfigArgs,
        /// The ids `herald held --status unknown` lists.
        ids: Vec<i64>,
        /// Every unknown send the filters match instead of ids.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        which: held::HeldArgs,
    },
    /// Measure plugin call cost and tick throughput; prints key=value lines.
    Bench(crate::bench::BenchArgs),
    /// Tools for plugin developers: inspect, test against HTTP fixtures, scaffold.
    #[command(subcommand)]
    Plugin(herald::plugin_tools::PluginCommand),
}

/// `herald token` actions.
#[derive(Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (only its hash is stored: copy it now).
    Create {
        #[command(flatten)]
        config: ConfigArgs,
        /// admin (head office, every region), staff (only --region's
        /// customers) or ingest (may only post customers and events, of
        /// --region's customers if given; never revives a deleted one).
        #[arg(long)]
        role: herald::store::tokens::Role,
        /// A region a staff token may see, or an ingest token may write
        /// (repeat for several).
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

impl ConfigArgs {
    /// `--db`, read here rather than by the argument parser, so an error
    /// never echoes a password: a path relative to the working directory,
    /// or a URL.
    pub fn db(&self) -> anyhow::Result<Option<Location>> {
        self.db_text
            .as_deref()
            .map(|text| Location::parse(text, std::path::Path::new("")))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--db: {e:#}"))
    }
}
