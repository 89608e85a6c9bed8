//! `herald plugin test`: one `send` of a channel plugin (or one `evaluate`
//! of a targeting plugin) with no deployment and no network. Settings come
//! from a file shaped like a `[channels.NAME]` section, the message (or the
//! customer and history) from JSON, HTTP answers from fixtures; the report
//! gives the outcome, every request made (secrets masked), wall time and
//! fuel, and the exit code says whether the outcome was the expected one.

use super::sandbox::{self, CallFailure, FailureKind, MeteredChannel};
use crate::clock::{SharedClock, VirtualClock};
use crate::config::{parse_memory, SettingValue};
use crate::plugin::bindings::channel_api::{Field, Message, PushToken, Recipient, SendError};
use crate::plugin::bindings::targeting::exports::herald::plugin::targeting::{CustomerView, Event};
use crate::plugin::bindings::types::{PluginInfo, Setting};
use crate::plugin::http_policy::{
    AllowList, FixtureExchange, FixtureResult, FixtureSet, HttpFixture, HttpMode,
};
use crate::plugin::targeting::{Verdict, DEFAULT_FUEL};
use crate::plugin::{redact, KvBackend, Limits, PluginKind, PluginServices, Runtime};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The default instruction budget of one test send. Deployments do not meter
/// channel plugins; this only stops a runaway plugin and makes the count
/// visible (a typical send uses a few million).
pub const DEFAULT_SEND_FUEL: u64 = 1_000_000_000;

/// `herald plugin test` arguments.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// The plugin (a wasm32-wasip2 component).
    pub plugin: PathBuf,
    /// TOML shaped like a `[channels.NAME]` section of herald.toml:
    /// `allowed_hosts`, `timeout`, `memory`, `cpu`, `fuel` and a `[settings]` table
    /// (values may be `{ env = "VAR" }` or `{ file = "path" }`).
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// JSON: the message to send (channel plugin), or `customer`, `history`
    /// and `now` to evaluate (targeting plugin).
    #[arg(long)]
    pub message: PathBuf,
    /// JSON list of HTTP fixtures `{method, url, body?, response}`; every
    /// request is answered from them and none reaches the network.
    #[arg(long)]
    pub http: Option<PathBuf>,
    /// Write every request the plugin made (secrets masked) to this JSON file.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// The outcome that passes: sent, retryable, permanent, unsubscribed
    /// (channel), or send, skip, defer (targeting). Default: sent, or any
    /// verdict for a targeting plugin.
    #[arg(long, value_enum)]
    pub expect: Option<Expect>,
    /// Instruction budget of the call (default 1,000,000,000 for a send,
    /// 11,000,000 for an evaluation, as in a deployment).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// The time the plugin sees (RFC 3339 or YYYY-MM-DD); default: the
    /// message's `sent_at` / `now`, else the current time.
    #[arg(long, value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_now(text: &str) -> Result<DateTime<Utc>, String> {
    crate::clock::parse_instant(text)
}

/// An outcome a vendor's CI can insist on.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The provider accepted the message.
    Sent,
    /// A retryable error.
    Retryable,
    /// A permanent error.
    Permanent,
    /// The recipient has unsubscribed.
    Unsubscribed,
    /// The address does not exist (contract 0.2.0).
    InvalidAddress,
    /// A targeting plugin said send.
    Send,
    /// A targeting plugin said skip.
    Skip,
    /// A targeting plugin said defer.
    Defer,
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Sent => "sent",
            Expect::Retryable => "retryable",
            Expect::Permanent => "permanent",
            Expect::Unsubscribed => "unsubscribed",
            Expect::InvalidAddress => "invalid-address",
            Expect::Send => "send",
            Expect::Skip => "skip",
            Expect::Defer => "defer",
        }
    }

    fn fits(self, kind: PluginKind) -> bool {
        match kind {
            PluginKind::Channel => matches!(
                self,
                Expect::Sent
                    | Expect::Retryable
                    | Expect::Permanent
                    | Expect::Unsubscribed
                    | Expect::InvalidAddress
            ),
            PluginKind::Targeting => matches!(self, Expect::Send | Expect::Skip | Expect::Defer),
        }
    }
}

/// The settings file: a `[channels.NAME]` section without `plugin`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    allowed_hosts: Option<Vec<String>>,
    timeout: Option<String>,
    memory: Option<String>,
    cpu: Option<String>,
    fuel: Option<u64>,
    #[serde(default)]
    settings: BTreeMap<String, SettingValue>,
}

/// A message as JSON; optional parts default to what a test needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFile {
    #[serde(default = "default_key")]
    idempotency_key: String,
    #[serde(default = "default_rule")]
    rule: String,
    recipient: RecipientFile,
    #[serde(default)]
    subject: String,
    text: String,
    html: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    unsubscribe_url: Option<String>,
    callback_url: Option<String>,
    sent_at: Option<DateTime<Utc>>,
}

fn default_key() -> String {
    "herald:plugin-test".to_string()
}

fn default_rule() -> String {
    "plugin-test".to_string()
}

fn default_zone() -> String {
    "UTC".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientFile {
    customer_id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    wechat_openid: Option<String>,
    locale: Option<String>,
    #[serde(default = "default_zone")]
    timezone: String,
    #[serde(default)]
    push_tokens: Vec<PushTokenFile>,
}

/// One push registration of the recipient, as the message file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushTokenFile {
    token: String,
    platform: String,
    app: String,
}

/// A targeting plugin's input as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetingFile {
    customer: CustomerFile,
    #[serde(default)]
    history: Vec<EventFile>,
    now: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerFile {
    external_id: String,
    name: Option<String>,
    region: Option<String>,
    #[serde(default = "default_zone")]
    timezone: String,
    locale: Option<String>,
    state: Option<String>,
    #[serde(default)]
    attributes: Map<String, Value>,
    created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    kind: String,
    at: DateTime<Utc>,
    #[serde(default)]
    properties: Map<String, Value>,
}

/// What the call came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The provider accepted the message.
    Sent {
        /// The provider's id.
        provider_message_id: String,
    },
    /// Worth retrying.
    Retryable {
        /// Why.
        reason: String,
        /// The provider's hint.
        retry_after_ms: Option<u64>,
    },
    /// Will never succeed.
    Permanent {
        /// Why.
        reason: String,
    },
    /// The recipient refused the channel.
    Unsubscribed {
        /// What the provider said.
        reason: String,
    },
    /// The address does not exist.
    InvalidAddress {
        /// What the provider said.
        reason: String,
    },
    /// Targeting: send now with these variables.
    Send {
        /// Template variables.
        variables: Map<String, Value>,
    },
    /// Targeting: skip this occurrence.
    Skip {
        /// Why.
        reason: String,
    },
    /// Targeting: ask again then.
    Defer {
        /// When.
        until: DateTime<Utc>,
    },
    /// No answer: trap, fuel, timeout, memory, or (targeting) a bad answer.
    Failed {
        /// What kind of failure, when known.
        kind: Option<FailureKind>,
        /// What happened.
        reason: String,
    },
}

impl Outcome {
    /// The outcome's name, as `--expect` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Sent { .. } => "sent",
            Outcome::Retryable { .. } => "retryable",
            Outcome::Permanent { .. } => "permanent",
            Outcome::Unsubscribed { .. } => "unsubscribed",
            Outcome::InvalidAddress { .. } => "invalid-address",
            Outcome::Send { .. } => "send",
            Outcome::Skip { .. } => "skip",
            Outcome::Defer { .. } => "defer",
            Outcome::Failed { .. } => "failed",
        }
    }

    fn line(&self) -> String {
        match self {
            Outcome::Sent {
                provider_message_id,
            } => format!("sent: provider message id {provider_message_id}"),
            Outcome::Retryable {
                reason,
                retry_after_ms,
            } => match retry_after_ms {
                Some(ms) => format!(
                    "retryable (retry after {}): {reason}",
                    humanize(Duration::from_millis(*ms))
                ),
                None => format!("retryable: {reason}"),
            },
            Outcome::Permanent { reason } => format!("permanent: {reason}"),
            Outcome::Unsubscribed { reason } => format!("unsubscribed: {reason}"),
            Outcome::InvalidAddress { reason } => format!("invalid address: {reason}"),
            Outcome::Send { variables } => {
                format!("send, variables {}", Value::Object(variables.clone()))
            }
            Outcome::Skip { reason } => format!("skip: {reason}"),
            Outcome::Defer { until } => format!("defer until {}", until.to_rfc3339()),
            Outcome::Failed {
                kind: Some(kind),
                reason,
            } => format!("FAILED ({kind}): {reason}"),
            Outcome::Failed { kind: None, reason } => format!("FAILED: {reason}"),
        }
    }
}

fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// One request as reported: secrets masked, fixture numbers 1-based.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedRequest {
    /// Method.
    pub method: String,
    /// URL (secrets masked).
    pub url: String,
    /// Headers, lowercase names (secrets masked; repeated names joined by `, `).
    pub headers: BTreeMap<String, String>,
    /// Body (secrets masked).
    pub body: String,
    /// `answered`, `unmatched` or `denied`.
    pub result: &'static str,
    /// The fixture that answered (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixture: Option<usize>,
    /// The status the plugin got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why no fixture matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// Everything `plugin test` found out.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The plugin file.
    pub plugin: String,
    /// `describe().name`.
    pub name: String,
    /// `describe().version`.
    pub version: String,
    /// `channel-plugin` or `targeting-plugin`.
    pub world: &'static str,
    /// What the call came to.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Every request the plugin made, in order.
    pub requests: Vec<ReportedRequest>,
    /// Wall time of the call, instantiation included, in milliseconds.
    pub elapsed_ms: f64,
    /// Instructions used.
    pub fuel: u64,
    /// The budget.
    pub fuel_budget: u64,
    /// The outcome that passes.
    pub expect: String,
    /// Whether the test passed.
    pub pass: bool,
    /// Why it did not.
    pub problems: Vec<String>,
}

/// Run `herald plugin test`.
pub async fn run(args: TestArgs, cache_dir: PathBuf, clock: SharedClock) -> Result<ExitCode> {
    let report = test(&args, cache_dir, clock).await?;
    if let Some(path) = &args.record {
        let text = serde_json::to_string_pretty(&report.requests)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the recording to {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{what} file {}", path.display()))
}

fn read_settings(path: Option<&Path>) -> Result<(SettingsFile, PathBuf)> {
    let Some(path) = path else {
        return Ok((SettingsFile::default(), PathBuf::from(".")));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the settings file {}", path.display()))?;
    let file: SettingsFile = toml::from_str(&text).map_err(|e| {
        anyhow!(
            "settings file {}: {} (it takes allowed_hosts, timeout, memory, cpu, fuel and a [settings] table, as a [channels.NAME] section of herald.toml does)",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((file, base))
}

/// A setting's value, reading `{ env }` and `{ file }` secrets; the flag says
/// whether it came from outside the file (and so is masked).
fn resolve(value: &SettingValue, base: &Path, key: &str) -> Result<(String, bool)> {
    let place = format!("[settings] {key}");
    Ok(match value {
        SettingValue::Literal(s) => (s.clone(), false),
        SettingValue::Scalar(v) => match v {
            toml::Value::Integer(i) => (i.to_string(), false),
            toml::Value::Float(f) => (f.to_string(), false),
            toml::Value::Boolean(b) => (b.to_string(), false),
            other => bail!(
                "{place}: expected a string, number, boolean, {{ env = \"VAR\" }} or {{ file = \"path\" }}, found {}",
                other.type_str()
            ),
        },
        SettingValue::Env { env } => (
            std::env::var(env)
                .with_context(|| format!("{place}: environment variable {env} is not set"))?,
            true,
        ),
        SettingValue::File { file } => {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{place}: cannot read secret file {}", path.display()))?;
            (text.trim_end_matches(['\r', '\n']).to_string(), true)
        }
    })
}

/// Resolved settings checked against what the plugin declares, as a
/// deployment checks them at start; returns the settings and the values to mask.
fn settings_for(
    file: &SettingsFile,
    base: &Path,
    info: &PluginInfo,
) -> Result<(Vec<Setting>, Vec<String>)> {
    let mut settings = Vec::new();
    let mut secrets = Vec::new();
    for (key, value) in &file.settings {
        let Some(spec) = info.settings.iter().find(|s| &s.key == key) else {
            let known: Vec<&str> = info.settings.iter().map(|s| s.key.as_str()).collect();
            bail!(
                "plugin `{}` has no setting `{key}`; it knows: {}",
                info.name,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        let (resolved, external) = resolve(value, base, key)?;
        if external || spec.secret {
            secrets.push(resolved.clone());
        }
        settings.push(Setting {
            key: key.clone(),
            value: resolved,
        });
    }
    for spec in &info.settings {
        if spec.required && !file.settings.contains_key(&spec.key) {
            bail!(
                "plugin `{}` needs the setting `{}` ({}); add it under [settings] in the settings file{}",
                info.name,
                spec.key,
                spec.description,
                if spec.secret {
                    ", e.g. as { env = \"VAR\" }"
                } else {
                    ""
                }
            );
        }
    }
    Ok((settings, secrets))
}

fn message_from(file: MessageFile, now: DateTime<Utc>) -> Message {
    Message {
        idempotency_key: file.idempotency_key,
        rule: file.rule,
        recipient: Recipient {
            customer_id: file.recipient.customer_id,
            name: file.recipient.name,
            email: file.recipient.email,
            phone: file.recipient.phone,
            wechat_openid: file.recipient.wechat_openid,
            locale: file.recipient.locale,
            timezone: file.recipient.timezone,
            push_tokens: file
                .recipient
                .push_tokens
                .into_iter()
                .map(|t| PushToken {
                    token: t.token,
                    platform: t.platform,
                    app: t.app,
                })
                .collect(),
        },
        subject: file.subject,
        text: file.text,
        html: file.html,
        fields: file
            .fields
            .into_iter()
            .map(|(name, value)| Field { name, value })
            .collect(),
        unsubscribe_url: file.unsubscribe_url,
        callback_url: file.callback_url,
        sent_at: file.sent_at.unwrap_or(now).timestamp_millis(),
    }
}

/// `Basic base64(user:password)` whose decoded credentials hold a secret.
fn basic_holds_secret(value: &str, secrets: &[String]) -> bool {
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let decoded = String::from_utf8_lossy(&decoded);
    secrets
        .iter()
        .any(|s| s.len() >= 4 && decoded.contains(s.as_str()))
}

/// An exchange with every secret masked: literally in the URL, headers and
/// body, and inside `Basic` credentials.
fn masked(exchange: &FixtureExchange, secrets: &[String]) -> ReportedRequest {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &exchange.headers {
        let value = if basic_holds_secret(value, secrets) {
            "Basic [redacted]".to_string()
        } else {
            redact(value, secrets)
        };
        headers
            .entry(name.clone())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let (result, fixture, status, why) = match &exchange.result {
        FixtureResult::Answered { fixture, status } => {
            ("answered", Some(fixture + 1), Some(*status), None)
        }
        FixtureResult::Unmatched { why } => (
            "unmatched",
            None,
            Some(crate::plugin::http_policy::UNMATCHED_STATUS),
            Some(why.clone()),
        ),
        FixtureResult::Denied => ("denied", None, None, None),
    };
    ReportedRequest {
        method: exchange.method.clone(),
        url: redact(&exchange.url, secrets),
        headers,
        body: redact(&exchange.body, secrets),
        result,
        fixture,
        status,
        why,
    }
}

fn outcome_of_send(
    result: Result<Result<crate::plugin::bindings::channel_api::Receipt, SendError>, CallFailure>,
    secrets: &[String],
) -> Outcome {
    let r = |s: &str| redact(s, secrets);
    match result {
        Ok(Ok(receipt)) => Outcome::Sent {
            provider_message_id: r(&receipt.provider_message_id),
        },
        Ok(Err(SendError::Retryable(e))) => Outcome::Retryable {
            reason: r(&e.reason),
            retry_after_ms: e.retry_after_ms,
        },
        Ok(Err(SendError::Permanent(reason))) => Outcome::Permanent { reason: r(&reason) },
        Ok(Err(SendError::Unsubscribed(reason))) => Outcome::Unsubscribed { reason: r(&reason) },
        Ok(Err(SendError::InvalidAddress(reason))) => {
            Outcome::InvalidAddress { reason: r(&reason) }
        }
        Err(failure) => Outcome::Failed {
            kind: Some(failure.kind),
            reason: failure.message,
        },
    }
}

/// Run the test and build the report (nothing printed).
pub async fn test(args: &TestArgs, cache_dir: PathBuf, clock: SharedClock) -> Result<Report> {
    let (file, base) = read_settings(args.settings.as_deref())?;
    let memory = match &file.memory {
        Some(m) => parse_memory(m).map_err(|e| anyhow!("settings file, memory: {e}"))?,
        None => crate::plugin::DEFAULT_MEMORY,
    };
    let runtime = Arc::new(Runtime::with_fuel(cache_dir, memory)?);
    let probe = sandbox::probe(&runtime, &args.plugin)?;
    if let Some(expect) = args.expect {
        if !expect.fits(probe.kind) {
            bail!(
                "--expect {} does not apply to a {} plugin; use {}",
                expect.name(),
                probe.kind,
                match probe.kind {
                    PluginKind::Channel =>
                        "sent, retryable, permanent, unsubscribed or invalid-address",
                    PluginKind::Targeting => "send, skip or defer",
                }
            );
        }
    }
    let fuel = args.fuel.or(file.fuel).unwrap_or(match probe.kind {
        PluginKind::Channel => DEFAULT_SEND_FUEL,
        PluginKind::Targeting => DEFAULT_FUEL,
    });
    if fuel == 0 {
        bail!("a fuel budget of 0 lets the plugin run nothing; leave it out for the default");
    }
    let timeout = match &file.timeout {
        Some(t) => {
            crate::span::parse_exact(t).map_err(|e| anyhow!("settings file, timeout: {e}"))?
        }
        None => match probe.kind {
            PluginKind::Channel => crate::plugin::DEFAULT_TIMEOUT,
            PluginKind::Targeting => crate::targeting::DEFAULT_TIMEOUT,
        },
    };
    let cpu = match &file.cpu {
        Some(c) => crate::span::parse_exact(c).map_err(|e| anyhow!("settings file, cpu: {e}"))?,
        None => crate::plugin::run_budget::DEFAULT_CPU,
    };
    match probe.kind {
        PluginKind::Channel => {
            test_channel(
                args,
                &file,
                &base,
                runtime,
                probe,
                (
                    Limits {
                        memory,
                        timeout,
                        cpu,
                    },
                    fuel,
                ),
                clock,
            )
            .await
        }
        PluginKind::Targeting => {
            if file.cpu.is_some() {
                bail!(
                    "{} is a targeting plugin, bounded by its fuel: leave out cpu",
                    args.plugin.display()
                );
            }
            if args.http.is_some() || file.allowed_hosts.is_some() {
                bail!("{} is a targeting plugin, which has no network: leave out --http and allowed_hosts", args.plugin.display());
            }
            test_targeting(
                args,
                &file,
                &base,
                runtime,
                Limits {
                    memory,
                    timeout,
                    ..Limits::default()
                },
                fuel,
                clock,
            )
            .await
        }
    }
}

fn services(now: DateTime<Utc>) -> PluginServices {
    PluginServices {
        kv: KvBackend::Memory(Default::default()),
        clock: Arc::new(VirtualClock::new(now)),
    }
}

async fn test_channel(
    args: &TestArgs,
    file: &SettingsFile,
    base: &Path,
    runtime: Arc<Runtime>,
    probe: sandbox::Probe,
    limits: (Limits, u64),
    clock: SharedClock,
) -> Result<Report> {
    let message_file: MessageFile = read_json(&args.message, "message")?;
    let now = args
        .now
        .or(message_file.sent_at)
        .unwrap_or_else(|| clock.now());
    let fixtures: Vec<HttpFixture> = match &args.http {
        Some(path) => read_json(path, "HTTP fixtures")?,
        None => Vec::new(),
    };
    let allowed = match &file.allowed_hosts {
        Some(hosts) => {
            AllowList::parse(hosts).map_err(|e| anyhow!("settings file, allowed_hosts: {e}"))?
        }
        None => AllowList::default(),
    };
    let fixture_set = Arc::new(FixtureSet::new(fixtures, file.allowed_hosts.is_some()));
    let mut channel = MeteredChannel::new(
        runtime,
        &probe,
        &args.plugin,
        limits,
        services(now),
        allowed,
    )?;
    let info = channel
        .describe()
        .await
        .with_context(|| format!("plugin {}", args.plugin.display()))?;
    let (settings, secrets) = settings_for(file, base, &info)?;
    channel.set_secrets(secrets.clone());
    let message = message_from(message_file, now);
    let metered = channel
        .send(&settings, &message, HttpMode::Fixtures(fixture_set.clone()))
        .await;
    let outcome = outcome_of_send(metered.result, &secrets);
    let requests: Vec<ReportedRequest> = fixture_set
        .exchanges()
        .iter()
        .map(|e| masked(e, &secrets))
        .collect();
    Ok(finish(
        args,
        &info,
        PluginKind::Channel,
        outcome,
        requests,
        metered.elapsed,
        metered.fuel,
        channel.fuel,
    ))
}

async fn test_targeting(
    args: &TestArgs,
    file: &SettingsFile,
    base: &Path,
    runtime: Arc<Runtime>,
    limits: Limits,
    fuel: u64,
    clock: SharedClock,
) -> Result<Report> {
    let input: TargetingFile = read_json(&args.message, "targeting input")?;
    let now = args.now.or(input.now).unwrap_or_else(|| clock.now());
    let plugin = runtime
        .load_targeting(&args.plugin, "plugin-test", limits, fuel, services(now))
        .await?;
    let (settings, _secrets) = settings_for(file, base, &plugin.info)?;
    let customer = CustomerView {
        external_id: input.customer.external_id,
        name: input.customer.name,
        region: input.customer.region,
        timezone: input.customer.timezone,
        locale: input.customer.locale,
        state: input.customer.state,
        attributes_json: Value::Object(input.customer.attributes).to_string(),
        created_at: input.customer.created_at.unwrap_or(now).timestamp_millis(),
    };
    let mut history: Vec<Event> = input
        .history
        .into_iter()
        .map(|e| Event {
            kind: e.kind,
            at: e.at.timestamp_millis(),
            properties_json: Value::Object(e.properties).to_string(),
        })
        .collect();
    // The host hands events oldest first, newest last.
    history.sort_by_key(|e| e.at);
    let started = std::time::Instant::now();
    let (verdict, used) = plugin.evaluate(&settings, customer, history, now).await;
    let elapsed = started.elapsed();
    let outcome = match verdict {
        Verdict::Send(variables) => Outcome::Send { variables },
        Verdict::Skip(reason) => Outcome::Skip { reason },
        Verdict::Defer(until) => Outcome::Defer { until },
        Verdict::Failed(reason) => Outcome::Failed { kind: None, reason },
    };
    Ok(finish(
        args,
        &plugin.info,
        PluginKind::Targeting,
        outcome,
        Vec::new(),
        elapsed,
        used,
        fuel,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    args: &TestArgs,
    info: &PluginInfo,
    kind: PluginKind,
    outcome: Outcome,
    requests: Vec<ReportedRequest>,
    elapsed: Duration,
    fuel: u64,
    fuel_budget: u64,
) -> Report {
    let mut problems = Vec::new();
    let unmatched = requests.iter().filter(|r| r.result == "unmatched").count();
    if unmatched > 0 {
        problems.push(format!(
            "{unmatched} request(s) matched no fixture: add fixtures for them (see the requests above)"
        ));
    }
    let denied = requests.iter().filter(|r| r.result == "denied").count();
    if denied > 0 {
        problems.push(format!(
            "{denied} request(s) went to an origin not in allowed_hosts"
        ));
    }
    let expect = match args.expect {
        Some(e) => e.name().to_string(),
        None => match kind {
            PluginKind::Channel => "sent".to_string(),
            PluginKind::Targeting => "send, skip or defer".to_string(),
        },
    };
    match (&outcome, args.expect) {
        (Outcome::Failed { .. }, _) => {
            problems.push("the plugin gave no answer".to_string());
        }
        (o, Some(e)) if o.name() != e.name() => {
            problems.push(format!("expected {}, got {}", e.name(), o.name()));
        }
        (o, None) if kind == PluginKind::Channel && o.name() != "sent" => {
            problems.push(format!(
                "expected sent, got {} (pass --expect {} if that is what this test checks)",
                o.name(),
                o.name()
            ));
        }
        _ => {}
    }
    Report {
        plugin: args.plugin.display().to_string(),
        name: info.name.clone(),
        version: info.version.clone(),
        world: sandbox::world_name(kind),
        outcome,
        requests,
        elapsed_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        fuel,
        fuel_budget,
        expect,
        pass: problems.is_empty(),
        problems,
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<9}{v}\n"));
    line(
        "plugin",
        format!(
            "{} {} ({}, {})",
            report.name, report.version, report.world, report.plugin
        ),
    );
    line("outcome", report.outcome.line());
    line("requests", report.requests.len().to_string());
    for (i, r) in report.requests.iter().enumerate() {
        let answer = match r.result {
            "answered" => format!(
                "{} from fixture {}",
                r.status.unwrap_or_default(),
                r.fixture.unwrap_or_default()
            ),
            "unmatched" => format!(
                "UNMATCHED, answered {}: {}",
                r.status.unwrap_or_default(),
                r.why.as_deref().unwrap_or_default()
            ),
            _ => "DENIED: origin not in allowed_hosts".to_string(),
        };
        out.push_str(&format!(
            "  #{} {} {} -> {answer}\n",
            i + 1,
            r.method,
            r.url
        ));
        for (k, v) in &r.headers {
            out.push_str(&format!("     {k}: {v}\n"));
        }
        if !r.body.is_empty() {
            out.push_str(&format!("     body: {}\n", r.body));
        }
    }
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<9}{v}\n"));
    line("time", format!("{:.3} ms", report.elapsed_ms));
    line(
        "fuel",
        format!(
            "{} of {}",
            thousands(report.fuel),
            thousands(report.fuel_budget)
        ),
    );
    if report.pass {
        line("result", format!("PASS (expected {})", report.expect));
    } else {
        line("result", format!("FAIL: {}", report.problems.join("; ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_with_a_secret_are_masked() {
        let secrets = vec!["tok3n-value".to_string()];
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ACxx:tok3n-value")
        );
        let exchange = FixtureExchange {
            method: "POST".into(),
            url: "https://h.example/x?key=tok3n-value".into(),
            headers: vec![
                ("authorization".into(), header),
                ("x-token".into(), "Bearer tok3n-value".into()),
                ("accept".into(), "a".into()),
                ("accept".into(), "b".into()),
            ],
            body: "token=tok3n-value&To=1".into(),
            result: FixtureResult::Answered {
                fixture: 0,
                status: 201,
            },
        };
        let r = masked(&exchange, &secrets);
        assert_eq!(r.headers["authorization"], "Basic [redacted]");
        assert_eq!(r.headers["x-token"], "Bearer [redacted]");
        assert_eq!(r.headers["accept"], "a, b");
        assert_eq!(r.url, "https://h.example/x?key=[redacted]");
        assert_eq!(r.body, "token=[redacted]&To=1");
        assert_eq!((r.fixture, r.status), (Some(1), Some(201)));
        let plain = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:other")
        );
        assert!(!basic_holds_secret(&plain, &secrets));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(11_000_000), "11,000,000");
    }
}
