//! The deployment file (`herald.toml`): database, scheduler, retries, the
//! HTTP listener, the channels with their plugins, settings, secrets and
//! limits, the declared customer attributes, and the strategy rules.
//!
//! This module only parses and resolves the file (paths, secrets, durations);
//! [`crate::strategy`] compiles the rules and templates it contains.

use crate::span::{parse_exact, Span};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole deployment file as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Where the SQLite database lives.
    #[serde(default)]
    pub database: DatabaseSection,
    /// How the background scheduler claims due reminders.
    #[serde(default)]
    pub scheduler: SchedulerSection,
    /// Retry policy for retryable failures (each channel may override it).
    #[serde(default)]
    pub retry: RetrySection,
    /// The HTTP API of `herald serve`.
    #[serde(default)]
    pub server: ServerSection,
    /// Click tracking and the open pixel (both off by default).
    #[serde(default)]
    pub tracking: TrackingSection,
    /// Plugin runtime settings shared by all plugins.
    #[serde(default)]
    pub plugins: PluginsSection,
    /// Channels by name.
    #[serde(default)]
    pub channels: BTreeMap<String, ChannelSection>,
    /// Declared customer attributes and their types.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeType>,
    /// Strategy-wide defaults.
    #[serde(default)]
    pub strategy: StrategySection,
    /// What reminders are about (`service`, `marketing`, `billing`), by
    /// name: a customer can turn a topic off on the preference page.
    #[serde(default)]
    pub topics: BTreeMap<String, TopicSection>,
    /// Named groups of customers (`herald segment`, campaigns), by name.
    #[serde(default)]
    pub segments: BTreeMap<String, SegmentSection>,
    /// The reminder rules, in order.
    #[serde(default)]
    pub rules: Vec<RuleSection>,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// Path of the SQLite file, relative to the config file.
    #[serde(default = "default_db_path")]
    pub path: String,
    /// A database URL instead of `path`: `postgres://USER:PASSWORD@HOST/DB`
    /// for PostgreSQL (several nodes on one database), or `sqlite://PATH`.
    #[serde(default)]
    pub url: Option<String>,
}

fn default_db_path() -> String {
    "herald.db".into()
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            path: default_db_path(),
            url: None,
        }
    }
}

/// `[scheduler]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// How often `serve` looks for due reminders.
    #[serde(default = "default_tick")]
    pub tick: String,
    /// How long a claimed reminder stays reserved for the claiming process. A
    /// process that dies leaves its claims to be taken again after this long.
    #[serde(default = "default_lease")]
    pub lease: String,
    /// Most reminders claimed per tick.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Most sends in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_tick() -> String {
    "1s".into()
}
fn default_lease() -> String {
    "5m".into()
}
fn default_batch() -> u32 {
    500
}
fn default_concurrency() -> usize {
    16
}

impl Default for SchedulerSection {
    fn default() -> Self {
        Self {
            tick: default_tick(),
            lease: default_lease(),
            batch: default_batch(),
            concurrency: default_concurrency(),
        }
    }
}

/// `[retry]`, also usable as `[channels.NAME.retry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts in all, the first included, before a reminder is dead.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further attempt.
    #[serde(default = "default_retry_base")]
    pub base: String,
    /// Longest delay between two attempts.
    #[serde(default = "default_retry_max")]
    pub max: String,
}

fn default_max_attempts() -> u32 {
    5
}
fn default_retry_base() -> String {
    "1m".into()
}
fn default_retry_max() -> String {
    "6h".into()
}

impl Default for RetrySection {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            base: default_retry_base(),
            max: default_retry_max(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port the API listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The URL providers reach this server at (e.g. `https://herald.example.com`),
    /// for delivery-report callbacks to `/hooks/{channel}` and their signatures,
    /// and for unsubscribe links.
    pub public_url: Option<String>,
    /// Key that signs unsubscribe links (`{ env = "VAR" }` or `{ file = "path" }`);
    /// without it a random key is generated once and kept in the database.
    pub link_secret: Option<SettingValue>,
    /// Limits on uninvited requests: provider callbacks and link hits.
    #[serde(default)]
    pub inbound: InboundSection,
}

/// `[server.inbound]`: how much of provider callbacks (`/hooks/{channel}`)
/// and of the links customers follow (`/t/...`, `/unsubscribe`) is taken
/// at once and how fast; the rest is answered 429 with `Retry-After`.
/// Resolved and bounded by [`crate::inbound::Settings`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSection {
    /// Callbacks handled at once, across channels (default 32, 1-128).
    pub callbacks: Option<u32>,
    /// Callbacks per channel, e.g. `"100/s"` (the default).
    pub callback_rate: Option<String>,
    /// Callbacks a channel may take at once after a quiet spell (default 200).
    pub callback_burst: Option<u32>,
    /// Link hits handled at once (default 64, 1-1024).
    pub links: Option<u32>,
    /// Link hits per client address, e.g. `"10/s"` (the default).
    pub link_rate: Option<String>,
    /// Link hits one address may make at once after a quiet spell (default 50).
    pub link_burst: Option<u32>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            link_secret: None,
            inbound: InboundSection::default(),
        }
    }
}

/// `[tracking]`: what Herald learns about a message after it is delivered.
/// Both need `[server] public_url`, the address customers reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSection {
    /// Rewrite http(s) links in text and HTML bodies to a signed redirect
    /// through `{public_url}/t/c/…` that records the click.
    #[serde(default)]
    pub clicks: bool,
    /// Add a 1x1 image `{public_url}/t/o/….gif` to HTML bodies that records
    /// the open.
    #[serde(default)]
    pub opens: bool,
}

/// `[plugins]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsSection {
    /// Where compiled plugins are cached; defaults to `$HERALD_CACHE_DIR`,
    /// then `$XDG_CACHE_HOME/herald`, then `~/.cache/herald`.
    pub cache_dir: Option<String>,
}

/// `[channels.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSection {
    /// Path of the plugin `.wasm`, relative to the config file. Exactly one of
    /// `plugin` and `builtin` is given.
    pub plugin: Option<String>,
    /// A channel built into the host: `inbox` (in-app messages).
    pub builtin: Option<String>,
    /// The address the channel needs; overrides what the plugin declares
    /// (useful for the console plugin standing in for email or SMS).
    pub address: Option<AddressKind>,
    /// Disabled channels stay configured but are never used.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Settings handed to the plugin on every send.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// Origins the plugin may reach over HTTP: `scheme://host[:port]`, with
    /// `*.` allowed at the start of the host and `*` as the port.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Let the plugin reach loopback, private and link-local addresses
    /// (a provider or relay on the operator's own network). Off: whatever
    /// an allowed name resolves to must be a public address.
    #[serde(default)]
    pub allow_private_network: bool,
    /// A PEM file of CA certificates (relative to the config file) that the
    /// plugin's TLS connections (`tcp://` entries, the `tls` capability)
    /// trust besides the webpki roots: a relay with a private CA.
    pub tls_ca_file: Option<String>,
    /// Wall-clock limit of one send.
    pub timeout: Option<String>,
    /// How long one send may spend running rather than waiting on the
    /// network (default 50ms), e.g. `250ms`.
    pub cpu: Option<String>,
    /// Memory limit of one send, e.g. `64MiB`.
    pub memory: Option<String>,
    /// Retry policy of this channel.
    pub retry: Option<RetrySection>,
    /// Most sends this channel makes, e.g. `"10/s"` or `"1/s"`; sends over
    /// the rate wait their turn.
    pub rate: Option<String>,
    /// Sends allowed at once after a quiet spell (default 1).
    pub burst: Option<u32>,
    /// A backup channel for when this one keeps failing.
    pub failover: Option<String>,
    /// Retryable failures in a row before sends go to `failover` (default 3).
    pub failover_after: Option<u32>,
    /// How long sends stay on the backup before the primary is tried again
    /// (default `1m`).
    pub failover_cooldown: Option<String>,
    /// What to do with a send whose outcome is unknown (the plugin timed
    /// out or trapped mid-send, or the node died between send and record):
    /// `resend` it (right when the provider drops a repeat of the same
    /// idempotency key) or `hold` it for an operator (`herald redrive` /
    /// `herald drop`). Default `resend`; `herald check` asks to choose.
    pub uncertain: Option<UncertainSends>,
    /// What one message on this channel costs, e.g. `"0.045 CNY"`: an amount
    /// and an ISO 4217 code (`herald simulate` adds up costs with it).
    pub price: Option<crate::price::Price>,
}

/// What a channel does with a send whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UncertainSends {
    /// Send it again (the provider gets the same idempotency key).
    #[default]
    Resend,
    /// Keep it as `unknown` until an operator redrives or drops it.
    Hold,
}

fn yes() -> bool {
    true
}

/// The kind of address a channel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressKind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A WeChat OpenID.
    Wechat,
    /// A registered app installation (push token).
    Push,
    /// No address: every customer can be reached.
    None,
}

impl std::fmt::Display for AddressKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AddressKind::Email => "email",
            AddressKind::Phone => "phone",
            AddressKind::Wechat => "wechat",
            AddressKind::Push => "push",
            AddressKind::None => "none",
        })
    }
}

/// A setting as written: a literal, or a secret read from the environment or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SettingValue {
    /// A literal string.
    Literal(String),
    /// `{ env = "NAME" }`: read from the host's environment at start.
    Env {
        /// Variable name.
        env: String,
    },
    /// `{ file = "path" }`: read from a file at start (trailing newline trimmed).
    File {
        /// File path, relative to the config file.
        file: String,
    },
    /// A literal number or boolean, passed to the plugin as text. (Last, so
    /// the secret forms above are tried first.)
    Scalar(toml::Value),
}

/// The declared type of a customer attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeType {
    /// Text.
    String,
    /// A number.
    Number,
    /// true / false.
    Bool,
    /// A calendar date, `YYYY-MM-DD` (or a timestamp, whose local date is used).
    Date,
    /// An instant, RFC 3339.
    Datetime,
}

/// `[strategy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySection {
    /// Local time of day at which date triggers fire, `HH:MM`.
    #[serde(default = "default_time_of_day")]
    pub default_time: String,
    /// Time zone of customers who have none.
    #[serde(default = "default_timezone")]
    pub default_timezone: String,
    /// Local times of day reminders may go out, e.g. `["11:00-12:00",
    /// "19:00-21:00"]`; empty means any time.
    #[serde(default)]
    pub send_windows: Vec<String>,
    /// Frequency caps per customer.
    #[serde(default)]
    pub caps: Vec<CapSection>,
}

/// `caps = [{ max = 2, per = "7d" }, { max = 1, per = "1d", channel = "sms" }]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapSection {
    /// Most reminders in the period.
    pub max: u32,
    /// The period, e.g. `7d`.
    pub per: Span,
    /// Only this channel.
    pub channel: Option<String>,
}

fn default_time_of_day() -> String {
    "10:00".into()
}
fn default_timezone() -> String {
    "UTC".into()
}

impl Default for StrategySection {
    fn default() -> Self {
        Self {
            default_time: default_time_of_day(),
            default_timezone: default_timezone(),
            send_windows: Vec::new(),
            caps: Vec::new(),
        }
    }
}

/// `[[rules]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    /// Stable rule id, used in occurrence keys and reports.
    pub id: String,
    /// What makes the rule fire.
    pub trigger: TriggerSection,
    /// Condition on the customer (a template expression), checked when the
    /// reminder is planned and again when it is due.
    pub when: Option<String>,
    /// Channels in order of preference.
    pub channels: Vec<String>,
    /// When a channel of the list applies: channel → condition (a template
    /// expression like `when`); a channel whose condition is false is passed
    /// over for the next.
    #[serde(default)]
    pub channel_when: BTreeMap<String, String>,
    /// Subject template.
    pub subject: String,
    /// Plain-text body template.
    pub text: String,
    /// Optional HTML body template (values are HTML-escaped).
    pub html: Option<String>,
    /// Extra named templates handed to the channel plugin with the message,
    /// e.g. the parameters of a provider's pre-approved SMS or WeChat template:
    /// `fields = { product = "{{ customer.attributes.plan }}" }`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// What the reminder is for: an event within a window after the send
    /// (`{ event = "login", within = "3d" }`). Reaching it is recorded
    /// against the delivery and ends the rule's follow-up steps.
    pub goal: Option<GoalSection>,
    /// Follow-ups while the goal is not reached and `when` still holds, each
    /// `after` the previous step was sent, with its own channels and text.
    #[serde(default)]
    pub steps: Vec<StepSection>,
    /// A targeting plugin that decides, when a reminder is due, whether it
    /// goes out now (adding `target.*` template variables), is skipped, or
    /// waits.
    pub targeting: Option<TargetingSection>,
    /// Send windows of this rule, replacing the strategy's (`[]`: any time).
    pub send_windows: Option<Vec<String>>,
    /// Transactional rules (order confirmations) ignore send windows and
    /// frequency caps, and do not count towards caps.
    #[serde(default)]
    pub transactional: bool,
    /// The topic (a name under `[topics]`) the rule's reminders belong to:
    /// a customer who turned it off gets none of them, unless the rule is
    /// transactional.
    pub topic: Option<String>,
    /// What a frequency cap does to this rule's reminders: `defer` (default)
    /// until the cap allows, or `drop`.
    pub on_cap: Option<String>,
    /// The message in other languages, by BCP 47 tag (`zh-CN`, `en`): a
    /// customer whose `locale` matches (exactly, or by language) gets that
    /// text; everyone else gets the rule's own.
    #[serde(default)]
    pub locales: BTreeMap<String, LocaleSection>,
}

/// `[segments.NAME]`: who belongs to a segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSection {
    /// The condition, in the language of rules' `when`, plus `count(kind[,
    /// period])`, `idle(kind, period)` and `last(kind)` over the customer's
    /// events: `customer.state == 'borrower' and idle('login', '30d')`.
    pub when: String,
    /// What the segment is, for listings.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[topics.NAME]`: a topic as customers see it on the preference page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSection {
    /// Its name by BCP 47 tag: `label = { en = "Offers", "zh-CN" = "优惠活动" }`.
    pub label: BTreeMap<String, String>,
    /// A line saying what it covers, by tag (optional).
    #[serde(default)]
    pub description: BTreeMap<String, String>,
}

/// `targeting = { plugin = "…/cadence.wasm", settings = { kind = "purchase" } }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetingSection {
    /// Path of the targeting plugin `.wasm`, relative to the config file.
    pub plugin: String,
    /// Settings handed to the plugin.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// Instructions one evaluation may run (default 11,000,000).
    pub fuel: Option<u64>,
    /// Memory limit of one evaluation (default 64MiB).
    pub memory: Option<String>,
    /// Wall-clock limit of one evaluation (default 1s).
    pub timeout: Option<String>,
    /// How far back the customer's events are given to the plugin (default 365d).
    pub history: Option<Span>,
    /// Only events of these kinds are given (default: all).
    pub kinds: Option<Vec<String>>,
}

/// `goal = { event = "login", within = "3d" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalSection {
    /// The event kind that means the reminder worked (the last of `stages`
    /// when those are given).
    #[serde(default)]
    pub event: Option<String>,
    /// The steps towards it, in order (`["download", "login", "apply",
    /// "withdraw"]`): the report counts how many customers reached each
    /// after the message, and the last is the goal.
    #[serde(default)]
    pub stages: Vec<String>,
    /// How long after a send the event counts.
    pub within: Span,
}

/// `[[rules.steps]]`: one follow-up of a sequence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    /// Wait this long after the previous step was sent.
    pub after: Span,
    /// Channels in order of preference (e.g. `["sms"]`, `["calls"]` for a task).
    pub channels: Vec<String>,
    /// When a channel of the list applies, as for the rule.
    #[serde(default)]
    pub channel_when: BTreeMap<String, String>,
    /// Subject template.
    pub subject: String,
    /// Plain-text body template.
    pub text: String,
    /// HTML body template.
    pub html: Option<String>,
    /// The step's message in other languages, as for the rule.
    #[serde(default)]
    pub locales: BTreeMap<String, LocaleSection>,
}

/// `[rules.locales."zh-CN"]`: one language's message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocaleSection {
    /// Subject template.
    pub subject: String,
    /// Plain-text body template.
    pub text: String,
    /// HTML body template; required when the rule has one.
    pub html: Option<String>,
}

/// `trigger = { on = "...", ... }`
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "on", rename_all = "lowercase", deny_unknown_fields)]
pub enum TriggerSection {
    /// The customer record was inserted.
    Created {
        /// Wait this long after the insert.
        delay: Option<Span>,
    },
    /// The customer record was updated.
    Updated {
        /// Only when this field or attribute changed.
        field: Option<String>,
        /// Only when `field` changed to this value (e.g. `to = "vip"`).
        to: Option<toml::Value>,
        /// Wait this long after the update.
        delay: Option<Span>,
    },
    /// The customer record was deleted.
    Deleted {},
    /// An event of a kind was recorded.
    Event {
        /// The event kind.
        kind: String,
        /// Wait this long after the event.
        delay: Option<Span>,
    },
    /// The customer has done none of `kinds` for a while: dormancy.
    Inactive {
        /// Event kinds that count as activity (e.g. `["login"]`).
        kinds: Vec<String>,
        /// How long without them, e.g. `7d`.
        #[serde(rename = "for")]
        idle: Span,
        /// Counted from: `last` (the latest such event, or sign-up when there
        /// is none; the default), `created` (sign-up only: "no visit within
        /// 3 days of registering"), or an event kind (`credit_granted`: "no
        /// loan within 7 days of the credit").
        since: Option<String>,
        /// Fire again this long after, while the customer stays dormant.
        repeat: Option<Span>,
        /// With `repeat`: the most times it fires for one dormant spell.
        max: Option<u32>,
    },
    /// A date attribute is reached.
    Date {
        /// The date attribute.
        attribute: String,
        /// Fire this long before the date.
        before: Option<Span>,
        /// Fire this long after the date.
        after: Option<Span>,
        /// Local time of day, `HH:MM`.
        at: Option<String>,
        /// Repeat after the first occurrence, e.g. `1y`.
        every: Option<Span>,
        /// Repeat on a cron schedule (seconds field first, as the `cron` crate
        /// reads it), evaluated in the customer's zone, from the first occurrence on.
        cron: Option<String>,
    },
}

/// A configuration file loaded from disk, with the directory its relative
/// paths are resolved against.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed file.
    pub file: ConfigFile,
    /// Directory of the config file.
    pub base_dir: PathBuf,
    /// Path of the config file, for messages.
    pub path: PathBuf,
    /// The text it was parsed from (the rules' templates are in it).
    pub source: String,
}

impl Config {
    /// Where the database is: `[database] url` if given (a `postgres://`
    /// or `sqlite://` URL), else `[database] path` relative to this file.
    pub fn database(&self) -> Result<crate::database::Location> {
        let base = self.path.parent().unwrap_or(Path::new(""));
        match &self.file.database.url {
            Some(url) if self.file.database.path != default_db_path() => anyhow::bail!(
                "[database] has both `url` ({}) and `path`; keep one",
                crate::database::Location::parse(url, base)
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            ),
            Some(url) => crate::database::Location::parse(url, base)
                .with_context(|| format!("[database] url in {}", self.path.display())),
            None => Ok(crate::database::Location::Embedded(
                self.resolve(&self.file.database.path),
            )),
        }
    }

    /// Read and parse a config file. Unknown keys and malformed values are
    /// errors that name the file, line and key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config = Self::parse(&text, path)?;
        Ok(config)
    }

    /// Parse config text as if it were read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let file: ConfigFile = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        Ok(Config {
            file,
            base_dir,
            path: path.to_path_buf(),
            source: text.to_string(),
        })
    }

    /// Resolve a path written in the config relative to the config's directory.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        let p = Path::new(relative);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The scheduler settings as durations.
    pub fn scheduler(&self) -> Result<SchedulerSettings> {
        let s = &self.file.scheduler;
        Ok(SchedulerSettings {
            tick: parse_exact(&s.tick).map_err(|e| anyhow::anyhow!("[scheduler] tick: {e}"))?,
            lease: parse_exact(&s.lease).map_err(|e| anyhow::anyhow!("[scheduler] lease: {e}"))?,
            batch: s.batch.max(1),
            concurrency: s.concurrency.max(1),
        })
    }

    /// The compiled-plugin cache directory: `[plugins] cache_dir`, else
    /// [`default_cache_dir`].
    pub fn cache_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.file.plugins.cache_dir {
            return Ok(self.resolve(dir));
        }
        default_cache_dir()
    }
}

/// `$HERALD_CACHE_DIR`, else `$XDG_CACHE_HOME/herald`, else
/// `~/.cache/herald`; with none of them set, an error. Never a shared
/// temporary directory: compiled plugins are run as native code, and
/// another user could put their own there first.
pub fn default_cache_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    cache_dir_from(var("HERALD_CACHE_DIR"), var("XDG_CACHE_HOME"), var("HOME"))
}

/// [`default_cache_dir`] from the values of its variables.
fn cache_dir_from(
    herald: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    if let Some(dir) = herald {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = xdg {
        return Ok(PathBuf::from(dir).join("herald"));
    }
    if let Some(home) = home {
        return Ok(PathBuf::from(home).join(".cache").join("herald"));
    }
    anyhow::bail!(
        "no directory for compiled plugins: set HERALD_CACHE_DIR (or [plugins] cache_dir) to a directory only this user can write; with neither HOME nor XDG_CACHE_HOME set, Herald will not fall back to a shared temporary directory"
    )
}

/// Scheduler settings resolved to durations.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    /// Poll interval of `serve`.
    pub tick: Duration,
    /// Claim lease.
    pub lease: Duration,
    /// Claim batch size.
    pub batch: u32,
    /// Sends in flight.
    pub concurrency: usize,
}

/// A retry policy resolved to durations.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub max_attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Longest backoff.
    pub max: Duration,
}

impl RetrySection {
    /// Resolve durations; `context` names the section in errors.
    pub fn resolve(&self, context: &str) -> Result<RetryPolicy> {
        if self.max_attempts == 0 {
            bail!("{context}: max_attempts must be at least 1");
        }
        Ok(RetryPolicy {
            max_attempts: self.max_attempts,
            base: parse_exact(&self.base).map_err(|e| anyhow::anyhow!("{context} base: {e}"))?,
            max: parse_exact(&self.max).map_err(|e| anyhow::anyhow!("{context} max: {e}"))?,
        })
    }
}

/// Parse a memory size such as `64MiB`, `512KiB`, `1GiB` or a plain byte count.
pub fn parse_memory(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("bad memory size `{text}`: write e.g. `64MiB`"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => {
            return Err(format!(
                "bad memory unit `{other}` in `{text}`: use KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("memory size `{text}` is too large"))
}

impl SettingValue {
    /// The value the plugin receives; secrets are read here.
    pub fn resolve(&self, config: &Config, channel: &str, key: &str) -> Result<String> {
        self.resolve_at(config, &format!("[channels.{channel}.settings] {key}"))
    }

    /// The value, with errors naming `place` (e.g. `[server] link_secret`).
    pub fn resolve_at(&self, config: &Config, place: &str) -> Result<String> {
        match self {
            SettingValue::Literal(s) => Ok(s.clone()),
            SettingValue::Scalar(v) => match v {
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => bail!(
                    "{place}: expected a string, number, boolean, {{ env = \"VAR\" }} or {{ file = \"path\" }}, found {}",
                    other.type_str()
                ),
            },
            SettingValue::Env { env } => std::env::var(env)
                .map_err(|_| anyhow::anyhow!("{place}: environment variable {env} is not set; set it in herald's environment, or use {{ file = \"path\" }}")),
            SettingValue::File { file } => {
                let path = config.resolve(file);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("{place}: cannot read secret file {}; create it (readable by herald) or fix the path", path.display())
                })?;
                Ok(text.trim_end_matches(['\r', '\n']).to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_directory_is_never_a_shared_temporary_one() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(
            cache_dir_from(os("/c"), os("/x"), os("/h")).unwrap(),
            Path::new("/c")
        );
        assert_eq!(
            cache_dir_from(None, os("/x"), os("/h")).unwrap(),
            Path::new("/x/herald")
        );
        assert_eq!(
            cache_dir_from(None, None, os("/h")).unwrap(),
            Path::new("/h/.cache/herald")
        );
        let err = cache_dir_from(None, None, None).unwrap_err().to_string();
        assert!(err.contains("set HERALD_CACHE_DIR"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse(
            "[scheduler]\ntick = \"1s\"\ntikc = 2\n",
            Path::new("h.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tikc"), "{err}");
        assert!(err.contains("h.toml"), "{err}");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1GiB").unwrap(), 1 << 30);
        assert!(parse_memory("12 parsecs").is_err());
    }

    #[test]
    fn triggers_parse() {
        let text = r#"
[[rules]]
id = "r"
trigger = { on = "date", attribute = "trial_ends_at", before = "4d", at = "09:30" }
channels = ["email"]
subject = "s"
text = "t"
"#;
        let c = Config::parse(text, Path::new("x.toml")).unwrap();
        match &c.file.rules[0].trigger {
            TriggerSection::Date { before, at, .. } => {
                assert_eq!(before.unwrap().days, 4);
                assert_eq!(at.as_deref(), Some("09:30"));
            }
            other => panic!("{other:?}"),
        }
    }
}
