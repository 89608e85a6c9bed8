//! The reminder strategy: rules compiled from the deployment file, their
//! triggers and conditions, and the occurrences each rule wants for a
//! customer. Compiling checks everything an operator can get wrong (unknown
//! channels, bad durations, templates that do not parse or name unknown
//! variables) and reports it by rule.

pub mod caps;
mod compile;
pub mod dates;
pub mod segments;
pub mod topics;
pub mod windows;

use crate::customer::{parse_date_or_datetime, AttributeSchema, Customer};
use crate::render::Templates;
use caps::Cap;
use chrono::{DateTime, Duration, Utc};
use dates::DateTrigger;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use windows::Window;

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
    /// Channels of the list with a `channel_when` condition.
    pub channel_when: BTreeSet<String>,
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
    /// The topic its reminders belong to (see [`topics`]).
    pub topic: Option<String>,
}

/// A rule's goal.
#[derive(Debug, Clone)]
pub struct Goal {
    /// The event kind.
    pub event: String,
    /// The ordered steps towards it, the last being `event` (empty for a
    /// goal of one event).
    pub stages: Vec<String>,
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
    /// Channels of the list with a `channel_when` condition.
    pub channel_when: BTreeSet<String>,
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

/// Whether `name` is a name operators may give a rule, field, topic or
/// segment: letters, digits, `-` and `_`, not empty.
pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The text for `locale` among texts by BCP 47 tag: the exact tag
/// (ignoring case and `_`/`-`), else one of the same language, else
/// English, else the first.
pub fn pick_language<'a>(texts: &'a BTreeMap<String, String>, locale: &str) -> Option<&'a str> {
    let norm = |tag: &str| tag.trim().replace('_', "-").to_ascii_lowercase();
    let language = |tag: &str| norm(tag).split('-').next().unwrap_or("").to_string();
    let wanted = norm(locale);
    texts
        .iter()
        .find(|(tag, _)| norm(tag) == wanted)
        .or_else(|| {
            texts
                .iter()
                .find(|(tag, _)| language(tag) == language(&wanted))
        })
        .or_else(|| texts.iter().find(|(tag, _)| language(tag) == "en"))
        .or_else(|| texts.iter().next())
        .map(|(_, text)| text.as_str())
}

/// The step of a sequence an occurrence is (0: the rule's own message).
pub fn step_of(context: Option<&Value>) -> usize {
    context
        .and_then(|c| c.get("step"))
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}

impl Rule {
    /// The channels of step `step` with a `channel_when` condition.
    fn channel_when_of(&self, step: usize) -> Option<&BTreeSet<String>> {
        match step {
            0 => Some(&self.channel_when),
            k => self.steps.get(k - 1).map(|s| &s.channel_when),
        }
    }

    /// The template set of step `step`: the rule's own, or `id#k`.
    fn template_set(&self, step: usize) -> String {
        match step {
            0 => self.id.clone(),
            k => format!("{}#{k}", self.id),
        }
    }

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
    /// What reminders are about; customers turn topics off.
    pub topics: topics::Topics,
    /// Named groups of customers.
    pub segments: Vec<segments::Segment>,
    by_id: HashMap<String, usize>,
}

impl Strategy {
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

    /// The channels step `step` of `rule` offers `customer` at `now`, in
    /// the order to try them, and why the others are passed over: a channel
    /// whose `channel_when` is false (or fails) is left out; the channel the
    /// customer's `preferred_channel` attribute names goes first when the
    /// list has it. The same for the tick, preview and explain.
    pub fn channel_preference(
        &self,
        rule: &Rule,
        step: usize,
        customer: &Customer,
        now: DateTime<Utc>,
    ) -> ChannelPreference {
        let conditional = rule.channel_when_of(step);
        let mut ctx = None;
        let mut channels = Vec::new();
        for channel in rule.channels_of(step) {
            let mut left_out = None;
            if conditional.is_some_and(|c| c.contains(channel)) {
                let ctx = ctx
                    .get_or_insert_with(|| crate::render::context(customer, &rule.id, now, None));
                let set = rule.template_set(step);
                left_out = match self.templates.channel_condition(&set, channel, ctx) {
                    Ok(true) => None,
                    Ok(false) => Some(format!("{channel} (its channel_when is false)")),
                    Err(e) => Some(format!("{channel} (its channel_when fails: {e})")),
                };
            }
            channels.push((channel.clone(), left_out));
        }
        let preferred = customer
            .attributes
            .get(PREFERRED_CHANNEL)
            .and_then(Value::as_str);
        let candidate =
            |(c, out): &(String, Option<String>)| Some(c.as_str()) == preferred && out.is_none();
        let mut preferred_first = None;
        if let Some(at) = channels.iter().position(candidate).filter(|at| *at > 0) {
            let entry = channels.remove(at);
            preferred_first = Some(entry.0.clone());
            channels.insert(0, entry);
        }
        ChannelPreference {
            channels,
            preferred_first,
        }
    }
}

/// The customer attribute naming the channel they prefer.
pub const PREFERRED_CHANNEL: &str = "preferred_channel";

/// The channels to try for one reminder, in order, and why others are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPreference {
    /// The rule's channels in the order to try them, each with why its
    /// condition leaves it out (`None`: a candidate).
    pub channels: Vec<(String, Option<String>)>,
    /// The channel moved first because the customer prefers it.
    pub preferred_first: Option<String>,
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

impl Trigger {
    /// What makes a rule fire, in words.
    pub fn describe(&self) -> String {
        match self {
            Trigger::Created { .. } => "fires when the customer is created".into(),
            Trigger::Updated { field: Some(f), .. } => format!("fires when `{f}` changes"),
            Trigger::Updated { .. } => "fires when the customer changes".into(),
            Trigger::Deleted => "fires when the customer is deleted".into(),
            Trigger::Event { kind, .. } => format!("waits for a `{kind}` event"),
            Trigger::Inactive(t) => format!(
                "waits for {} without {}",
                humantime(t.idle),
                t.kinds.join("/")
            ),
            Trigger::Date(t) => format!("needs a `{}` date", t.attribute),
        }
    }
}

fn humantime(d: chrono::Duration) -> String {
    if d.num_hours() % 24 == 0 {
        format!("{}d", d.num_days())
    } else {
        format!("{}h", d.num_hours())
    }
}
