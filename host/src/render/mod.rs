//! Templates and conditions (minijinja): compiling each rule's subject, text
//! and HTML bodies and its `when` condition, checking at load that they parse
//! and name only variables a customer record can have, and rendering them with
//! the customer's fields and date helpers that work in the customer's zone.
//! Values are HTML-escaped in HTML bodies.

pub mod history;
pub mod links;
pub mod tracking;

use crate::customer::{parse_date_or_datetime, Customer, CORE_FIELDS};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::value::Value as JinjaValue;
use minijinja::{
    AutoEscape, Environment, Error as JinjaError, ErrorKind, State, UndefinedBehavior,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// The parts of a rule that are templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The subject line.
    Subject,
    /// The text body.
    Text,
    /// The HTML body.
    Html,
    /// The `when` condition.
    When,
    /// A named extra field (`fields.NAME`), e.g. a provider template parameter.
    Field(String),
    /// The condition under which a channel of the rule applies (`channel_when.NAME`).
    ChannelWhen(String),
}

impl Part {
    fn template_name(&self, rule: &str) -> String {
        match self {
            Part::Subject => format!("{rule}/subject.txt"),
            Part::Text => format!("{rule}/text.txt"),
            Part::Html => format!("{rule}/body.html"),
            Part::When => format!("{rule}/when.txt"),
            Part::Field(name) => format!("{rule}/fields/{name}.txt"),
            Part::ChannelWhen(channel) => format!("{rule}/channel_when/{channel}.txt"),
        }
    }

    /// The config key of the part, for messages.
    pub fn key(&self) -> String {
        match self {
            Part::Subject => "subject".into(),
            Part::Text => "text".into(),
            Part::Html => "html".into(),
            Part::When => "when".into(),
            Part::Field(name) => format!("fields.{name}"),
            Part::ChannelWhen(channel) => format!("channel_when.{channel}"),
        }
    }
}

/// What a template may refer to.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Declared attribute names (core fields are always allowed).
    pub attributes: BTreeSet<String>,
    /// Whether `event` (the triggering event) exists for this rule.
    pub has_event: bool,
    /// Whether `target` (a targeting plugin's variables) exists for this rule.
    pub has_target: bool,
    /// Whether the event-history functions (`count`, `idle`, `last`) exist:
    /// segment conditions only.
    pub has_history: bool,
}

/// All compiled templates of a strategy.
pub struct Templates {
    env: Environment<'static>,
    /// The template sets (rule ids, `id@locale`, `id#k`) with a part that
    /// names `preferences_url`: only their messages pay for signing it.
    preference_links: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line (whitespace trimmed, one line).
    pub subject: String,
    /// Text body.
    pub text: String,
    /// HTML body, when the rule has one.
    pub html: Option<String>,
    /// The rule's extra fields, rendered, in the rule's order.
    pub fields: Vec<(String, String)>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// An empty set of templates with Herald's filters installed.
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_keep_trailing_newline(true);
        env.add_filter("date", date_filter);
        env.add_filter("days_until", days_until_filter);
        env.add_filter("days_since", days_since_filter);
        env.add_function("count", history::count);
        env.add_function("idle", history::idle);
        env.add_function("last", history::last);
        Templates {
            env,
            preference_links: Default::default(),
        }
    }

    /// Compile one part of a rule and check the variables it names.
    pub fn add(
        &mut self,
        rule: &str,
        part: Part,
        source: &str,
        vocab: &Vocabulary,
    ) -> Result<(), String> {
        let name = part.template_name(rule);
        let body = match part {
            Part::When | Part::ChannelWhen(_) => format!("{{% if {source} %}}1{{% endif %}}"),
            _ => source.to_string(),
        };
        let located = |e: &JinjaError| -> String {
            let line = e.line().map(|l| format!(", line {l}")).unwrap_or_default();
            format!(
                "rule `{rule}`, {}{line}: {}",
                part.key(),
                e.detail().unwrap_or(&e.kind().to_string())
            )
        };
        self.env
            .add_template_owned(name.clone(), body)
            .map_err(|e| located(&e))?;
        let template = self.env.get_template(&name).map_err(|e| located(&e))?;
        let named = template.undeclared_variables(true);
        if named.contains("preferences_url") {
            self.preference_links.insert(rule.to_string());
        }
        let mut unknown: Vec<String> = named.into_iter().filter(|var| !vocab.allows(var)).collect();
        unknown.sort();
        if let Some(var) = unknown.first() {
            let line = source
                .lines()
                .position(|l| l.contains(var.rsplit('.').next().unwrap_or(var)))
                .map(|i| format!(", line {}", i + 1))
                .unwrap_or_default();
            return Err(format!(
                "rule `{rule}`, {}{line}: unknown variable `{var}`; {}",
                part.key(),
                vocab.hint(var)
            ));
        }
        Ok(())
    }

    /// Render the message parts of a rule: subject, text, the HTML body when
    /// `has_html`, and each of `fields` (trimmed).
    /// `text_rule` names the template set of the message text (the rule id,
    /// or `rule@locale` for a translation); fields always come from `rule`.
    pub fn render(
        &self,
        rule: &str,
        text_rule: &str,
        has_html: bool,
        fields: &[String],
        ctx: &JinjaValue,
    ) -> Result<Rendered, String> {
        let subject = self.render_part(text_rule, Part::Subject, ctx)?;
        let text = self.render_part(text_rule, Part::Text, ctx)?;
        let html = if has_html {
            Some(self.render_part(text_rule, Part::Html, ctx)?)
        } else {
            None
        };
        let mut rendered_fields = Vec::with_capacity(fields.len());
        for name in fields {
            let value = self.render_part(rule, Part::Field(name.clone()), ctx)?;
            rendered_fields.push((name.clone(), value.trim().to_string()));
        }
        Ok(Rendered {
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text,
            html,
            fields: rendered_fields,
        })
    }

    /// Whether a part of template set `set` names `preferences_url`.
    pub fn links_preferences(&self, set: &str) -> bool {
        self.preference_links.contains(set)
    }

    /// Evaluate a rule's condition.
    pub fn condition(&self, rule: &str, ctx: &JinjaValue) -> Result<bool, String> {
        Ok(self.render_part(rule, Part::When, ctx)? == "1")
    }

    /// Whether `channel` applies for the template set `rule` (a rule or a
    /// step of it) in `ctx`.
    pub fn channel_condition(
        &self,
        rule: &str,
        channel: &str,
        ctx: &JinjaValue,
    ) -> Result<bool, String> {
        Ok(self.render_part(rule, Part::ChannelWhen(channel.to_string()), ctx)? == "1")
    }

    fn render_part(&self, rule: &str, part: Part, ctx: &JinjaValue) -> Result<String, String> {
        let part = &part;
        let name = part.template_name(rule);
        let template = self
            .env
            .get_template(&name)
            .map_err(|e| format!("rule `{rule}` has no {} template: {e}", part.key()))?;
        template.render(ctx).map_err(|e| {
            let line = e.line().map(|l| format!(", line {l}")).unwrap_or_default();
            format!(
                "rule `{rule}`, {}{line}: {}",
                part.key(),
                e.detail().unwrap_or(&e.kind().to_string())
            )
        })
    }
}

impl Vocabulary {
    fn allows(&self, var: &str) -> bool {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or("");
        match root {
            "customer" => match parts.next() {
                None => true,
                Some(field) => CORE_FIELDS.contains(&field) || self.attributes.contains(field),
            },
            "now" | "rule" | "unsubscribe_url" | "preferences_url" => true,
            "event" => self.has_event,
            "target" => self.has_target,
            f if history::FUNCTIONS.contains(&f) => self.has_history,
            _ => false,
        }
    }

    fn hint(&self, var: &str) -> String {
        if var.starts_with("event") {
            return "`event` exists only for rules with `on = \"event\"` triggers".into();
        }
        if history::FUNCTIONS.contains(&var) {
            return "count(), idle() and last() over a customer's events work in segment conditions ([segments.NAME] when), not in rules".into();
        }
        if var.starts_with("target") {
            return "`target` exists only for rules with a targeting plugin".into();
        }
        if let Some(field) = var.strip_prefix("customer.") {
            return format!(
                "customers have the fields {} and the attributes declared under [attributes]; declare `{}` there if it is an attribute",
                CORE_FIELDS.join(", "),
                field.split('.').next().unwrap_or(field)
            );
        }
        "variables are `customer.<field>`, `event.kind`, `event.properties.<name>`, `rule.id`, `now`, `unsubscribe_url` and `preferences_url`".into()
    }
}

/// The template context for a customer at an instant, converted to a
/// template value once so every part and the condition share it.
pub fn context(
    customer: &Customer,
    rule: &str,
    now: DateTime<Utc>,
    event: Option<&Value>,
) -> JinjaValue {
    message_context(customer, rule, now, event, MessageLinks::default(), None)
}

/// The context of a segment condition: the customer, `now`, and their
/// event history for `count`, `idle` and `last` ([`history`]).
pub fn segment_context(
    customer: &Customer,
    now: DateTime<Utc>,
    events: &history::History,
) -> JinjaValue {
    JinjaValue::from_serialize(json!({
        "customer": customer.to_template_value(),
        "now": now.to_rfc3339(),
        "events": events,
    }))
}

/// The signed links a message can carry (each empty without a public URL).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageLinks<'a> {
    /// Unsubscribes the customer from the channel carrying the message.
    pub unsubscribe_url: Option<&'a str>,
    /// The customer's preference page.
    pub preferences_url: Option<&'a str>,
}

/// The context of a message about to be sent: [`context`] plus its signed
/// links (`unsubscribe_url`, `preferences_url`; empty without them).
pub fn message_context(
    customer: &Customer,
    rule: &str,
    now: DateTime<Utc>,
    event: Option<&Value>,
    links: MessageLinks<'_>,
    target: Option<&serde_json::Map<String, Value>>,
) -> JinjaValue {
    let mut ctx = json!({
        "unsubscribe_url": links.unsubscribe_url.unwrap_or(""),
        "preferences_url": links.preferences_url.unwrap_or(""),
        "target": target.cloned().unwrap_or_default(),
        "customer": customer.to_template_value(),
        "rule": {"id": rule},
        "now": now.to_rfc3339(),
    });
    if let Some(event) = event {
        ctx["event"] = event.clone();
    }
    JinjaValue::from_serialize(&ctx)
}

fn customer_zone(state: &State) -> Tz {
    state
        .lookup("customer")
        .and_then(|c| c.get_attr("timezone").ok())
        .and_then(|tz| tz.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(Tz::UTC)
}

fn now_of(state: &State) -> Result<DateTime<Utc>, JinjaError> {
    state
        .lookup("now")
        .and_then(|n| {
            n.as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        })
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| {
            JinjaError::new(
                ErrorKind::InvalidOperation,
                "`now` is missing from the context",
            )
        })
}

fn parse_value(value: &JinjaValue) -> Result<Option<crate::customer::DateOrTime>, JinjaError> {
    if value.is_undefined() || value.is_none() {
        return Ok(None);
    }
    let text = value.as_str().ok_or_else(|| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("expected a date (YYYY-MM-DD) or timestamp, got {value}"),
        )
    })?;
    parse_date_or_datetime(text).map(Some).ok_or_else(|| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("`{text}` is not a date (YYYY-MM-DD) or RFC 3339 timestamp"),
        )
    })
}

/// `{{ customer.trial_ends_at | date("%Y-%m-%d") }}`: format a date or
/// timestamp in the customer's zone (default format `%Y-%m-%d`).
fn date_filter(
    state: &State,
    value: JinjaValue,
    format: Option<String>,
) -> Result<String, JinjaError> {
    let tz = customer_zone(state);
    let format = format.unwrap_or_else(|| "%Y-%m-%d".to_string());
    Ok(match parse_value(&value)? {
        None => String::new(),
        Some(crate::customer::DateOrTime::Date(d)) => d.format(&format).to_string(),
        Some(crate::customer::DateOrTime::Time(t)) => {
            t.with_timezone(&tz).format(&format).to_string()
        }
    })
}

fn local_days_from_now(state: &State, value: &JinjaValue) -> Result<Option<i64>, JinjaError> {
    let tz = customer_zone(state);
    let today = now_of(state)?.with_timezone(&tz).date_naive();
    Ok(parse_value(value)?.map(|d| (d.local_date(tz) - today).num_days()))
}

/// `{{ customer.trial_ends_at | days_until }}`: whole local days from today to the date.
fn days_until_filter(state: &State, value: JinjaValue) -> Result<JinjaValue, JinjaError> {
    Ok(local_days_from_now(state, &value)?
        .map(JinjaValue::from)
        .unwrap_or(JinjaValue::UNDEFINED))
}

/// `{{ customer.created_at | days_since }}`: whole local days from the date to today.
fn days_since_filter(state: &State, value: JinjaValue) -> Result<JinjaValue, JinjaError> {
    Ok(local_days_from_now(state, &value)?
        .map(|d| JinjaValue::from(-d))
        .unwrap_or(JinjaValue::UNDEFINED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn vocab() -> Vocabulary {
        Vocabulary {
            attributes: ["trial_ends_at".to_string()].into(),
            has_event: false,
            has_target: false,
            has_history: false,
        }
    }

    fn customer() -> Customer {
        Customer {
            id: 1,
            external_id: "c1".into(),
            name: Some("<b>Li</b>".into()),
            email: None,
            phone: None,
            wechat_openid: None,
            region: None,
            timezone: "Asia/Shanghai".into(),
            locale: None,
            state: Some("trial".into()),
            attributes: serde_json::from_value(json!({"trial_ends_at": "2026-03-31"})).unwrap(),
            created_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
            updated_at: Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
            deleted_at: None,
            devices: Vec::new(),
        }
    }

    #[test]
    fn renders_escapes_html_and_uses_local_dates() {
        let mut t = Templates::new();
        let v = vocab();
        t.add("r", Part::Subject, "Hi {{ customer.name }}", &v)
            .unwrap();
        t.add("r", Part::Text, "ends {{ customer.trial_ends_at | date('%d/%m') }} in {{ customer.trial_ends_at | days_until }} days", &v).unwrap();
        t.add("r", Part::Html, "<p>{{ customer.name }}</p>", &v)
            .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 26, 17, 0, 0).unwrap(); // 01:00 on the 27th in Shanghai
        let out = t
            .render("r", "r", true, &[], &context(&customer(), "r", now, None))
            .unwrap();
        assert_eq!(out.subject, "Hi <b>Li</b>");
        assert_eq!(out.text, "ends 31/03 in 4 days");
        assert_eq!(out.html.unwrap(), "<p>&lt;b&gt;Li&lt;&#x2f;b&gt;</p>");
    }

    #[test]
    fn unknown_variables_and_syntax_errors_name_rule_and_line() {
        let mut t = Templates::new();
        let err = t
            .add(
                "r",
                Part::Text,
                "line one\nHello {{ customer.nickname }}",
                &vocab(),
            )
            .unwrap_err();
        assert!(
            err.contains("rule `r`, text, line 2") && err.contains("customer.nickname"),
            "{err}"
        );
        let err = t
            .add("r2", Part::Text, "a\nb {{ customer.name ", &vocab())
            .unwrap_err();
        assert!(err.contains("rule `r2`, text, line 2"), "{err}");
        let err = t
            .add("r3", Part::Text, "{{ event.kind }}", &vocab())
            .unwrap_err();
        assert!(err.contains("on = \"event\""), "{err}");
    }

    #[test]
    fn conditions() {
        let mut t = Templates::new();
        t.add(
            "r",
            Part::When,
            "customer.state == 'trial' and customer.trial_ends_at >= '2026-03-01'",
            &vocab(),
        )
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        assert!(t
            .condition("r", &context(&customer(), "r", now, None))
            .unwrap());
        let mut paid = customer();
        paid.state = Some("paid".into());
        assert!(!t.condition("r", &context(&paid, "r", now, None)).unwrap());
    }
}
