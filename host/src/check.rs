//! `herald check`: everything an operator can get wrong in a deployment
//! file, found at once and reported as a table of channels and rules with
//! what is wrong and how to fix it. It loads every plugin (channel and
//! targeting), checks worlds and versions, settings against what each plugin
//! declares, secrets (resolvable, never printed), templates, allowed hosts
//! and the rules' channels (and, for channels reaching `tcp://` hosts, the
//! TLS mode and trusted CAs), using the same loading code `herald serve` runs,
//! so what passes here starts there. A reload refuses a config for the same
//! reasons with the same texts.

use crate::channels::{Channels, Finding, Severity};
use crate::clock::SystemClock;
use crate::config::{ChannelSection, Config, RuleSection, SettingValue};
use crate::plugin::bindings::types::PluginInfo;
use crate::plugin::tls_trust::TlsTrust;
use crate::plugin::{KvBackend, PluginServices, Runtime, DEFAULT_MEMORY};
use crate::strategy::Strategy;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// How a channel or rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong.
    Ok,
    /// Runs, with warnings.
    Warning,
    /// Herald refuses to run with it.
    Error,
    /// `enabled = false`: configured, not loaded, passed over by routing.
    Disabled,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
            Status::Disabled => "disabled",
        })
    }
}

fn status_of(findings: &[Finding]) -> Status {
    if findings.iter().any(|f| f.severity == Severity::Error) {
        Status::Error
    } else if findings.is_empty() {
        Status::Ok
    } else {
        Status::Warning
    }
}

/// One channel's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// Channel name.
    pub name: String,
    /// `plugin NAME VERSION (file)` or `builtin inbox`.
    pub kind: String,
    /// How it stands.
    pub status: Status,
    /// For a channel with `tcp://` allowed hosts: its `tls` mode and whom
    /// its TLS connections trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// What is wrong and how to fix it.
    pub problems: Vec<Finding>,
}

/// One rule's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    /// Rule id.
    pub id: String,
    /// Every channel the rule or its steps name.
    pub channels: Vec<String>,
    /// How it stands.
    pub status: Status,
    /// What is wrong and how to fix it.
    pub problems: Vec<Finding>,
}

/// Everything `herald check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The config file checked.
    pub config: String,
    /// Problems of the file as a whole (syntax, scheduler, strategy defaults).
    pub general: Vec<Finding>,
    /// Channels in name order.
    pub channels: Vec<ChannelReport>,
    /// Rules in file order.
    pub rules: Vec<RuleReport>,
}

impl Report {
    fn all(&self) -> impl Iterator<Item = (String, &Finding)> {
        let general = self.general.iter().map(|f| (String::new(), f));
        let channels = self.channels.iter().flat_map(|c| {
            c.problems
                .iter()
                .map(move |f| (format!("[channels.{}]: ", c.name), f))
        });
        let rules = self.rules.iter().flat_map(|r| {
            r.problems
                .iter()
                .map(move |f| (format!("rule `{}`: ", r.id), f))
        });
        general.chain(channels).chain(rules)
    }

    /// Every error, one line each, naming its place.
    pub fn errors(&self) -> Vec<String> {
        self.all()
            .filter(|(_, f)| f.severity == Severity::Error)
            .map(|(place, f)| format!("{place}{}", f.message))
            .collect()
    }

    /// Every warning, one line each, naming its place.
    pub fn warnings(&self) -> Vec<String> {
        self.all()
            .filter(|(_, f)| f.severity == Severity::Warning)
            .map(|(place, f)| format!("{place}{}", f.message))
            .collect()
    }

    /// Whether Herald would refuse this config.
    pub fn has_errors(&self) -> bool {
        self.all().any(|(_, f)| f.severity == Severity::Error)
    }

    /// The report as text tables.
    pub fn table(&self) -> String {
        let mut out = format!("config: {}\n", self.config);
        if !self.general.is_empty() {
            out.push_str("\nGENERAL\n");
            for f in &self.general {
                out.push_str(&format!("  {:<8} {}\n", severity_word(f), f.message));
            }
        }
        let rows: Vec<[String; 3]> = self
            .channels
            .iter()
            .map(|c| [c.name.clone(), c.kind.clone(), c.status.to_string()])
            .collect();
        out.push_str("\nCHANNELS\n");
        out.push_str(&grid(
            ["CHANNEL", "DELIVERY", "STATUS"],
            &rows,
            self.channels.iter().map(|c| c.problems.as_slice()),
        ));
        let tls: Vec<_> = self
            .channels
            .iter()
            .filter_map(|c| Some((&c.name, c.tls.as_ref()?)))
            .collect();
        if !tls.is_empty() {
            out.push_str("\nTLS\n");
            let width = tls.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
            for (name, line) in tls {
                out.push_str(&format!("  {name:<width$}  tls: {line}\n"));
            }
        }
        let rows: Vec<[String; 3]> = self
            .rules
            .iter()
            .map(|r| [r.id.clone(), r.channels.join(","), r.status.to_string()])
            .collect();
        out.push_str("\nRULES\n");
        out.push_str(&grid(
            ["RULE", "CHANNELS", "STATUS"],
            &rows,
            self.rules.iter().map(|r| r.problems.as_slice()),
        ));
        let errors = self.errors().len();
        let warnings = self.warnings().len();
        out.push_str(&format!(
            "\n{errors} error(s), {warnings} warning(s): {}\n",
            if errors > 0 {
                "herald would refuse this config; fix the errors above"
            } else {
                "herald can run this config"
            }
        ));
        out
    }
}

fn severity_word(f: &Finding) -> &'static str {
    match f.severity {
        Severity::Error => "error:",
        Severity::Warning => "warning:",
    }
}

/// Three aligned columns, then each problem (the first on the row itself,
/// the others on lines of their own under it).
fn grid<'a>(
    head: [&str; 3],
    rows: &[[String; 3]],
    problems: impl Iterator<Item = &'a [Finding]>,
) -> String {
    let mut width = head.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 3], tail: &str| {
        format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {tail}",
            cells[0],
            cells[1],
            cells[2],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    let mut out = line(head, "PROBLEMS");
    if rows.is_empty() {
        out.push_str("  (none)\n");
    }
    for (row, problems) in rows.iter().zip(problems) {
        let mut problems = problems.iter();
        let first = problems
            .next()
            .map(|f| format!("{} {}", severity_word(f), f.message))
            .unwrap_or_default();
        out.push_str(&line([&row[0], &row[1], &row[2]], &first));
        for f in problems {
            out.push_str(&line(
                ["", "", ""],
                &format!("{} {}", severity_word(f), f.message),
            ));
        }
    }
    out
}

/// Check the config file at `path`.
pub async fn check_file(path: &Path) -> Report {
    match Config::load(path) {
        Ok(config) => check(&config).await,
        Err(e) => Report {
            config: path.display().to_string(),
            general: vec![Finding {
                severity: Severity::Error,
                message: format!("{e:#}"),
            }],
            channels: Vec::new(),
            rules: Vec::new(),
        },
    }
}

/// The rule an error line of [`Strategy::compile`] is about: lines start
/// with ``rule `ID` `` (template sets of steps and translations add `#k`
/// and `@locale` to the id).
fn rule_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("rule `")?;
    let id = &rest[..rest.find('`')?];
    Some(id.split(['#', '@']).next().unwrap_or(id))
}

/// Check a parsed config: every problem, none hidden behind another.
pub async fn check(config: &Config) -> Report {
    let mut general = settings_findings(config);
    let services = PluginServices {
        kv: KvBackend::Memory(Default::default()),
        clock: Arc::new(SystemClock),
    };
    let (channels, broken_channels) = match inspect_channels(config, &services).await {
        Ok(found) => found,
        Err(e) => {
            general.push(Finding::error(format!("{e}; channels were not checked")));
            (Vec::new(), BTreeSet::new())
        }
    };
    let mut by_rule = strategy_findings(config, &mut general);
    targeting_findings(config, &services, &mut by_rule).await;
    let rules = config
        .file
        .rules
        .iter()
        .map(|rule| {
            let problems = by_rule.remove(rule.id.trim()).unwrap_or_default();
            rule_report(config, rule, problems, &broken_channels)
        })
        .collect();
    // Findings for rule ids the file does not have (duplicates are reported
    // under their id above) stay visible.
    for (_, findings) in by_rule {
        general.extend(findings);
    }
    Report {
        config: config.path.display().to_string(),
        general,
        channels,
        rules,
    }
}

/// Problems of the scheduler settings and the link secret.
fn settings_findings(config: &Config) -> Vec<Finding> {
    let mut general = Vec::new();
    if let Err(e) = config.scheduler() {
        general.push(Finding::error(format!("{e:#}")));
    }
    if let Err(e) = crate::inbound::Settings::from_config(&config.file.server.inbound) {
        general.push(Finding::error(format!("{e:#}")));
    }
    if let Some(secret) = &config.file.server.link_secret {
        match secret.resolve_at(config, "[server] link_secret") {
            Ok(value) => {
                if let Err(e) = crate::render::links::check_secret(&value) {
                    general.push(Finding::error(format!("{e:#}")));
                }
            }
            Err(e) => general.push(Finding::error(format!("{e:#}"))),
        }
    }
    if !config.file.topics.is_empty() && config.file.server.public_url.is_none() {
        general.push(Finding::warning(
            "[topics] are declared but [server] public_url is not set: `{{ preferences_url }}` renders empty and customers cannot reach their preference page; set public_url to the address customers reach this server at",
        ));
    }
    general
}

/// Every channel loaded as far as it goes, disabled ones too: their reports,
/// and the enabled channels that have errors.
async fn inspect_channels(
    config: &Config,
    services: &PluginServices,
) -> Result<(Vec<ChannelReport>, BTreeSet<String>), String> {
    let max_memory = Channels::max_memory(config).unwrap_or(DEFAULT_MEMORY);
    let cache_dir = config.cache_dir().map_err(|e| format!("{e:#}"))?;
    let runtime = Runtime::new(cache_dir, max_memory)
        .map_err(|e| format!("cannot start the plugin runtime: {e:#}"))?;
    let inspection = Channels::inspect(config, &Arc::new(runtime), services, true)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mut channels = Vec::new();
    let mut broken = BTreeSet::new();
    for (name, section) in &config.file.channels {
        let mut problems = inspection.findings.get(name).cloned().unwrap_or_default();
        let status = if section.enabled {
            let status = status_of(&problems);
            if status == Status::Error {
                broken.insert(name.clone());
            }
            status
        } else {
            // Not loaded by serve: its problems matter only once it is
            // enabled again.
            for p in &mut problems {
                if p.severity == Severity::Error {
                    p.severity = Severity::Warning;
                    p.message = format!("once enabled: {}", p.message);
                }
            }
            Status::Disabled
        };
        channels.push(ChannelReport {
            name: name.clone(),
            kind: channel_kind(section, inspection.plugins.get(name)),
            status,
            tls: tls_summary(config, section),
            problems,
        });
    }
    Ok((channels, broken))
}

/// The `tls` mode of a channel that reaches `tcp://` hosts (its `tls`
/// setting, else the SMTP plugin's default for its `port`) and whom its TLS
/// connections trust.
fn tls_summary(config: &Config, section: &ChannelSection) -> Option<String> {
    if !section
        .allowed_hosts
        .iter()
        .any(|h| h.starts_with("tcp://"))
    {
        return None;
    }
    let literal = |key: &str| match section.settings.get(key)? {
        SettingValue::Literal(s) => Some(s.trim().to_ascii_lowercase()),
        SettingValue::Scalar(v) => Some(v.to_string().trim_matches('"').to_ascii_lowercase()),
        _ => None,
    };
    let mode = match (literal("tls"), literal("port")) {
        (Some(mode), _) => mode,
        (None, Some(port)) if port == "465" => "implicit (the default on port 465)".to_string(),
        (None, _) => "starttls (the default)".to_string(),
    };
    if mode == "none" {
        return Some("none: mail crosses the network unencrypted".to_string());
    }
    let trust = match &section.tls_ca_file {
        None => TlsTrust::default().describe(),
        Some(file) => match TlsTrust::with_ca_file(&config.resolve(file)) {
            Ok(trust) => trust.describe(),
            Err(_) => format!("webpki roots + {file} (unusable: see the error)"),
        },
    };
    Some(format!("{mode}; certificates checked against {trust}"))
}

/// What a channel is, in the table: `builtin inbox`, or the plugin's name
/// and version and its file.
fn channel_kind(section: &ChannelSection, info: Option<&PluginInfo>) -> String {
    match (&section.builtin, &section.plugin) {
        (Some(b), None) => format!("builtin {b}"),
        (_, Some(path)) => {
            let file = Path::new(path)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.clone());
            match info {
                Some(info) => format!("{} {} ({file})", info.name, info.version),
                None => file,
            }
        }
        (None, None) => "-".to_string(),
    }
}

/// The strategy compiler's findings by rule (lines about no rule go to
/// `general`).
fn strategy_findings(
    config: &Config,
    general: &mut Vec<Finding>,
) -> BTreeMap<String, Vec<Finding>> {
    let mut by_rule: BTreeMap<String, Vec<Finding>> = BTreeMap::new();
    let Err(lines) = Strategy::compile(config, &Channels::names(config)) else {
        return by_rule;
    };
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        match rule_of(line) {
            Some(id) if config.file.rules.iter().any(|r| r.id.trim() == id) => {
                let message = line
                    .strip_prefix(&format!("rule `{id}`: "))
                    .or_else(|| line.strip_prefix(&format!("rule `{id}`, ")))
                    .unwrap_or(line);
                by_rule
                    .entry(id.to_string())
                    .or_default()
                    .push(Finding::error(message));
            }
            _ => general.push(Finding::error(line)),
        }
    }
    by_rule
}

/// Each rule's targeting plugin loaded as serve loads it, on that rule alone.
async fn targeting_findings(
    config: &Config,
    services: &PluginServices,
    by_rule: &mut BTreeMap<String, Vec<Finding>>,
) {
    for rule in config.file.rules.iter().filter(|r| r.targeting.is_some()) {
        let mut one = config.clone();
        one.file.rules = vec![rule.clone()];
        let loaded = match config.cache_dir() {
            Ok(cache_dir) => crate::targeting::load_all(&one, cache_dir, services).await,
            Err(e) => Err(e),
        };
        if let Err(e) = loaded {
            let id = rule.id.trim();
            for line in format!("{e:#}").lines() {
                let message = line.strip_prefix(&format!("rule `{id}`, ")).unwrap_or(line);
                by_rule
                    .entry(id.to_string())
                    .or_default()
                    .push(Finding::error(message));
            }
        }
    }
}

/// A rule's line of the report: the channels it names (its own and its
/// steps'), and whether they can carry anything.
fn rule_report(
    config: &Config,
    rule: &RuleSection,
    mut problems: Vec<Finding>,
    broken_channels: &BTreeSet<String>,
) -> RuleReport {
    let mut lists: Vec<(String, &[String])> = vec![(String::new(), &rule.channels)];
    for (i, step) in rule.steps.iter().enumerate() {
        lists.push((format!("steps[{i}]: "), &step.channels));
    }
    let mut named: Vec<String> = Vec::new();
    for (place, list) in lists {
        for ch in list {
            if !named.contains(ch) {
                named.push(ch.clone());
            }
            if broken_channels.contains(ch) {
                problems.push(Finding::error(format!(
                    "{place}channel `{ch}` has errors (see CHANNELS); fix them, or take `{ch}` out of the rule"
                )));
            }
        }
        let configured: Vec<&String> = list
            .iter()
            .filter(|c| config.file.channels.contains_key(*c))
            .collect();
        if !configured.is_empty() && configured.iter().all(|c| !config.file.channels[*c].enabled) {
            problems.push(Finding::warning(format!(
                "{place}every channel is disabled ({}); its reminders will be skipped until one is enabled, or add an enabled channel",
                configured.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if rule.topic.is_none() && !rule.transactional && !config.file.topics.is_empty() {
        problems.push(Finding::warning(format!(
            "no topic: customers can turn its reminders off only channel by channel; add topic = \"NAME\" (one of {}), or transactional = true for messages that must always go",
            config.file.topics.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    RuleReport {
        id: rule.id.trim().to_string(),
        channels: named,
        status: status_of(&problems),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_lines_are_attributed_to_their_rule() {
        assert_eq!(rule_of("rule `a`: bad"), Some("a"));
        assert_eq!(rule_of("rule `a#2@zh-CN`, subject, line 1: x"), Some("a"));
        assert_eq!(rule_of("[strategy] default_timezone: x"), None);
    }

    #[tokio::test]
    async fn every_problem_of_a_config_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(
            &path,
            r#"
[scheduler]
tick = "soon"

[channels.inbox]
builtin = "inbox"
allowed_hosts = ["https://x.example"]

[channels.off]
builtin = "nope"
enabled = false

[[rules]]
id = "a"
trigger = { on = "created" }
channels = ["inbox"]
subject = "{{ customer.name"
text = "hi {{ customer.nope }}"

[[rules]]
id = "b"
trigger = { on = "created" }
channels = ["off"]
subject = "s"
text = "t"
"#,
        )
        .unwrap();
        let report = check_file(&path).await;
        let errors = report.errors().join("\n");
        assert!(errors.contains("[scheduler] tick"), "{errors}");
        assert!(
            errors.contains("[channels.inbox]: the built-in"),
            "{errors}"
        );
        let a = &report.rules[0];
        assert_eq!(a.status, Status::Error);
        assert!(a.problems.len() >= 3, "{:?}", a.problems);
        let off = report.channels.iter().find(|c| c.name == "off").unwrap();
        assert_eq!(off.status, Status::Disabled);
        assert!(off.problems[0].message.starts_with("once enabled"));
        let b = &report.rules[1];
        assert_eq!(b.status, Status::Warning, "{:?}", b.problems);
        assert!(report.table().contains("error(s)"));
    }
}
