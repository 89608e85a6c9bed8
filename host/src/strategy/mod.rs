//! The reminder strategy: rules compiled from the deployment file, their
//! triggers and conditions, and the occurrences each rule wants for a
//! customer. Compiling checks everything an operator can get wrong (unknown
//! channels, bad durations, templates that do not parse or name unknown
//! variables) and reports it by rule.

pub mod dates;

use crate::caps::Cap;
use crate::config::{AttributeType, Config, TriggerSection};
use crate::customer::{parse_date_or_datetime, AttributeSchema, Customer, CORE_FIELDS};
use crate::render::{Part, Templates, Vocabulary};
use crate::span::Span;
use crate::windows::{self, Window};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use dates::{DateTrigger, Repeat};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

/// What makes a rule fire.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// The customer was inserted.
    Created {
        /// Delay after the insert.
        delay: Duration,
    },
    /// The customer was updated (optionally: this field changed).
    Updated {
        /// Only when this field or attribute changed.
        field: Option<String>,
        /// Only when the field's new value is this (compared as JSON).
        to: Option<Value>,
        /// Delay after the update.
        delay: Duration,
    },
    /// The customer was deleted.
    Deleted,
    /// An event of a kind arrived.
    Event {
        /// Event kind.
        kind: String,
        /// Delay after the event's time.
        delay: Duration,
    },
    /// No activity of some kinds for a period (dormancy).
    Inactive(InactiveTrigger),
    /// A date attribute is reached.
    Date(DateTrigger),
}

/// Where a dormancy period is counted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// The customer's sign-up.
    Created,
    /// The latest activity event, or sign-up when there is none.
    Last,
    /// The latest event of this kind (none: nothing is planned).
    Event(String),
}

/// `{ on = "inactive", kinds, for, since, repeat, max }`.
#[derive(Debug, Clone)]
pub struct InactiveTrigger {
    /// Event kinds that count as activity.
    pub kinds: Vec<String>,
    /// How long without activity.
    pub idle: Duration,
    /// Counted from.
    pub since: Since,
    /// Interval of repeats while still dormant.
    pub repeat: Option<Duration>,
    /// Most firings per dormant spell (1 without `repeat`).
    pub max: u32,
}

impl InactiveTrigger {
    /// Whether an event of `kind` concerns this trigger (activity, or a new reference).
    pub fn concerns(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind) || matches!(&self.since, Since::Event(k) if k == kind)
    }
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Rule id.
    pub id: String,
    /// Trigger.
    pub trigger: Trigger,
    /// Channels in order of preference.
    pub channels: Vec<String>,
    /// Whether the rule has a `when` condition.
    pub has_condition: bool,
    /// Whether the rule has an HTML body.
    pub has_html: bool,
    /// Names of the rule's extra fields.
    pub fields: Vec<String>,
    /// Locales the message is translated into (template sets `id@locale`).
    pub locales: Vec<String>,
    /// What the reminder is for.
    pub goal: Option<Goal>,
    /// Follow-up steps (step 0 is the rule itself).
    pub steps: Vec<Step>,
    /// This rule's own send windows, replacing the strategy's.
    pub send_windows: Option<Vec<Window>>,
    /// Exempt from windows and caps, and not counted by caps.
    pub transactional: bool,
    /// Drop (rather than defer) a reminder a cap holds back.
    pub drop_when_capped: bool,
}

/// A rule's goal.
#[derive(Debug, Clone)]
pub struct Goal {
    /// The event kind.
    pub event: String,
    /// How long after a send it counts.
    pub within: Duration,
}

/// A follow-up step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Delay after the previous step's send.
    pub after: Duration,
    /// Channels in order of preference.
    pub channels: Vec<String>,
    /// Whether it has an HTML body.
    pub has_html: bool,
    /// Locales the step is translated into (template sets `id#k@locale`).
    pub locales: Vec<String>,
}

/// The template set for a customer's locale among `base` and its
/// translations `base@locale`: an exact match (ignoring case and `_`/`-`),
/// else one of the same language (`zh-TW` gets `zh-CN` when that is all
/// there is), else `base`.
fn pick_locale(base: &str, locales: &[String], locale: Option<&str>) -> String {
    let Some(wanted) = locale.map(|l| l.trim().replace('_', "-").to_ascii_lowercase()) else {
        return base.to_string();
    };
    let language = |tag: &str| tag.split('-').next().unwrap_or("").to_string();
    let exact = locales.iter().find(|l| l.to_ascii_lowercase() == wanted);
    let same_language = || {
        locales
            .iter()
            .find(|l| language(&l.to_ascii_lowercase()) == language(&wanted))
    };
    match exact.or_else(same_language) {
        Some(l) => format!("{base}@{l}"),
        None => base.to_string(),
    }
}

/// The step of a sequence an occurrence is (0: the rule's own message).
pub fn step_of(context: Option<&Value>) -> usize {
    context
        .and_then(|c| c.get("step"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}

impl Rule {
    /// The channels of step `step`.
    pub fn channels_of(&self, step: usize) -> &[String] {
        match step {
            0 => &self.channels,
            k => self
                .steps
                .get(k - 1)
                .map(|s| s.channels.as_slice())
                .unwrap_or(&[]),
        }
    }

    /// The template set and whether it has HTML, for step `step` and a locale.
    pub fn templates_of(&self, step: usize, locale: Option<&str>) -> (String, bool) {
        match step {
            0 => (self.text_templates(locale), self.has_html),
            k => match self.steps.get(k - 1) {
                Some(step) => (
                    pick_locale(&format!("{}#{k}", self.id), &step.locales, locale),
                    step.has_html,
                ),
                None => (format!("{}#{k}", self.id), false),
            },
        }
    }

    /// The template set of the rule's own message for a customer's locale
    /// (see [`pick_locale`]).
    pub fn text_templates(&self, locale: Option<&str>) -> String {
        pick_locale(&self.id, &self.locales, locale)
    }
}

/// A compiled strategy.
#[derive(Debug)]
pub struct Strategy {
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Templates and conditions.
    pub templates: Templates,
    /// Declared attributes.
    pub attributes: AttributeSchema,
    /// Zone of customers who have none.
    pub default_timezone: String,
    /// Strategy-wide send windows (empty: any time).
    pub send_windows: Vec<Window>,
    /// Frequency caps per customer.
    pub caps: Vec<Cap>,
    by_id: HashMap<String, usize>,
}

fn parse_time_of_day(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| format!("`{text}` is not a time of day; write HH:MM, e.g. \"10:00\""))
}

/// Compile the translations of one message (the rule's, or a step's) as
/// template sets `base@locale`.
fn add_translations(
    templates: &mut Templates,
    errors: &mut Vec<String>,
    place: &str,
    base: &str,
    has_html: bool,
    locales: &std::collections::BTreeMap<String, crate::config::LocaleSection>,
    vocab: &Vocabulary,
) {
    for (locale, texts) in locales {
        let well_formed = !locale.is_empty()
            && locale.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !well_formed {
            errors.push(format!(
                "rule `{place}`, locales: `{locale}` is not a language tag; write e.g. \"zh-CN\" or \"en\""
            ));
            continue;
        }
        if has_html != texts.html.is_some() {
            errors.push(format!(
                "rule `{place}`, locales.{locale}: {}",
                if has_html {
                    "the message has an html body, so each translation needs one too"
                } else {
                    "has html but the message has none; add html to it or remove it here"
                }
            ));
        }
        let variant = format!("{base}@{locale}");
        let mut parts = vec![
            (Part::Subject, texts.subject.as_str()),
            (Part::Text, texts.text.as_str()),
        ];
        if let Some(html) = &texts.html {
            parts.push((Part::Html, html.as_str()));
        }
        for (part, source) in parts {
            if let Err(e) = templates.add(&variant, part, source, vocab) {
                errors.push(e);
            }
        }
    }
}

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

impl Strategy {
    /// Compile the strategy of a deployment. `channels` are the configured
    /// channel names. Every problem found is reported, one per line.
    pub fn compile(config: &Config, channels: &BTreeSet<String>) -> Result<Strategy, String> {
        let file = &config.file;
        let mut errors = Vec::new();
        let default_time = parse_time_of_day(&file.strategy.default_time)
            .map_err(|e| format!("[strategy] default_time: {e}"))?;
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
        let attribute_names: BTreeSet<String> = file.attributes.keys().cloned().collect();
        let send_windows = windows::parse_all(&file.strategy.send_windows).unwrap_or_else(|e| {
            errors.push(format!("[strategy] send_windows: {e}"));
            Vec::new()
        });
        let mut caps = Vec::new();
        for (i, cap) in file.strategy.caps.iter().enumerate() {
            let at = format!("[strategy] caps[{i}]");
            if cap.max == 0 {
                errors.push(format!("{at}: max = 0 would send nothing; give at least 1"));
            }
            if cap.per.months != 0 || (cap.per.days <= 0 && cap.per.millis <= 0) {
                errors.push(format!(
                    "{at}: per = \"{}\": give a fixed period such as \"1d\", \"7d\" or \"12h\"",
                    cap.per
                ));
                continue;
            }
            if let Some(ch) = &cap.channel {
                if !channels.contains(ch) {
                    errors.push(format!("{at}: channel `{ch}` is not configured"));
                }
            }
            caps.push(Cap {
                max: cap.max,
                per: Duration::days(cap.per.days as i64) + Duration::milliseconds(cap.per.millis),
                channel: cap.channel.clone(),
            });
        }
        let mut templates = Templates::new();
        let mut rules = Vec::new();
        let mut by_id = HashMap::new();
        for (index, section) in file.rules.iter().enumerate() {
            let id = section.id.trim().to_string();
            let mut fail = |msg: String| errors.push(format!("rule `{id}`: {msg}"));
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                fail("rule ids use letters, digits, `-` and `_` only".into());
                continue;
            }
            if by_id.insert(id.clone(), index).is_some() {
                fail("this id is used by an earlier rule; rule ids must be unique".into());
                continue;
            }
            let trigger = match &section.trigger {
                TriggerSection::Created { delay } => {
                    exact(*delay, "delay").map(|delay| Trigger::Created { delay })
                }
                TriggerSection::Updated { field, to, delay } => {
                    if let Some(f) = field {
                        if !CORE_FIELDS.contains(&f.as_str()) && !attribute_names.contains(f) {
                            fail(format!("trigger field `{f}` is neither a customer field nor a declared attribute"));
                        }
                    }
                    if to.is_some() && field.is_none() {
                        fail("`to` needs the `field` it applies to, e.g. { on = \"updated\", field = \"level\", to = \"vip\" }".into());
                    }
                    let to = to
                        .as_ref()
                        .map(|v| serde_json::to_value(v).unwrap_or(Value::Null));
                    exact(*delay, "delay").map(|delay| Trigger::Updated {
                        field: field.clone(),
                        to,
                        delay,
                    })
                }
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
                } => (|| {
                    if kinds.is_empty() || kinds.iter().any(|k| k.trim().is_empty()) {
                        return Err("inactive trigger needs the event kinds that count as activity, e.g. kinds = [\"login\"]".to_string());
                    }
                    let idle = exact(Some(*idle), "for")?;
                    if idle <= Duration::zero() {
                        return Err("`for` must be a positive period, e.g. \"7d\"".into());
                    }
                    let since = match since.as_deref().map(str::trim) {
                        None | Some("last") => Since::Last,
                        Some("created") => Since::Created,
                        Some("") => {
                            return Err(
                                "`since` is empty; use \"last\", \"created\" or an event kind"
                                    .into(),
                            )
                        }
                        Some(kind) => Since::Event(kind.to_string()),
                    };
                    let (repeat, max) = match (repeat, max) {
                        (None, None) => (None, 1),
                        (None, Some(_)) => return Err("`max` counts repeats; add `repeat = \"7d\"` or remove `max`".into()),
                        (Some(_), None) => return Err("`repeat` needs `max`, the most reminders for one dormant spell, e.g. max = 3".into()),
                        (Some(r), Some(m)) => {
                            let r = exact(Some(*r), "repeat")?;
                            if r <= Duration::zero() || *m == 0 {
                                return Err("`repeat` must be positive and `max` at least 1".into());
                            }
                            (Some(r), *m)
                        }
                    };
                    Ok(Trigger::Inactive(InactiveTrigger {
                        kinds: kinds.clone(),
                        idle,
                        since,
                        repeat,
                        max,
                    }))
                })(),
                TriggerSection::Date {
                    attribute,
                    before,
                    after,
                    at,
                    every,
                    cron,
                } => {
                    (|| {
                        match file.attributes.get(attribute) {
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
                            (Some(_), Some(_)) => {
                                return Err("give `before` or `after`, not both".into())
                            }
                            (Some(b), None) => b.negated(),
                            (None, Some(a)) => *a,
                            (None, None) => Span::default(),
                        };
                        if offset.millis != 0 {
                            return Err("date offsets are calendar units (d, w, mo, y); set the time with `at`".into());
                        }
                        let at = match at {
                            Some(t) => parse_time_of_day(t)?,
                            None => default_time,
                        };
                        let repeat = match (every, cron) {
                            (Some(_), Some(_)) => return Err("give `every` or `cron`, not both".into()),
                            (Some(step), None) => {
                                if step.millis != 0 || (step.months <= 0 && step.days <= 0) {
                                    return Err(format!("every = \"{step}\": repeat by whole days, weeks, months or years"));
                                }
                                Some(Repeat::Every(*step))
                            }
                            (None, Some(expr)) => Some(Repeat::Cron(Box::new(
                                cron::Schedule::from_str(expr).map_err(|e| {
                                    format!("cron = \"{expr}\": {e} (fields: sec min hour day-of-month month day-of-week [year])")
                                })?,
                            ))),
                            (None, None) => None,
                        };
                        Ok(Trigger::Date(DateTrigger {
                            attribute: attribute.clone(),
                            offset,
                            at,
                            repeat,
                        }))
                    })()
                }
            };
            let trigger = match trigger {
                Ok(t) => t,
                Err(e) => {
                    fail(e);
                    continue;
                }
            };
            if section.channels.is_empty() {
                fail(
                    "no channels; list at least one, e.g. channels = [\"email\", \"inbox\"]".into(),
                );
            }
            for ch in &section.channels {
                if !channels.contains(ch) {
                    let known: Vec<&str> = channels.iter().map(String::as_str).collect();
                    fail(format!(
                        "channel `{ch}` is not configured; configured channels: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
            }
            let vocab = Vocabulary {
                attributes: attribute_names.clone(),
                has_event: matches!(trigger, Trigger::Event { .. }),
                has_target: section.targeting.is_some(),
            };
            let mut parts = vec![
                (Part::Subject, section.subject.as_str()),
                (Part::Text, section.text.as_str()),
            ];
            if let Some(html) = &section.html {
                parts.push((Part::Html, html.as_str()));
            }
            parts.push((Part::When, section.when.as_deref().unwrap_or("true")));
            add_translations(
                &mut templates,
                &mut errors,
                &id,
                &id,
                section.html.is_some(),
                &section.locales,
                &vocab,
            );
            for (name, source) in &section.fields {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    errors.push(format!(
                        "rule `{id}`, fields: `{name}` is not a field name; use letters, digits, `_` and `-`"
                    ));
                    continue;
                }
                parts.push((Part::Field(name.clone()), source.as_str()));
            }
            for (part, source) in parts {
                if let Err(e) = templates.add(&id, part, source, &vocab) {
                    errors.push(e);
                }
            }
            let goal = match &section.goal {
                None => None,
                Some(g) => match exact(Some(g.within), "goal within") {
                    Ok(within) if within > Duration::zero() && !g.event.trim().is_empty() => {
                        Some(Goal {
                            event: g.event.trim().to_string(),
                            within,
                        })
                    }
                    Ok(_) => {
                        errors.push(format!(
                            "rule `{id}`: goal needs an event kind and a positive `within`, e.g. goal = {{ event = \"login\", within = \"3d\" }}"
                        ));
                        None
                    }
                    Err(e) => {
                        errors.push(format!("rule `{id}`: {e}"));
                        None
                    }
                },
            };
            let mut steps = Vec::new();
            for (i, step) in section.steps.iter().enumerate() {
                let k = i + 1;
                let at = format!("rule `{id}`, steps[{i}]");
                let after = match exact(Some(step.after), "after") {
                    Ok(d) if d > Duration::zero() => d,
                    Ok(_) => {
                        errors.push(format!("{at}: `after` must be positive, e.g. \"3d\""));
                        continue;
                    }
                    Err(e) => {
                        errors.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                if step.channels.is_empty() {
                    errors.push(format!("{at}: no channels; list at least one"));
                }
                for ch in &step.channels {
                    if !channels.contains(ch) {
                        errors.push(format!("{at}: channel `{ch}` is not configured"));
                    }
                }
                let variant = format!("{id}#{k}");
                let mut parts = vec![
                    (Part::Subject, step.subject.as_str()),
                    (Part::Text, step.text.as_str()),
                ];
                if let Some(html) = &step.html {
                    parts.push((Part::Html, html.as_str()));
                }
                for (part, source) in parts {
                    if let Err(e) = templates.add(&variant, part, source, &vocab) {
                        errors.push(e);
                    }
                }
                add_translations(
                    &mut templates,
                    &mut errors,
                    &format!("{id}, steps[{i}]"),
                    &variant,
                    step.html.is_some(),
                    &step.locales,
                    &vocab,
                );
                steps.push(Step {
                    after,
                    channels: step.channels.clone(),
                    has_html: step.html.is_some(),
                    locales: step.locales.keys().cloned().collect(),
                });
            }
            if !section.steps.is_empty() && matches!(trigger, Trigger::Deleted) {
                errors.push(format!(
                    "rule `{id}`: a deleted customer gets no follow-ups; remove `steps`"
                ));
            }
            let rule_windows = match &section.send_windows {
                None => None,
                Some(list) => match windows::parse_all(list) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        errors.push(format!("rule `{id}`: {e}"));
                        None
                    }
                },
            };
            let drop_when_capped = match section.on_cap.as_deref() {
                None | Some("defer") => false,
                Some("drop") => true,
                Some(other) => {
                    errors.push(format!(
                        "rule `{id}`: on_cap = \"{other}\"; use \"defer\" (wait until the cap allows) or \"drop\""
                    ));
                    false
                }
            };
            rules.push(Rule {
                id,
                trigger,
                channels: section.channels.clone(),
                has_condition: section.when.is_some(),
                has_html: section.html.is_some(),
                fields: section.fields.keys().cloned().collect(),
                locales: section.locales.keys().cloned().collect(),
                goal,
                steps,
                send_windows: rule_windows,
                transactional: section.transactional,
                drop_when_capped,
            });
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        Ok(Strategy {
            rules,
            templates,
            attributes: file.attributes.clone(),
            default_timezone: file.strategy.default_timezone.clone(),
            send_windows,
            caps,
            by_id,
        })
    }

    /// The rule with this id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).map(|&i| &self.rules[i])
    }

    /// Evaluate a rule's condition for a customer. A condition that fails to
    /// evaluate counts as false; the error is returned for the record.
    pub fn condition_holds(
        &self,
        rule: &Rule,
        customer: &Customer,
        now: DateTime<Utc>,
        event: Option<&Value>,
    ) -> Result<bool, String> {
        if !rule.has_condition {
            return Ok(true);
        }
        let ctx = crate::render::context(customer, &rule.id, now, event);
        self.templates.condition(&rule.id, &ctx)
    }
}

/// The anchor of a date trigger for a customer: the attribute's stored text
/// and its calendar date in the customer's zone.
pub fn date_anchor(
    trigger: &DateTrigger,
    customer: &Customer,
) -> Option<(String, chrono::NaiveDate)> {
    let raw = customer.field(&trigger.attribute)?;
    let text = raw.as_str()?.to_string();
    let date = parse_date_or_datetime(&text)?.local_date(customer.tz());
    Some((text, date))
}

/// The occurrence key of a date occurrence.
pub fn date_occurrence_key(customer_id: i64, rule: &str, at: DateTime<Utc>) -> String {
    format!("{customer_id}:{rule}:{}", at.format("%Y-%m-%dT%H:%MZ"))
}
