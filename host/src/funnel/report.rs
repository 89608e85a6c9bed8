//! The funnel report: for a period, per rule and per channel, how many
//! reminders were planned, sent, delivered, failed, opened, clicked and led
//! to their goal, the rates between those steps, and the median time from
//! send to the first open or click.
//!
//! Definitions (all counts are of messages, never of hits):
//! - a *message* is one occurrence (schedule row) on one channel; per rule
//!   an occurrence counts once whatever channels carried it;
//! - **planned**: per rule, occurrences whose planned time falls in the
//!   period and that were not canceled before they were due; per channel,
//!   occurrences routed to it in the period (sent or held back);
//! - **sent**: handed to the channel in the period;
//! - **delivered**: the channel accepted it and no provider report said
//!   otherwise;
//! - **failed**: sent, not delivered and given up on (permanent failure,
//!   dead after retries, refused by the recipient at the provider, or a
//!   provider report of non-delivery); messages still being retried are in
//!   neither column;
//! - **opened** / **clicked**: delivered messages with at least one open /
//!   click (the first counts, every hit is stored);
//! - **converted**: delivered messages their rule's goal was credited to;
//! - rates: delivered/sent, and opened, clicked, converted over delivered;
//! - **response**: per delivered message with an open or click, the time
//!   from its send to the first of them; the median is reported;
//! - **stages** (rules whose goal has `stages`): per stage, the delivered
//!   messages whose customer reached it, in order, within the goal's window
//!   ([`super::stages`]).

use super::stages::{self, Stage, StagedGoal};
use crate::store::funnel::{self, Attempt};
use crate::store::Store;
use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// One line of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Funnel {
    /// The rule id, the channel name, or `all`.
    pub name: String,
    /// Planned in the period.
    pub planned: u64,
    /// Handed to a channel.
    pub sent: u64,
    /// Accepted by the channel.
    pub delivered: u64,
    /// Given up on.
    pub failed: u64,
    /// Delivered and opened (the open pixel loaded).
    pub opened: u64,
    /// Delivered and a tracked link followed.
    pub clicked: u64,
    /// Delivered and the rule's goal reached.
    pub converted: u64,
    /// delivered / sent.
    pub delivery_rate: Option<f64>,
    /// opened / delivered.
    pub open_rate: Option<f64>,
    /// clicked / delivered.
    pub click_rate: Option<f64>,
    /// converted / delivered.
    pub conversion_rate: Option<f64>,
    /// Messages with an open or click (the sample of the response time).
    pub responded: u64,
    /// Median seconds from send to the first open or click.
    pub median_response_seconds: Option<f64>,
    /// A staged goal's stages (rules only; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
}

/// The staged goals of `strategy`'s rules, by rule id.
pub fn staged_goals(strategy: &crate::strategy::Strategy) -> BTreeMap<String, StagedGoal> {
    strategy
        .rules
        .iter()
        .filter_map(|r| {
            let goal = r.goal.as_ref().filter(|g| !g.stages.is_empty())?;
            Some((
                r.id.clone(),
                StagedGoal {
                    stages: goal.stages.clone(),
                    within_ms: goal.within.num_milliseconds(),
                },
            ))
        })
        .collect()
}

/// The report for a period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Start of the period (inclusive).
    pub since: DateTime<Utc>,
    /// End of the period (exclusive).
    pub until: DateTime<Utc>,
    /// The regions counted; absent when every region is.
    pub regions: Option<Vec<String>>,
    /// One line per rule, by rule id.
    pub rules: Vec<Funnel>,
    /// One line per channel, by channel name.
    pub channels: Vec<Funnel>,
    /// Every rule together.
    pub total: Funnel,
}

/// What is known about one message (an occurrence on a channel).
#[derive(Debug, Clone, Default)]
struct Message {
    routed: bool,
    sent: bool,
    delivered: bool,
    failed: bool,
    /// Time of the last attempt, to tell which channel an occurrence ended on.
    last_at: i64,
    sent_at: Option<i64>,
    first_open: Option<i64>,
    first_click: Option<i64>,
    converted: bool,
}

impl Message {
    fn response(&self) -> Option<i64> {
        let first = match (self.first_open, self.first_click) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some((first - self.sent_at?).max(0))
    }
}

/// Count the funnel of `[since, until)`. `regions`: `None` counts every
/// customer; `Some(list)` only customers whose region is in the list (a
/// staff token's scope; an empty list counts nothing). The attempts are
/// folded as the store streams them, one occurrence at a time: what stays
/// in memory is a tally per rule and channel (and, for the median, the
/// response time of each message that had one), never the period's rows.
pub async fn report(
    store: &Store,
    staged: &BTreeMap<String, StagedGoal>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    regions: Option<&[String]>,
) -> Result<Report> {
    let planned_rows = funnel::planned_by_rule(store, since, until, regions).await?;
    let mut counts = Counts {
        staged: staged.keys().map(|r| (r.clone(), Vec::new())).collect(),
        ..Counts::default()
    };
    for (rule, count) in &planned_rows {
        counts.rules.entry(rule.clone()).or_default().planned += count;
    }
    let mut current: Option<Occurrence> = None;
    funnel::each_attempt(store, since, until, regions, |attempt| {
        if current.as_ref().map(|o| o.schedule_id) != Some(attempt.schedule_id) {
            if let Some(done) = current.take() {
                counts.add(done);
            }
            current = Some(Occurrence::new(attempt.schedule_id, attempt.customer_id));
        }
        if let Some(occurrence) = current.as_mut() {
            occurrence.apply(&attempt);
        }
        Ok(())
    })
    .await?;
    if let Some(done) = current.take() {
        counts.add(done);
    }
    let Counts {
        rules,
        channels,
        mut total,
        staged: sends,
    } = counts;
    total.planned = rules.values().map(|t| t.planned).sum();
    let mut rules: Vec<Funnel> = rules.into_iter().map(|(name, t)| t.finish(name)).collect();
    for funnel in &mut rules {
        if let (Some(goal), Some(sends)) = (staged.get(&funnel.name), sends.get(&funnel.name)) {
            funnel.stages = count_stages(store, goal, sends).await?;
        }
    }
    Ok(Report {
        since,
        until,
        regions: regions.map(<[String]>::to_vec),
        rules,
        channels: channels
            .into_iter()
            .map(|(name, t)| t.finish(name))
            .collect(),
        total: total.finish("all".into()),
    })
}

/// How far the delivered messages of a staged goal's rule got.
async fn count_stages(
    store: &Store,
    goal: &StagedGoal,
    sends: &[(i64, i64)],
) -> Result<Vec<Stage>> {
    let from = sends.iter().map(|s| s.1).min().unwrap_or(0);
    let until = sends
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(0)
        .saturating_add(goal.within_ms);
    let mut ids: Vec<i64> = sends.iter().map(|s| s.0).collect();
    ids.sort_unstable();
    ids.dedup();
    let events = funnel::stage_events(store, &ids, &goal.stages, (from, until)).await?;
    Ok(stages::count(goal, sends, &events))
}

/// The attempts of one occurrence (schedule row) seen so far, per channel.
struct Occurrence {
    schedule_id: i64,
    customer_id: i64,
    rule: String,
    messages: BTreeMap<String, Message>,
}

impl Occurrence {
    fn new(schedule_id: i64, customer_id: i64) -> Occurrence {
        Occurrence {
            schedule_id,
            customer_id,
            rule: String::new(),
            messages: BTreeMap::new(),
        }
    }

    /// One more attempt, in time order within its channel.
    fn apply(&mut self, r: &Attempt) {
        let at = r.at.timestamp_millis();
        self.rule.clone_from(&r.rule);
        let m = self.messages.entry(r.channel.clone()).or_default();
        m.routed = true;
        if r.status == "deferred" {
            return;
        }
        m.sent = true;
        m.last_at = at;
        let undelivered = r.report.as_deref() == Some("undelivered");
        match r.status.as_str() {
            "delivered" if !undelivered => {
                m.delivered = true;
                m.failed = false;
                m.sent_at.get_or_insert(at);
                let millis = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_millis());
                m.first_open = earliest(m.first_open, millis(r.first_open));
                m.first_click = earliest(m.first_click, millis(r.first_click));
                m.converted |= r.converted;
            }
            "delivered" | "dead" | "suppressed" => m.failed = !m.delivered,
            "failed" => m.failed = !m.delivered && !r.retried,
            _ => {}
        }
    }

    /// Per rule an occurrence counts once: delivered if any channel
    /// delivered it; failed if not, and the channel it ended on gave up.
    fn summary(&self) -> Message {
        let mut o = Message::default();
        for m in self.messages.values() {
            o.routed |= m.routed;
            o.sent |= m.sent;
            o.delivered |= m.delivered;
            if m.sent && m.last_at >= o.last_at {
                o.last_at = m.last_at;
                o.failed = m.failed;
            }
            if m.delivered && o.sent_at.is_none() {
                o.sent_at = m.sent_at;
            }
            o.first_open = earliest(o.first_open, m.first_open);
            o.first_click = earliest(o.first_click, m.first_click);
            o.converted |= m.converted;
        }
        if o.delivered {
            o.failed = false;
        }
        o
    }
}

/// The tallies of the report being counted.
#[derive(Default)]
struct Counts {
    rules: BTreeMap<String, Tally>,
    channels: BTreeMap<String, Tally>,
    total: Tally,
    /// For rules with a staged goal: each delivered message's customer and
    /// send time (ms).
    staged: BTreeMap<String, Vec<(i64, i64)>>,
}

impl Counts {
    /// Count a finished occurrence: once for its rule and the total, each
    /// of its messages for its channel.
    fn add(&mut self, occurrence: Occurrence) {
        let summary = occurrence.summary();
        if let (true, Some(sent_at), Some(sends)) = (
            summary.delivered,
            summary.sent_at,
            self.staged.get_mut(&occurrence.rule),
        ) {
            sends.push((occurrence.customer_id, sent_at));
        }
        self.rules
            .entry(occurrence.rule)
            .or_default()
            .add(&summary, false);
        self.total.add(&summary, false);
        for (channel, m) in occurrence.messages {
            self.channels.entry(channel).or_default().add(&m, true);
        }
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Debug, Default)]
struct Tally {
    planned: u64,
    sent: u64,
    delivered: u64,
    failed: u64,
    opened: u64,
    clicked: u64,
    converted: u64,
    responses: Vec<i64>,
}

impl Tally {
    fn add(&mut self, m: &Message, routed_is_planned: bool) {
        if routed_is_planned && m.routed {
            self.planned += 1;
        }
        self.sent += m.sent as u64;
        self.failed += m.failed as u64;
        if m.delivered {
            self.delivered += 1;
            self.opened += m.first_open.is_some() as u64;
            self.clicked += m.first_click.is_some() as u64;
            self.converted += m.converted as u64;
            if let Some(ms) = m.response() {
                self.responses.push(ms);
            }
        }
    }

    fn finish(mut self, name: String) -> Funnel {
        let rate = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        self.responses.sort_unstable();
        let k = self.responses.len();
        let median_ms = match k {
            0 => None,
            _ if k % 2 == 1 => Some(self.responses[k / 2] as f64),
            _ => Some((self.responses[k / 2 - 1] + self.responses[k / 2]) as f64 / 2.0),
        };
        Funnel {
            name,
            planned: self.planned,
            sent: self.sent,
            delivered: self.delivered,
            failed: self.failed,
            opened: self.opened,
            clicked: self.clicked,
            converted: self.converted,
            delivery_rate: rate(self.delivered, self.sent),
            open_rate: rate(self.opened, self.delivered),
            click_rate: rate(self.clicked, self.delivered),
            conversion_rate: rate(self.converted, self.delivered),
            responded: k as u64,
            median_response_seconds: median_ms.map(|ms| ms / 1000.0),
            stages: Vec::new(),
        }
    }
}

/// A bound of the period as written: a span back from `now` (`7d`, `12h`,
/// `1mo`), a date (`2026-03-01`, UTC midnight) or an RFC 3339 time.
pub fn parse_bound(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = crate::clock::parse_instant(text) {
        return Ok(at);
    }
    let span: crate::span::Span = text.parse().map_err(|_| {
        format!("`{text}` is not a span back from now (7d, 12h, 1mo), a date (YYYY-MM-DD) or an RFC 3339 time")
    })?;
    if span.months < 0 || span.days < 0 || span.millis < 0 {
        return Err(format!(
            "`{text}` must not be negative: write how far back, e.g. 7d"
        ));
    }
    let back_months = now
        .checked_sub_months(chrono::Months::new(span.months as u32))
        .ok_or_else(|| format!("`{text}` reaches too far back"))?;
    Ok(back_months
        - chrono::Duration::days(span.days as i64)
        - chrono::Duration::milliseconds(span.millis))
}

/// The report as a text table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let scope = match &report.regions {
        None => "all regions".to_string(),
        Some(r) if r.is_empty() => "no regions".to_string(),
        Some(r) => format!("regions {}", r.join(", ")),
    };
    let _ = writeln!(
        out,
        "funnel {} → {} (UTC), {scope}",
        report.since.format("%Y-%m-%d %H:%M"),
        report.until.format("%Y-%m-%d %H:%M")
    );
    let section = |out: &mut String, title: &str, rows: &[Funnel]| {
        let _ = writeln!(
            out,
            "\n{:<20} {:>7} {:>6} {:>9} {:>6} {:>6} {:>7} {:>9} {:>7} {:>6} {:>6} {:>6} {:>9}",
            title,
            "PLANNED",
            "SENT",
            "DELIVERED",
            "FAILED",
            "OPENED",
            "CLICKED",
            "CONVERTED",
            "DELIV%",
            "OPEN%",
            "CLICK%",
            "CONV%",
            "RESPONSE"
        );
        for f in rows {
            let pct = |r: Option<f64>| {
                r.map(|r| format!("{:.1}", r * 100.0))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                out,
                "{:<20} {:>7} {:>6} {:>9} {:>6} {:>6} {:>7} {:>9} {:>7} {:>6} {:>6} {:>6} {:>9}",
                f.name,
                f.planned,
                f.sent,
                f.delivered,
                f.failed,
                f.opened,
                f.clicked,
                f.converted,
                pct(f.delivery_rate),
                pct(f.open_rate),
                pct(f.click_rate),
                pct(f.conversion_rate),
                f.median_response_seconds
                    .map(human_seconds)
                    .unwrap_or_else(|| "-".into())
            );
        }
    };
    let mut rules = report.rules.clone();
    rules.push(report.total.clone());
    section(&mut out, "RULE", &rules);
    section(&mut out, "CHANNEL", &report.channels);
    for f in report.rules.iter().filter(|f| !f.stages.is_empty()) {
        let _ = writeln!(
            out,
            "\nSTAGES of {} (after {} delivered)",
            f.name, f.delivered
        );
        for stage in &f.stages {
            let rate = stage
                .conversion_rate
                .map(|r| format!("{:.1}%", r * 100.0))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {:<18} {:>7} {:>7} of the stage before",
                stage.event, stage.reached, rate
            );
        }
    }
    let _ = writeln!(
        out,
        "\nRESPONSE: median time from send to the first open or click."
    );
    out
}

fn human_seconds(s: f64) -> String {
    let s = s.round() as i64;
    match s {
        _ if s < 60 => format!("{s}s"),
        _ if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn bounds_parse_spans_dates_and_times() {
        let now = Utc.with_ymd_and_hms(2026, 3, 31, 12, 0, 0).unwrap();
        assert_eq!(
            parse_bound("7d", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 24, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_bound("1mo12h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_bound("2026-03-01", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_bound("2026-03-01T08:00:00+08:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        let err = parse_bound("last week", now).unwrap_err();
        assert!(err.contains("7d") && err.contains("YYYY-MM-DD"), "{err}");
    }

    #[test]
    fn medians_rates_and_hits_counted_once() {
        let mut t = Tally::default();
        let delivered = |sent: i64, open: Option<i64>, click: Option<i64>| Message {
            routed: true,
            sent: true,
            delivered: true,
            sent_at: Some(sent),
            first_open: open,
            first_click: click,
            ..Message::default()
        };
        t.add(&delivered(0, Some(4000), Some(2000)), true);
        t.add(&delivered(1000, Some(11_000), None), true);
        t.add(&delivered(0, None, None), true);
        t.add(
            &Message {
                routed: true,
                sent: true,
                failed: true,
                ..Message::default()
            },
            true,
        );
        let f = t.finish("r".into());
        assert_eq!(
            (
                f.planned,
                f.sent,
                f.delivered,
                f.failed,
                f.opened,
                f.clicked
            ),
            (4, 4, 3, 1, 2, 1)
        );
        assert_eq!(f.delivery_rate, Some(0.75));
        assert_eq!(f.click_rate, Some(1.0 / 3.0));
        assert_eq!(f.responded, 2);
        // (2 s + 10 s) / 2
        assert_eq!(f.median_response_seconds, Some(6.0));
        let empty = Tally::default().finish("x".into());
        assert_eq!(
            (empty.delivery_rate, empty.median_response_seconds),
            (None, None)
        );
    }
}
