//! Compiling the strategy from the deployment file: rules with their
//! triggers, conditions, templates (and translations), goals, follow-up
//! steps, send windows and caps. Everything an operator can get wrong
//! (unknown channels, bad durations, templates that do not parse or name
//! unknown variables) is reported, one problem per line, by rule.

use super::caps::Cap;
use super::dates::{DateTrigger, Repeat};
use super::windows::{self, Window};
use super::{Goal, InactiveTrigger, Rule, Since, Step, Strategy, Trigger};
use crate::config::{
    AttributeType, Config, ConfigFile, LocaleSection, RuleSection, TriggerSection,
};
use crate::customer::CORE_FIELDS;
use crate::render::{Part, Templates, Vocabulary};
use crate::span::Span;
use chrono::{Duration, NaiveTime};
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

impl Strategy {
    /// Compile the strategy of a deployment. `channels` are the configured
    /// channel names. Every problem found is reported, one per line.
    pub fn compile(config: &Config, channels: &BTreeSet<String>) -> Result<Strategy, String> {
        let file = &config.file;
        let mut compiler = Compiler::new(file, channels)?;
        let send_windows = windows::parse_all(&file.strategy.send_windows).unwrap_or_else(|e| {
            compiler
                .errors
                .push(format!("[strategy] send_windows: {e}"));
            Vec::new()
        });
        let caps = compiler.caps();
        let topics = super::topics::Topics::compile(&file.topics, &mut compiler.errors);
        let mut rules = Vec::new();
        let mut by_id = HashMap::new();
        for (index, section) in file.rules.iter().enumerate() {
            let id = section.id.trim().to_string();
            if let Err(e) = compiler.check_id(&id, index, &mut by_id) {
                compiler.errors.push(format!("rule `{id}`: {e}"));
                continue;
            }
            if let Some(rule) = compiler.rule(id, section) {
                compiler.check_topic(&rule, &topics);
                rules.push(rule);
            }
        }
        let segments = super::segments::compile(
            &file.segments,
            &compiler.attribute_names,
            &mut compiler.templates,
            &mut compiler.errors,
        );
        if !compiler.errors.is_empty() {
            return Err(compiler.errors.join("\n"));
        }
        Ok(Strategy {
            rules,
            templates: compiler.templates,
            attributes: file.attributes.clone(),
            default_timezone: file.strategy.default_timezone.clone(),
            send_windows,
            caps,
            topics,
            segments,
            by_id,
        })
    }
}

/// Most stages a goal may have.
const MAX_STAGES: usize = 16;

/// The state of one compilation: what rules may refer to, the templates
/// compiled so far, and every problem found.
struct Compiler<'a> {
    file: &'a ConfigFile,
    channels: &'a BTreeSet<String>,
    attribute_names: BTreeSet<String>,
    default_time: NaiveTime,
    templates: Templates,
    errors: Vec<String>,
}

impl<'a> Compiler<'a> {
    /// Check the strategy-wide settings; a bad default time stops at once.
    fn new(file: &'a ConfigFile, channels: &'a BTreeSet<String>) -> Result<Self, String> {
        let default_time = parse_time_of_day(&file.strategy.default_time)
            .map_err(|e| format!("[strategy] default_time: {e}"))?;
        let mut errors = Vec::new();
        if file.strategy.default_timezone.parse::<Tz>().is_err() {
            errors.push(format!(
                "[strategy] default_timezone: `{}` is not an IANA time zone",
                file.strategy.default_timezone
            ));
        }
        for name in file.attributes.keys() {
            if CORE_FIELDS.contains(&name.as_str()) {
                errors.push(format!(
                    "[attributes] {name}: this is a customer field, not an attribute; remove it"
                ));
            }
        }
        Ok(Compiler {
            file,
            channels,
            attribute_names: file.attributes.keys().cloned().collect(),
            default_time,
            templates: Templates::new(),
            errors,
        })
    }

    /// The frequency caps, each with a fixed period.
    fn caps(&mut self) -> Vec<Cap> {
        let mut caps = Vec::new();
        for (i, cap) in self.file.strategy.caps.iter().enumerate() {
            let at = format!("[strategy] caps[{i}]");
            if cap.max == 0 {
                self.errors
                    .push(format!("{at}: max = 0 would send nothing; give at least 1"));
            }
            if cap.per.months != 0 || (cap.per.days <= 0 && cap.per.millis <= 0) {
                self.errors.push(format!(
                    "{at}: per = \"{}\": give a fixed period such as \"1d\", \"7d\" or \"12h\"",
                    cap.per
                ));
                continue;
            }
            if let Some(ch) = &cap.channel {
                if !self.channels.contains(ch) {
                    self.errors
                        .push(format!("{at}: channel `{ch}` is not configured"));
                }
            }
            caps.push(Cap {
                max: cap.max,
                per: Duration::days(cap.per.days as i64) + Duration::milliseconds(cap.per.millis),
                channel: cap.channel.clone(),
            });
        }
        caps
    }

    /// A rule id is well formed and unique.
    fn check_id(
        &self,
        id: &str,
        index: usize,
        by_id: &mut HashMap<String, usize>,
    ) -> Result<(), String> {
        if !super::is_name(id) {
            return Err("rule ids use letters, digits, `-` and `_` only".into());
        }
        if by_id.insert(id.to_string(), index).is_some() {
            return Err("this id is used by an earlier rule; rule ids must be unique".into());
        }
        Ok(())
    }

    /// One rule, or `None` when its trigger cannot be compiled (its other
    /// problems are recorded and the strategy will be refused anyway).
    fn rule(&mut self, id: String, section: &RuleSection) -> Option<Rule> {
        let trigger = match self.trigger(&id, &section.trigger) {
            Ok(t) => t,
            Err(e) => {
                self.errors.push(format!("rule `{id}`: {e}"));
                return None;
            }
        };
        if section.channels.is_empty() {
            self.errors.push(format!(
                "rule `{id}`: no channels; list at least one, e.g. channels = [\"email\", \"inbox\"]"
            ));
        }
        self.check_channels(&format!("rule `{id}`"), &section.channels, true);
        let vocab = Vocabulary {
            attributes: self.attribute_names.clone(),
            has_event: matches!(trigger, Trigger::Event { .. }),
            has_target: section.targeting.is_some(),
            has_history: false,
        };
        self.message_templates(&id, section, &vocab);
        let channel_when = self.channel_when(
            &format!("rule `{id}`"),
            &id,
            &section.channels,
            &section.channel_when,
            &vocab,
        );
        let goal = self.goal(&id, section);
        let steps = self.steps(&id, section, &vocab);
        if !section.steps.is_empty() && matches!(trigger, Trigger::Deleted) {
            self.errors.push(format!(
                "rule `{id}`: a deleted customer gets no follow-ups; remove `steps`"
            ));
        }
        let send_windows = self.rule_windows(&id, section);
        let drop_when_capped = self.on_cap(&id, section);
        Some(Rule {
            id,
            trigger,
            channels: section.channels.clone(),
            channel_when,
            has_condition: section.when.is_some(),
            has_html: section.html.is_some(),
            fields: section.fields.keys().cloned().collect(),
            locales: section.locales.keys().cloned().collect(),
            goal,
            steps,
            send_windows,
            transactional: section.transactional,
            drop_when_capped,
            topic: section.topic.clone(),
        })
    }

    /// A rule's topic is declared under `[topics]`.
    fn check_topic(&mut self, rule: &Rule, topics: &super::topics::Topics) {
        if let Some(topic) = &rule.topic {
            if topics.get(topic).is_none() {
                self.errors.push(format!(
                    "rule `{}`: topic `{topic}` is not declared; declared topics: {}",
                    rule.id,
                    topics.names()
                ));
            }
        }
    }

    /// Every channel named is configured.
    fn check_channels(&mut self, place: &str, names: &[String], list_known: bool) {
        for ch in names {
            if self.channels.contains(ch) {
                continue;
            }
            if !list_known {
                self.errors
                    .push(format!("{place}: channel `{ch}` is not configured"));
                continue;
            }
            let known: Vec<&str> = self.channels.iter().map(String::as_str).collect();
            let known = if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            };
            self.errors.push(format!(
                "{place}: channel `{ch}` is not configured; configured channels: {known}"
            ));
        }
    }

    fn trigger(&mut self, id: &str, section: &TriggerSection) -> Result<Trigger, String> {
        match section {
            TriggerSection::Created { delay } => {
                exact(*delay, "delay").map(|delay| Trigger::Created { delay })
            }
            TriggerSection::Updated { field, to, delay } => self.updated(id, field, to, *delay),
            TriggerSection::Deleted {} => Ok(Trigger::Deleted),
            TriggerSection::Event { kind, delay } => {
                exact(*delay, "delay").map(|delay| Trigger::Event {
                    kind: kind.clone(),
                    delay,
                })
            }
            TriggerSection::Inactive {
                kinds,
                idle,
                since,
                repeat,
                max,
            } => inactive(kinds, *idle, since.as_deref(), *repeat, *max),
            TriggerSection::Date {
                attribute,
                before,
                after,
                at,
                every,
                cron,
            } => self.date(
                attribute,
                *before,
                *after,
                at.as_deref(),
                *every,
                cron.as_deref(),
            ),
        }
    }

    /// An `updated` trigger; a field it cannot name or a `to` without a
    /// field is recorded, and the rule is still checked further.
    fn updated(
        &mut self,
        id: &str,
        field: &Option<String>,
        to: &Option<toml::Value>,
        delay: Option<Span>,
    ) -> Result<Trigger, String> {
        if let Some(f) = field {
            if !CORE_FIELDS.contains(&f.as_str()) && !self.attribute_names.contains(f) {
                self.errors.push(format!(
                    "rule `{id}`: trigger field `{f}` is neither a customer field nor a declared attribute"
                ));
            }
        }
        if to.is_some() && field.is_none() {
            self.errors.push(format!("rule `{id}`: `to` needs the `field` it applies to, e.g. {{ on = \"updated\", field = \"level\", to = \"vip\" }}"));
        }
        let to = to
            .as_ref()
            .map(|v| serde_json::to_value(v).unwrap_or(Value::Null));
        exact(delay, "delay").map(|delay| Trigger::Updated {
            field: field.clone(),
            to,
            delay,
        })
    }

    fn date(
        &self,
        attribute: &str,
        before: Option<Span>,
        after: Option<Span>,
        at: Option<&str>,
        every: Option<Span>,
        cron: Option<&str>,
    ) -> Result<Trigger, String> {
        match self.file.attributes.get(attribute) {
            Some(AttributeType::Date) | Some(AttributeType::Datetime) => {}
            Some(other) => {
                return Err(format!(
                    "date trigger on `{attribute}`, which is declared as {other:?}; declare it as \"date\""
                ))
            }
            None if attribute == "created_at" || attribute == "updated_at" => {}
            None => {
                return Err(format!(
                    "date trigger on `{attribute}`, which is not declared; add `{attribute} = \"date\"` under [attributes]"
                ))
            }
        }
        let offset = match (before, after) {
            (Some(_), Some(_)) => return Err("give `before` or `after`, not both".into()),
            (Some(b), None) => b.negated(),
            (None, Some(a)) => a,
            (None, None) => Span::default(),
        };
        if offset.millis != 0 {
            return Err(
                "date offsets are calendar units (d, w, mo, y); set the time with `at`".into(),
            );
        }
        let at = match at {
            Some(t) => parse_time_of_day(t)?,
            None => self.default_time,
        };
        Ok(Trigger::Date(DateTrigger {
            attribute: attribute.to_string(),
            offset,
            at,
            repeat: repeat(every, cron)?,
        }))
    }

    /// The rule's own message, its condition, fields and translations.
    fn message_templates(&mut self, id: &str, section: &RuleSection, vocab: &Vocabulary) {
        let mut parts = vec![
            (Part::Subject, section.subject.as_str()),
            (Part::Text, section.text.as_str()),
        ];
        if let Some(html) = &section.html {
            parts.push((Part::Html, html.as_str()));
        }
        parts.push((Part::When, section.when.as_deref().unwrap_or("true")));
        self.translations(id, id, section.html.is_some(), &section.locales, vocab);
        for (name, source) in &section.fields {
            if !super::is_name(name) {
                self.errors.push(format!(
                    "rule `{id}`, fields: `{name}` is not a field name; use letters, digits, `_` and `-`"
                ));
                continue;
            }
            parts.push((Part::Field(name.clone()), source.as_str()));
        }
        self.add_parts(id, parts, vocab);
    }

    /// Compile the `channel_when` conditions of one channel list (the
    /// rule's, or a step's, template set `set`); each must name a channel of
    /// the list. Returns the channels that have one.
    fn channel_when(
        &mut self,
        place: &str,
        set: &str,
        channels: &[String],
        conditions: &BTreeMap<String, String>,
        vocab: &Vocabulary,
    ) -> BTreeSet<String> {
        let mut with = BTreeSet::new();
        for (channel, source) in conditions {
            if !channels.contains(channel) {
                self.errors.push(format!(
                    "{place}: channel_when names `{channel}`, which is not in its channels ({}); list it in channels or remove the condition",
                    channels.join(", ")
                ));
                continue;
            }
            self.add_parts(
                set,
                vec![(Part::ChannelWhen(channel.clone()), source.as_str())],
                vocab,
            );
            with.insert(channel.clone());
        }
        with
    }

    fn add_parts(&mut self, set: &str, parts: Vec<(Part, &str)>, vocab: &Vocabulary) {
        for (part, source) in parts {
            if let Err(e) = self.templates.add(set, part, source, vocab) {
                self.errors.push(e);
            }
        }
    }

    /// Compile the translations of one message (the rule's, or a step's) as
    /// template sets `base@locale`.
    fn translations(
        &mut self,
        place: &str,
        base: &str,
        has_html: bool,
        locales: &BTreeMap<String, LocaleSection>,
        vocab: &Vocabulary,
    ) {
        for (locale, texts) in locales {
            let well_formed = !locale.is_empty()
                && locale.split('-').all(|p| {
                    !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
                });
            if !well_formed {
                self.errors.push(format!(
                    "rule `{place}`, locales: `{locale}` is not a language tag; write e.g. \"zh-CN\" or \"en\""
                ));
                continue;
            }
            if has_html != texts.html.is_some() {
                let why = if has_html {
                    "the message has an html body, so each translation needs one too"
                } else {
                    "has html but the message has none; add html to it or remove it here"
                };
                self.errors
                    .push(format!("rule `{place}`, locales.{locale}: {why}"));
            }
            let mut parts = vec![
                (Part::Subject, texts.subject.as_str()),
                (Part::Text, texts.text.as_str()),
            ];
            if let Some(html) = &texts.html {
                parts.push((Part::Html, html.as_str()));
            }
            self.add_parts(&format!("{base}@{locale}"), parts, vocab);
        }
    }

    fn goal(&mut self, id: &str, section: &RuleSection) -> Option<Goal> {
        let g = section.goal.as_ref()?;
        let stages: Vec<String> = g.stages.iter().map(|s| s.trim().to_string()).collect();
        let event = match (g.event.as_deref().map(str::trim), stages.last()) {
            (Some(e), Some(last)) if e != last => {
                self.errors.push(format!(
                    "rule `{id}`: goal event `{e}` is not the last of its stages (`{last}`); leave `event` out, the last stage is the goal"
                ));
                return None;
            }
            (Some(e), _) => e.to_string(),
            (None, Some(last)) => last.clone(),
            (None, None) => String::new(),
        };
        if stages.iter().any(String::is_empty) || stages.len() > MAX_STAGES {
            self.errors.push(format!(
                "rule `{id}`: goal stages are 1 to {MAX_STAGES} event kinds, none blank"
            ));
            return None;
        }
        match exact(Some(g.within), "goal within") {
            Ok(within) if within > Duration::zero() && !event.is_empty() => Some(Goal {
                event,
                stages,
                within,
            }),
            Ok(_) => {
                self.errors.push(format!(
                    "rule `{id}`: goal needs an event kind (or stages) and a positive `within`, e.g. goal = {{ event = \"login\", within = \"3d\" }}"
                ));
                None
            }
            Err(e) => {
                self.errors.push(format!("rule `{id}`: {e}"));
                None
            }
        }
    }

    /// The follow-up steps, each with its templates as set `id#k`.
    fn steps(&mut self, id: &str, section: &RuleSection, vocab: &Vocabulary) -> Vec<Step> {
        let mut steps = Vec::new();
        for (i, step) in section.steps.iter().enumerate() {
            let at = format!("rule `{id}`, steps[{i}]");
            let after = match exact(Some(step.after), "after") {
                Ok(d) if d > Duration::zero() => d,
                Ok(_) => {
                    self.errors
                        .push(format!("{at}: `after` must be positive, e.g. \"3d\""));
                    continue;
                }
                Err(e) => {
                    self.errors.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if step.channels.is_empty() {
                self.errors
                    .push(format!("{at}: no channels; list at least one"));
            }
            self.check_channels(&at, &step.channels, false);
            let variant = format!("{id}#{}", i + 1);
            let mut parts = vec![
                (Part::Subject, step.subject.as_str()),
                (Part::Text, step.text.as_str()),
            ];
            if let Some(html) = &step.html {
                parts.push((Part::Html, html.as_str()));
            }
            self.add_parts(&variant, parts, vocab);
            let place = format!("{id}, steps[{i}]");
            let channel_when =
                self.channel_when(&place, &variant, &step.channels, &step.channel_when, vocab);
            self.translations(&place, &variant, step.html.is_some(), &step.locales, vocab);
            steps.push(Step {
                after,
                channels: step.channels.clone(),
                channel_when,
                has_html: step.html.is_some(),
                locales: step.locales.keys().cloned().collect(),
            });
        }
        steps
    }

    fn rule_windows(&mut self, id: &str, section: &RuleSection) -> Option<Vec<Window>> {
        match windows::parse_all(section.send_windows.as_ref()?) {
            Ok(w) => Some(w),
            Err(e) => {
                self.errors.push(format!("rule `{id}`: {e}"));
                None
            }
        }
    }

    fn on_cap(&mut self, id: &str, section: &RuleSection) -> bool {
        match section.on_cap.as_deref() {
            None | Some("defer") => false,
            Some("drop") => true,
            Some(other) => {
                self.errors.push(format!(
                    "rule `{id}`: on_cap = \"{other}\"; use \"defer\" (wait until the cap allows) or \"drop\""
                ));
                false
            }
        }
    }
}

/// `{ on = "inactive", kinds, for, since, repeat, max }`.
fn inactive(
    kinds: &[String],
    idle: Span,
    since: Option<&str>,
    repeat: Option<Span>,
    max: Option<u32>,
) -> Result<Trigger, String> {
    if kinds.is_empty() || kinds.iter().any(|k| k.trim().is_empty()) {
        return Err("inactive trigger needs the event kinds that count as activity, e.g. kinds = [\"login\"]".to_string());
    }
    let idle = exact(Some(idle), "for")?;
    if idle <= Duration::zero() {
        return Err("`for` must be a positive period, e.g. \"7d\"".into());
    }
    let since = match since.map(str::trim) {
        None | Some("last") => Since::Last,
        Some("created") => Since::Created,
        Some("") => {
            return Err("`since` is empty; use \"last\", \"created\" or an event kind".into())
        }
        Some(kind) => Since::Event(kind.to_string()),
    };
    let (repeat, max) = match (repeat, max) {
        (None, None) => (None, 1),
        (None, Some(_)) => {
            return Err("`max` counts repeats; add `repeat = \"7d\"` or remove `max`".into())
        }
        (Some(_), None) => {
            return Err(
                "`repeat` needs `max`, the most reminders for one dormant spell, e.g. max = 3"
                    .into(),
            )
        }
        (Some(r), Some(m)) => {
            let r = exact(Some(r), "repeat")?;
            if r <= Duration::zero() || m == 0 {
                return Err("`repeat` must be positive and `max` at least 1".into());
            }
            (Some(r), m)
        }
    };
    Ok(Trigger::Inactive(InactiveTrigger {
        kinds: kinds.to_vec(),
        idle,
        since,
        repeat,
        max,
    }))
}

/// A date trigger's repeat: `every` whole calendar units, or a `cron` schedule.
fn repeat(every: Option<Span>, cron: Option<&str>) -> Result<Option<Repeat>, String> {
    match (every, cron) {
        (Some(_), Some(_)) => Err("give `every` or `cron`, not both".into()),
        (Some(step), None) => {
            if step.millis != 0 || (step.months <= 0 && step.days <= 0) {
                return Err(format!(
                    "every = \"{step}\": repeat by whole days, weeks, months or years"
                ));
            }
            Ok(Some(Repeat::Every(step)))
        }
        (None, Some(expr)) => Ok(Some(Repeat::Cron(Box::new(
            cron::Schedule::from_str(expr).map_err(|e| {
                format!("cron = \"{expr}\": {e} (fields: sec min hour day-of-month month day-of-week [year])")
            })?,
        )))),
        (None, None) => Ok(None),
    }
}

fn parse_time_of_day(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| format!("`{text}` is not a time of day; write HH:MM, e.g. \"10:00\""))
}

/// A span that must be an exact, non-negative duration (no months).
fn exact(span: Option<Span>, what: &str) -> Result<Duration, String> {
    match span {
        None => Ok(Duration::zero()),
        Some(s) => {
            let d = s.as_duration().map_err(|e| format!("{what}: {e}"))?;
            if d < Duration::zero() {
                return Err(format!("{what} must not be negative"));
            }
            Ok(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Strategy, String> {
        let config = Config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let channels = BTreeSet::from(["inbox".to_string(), "sms".to_string()]);
        Strategy::compile(&config, &channels)
    }

    #[test]
    fn a_strategy_compiles_to_rules_with_their_triggers_steps_and_caps() {
        let s = compile(
            r#"
[attributes]
trial_ends_at = "date"
[strategy]
caps = [{ max = 2, per = "7d" }, { max = 1, per = "1d", channel = "sms" }]
send_windows = ["11:00-12:00"]
[[rules]]
id = "trial-ending"
trigger = { on = "date", attribute = "trial_ends_at", before = "4d", at = "10:00" }
channels = ["sms", "inbox"]
subject = "Ends soon"
text = "Your trial ends {{ customer.trial_ends_at | date('%Y-%m-%d') }}"
goal = { event = "payment", within = "4d" }
[[rules.steps]]
after = "1d"
channels = ["inbox"]
subject = "Still time"
text = "Still time"
[[rules]]
id = "dormant"
trigger = { on = "inactive", kinds = ["login"], for = "7d", since = "created" }
channels = ["inbox"]
subject = "Miss you"
text = "Miss you"
"#,
        )
        .unwrap();
        assert_eq!(s.rules.len(), 2);
        let trial = s.rule("trial-ending").unwrap();
        assert!(matches!(trial.trigger, Trigger::Date(_)));
        assert_eq!(trial.channels_of(0), ["sms", "inbox"]);
        assert_eq!(trial.channels_of(1), ["inbox"]);
        assert_eq!(trial.goal.as_ref().unwrap().within, Duration::days(4));
        assert_eq!(s.caps.len(), 2);
        assert_eq!(s.send_windows.len(), 1);
        let Trigger::Inactive(dormant) = &s.rule("dormant").unwrap().trigger else {
            panic!("an inactive trigger")
        };
        assert_eq!((dormant.since.clone(), dormant.max), (Since::Created, 1));
    }

    #[test]
    fn every_problem_is_reported_once_by_rule() {
        let err = compile(
            r#"
[strategy]
default_timezone = "Mars/Olympus"
caps = [{ max = 0, per = "1mo" }]
[[rules]]
id = "a b"
trigger = { on = "created" }
channels = ["inbox"]
subject = "x"
text = "x"
[[rules]]
id = "dup"
trigger = { on = "updated", field = "nope" }
channels = ["fax"]
subject = "{{ customer.nope }}"
text = "x"
on_cap = "maybe"
[[rules]]
id = "dup"
trigger = { on = "created" }
channels = ["inbox"]
subject = "x"
text = "x"
[[rules]]
id = "dated"
trigger = { on = "date", attribute = "birthday" }
channels = []
subject = "x"
text = "x"
"#,
        )
        .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        for expected in [
            "[strategy] default_timezone: `Mars/Olympus` is not an IANA time zone",
            "[strategy] caps[0]: max = 0 would send nothing; give at least 1",
            "rule `a b`: rule ids use letters, digits, `-` and `_` only",
            "rule `dup`: trigger field `nope` is neither a customer field nor a declared attribute",
            "rule `dup`: channel `fax` is not configured; configured channels: inbox, sms",
            "rule `dup`: on_cap = \"maybe\"; use \"defer\" (wait until the cap allows) or \"drop\"",
            "rule `dup`: this id is used by an earlier rule; rule ids must be unique",
            "rule `dated`: date trigger on `birthday`, which is not declared; add `birthday = \"date\"` under [attributes]",
        ] {
            assert!(lines.contains(&expected), "missing: {expected}\nin:\n{err}");
        }
        assert!(
            lines.iter().any(|l| l.contains("caps[0]: per = \"1mo\"")),
            "{err}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("rule `dup`") && l.contains("nope")),
            "{err}"
        );
    }

    #[test]
    fn triggers_refuse_what_cannot_be_planned() {
        for (trigger, expected) in [
            (
                r#"{ on = "inactive", kinds = [], for = "7d" }"#,
                "needs the event kinds",
            ),
            (
                r#"{ on = "inactive", kinds = ["login"], for = "0d" }"#,
                "`for` must be a positive period",
            ),
            (
                r#"{ on = "inactive", kinds = ["login"], for = "7d", max = 2 }"#,
                "`max` counts repeats",
            ),
            (
                r#"{ on = "date", attribute = "created_at", before = "1d", after = "1d" }"#,
                "`before` or `after`, not both",
            ),
            (
                r#"{ on = "date", attribute = "created_at", every = "12h" }"#,
                "repeat by whole days",
            ),
            (
                r#"{ on = "date", attribute = "created_at", cron = "nonsense" }"#,
                "cron = \"nonsense\"",
            ),
            (
                r#"{ on = "date", attribute = "created_at", at = "25:00" }"#,
                "not a time of day",
            ),
        ] {
            let text = format!("[[rules]]\nid = \"r\"\ntrigger = {trigger}\nchannels = [\"inbox\"]\nsubject = \"x\"\ntext = \"x\"\n");
            let err = compile(&text).unwrap_err();
            assert!(err.contains(expected), "{trigger}: {err}");
        }
    }
}
