//! `herald.toml` from a builder: a test names what is particular about its
//! deployment (a channel's plugin, hosts and settings, the scheduler tick,
//! retries, rules) and the builder writes the sections, headers and quoting
//! around it.
//!
//! ```ignore
//! let config = Config::new()
//!     .tick("100ms")
//!     .channel("sms", webhook(&provider, "/send", "s3cret").set("rate", "5/s"))
//!     .inbox()
//!     .rule(welcome(&["sms", "inbox"]).set("text", "Hello {{ customer.name }}"))
//!     .rule(Rule::new("thanks", &on_event("purchase"), &["inbox"], "Thanks", "x"))
//!     .rule(r#"
//! id = "vip"
//! trigger = { on = "updated", field = "level", to = "vip" }
//! channels = ["inbox"]
//! subject = "Welcome to VIP"
//! text = "..."
//! [rules.locales."zh-CN"]
//! subject = "欢迎成为VIP会员"
//! text = "..."
//! "#)
//!     .write(&scratch);
//! ```
//!
//! Top-level tables come first in the order they were first named, then the
//! channels, then the rules (each body under its own `[[rules]]`, so a body
//! may carry `[rules.locales."zh-CN"]` or `[[rules.steps]]` tables of its own).

use super::{plugin, FakeProvider, Scratch};
use std::path::{Path, PathBuf};

/// A value as TOML writes it.
pub trait Toml {
    /// The value's TOML text.
    fn toml(&self) -> String;
}

impl Toml for str {
    fn toml(&self) -> String {
        let mut out = String::with_capacity(self.len() + 2);
        out.push('"');
        for c in self.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

impl Toml for String {
    fn toml(&self) -> String {
        self.as_str().toml()
    }
}

impl<T: Toml + ?Sized> Toml for &T {
    fn toml(&self) -> String {
        (**self).toml()
    }
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl Toml for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
plain!(bool, i32, i64, u16, u32, u64, usize);

impl<T: Toml> Toml for [T] {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(Toml::toml).collect();
        format!("[{}]", items.join(", "))
    }
}

impl<T: Toml, const N: usize> Toml for [T; N] {
    fn toml(&self) -> String {
        self.as_slice().toml()
    }
}

/// TOML text written as it is: an inline table, an array of tables.
#[derive(Clone, Debug)]
pub struct Raw(pub String);

impl Toml for Raw {
    fn toml(&self) -> String {
        self.0.clone()
    }
}

/// A secret read from the environment: `{ env = "NAME" }`.
pub fn env(name: &str) -> Raw {
    Raw(format!("{{ env = {} }}", name.toml()))
}

/// A secret read from a file: `{ file = "PATH" }`.
pub fn file(path: &Path) -> Raw {
    Raw(format!(
        "{{ file = {} }}",
        path.display().to_string().toml()
    ))
}

/// A rule's `targeting`: the bundled targeting plugin `name` plus more
/// entries of the inline table written as they are (`settings = {...}`,
/// `fuel = ...`), or none.
pub fn targeting(name: &str, more: &str) -> Raw {
    targeting_at(&plugin(name), more)
}

/// [`targeting`] with the plugin file at `path`.
pub fn targeting_at(path: &Path, more: &str) -> Raw {
    let path = path.display().to_string().toml();
    Raw(match more.trim() {
        "" => format!("{{ plugin = {path} }}"),
        more => format!("{{ plugin = {path}, {more} }}"),
    })
}

/// The `key = value` lines of a table in order (a key set again takes the
/// new value), and lines written as they are.
#[derive(Clone, Debug, Default)]
struct Lines(Vec<(Option<String>, String)>);

impl Lines {
    fn set(&mut self, key: &str, value: impl Toml) {
        let line = format!("{key} = {}", value.toml());
        match self.0.iter_mut().find(|(k, _)| k.as_deref() == Some(key)) {
            Some(entry) => entry.1 = line,
            None => self.0.push((Some(key.to_string()), line)),
        }
    }

    /// Lines as they are; nothing for an empty text.
    fn raw(&mut self, text: &str) {
        let lines = text.trim().lines().filter(|l| !l.trim().is_empty());
        self.0.extend(lines.map(|l| (None, l.to_string())));
    }

    fn write(&self, out: &mut String) {
        for (_, line) in &self.0 {
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// One `[name]` table.
#[derive(Clone, Debug)]
struct Table {
    name: String,
    lines: Lines,
}

fn tables_entry<'a>(tables: &'a mut Vec<Table>, name: &str) -> &'a mut Lines {
    let at = match tables.iter().position(|t| t.name == name) {
        Some(at) => at,
        None => {
            tables.push(Table {
                name: name.to_string(),
                lines: Lines::default(),
            });
            tables.len() - 1
        }
    };
    &mut tables[at].lines
}

/// A `herald.toml` under construction.
#[derive(Clone, Debug, Default)]
pub struct Config {
    tables: Vec<Table>,
    channels: Vec<(String, Channel)>,
    rules: Vec<String>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// `key = value` under `[table]` (a dotted name for a nested table).
    pub fn set(mut self, table: &str, key: &str, value: impl Toml) -> Config {
        tables_entry(&mut self.tables, table).set(key, value);
        self
    }

    /// Lines written as they are under `[table]`; the table is written even
    /// when they are empty.
    pub fn lines(mut self, table: &str, text: &str) -> Config {
        tables_entry(&mut self.tables, table).raw(text);
        self
    }

    /// `[scheduler] tick`.
    pub fn tick(self, every: &str) -> Config {
        self.set("scheduler", "tick", every)
    }

    /// `[retry]`: this many attempts, the first retry after `base`, at most `max` apart.
    pub fn retry(self, max_attempts: u32, base: &str, max: &str) -> Config {
        self.max_attempts(max_attempts)
            .set("retry", "base", base)
            .set("retry", "max", max)
    }

    /// `[retry] max_attempts` alone.
    pub fn max_attempts(self, n: u32) -> Config {
        self.set("retry", "max_attempts", n)
    }

    /// `[server] public_url`.
    pub fn public_url(self, url: &str) -> Config {
        self.set("server", "public_url", url)
    }

    /// A typed customer attribute under `[attributes]`.
    pub fn attribute(self, name: &str, kind: &str) -> Config {
        self.set("attributes", name, kind)
    }

    /// `[channels.NAME]`.
    pub fn channel(mut self, name: &str, channel: Channel) -> Config {
        self.channels.push((name.to_string(), channel));
        self
    }

    /// `[channels.inbox] builtin = "inbox"`.
    pub fn inbox(self) -> Config {
        self.channel("inbox", Channel::builtin("inbox"))
    }

    /// A `[[rules]]` entry: its TOML (`id = ...`, `trigger = ...`, ...) or a [`Rule`].
    pub fn rule(mut self, body: impl Into<String>) -> Config {
        self.rules.push(body.into().trim().to_string());
        self
    }

    /// The file's text.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            out.push_str(&format!("\n[{}]\n", table.name));
            table.lines.write(&mut out);
        }
        for (name, channel) in &self.channels {
            channel.write(name, &mut out);
        }
        for rule in &self.rules {
            out.push_str("\n[[rules]]\n");
            out.push_str(rule);
            out.push('\n');
        }
        out
    }

    /// Write it as `herald.toml` in the scratch directory.
    pub fn write(&self, scratch: &Scratch) -> PathBuf {
        self.write_as(scratch, "herald.toml")
    }

    /// Write it under another name (two versions of one deployment).
    pub fn write_as(&self, scratch: &Scratch, name: &str) -> PathBuf {
        scratch.write(name, &self.toml())
    }
}

/// A `[channels.NAME]` table and its `settings`.
#[derive(Clone, Debug)]
pub struct Channel {
    lines: Lines,
    allowed_hosts: Option<Vec<String>>,
    settings: Lines,
}

impl Channel {
    fn with(key: &str, value: &str) -> Channel {
        let mut lines = Lines::default();
        lines.set(key, value);
        Channel {
            lines,
            allowed_hosts: None,
            settings: Lines::default(),
        }
    }

    /// A built-in channel: `builtin = "inbox"` or `"task"`.
    pub fn builtin(kind: &str) -> Channel {
        Channel::with("builtin", kind)
    }

    /// A bundled plugin from `target/plugins` by name (`webhook`, `chaos`, ...).
    pub fn plugin(name: &str) -> Channel {
        Channel::plugin_at(&plugin(name))
    }

    /// A plugin file anywhere (or a path that does not exist).
    pub fn plugin_at(path: &Path) -> Channel {
        Channel::with("plugin", &path.display().to_string())
    }

    /// Add an origin to `allowed_hosts`. A loopback origin (every fake
    /// provider listens on 127.0.0.1) also sets `allow_private_network =
    /// true`, without which Herald refuses loopback and private addresses;
    /// `.set("allow_private_network", false)` after it takes that back.
    pub fn allow(mut self, origin: &str) -> Channel {
        self.allowed_hosts
            .get_or_insert_with(Vec::new)
            .push(origin.to_string());
        let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]") {
            self.lines.set("allow_private_network", true);
        }
        self
    }

    /// `allowed_hosts` exactly (written even when empty).
    pub fn allowed_hosts(mut self, origins: &[&str]) -> Channel {
        self.allowed_hosts = Some(origins.iter().map(|o| o.to_string()).collect());
        self
    }

    /// A key of the channel table: `address`, `timeout`, `rate`, `enabled`, ...
    pub fn set(mut self, key: &str, value: impl Toml) -> Channel {
        self.lines.set(key, value);
        self
    }

    /// A line of the channel table written as it is (for tests of bad input).
    pub fn line(mut self, line: &str) -> Channel {
        self.lines.raw(line);
        self
    }

    /// A key under `[channels.NAME.settings]`.
    pub fn setting(mut self, key: &str, value: impl Toml) -> Channel {
        self.settings.set(key, value);
        self
    }

    fn write(&self, name: &str, out: &mut String) {
        out.push_str(&format!("\n[channels.{name}]\n"));
        self.lines.write(out);
        if let Some(hosts) = &self.allowed_hosts {
            out.push_str(&format!("allowed_hosts = {}\n", hosts.as_slice().toml()));
        }
        if !self.settings.0.is_empty() {
            out.push_str(&format!("\n[channels.{name}.settings]\n"));
            self.settings.write(out);
        }
    }
}

/// `trigger = { on = "created" }`.
pub const ON_CREATED: &str = r#"{ on = "created" }"#;

/// `trigger = { on = "event", kind = KIND }`.
pub fn on_event(kind: &str) -> String {
    format!("{{ on = \"event\", kind = {} }}", kind.toml())
}

/// A rule from its parts; rules with many keys may read best as their TOML.
#[derive(Clone, Debug)]
pub struct Rule {
    lines: Lines,
    steps: Vec<Lines>,
}

impl Rule {
    /// `id`, `trigger` (an inline table as TOML), `channels`, `subject`, `text`.
    pub fn new(id: &str, trigger: &str, channels: &[&str], subject: &str, text: &str) -> Rule {
        let mut lines = Lines::default();
        lines.set("id", id);
        lines.set("trigger", Raw(trigger.to_string()));
        lines.set("channels", channels);
        lines.set("subject", subject);
        lines.set("text", text);
        Rule {
            lines,
            steps: Vec::new(),
        }
    }

    /// Another key (`when`, `html`, `transactional`, ...) or a new value for one.
    pub fn set(mut self, key: &str, value: impl Toml) -> Rule {
        self.lines.set(key, value);
        self
    }

    /// A line written as it is (for tests of bad input); nothing when empty.
    pub fn line(mut self, line: &str) -> Rule {
        self.lines.raw(line);
        self
    }

    /// A follow-up `[[rules.steps]]`: `after` the step before, through
    /// `channels`, with its own subject and text.
    pub fn step(mut self, after: &str, channels: &[&str], subject: &str, text: &str) -> Rule {
        let mut step = Lines::default();
        step.set("after", after);
        step.set("channels", channels);
        step.set("subject", subject);
        step.set("text", text);
        self.steps.push(step);
        self
    }
}

impl From<Rule> for String {
    fn from(rule: Rule) -> String {
        let mut out = String::new();
        rule.lines.write(&mut out);
        for step in &rule.steps {
            out.push_str("\n[[rules.steps]]\n");
            step.write(&mut out);
        }
        out
    }
}

/// The plain sign-up rule: `welcome`, "Welcome", "Hello" through `channels`.
pub fn welcome(channels: &[&str]) -> Rule {
    Rule::new("welcome", ON_CREATED, channels, "Welcome", "Hello")
}

/// The webhook plugin posting to `path` on `provider`, signing with `secret`.
pub fn webhook(provider: &FakeProvider, path: &str, secret: impl Toml) -> Channel {
    Channel::plugin("webhook")
        .allow(&provider.origin())
        .setting("url", provider.url(path))
        .setting("secret", secret)
}

#[test]
fn the_builder_writes_what_a_hand_written_file_says() {
    let config = Config::new()
        .tick("100ms")
        .retry(3, "10m", "1h")
        .attribute("ends_at", "date")
        .lines("strategy", r#"send_windows = ["09:00-10:00"]"#)
        .channel(
            "hook",
            Channel::plugin_at(Path::new("/p/webhook.wasm"))
                .allow("http://127.0.0.1:9")
                .set("timeout", "5s")
                .setting("url", "http://127.0.0.1:9/x")
                .setting("secret", env("HOOK_SECRET"))
                .setting("quote", "a \"b\" \\ c"),
        )
        .channel(
            "spare",
            Channel::builtin("inbox")
                .set("enabled", false)
                .allowed_hosts(&[]),
        )
        .inbox()
        .rule(Rule::new(
            "welcome",
            ON_CREATED,
            &["hook", "inbox"],
            "Welcome {{ customer.name }}",
            "Hello",
        ))
        .rule(
            r#"
id = "vip"
trigger = { on = "updated", field = "level" }
channels = ["inbox"]
subject = "VIP"
text = "x"
"#,
        )
        .rule(
            welcome(&["inbox"])
                .set("subject", "Hi")
                .step("1d", &["hook"], "Again", "x"),
        );
    let written: toml::Value = toml::from_str(&config.toml()).expect("valid TOML");
    let by_hand: toml::Value = toml::from_str(
        r#"
rules = [
  { id = "welcome", trigger = { on = "created" }, channels = ["hook", "inbox"], subject = "Welcome {{ customer.name }}", text = "Hello" },
  { id = "vip", trigger = { on = "updated", field = "level" }, channels = ["inbox"], subject = "VIP", text = "x" },
  { id = "welcome", trigger = { on = "created" }, channels = ["inbox"], subject = "Hi", text = "Hello", steps = [
    { after = "1d", channels = ["hook"], subject = "Again", text = "x" },
  ] },
]
[scheduler]
tick = "100ms"
[retry]
max_attempts = 3
base = "10m"
max = "1h"
[attributes]
ends_at = "date"
[strategy]
send_windows = ["09:00-10:00"]
[channels.hook]
plugin = "/p/webhook.wasm"
allowed_hosts = ["http://127.0.0.1:9"]
allow_private_network = true
timeout = "5s"
settings = { url = "http://127.0.0.1:9/x", secret = { env = "HOOK_SECRET" }, quote = 'a "b" \ c' }
[channels.spare]
builtin = "inbox"
enabled = false
allowed_hosts = []
[channels.inbox]
builtin = "inbox"
"#,
    )
    .unwrap();
    assert_eq!(written, by_hand, "{}", config.toml());
}
