//! The summary of a simulation: built from the stream of attempts (feed
//! each [`AttemptRecord`] to [`Summary::add`]; shards summarised apart are
//! combined with [`Summary::merge`]), then turned into a [`SummaryReport`]
//! with the channels' prices and rate limits: messages per rule × channel ×
//! month (counted by [`Tally`]), the busiest hour of each channel against
//! its rate limit, the cost per channel and currency, and messages per day
//! by rule and by channel. The report is printed as a plain-text table
//! ([`render_text`]) or written as JSON (`--summary FILE`; field names are
//! stable, see README).
//!
//! Owns the summary's arithmetic and its text form; may not touch the
//! engine, the store or the simulation loop (it only reads attempts).

use super::tally::Tally;
use crate::channels::ratelimit::Rate;
use crate::config::Config;
use crate::price::{Amount, Price};
use crate::tick::AttemptRecord;
use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Duration, DurationRound, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The status of an attempt that handed a message to a channel.
const DELIVERED: &str = "delivered";
/// The `format` field of the JSON summary; bumped on an incompatible change.
pub const FORMAT: &str = "herald-simulate-summary/1";

/// A channel's configured rate limit (`rate`, `burst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// As written in the config, e.g. `5/s`.
    pub rate: String,
    /// Time between two sends at the steady rate, in microseconds.
    pub interval_us: u64,
    /// Sends allowed at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Limit {
    /// The limit of `rate` and `burst` as the engine's limiter reads them.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Limit> {
        let parsed = Rate::parse(rate).map_err(|e| anyhow!(e))?;
        let interval_us = parsed
            .interval
            .num_microseconds()
            .and_then(|us| u64::try_from(us).ok())
            .ok_or_else(|| anyhow!("rate = \"{rate}\" is out of range"))?;
        Ok(Limit {
            rate: rate.trim().to_string(),
            interval_us,
            burst: burst.unwrap_or(1).max(1),
        })
    }

    /// The longest gap, in whole milliseconds, between two sends the
    /// limiter paced back to back (it rounds each slot up to the millisecond).
    fn pacing_gap_ms(&self) -> i64 {
        i64::try_from(self.interval_us.div_ceil(1000)).unwrap_or(i64::MAX)
    }

    /// Most sends the limiter lets through in one hour starting after a
    /// quiet spell: `burst` at once, then one every interval.
    pub fn per_hour(&self) -> Result<u64> {
        let steady = 3_600_000_000u64.div_ceil(self.interval_us);
        steady
            .checked_add(u64::from(self.burst).saturating_sub(1))
            .context("sends per hour overflow")
    }

    /// How long the last of `n` sends that all came due at the same instant
    /// waits under this limit, in milliseconds: the first `burst` go at
    /// once, the k-th after them one interval later each (the engine rounds
    /// each slot up to the millisecond).
    pub fn queue_ms(&self, n: u64) -> Result<u64> {
        let waiting = n.saturating_sub(u64::from(self.burst));
        let us = waiting
            .checked_mul(self.interval_us)
            .context("queue delay overflows")?;
        Ok(us.div_ceil(1000))
    }
}

/// What the summary needs to know of one configured channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFacts {
    /// The price of one message, if configured.
    pub price: Option<Price>,
    /// The rate limit, if configured.
    pub limit: Option<Limit>,
}

/// The price and rate limit of every channel of `config`.
pub fn channel_facts(config: &Config) -> Result<BTreeMap<String, ChannelFacts>> {
    config
        .file
        .channels
        .iter()
        .map(|(name, section)| {
            let limit = section
                .rate
                .as_deref()
                .map(|rate| Limit::parse(rate, section.burst))
                .transpose()
                .with_context(|| format!("[channels.{name}]"))?;
            let facts = ChannelFacts {
                price: section.price.clone(),
                limit,
            };
            Ok((name.clone(), facts))
        })
        .collect()
}

/// Sends close enough together to have been paced by a limiter, as
/// stretches (runs): sends at most `gap_ms` apart belong to one stretch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stretches {
    gap_ms: i64,
    /// By start (milliseconds since the epoch).
    runs: BTreeMap<i64, Stretch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stretch {
    /// The last send, in milliseconds since the epoch.
    end: i64,
    messages: u64,
}

impl Stretches {
    /// Add a stretch (a single send is one from `start` to `start`),
    /// joining it with every stretch it comes within `gap_ms` of; any order.
    fn insert(&mut self, mut start: i64, mut run: Stretch) -> Result<()> {
        let join = |into: &mut Stretch, other: Stretch| -> Result<()> {
            into.end = into.end.max(other.end);
            into.messages = into
                .messages
                .checked_add(other.messages)
                .context("message count overflows")?;
            Ok(())
        };
        if let Some((&s, &before)) = self.runs.range(..=start).next_back() {
            if before.end.saturating_add(self.gap_ms) >= start {
                self.runs.remove(&s);
                start = s;
                join(&mut run, before)?;
            }
        }
        while let Some((&s, &after)) = self.runs.range(start..).next() {
            if s > run.end.saturating_add(self.gap_ms) {
                break;
            }
            self.runs.remove(&s);
            join(&mut run, after)?;
        }
        self.runs.insert(start, run);
        Ok(())
    }

    /// The longest stretch (by time, then by messages; the earliest of equals).
    fn longest(&self) -> Option<(i64, Stretch)> {
        let mut best: Option<(i64, Stretch)> = None;
        for (&start, &run) in &self.runs {
            let key = (run.end - start, run.messages);
            if best.is_none_or(|(s, b)| key > (b.end - s, b.messages)) {
                best = Some((start, run));
            }
        }
        best
    }
}

/// The summary of a stream of attempts, mergeable across shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Attempts per rule × channel × month, by status.
    tally: Tally,
    /// Customers who were handed at least one message.
    customers: BTreeSet<String>,
    /// Messages per channel per UTC hour (keyed by the hour's start).
    hours: BTreeMap<String, BTreeMap<DateTime<Utc>, u64>>,
    /// Messages per rule per UTC day.
    days_by_rule: BTreeMap<String, BTreeMap<NaiveDate, u64>>,
    /// Messages per channel per UTC day.
    days_by_channel: BTreeMap<String, BTreeMap<NaiveDate, u64>>,
    /// Stretches of back-to-back messages on rate-limited channels.
    stretches: BTreeMap<String, Stretches>,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) -> Result<()> {
    let count = map.entry(key).or_default();
    *count = count.checked_add(n).context("message count overflows")?;
    Ok(())
}

/// Add every count of `theirs` to `mine`.
fn merge_nested<K: Ord>(
    mine: &mut BTreeMap<String, BTreeMap<K, u64>>,
    theirs: BTreeMap<String, BTreeMap<K, u64>>,
) -> Result<()> {
    for (name, counts) in theirs {
        let into = mine.entry(name).or_default();
        for (k, n) in counts {
            bump(into, k, n)?;
        }
    }
    Ok(())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn instant(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).with_context(|| format!("{ms} ms is out of range"))
}

impl Summary {
    /// An empty summary for channels with these limits: the stretches of
    /// each rate-limited channel are tracked with its pacing gap.
    pub fn new(facts: &BTreeMap<String, ChannelFacts>) -> Summary {
        let stretches = facts
            .iter()
            .filter_map(|(name, f)| {
                let gap_ms = f.limit.as_ref()?.pacing_gap_ms();
                Some((
                    name.clone(),
                    Stretches {
                        gap_ms,
                        runs: BTreeMap::new(),
                    },
                ))
            })
            .collect();
        Summary {
            stretches,
            ..Summary::default()
        }
    }

    /// Count one attempt.
    pub fn add(&mut self, record: &AttemptRecord) -> Result<()> {
        self.tally.add(record);
        if record.status != DELIVERED {
            return Ok(());
        }
        self.customers.insert(record.customer.clone());
        let hour = record
            .at
            .duration_trunc(Duration::hours(1))
            .context("attempt time out of range")?;
        bump(
            self.hours.entry(record.channel.clone()).or_default(),
            hour,
            1,
        )?;
        let day = record.at.date_naive();
        bump(
            self.days_by_rule.entry(record.rule.clone()).or_default(),
            day,
            1,
        )?;
        bump(
            self.days_by_channel
                .entry(record.channel.clone())
                .or_default(),
            day,
            1,
        )?;
        if let Some(stretches) = self.stretches.get_mut(&record.channel) {
            let at = ms(record.at);
            stretches.insert(
                at,
                Stretch {
                    end: at,
                    messages: 1,
                },
            )?;
        }
        Ok(())
    }

    /// Every count of `other` added to this summary (shards are summarised
    /// apart and merged; the result is the same as one summary of all
    /// their attempts).
    pub fn merge(&mut self, other: Summary) -> Result<()> {
        self.tally.merge(other.tally);
        self.customers.extend(other.customers);
        merge_nested(&mut self.hours, other.hours)?;
        merge_nested(&mut self.days_by_rule, other.days_by_rule)?;
        merge_nested(&mut self.days_by_channel, other.days_by_channel)?;
        for (channel, theirs) in other.stretches {
            let mine = self.stretches.entry(channel).or_insert(Stretches {
                gap_ms: theirs.gap_ms,
                runs: BTreeMap::new(),
            });
            for (start, run) in theirs.runs {
                mine.insert(start, run)?;
            }
        }
        Ok(())
    }

    /// The tally of attempts per rule × channel × month by status.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The summary with prices and limits applied.
    pub fn report(
        &self,
        facts: &BTreeMap<String, ChannelFacts>,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<SummaryReport> {
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut cells = Vec::new();
        let mut attempts = 0u64;
        for (cell, statuses) in &self.tally.cells {
            let mut cell_attempts = 0u64;
            for (status, n) in statuses {
                bump(&mut by_status, status.clone(), *n)?;
                cell_attempts = cell_attempts
                    .checked_add(*n)
                    .context("attempt count overflows")?;
            }
            attempts = attempts
                .checked_add(cell_attempts)
                .context("attempt count overflows")?;
            cells.push(CellRow {
                rule: cell.rule.clone(),
                channel: cell.channel.clone(),
                month: cell.month.clone(),
                messages: statuses.get(DELIVERED).copied().unwrap_or(0),
                attempts: cell_attempts,
                by_status: statuses.clone(),
            });
        }
        let messages = by_status.get(DELIVERED).copied().unwrap_or(0);

        let mut channels = Vec::new();
        let mut costs: BTreeMap<String, (Amount, u64)> = BTreeMap::new();
        let mut unpriced_messages = 0u64;
        let names: BTreeSet<&String> = facts.keys().chain(self.hours.keys()).collect();
        for name in names {
            let f = facts.get(name).cloned().unwrap_or_default();
            let hours = self.hours.get(name);
            let channel_messages = hours
                .map(|h| h.values().try_fold(0u64, |a, n| a.checked_add(*n)))
                .unwrap_or(Some(0))
                .context("message count overflows")?;
            // The hour with most messages; the earliest of equals.
            let busiest = hours.and_then(|h| {
                h.iter().fold(
                    None,
                    |best: Option<(&DateTime<Utc>, u64)>, (t, n)| match best {
                        Some((_, b)) if b >= *n => best,
                        _ => Some((t, *n)),
                    },
                )
            });
            let busiest_hour = busiest.map(|(t, n)| BusiestHour {
                start: t.to_rfc3339_opts(SecondsFormat::Secs, true),
                messages: n,
            });
            let rate_limit = match &f.limit {
                None => None,
                Some(limit) => {
                    let per_hour = limit.per_hour()?;
                    let n = busiest.map(|(_, n)| n).unwrap_or(0);
                    let longest_paced = match self.stretches.get(name).and_then(Stretches::longest)
                    {
                        Some((start, run)) if run.messages > 1 => Some(PacedStretch {
                            start: instant(start)?.to_rfc3339_opts(SecondsFormat::Millis, true),
                            end: instant(run.end)?.to_rfc3339_opts(SecondsFormat::Millis, true),
                            messages: run.messages,
                            duration_ms: u64::try_from(run.end - start).unwrap_or(0),
                        }),
                        _ => None,
                    };
                    Some(RateLimitRow {
                        rate: limit.rate.clone(),
                        burst: limit.burst,
                        interval_us: limit.interval_us,
                        per_hour,
                        busiest_hour_at_limit: n >= per_hour,
                        busiest_hour_queue_ms: limit.queue_ms(n)?,
                        longest_paced,
                    })
                }
            };
            let cost = match &f.price {
                Some(price) => {
                    let amount = price
                        .amount
                        .times(channel_messages)
                        .with_context(|| format!("cost of channel `{name}`"))?;
                    let entry = costs.entry(price.currency.clone()).or_default();
                    entry.0 = entry
                        .0
                        .plus(amount)
                        .with_context(|| format!("total cost in {}", price.currency))?;
                    entry.1 = entry
                        .1
                        .checked_add(channel_messages)
                        .context("message count overflows")?;
                    Some(Money {
                        amount: amount.to_string(),
                        currency: price.currency.clone(),
                    })
                }
                None => {
                    unpriced_messages = unpriced_messages
                        .checked_add(channel_messages)
                        .context("message count overflows")?;
                    None
                }
            };
            channels.push(ChannelRow {
                channel: name.clone(),
                messages: channel_messages,
                busiest_hour,
                rate_limit,
                price: f.price.as_ref().map(|p| Money {
                    amount: p.amount.to_string(),
                    currency: p.currency.clone(),
                }),
                cost,
            });
        }
        let costs = costs
            .into_iter()
            .map(|(currency, (amount, messages))| CostRow {
                currency,
                amount: amount.to_string(),
                messages,
            })
            .collect();

        Ok(SummaryReport {
            format: FORMAT.to_string(),
            from: from.to_rfc3339_opts(SecondsFormat::Secs, true),
            until: until.to_rfc3339_opts(SecondsFormat::Secs, true),
            attempts,
            messages,
            customers_reached: u64::try_from(self.customers.len()).unwrap_or(u64::MAX),
            by_status,
            cells,
            channels,
            costs,
            unpriced_messages,
            per_day: self.per_day()?,
        })
    }

    /// Messages per day from the first day with a message to the last, by
    /// rule and by channel (days without any are zeros).
    fn per_day(&self) -> Result<PerDay> {
        let all = self
            .days_by_rule
            .values()
            .chain(self.days_by_channel.values())
            .flat_map(|d| d.keys().copied());
        let (Some(first), Some(last)) = (all.clone().min(), all.max()) else {
            return Ok(PerDay::default());
        };
        let dates: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        let series = |by: &BTreeMap<String, BTreeMap<NaiveDate, u64>>| -> Vec<Series> {
            by.iter()
                .map(|(name, days)| Series {
                    name: name.clone(),
                    messages: dates
                        .iter()
                        .map(|d| days.get(d).copied().unwrap_or(0))
                        .collect(),
                })
                .collect()
        };
        Ok(PerDay {
            by_rule: series(&self.days_by_rule),
            by_channel: series(&self.days_by_channel),
            dates: dates.iter().map(|d| d.to_string()).collect(),
        })
    }
}

/// The summary as printed, written (`--summary`) and drawn (`--report`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SummaryReport {
    /// `herald-simulate-summary/1`.
    pub format: String,
    /// Start of the simulation (RFC 3339, UTC).
    pub from: String,
    /// End of the simulation.
    pub until: String,
    /// Every attempt, whatever its status.
    pub attempts: u64,
    /// Attempts that handed a message to a channel (`delivered`).
    pub messages: u64,
    /// Customers handed at least one message.
    pub customers_reached: u64,
    /// Attempts by status.
    pub by_status: BTreeMap<String, u64>,
    /// Per rule × channel × month.
    pub cells: Vec<CellRow>,
    /// Per configured channel (and any channel that carried a message).
    pub channels: Vec<ChannelRow>,
    /// Total cost per currency.
    pub costs: Vec<CostRow>,
    /// Messages on channels without a `price`.
    pub unpriced_messages: u64,
    /// Messages per day, for the charts.
    pub per_day: PerDay,
}

/// One rule on one channel in one month.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CellRow {
    /// The rule.
    pub rule: String,
    /// The channel (empty when none was chosen, e.g. skipped).
    pub channel: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Messages handed to the channel.
    pub messages: u64,
    /// Every attempt.
    pub attempts: u64,
    /// Attempts by status.
    pub by_status: BTreeMap<String, u64>,
}

/// One channel: its busiest hour against its rate limit, and its cost.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChannelRow {
    /// The channel.
    pub channel: String,
    /// Messages it carried.
    pub messages: u64,
    /// The UTC hour with most messages (the earliest of equals).
    pub busiest_hour: Option<BusiestHour>,
    /// Its rate limit, if configured.
    pub rate_limit: Option<RateLimitRow>,
    /// The price of one message, if configured.
    pub price: Option<Money>,
    /// `messages` × `price`.
    pub cost: Option<Money>,
}

/// A channel's busiest hour.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BusiestHour {
    /// The hour's start (RFC 3339, UTC).
    pub start: String,
    /// Messages in it.
    pub messages: u64,
}

/// A channel's rate limit against its busiest hour.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RateLimitRow {
    /// As configured, e.g. `5/s`.
    pub rate: String,
    /// Sends at once after a quiet spell.
    pub burst: u32,
    /// Time between two sends at the steady rate.
    pub interval_us: u64,
    /// Most sends the limit allows in one hour.
    pub per_hour: u64,
    /// The busiest hour used the whole hour's allowance: the limit held
    /// messages back (some went out in later hours).
    pub busiest_hour_at_limit: bool,
    /// How long the last of the busiest hour's messages would wait if they
    /// all came due at once: (messages − burst) × interval, in ms.
    pub busiest_hour_queue_ms: u64,
    /// What the simulation measured: the engine's limiter already paces
    /// sends on the virtual clock, so attempt times include its waits. The
    /// longest stretch of messages sent back to back (at most one interval
    /// apart); for messages that came due together, how long the last one
    /// waited.
    pub longest_paced: Option<PacedStretch>,
}

/// A stretch of messages the limiter sent back to back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PacedStretch {
    /// The first message (RFC 3339 with milliseconds).
    pub start: String,
    /// The last message.
    pub end: String,
    /// Messages in the stretch.
    pub messages: u64,
    /// From the first to the last.
    pub duration_ms: u64,
}

/// An exact amount of money, as a decimal string.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Money {
    /// Decimal, e.g. `0.27`.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
}

/// Total cost in one currency.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CostRow {
    /// ISO 4217 code.
    pub currency: String,
    /// Decimal, e.g. `0.27`.
    pub amount: String,
    /// Messages priced in this currency.
    pub messages: u64,
}

/// Messages per day.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PerDay {
    /// Every day (`YYYY-MM-DD`, UTC) from the first with a message to the last.
    pub dates: Vec<String>,
    /// One series per rule, aligned with `dates`.
    pub by_rule: Vec<Series>,
    /// One series per channel, aligned with `dates`.
    pub by_channel: Vec<Series>,
}

/// Messages per day of one rule or channel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Series {
    /// The rule or channel.
    pub name: String,
    /// One count per date.
    pub messages: Vec<u64>,
}

/// A duration for people: `0 s`, `9.8 s`, `3 min`, `1 h 23 min`.
pub fn human_ms(ms: u64) -> String {
    if ms < 60_000 {
        let tenths = ms.div_ceil(100);
        if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        }
    } else {
        let secs = ms.div_ceil(1000);
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        match (h, s) {
            (0, 0) => format!("{m} min"),
            (0, _) => format!("{m} min {s} s"),
            _ => format!("{h} h {m} min"),
        }
    }
}

/// A table with columns padded to their widest cell; numbers right-aligned.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>], right: &[bool]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
}

/// The busiest hour as `2026-03-01 09:00`.
fn hour_text(start: &str) -> String {
    start.replacen('T', " ", 1).chars().take(16).collect()
}

/// The summary as plain-text tables (for stderr).
pub fn render_text(r: &SummaryReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "summary {} → {}: {} attempt(s), {} message(s) to {} customer(s)\n\n",
        r.from, r.until, r.attempts, r.messages, r.customers_reached
    ));
    out.push_str("messages by rule, channel and month\n");
    let rows: Vec<Vec<String>> = r
        .cells
        .iter()
        .map(|c| {
            let others: Vec<String> = c
                .by_status
                .iter()
                .filter(|(s, _)| s.as_str() != DELIVERED)
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            vec![
                c.rule.clone(),
                if c.channel.is_empty() {
                    "-".into()
                } else {
                    c.channel.clone()
                },
                c.month.clone(),
                c.messages.to_string(),
                others.join(", "),
            ]
        })
        .collect();
    table(
        &mut out,
        &["rule", "channel", "month", "messages", "other attempts"],
        &rows,
        &[false, false, false, true, false],
    );
    out.push_str("\nchannels: busiest hour (UTC) against the rate limit, and cost\n");
    let rows: Vec<Vec<String>> = r
        .channels
        .iter()
        .map(|c| {
            let busiest = c
                .busiest_hour
                .as_ref()
                .map(|b| format!("{} ({})", hour_text(&b.start), b.messages))
                .unwrap_or_else(|| "-".into());
            let (limit, queue, paced) = match &c.rate_limit {
                None => ("none".to_string(), "-".to_string(), "-".to_string()),
                Some(l) => (
                    format!(
                        "{} burst {} ({}/h){}",
                        l.rate,
                        l.burst,
                        l.per_hour,
                        if l.busiest_hour_at_limit {
                            " at limit"
                        } else {
                            ""
                        }
                    ),
                    human_ms(l.busiest_hour_queue_ms),
                    l.longest_paced
                        .as_ref()
                        .map(|p| format!("{} in {}", p.messages, human_ms(p.duration_ms)))
                        .unwrap_or_else(|| "-".into()),
                ),
            };
            let money = |m: &Option<Money>| {
                m.as_ref()
                    .map(|m| format!("{} {}", m.amount, m.currency))
                    .unwrap_or_else(|| "-".into())
            };
            vec![
                c.channel.clone(),
                c.messages.to_string(),
                busiest,
                limit,
                queue,
                paced,
                money(&c.price),
                money(&c.cost),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "channel",
            "messages",
            "busiest hour",
            "rate limit",
            "queue if due at once",
            "longest paced",
            "price",
            "cost",
        ],
        &rows,
        &[false, true, false, false, true, false, true, true],
    );
    let costs: Vec<String> = r
        .costs
        .iter()
        .map(|c| format!("{} {}", c.amount, c.currency))
        .collect();
    out.push_str(&format!(
        "\ncost: {}",
        if costs.is_empty() {
            "none priced".to_string()
        } else {
            costs.join(" + ")
        }
    ));
    if r.unpriced_messages > 0 {
        out.push_str(&format!(
            " ({} message(s) on channels without a price)",
            r.unpriced_messages
        ));
    }
    out.push('\n');
    if r.channels.iter().any(|c| c.rate_limit.is_some()) {
        out.push_str("rate limits: the engine's limiter already paced these sends on the virtual clock (attempt times include its waits); \"queue if due at once\" is how long the busiest hour's last message would wait if they all came due together, \"longest paced\" the longest stretch the simulation sent back to back at the limit\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, h, m, s).unwrap()
    }

    fn rec(
        t: DateTime<Utc>,
        customer: &str,
        rule: &str,
        channel: &str,
        status: &str,
    ) -> AttemptRecord {
        AttemptRecord {
            at: t,
            customer: customer.into(),
            rule: rule.into(),
            channel: channel.into(),
            status: status.into(),
            subject: String::new(),
        }
    }

    fn facts() -> BTreeMap<String, ChannelFacts> {
        BTreeMap::from([
            (
                "sms".to_string(),
                ChannelFacts {
                    price: Some(Price::parse("0.045 CNY").unwrap()),
                    limit: Some(Limit::parse("1/m", Some(2)).unwrap()),
                },
            ),
            (
                "email".to_string(),
                ChannelFacts {
                    price: Some(Price::parse("0.0008 USD").unwrap()),
                    limit: None,
                },
            ),
            ("inbox".to_string(), ChannelFacts::default()),
        ])
    }

    /// Five SMS at 09:00 on 1/m with burst 2 go at 09:00, 09:00, 09:01,
    /// 09:02, 09:03 (as the engine paces them); one more on the 3rd; three
    /// emails at 14:30 on the 2nd; one inbox message; one skipped attempt.
    fn records() -> Vec<AttemptRecord> {
        let mut r = vec![
            rec(at(1, 9, 0, 0), "a", "welcome", "sms", "delivered"),
            rec(at(1, 9, 0, 0), "b", "welcome", "sms", "delivered"),
            rec(at(1, 9, 1, 0), "c", "welcome", "sms", "delivered"),
            rec(at(1, 9, 2, 0), "d", "welcome", "sms", "delivered"),
            rec(at(1, 9, 3, 0), "e", "welcome", "sms", "delivered"),
        ];
        for c in ["f", "g", "h"] {
            r.push(rec(at(2, 14, 30, 0), c, "welcome", "email", "delivered"));
        }
        r.push(rec(at(3, 10, 0, 0), "a", "nudge", "sms", "delivered"));
        r.push(rec(at(3, 10, 0, 0), "i", "nudge", "inbox", "delivered"));
        r.push(rec(at(3, 10, 0, 0), "j", "nudge", "", "skipped"));
        r
    }

    fn report_of(s: &Summary) -> SummaryReport {
        s.report(&facts(), at(1, 0, 0, 0), at(4, 0, 0, 0)).unwrap()
    }

    #[test]
    fn hand_checked_busiest_hour_queue_and_cost() {
        let mut s = Summary::new(&facts());
        for r in records() {
            s.add(&r).unwrap();
        }
        let r = report_of(&s);
        assert_eq!((r.attempts, r.messages, r.customers_reached), (11, 10, 9));
        assert_eq!(r.by_status["skipped"], 1);
        let sms = r.channels.iter().find(|c| c.channel == "sms").unwrap();
        assert_eq!(sms.messages, 6);
        assert_eq!(
            sms.busiest_hour,
            Some(BusiestHour {
                start: "2026-03-01T09:00:00Z".into(),
                messages: 5
            })
        );
        let limit = sms.rate_limit.as_ref().unwrap();
        // 1/m: one a minute, plus the burst of 2 → 61 in an hour.
        assert_eq!((limit.interval_us, limit.per_hour), (60_000_000, 61));
        assert!(!limit.busiest_hour_at_limit);
        // (5 − 2) × 60 s.
        assert_eq!(limit.busiest_hour_queue_ms, 180_000);
        let paced = limit.longest_paced.as_ref().unwrap();
        assert_eq!(
            (
                paced.start.as_str(),
                paced.end.as_str(),
                paced.messages,
                paced.duration_ms
            ),
            (
                "2026-03-01T09:00:00.000Z",
                "2026-03-01T09:03:00.000Z",
                5,
                180_000
            )
        );
        // 6 × 0.045 CNY and 3 × 0.0008 USD, exactly.
        assert_eq!(sms.cost.as_ref().unwrap().amount, "0.27");
        let email = r.channels.iter().find(|c| c.channel == "email").unwrap();
        assert_eq!(email.cost.as_ref().unwrap().amount, "0.0024");
        assert!(email.rate_limit.is_none());
        assert_eq!(
            email.busiest_hour.as_ref().unwrap().start,
            "2026-03-02T14:00:00Z"
        );
        let costs: Vec<_> = r
            .costs
            .iter()
            .map(|c| (c.currency.as_str(), c.amount.as_str(), c.messages))
            .collect();
        assert_eq!(costs, [("CNY", "0.27", 6), ("USD", "0.0024", 3)]);
        assert_eq!(r.unpriced_messages, 1);
        // Per day, from the 1st to the 3rd.
        assert_eq!(r.per_day.dates, ["2026-03-01", "2026-03-02", "2026-03-03"]);
        let by_rule: Vec<_> = r
            .per_day
            .by_rule
            .iter()
            .map(|s| (s.name.as_str(), s.messages.clone()))
            .collect();
        assert_eq!(
            by_rule,
            [("nudge", vec![0, 0, 2]), ("welcome", vec![5, 3, 0])]
        );
        let cell = r
            .cells
            .iter()
            .find(|c| c.rule == "welcome" && c.channel == "sms")
            .unwrap();
        assert_eq!((cell.month.as_str(), cell.messages), ("2026-03", 5));
    }

    #[test]
    fn merged_shards_equal_one_summary_in_any_order() {
        let all = records();
        let mut whole = Summary::new(&facts());
        for r in &all {
            whole.add(r).unwrap();
        }
        // Alternate records between two shards, the second fed backwards.
        let mut a = Summary::new(&facts());
        let mut b = Summary::new(&facts());
        for r in all.iter().step_by(2) {
            a.add(r).unwrap();
        }
        for r in all.iter().skip(1).step_by(2).rev() {
            b.add(r).unwrap();
        }
        a.merge(b).unwrap();
        assert_eq!(report_of(&a), report_of(&whole));
        assert_eq!(a, whole);
    }

    #[test]
    fn queue_and_hourly_allowance_follow_the_limiter() {
        // 50 at once on 5/s: the last waits 49 × 200 ms (the channels e2e test).
        let l = Limit::parse("5/s", None).unwrap();
        assert_eq!(l.queue_ms(50).unwrap(), 9_800);
        assert_eq!(l.per_hour().unwrap(), 18_000);
        // Within the burst nobody waits.
        let l = Limit::parse("1/s", Some(3)).unwrap();
        assert_eq!(l.queue_ms(3).unwrap(), 0);
        assert_eq!(l.queue_ms(4).unwrap(), 1_000);
        assert_eq!(l.per_hour().unwrap(), 3_602);
        // 3/s: slots rounded up to the millisecond: 4 waiting → 1333.332 ms → 1334.
        let l = Limit::parse("3/s", None).unwrap();
        assert_eq!(l.queue_ms(5).unwrap(), 1_334);
        assert!(Limit::parse("1/s", None)
            .unwrap()
            .queue_ms(u64::MAX)
            .is_err());
    }

    #[test]
    fn busiest_hour_at_the_limit_is_flagged() {
        let f = BTreeMap::from([(
            "sms".to_string(),
            ChannelFacts {
                price: None,
                limit: Some(Limit::parse("1/m", None).unwrap()),
            },
        )]);
        let mut s = Summary::new(&f);
        // 61 sends one minute apart from 09:00: 60 in the 09:00 hour.
        for i in 0..61 {
            let t = at(1, 9, 0, 0) + Duration::minutes(i);
            s.add(&rec(t, &format!("c{i}"), "welcome", "sms", "delivered"))
                .unwrap();
        }
        let r = s.report(&f, at(1, 0, 0, 0), at(2, 0, 0, 0)).unwrap();
        let l = r.channels[0].rate_limit.as_ref().unwrap();
        assert_eq!(r.channels[0].busiest_hour.as_ref().unwrap().messages, 60);
        assert!(l.busiest_hour_at_limit);
        assert_eq!(l.longest_paced.as_ref().unwrap().messages, 61);
        assert_eq!(l.longest_paced.as_ref().unwrap().duration_ms, 3_600_000);
    }

    #[test]
    fn text_table_lines_up_and_names_costs() {
        let mut s = Summary::new(&facts());
        for r in records() {
            s.add(&r).unwrap();
        }
        let text = render_text(&report_of(&s));
        assert!(text.contains("10 message(s) to 9 customer(s)"), "{text}");
        assert!(text.contains("2026-03-01 09:00 (5)"), "{text}");
        assert!(text.contains("1/m burst 2 (61/h)"), "{text}");
        assert!(text.contains("3 min"), "{text}");
        assert!(text.contains("5 in 3 min"), "{text}");
        assert!(
            text.contains("cost: 0.27 CNY + 0.0024 USD (1 message(s) on channels without a price)"),
            "{text}"
        );
        assert!(text.contains("already paced"), "{text}");
        assert_eq!(human_ms(9_800), "9.8 s");
        assert_eq!(human_ms(0), "0 s");
        assert_eq!(human_ms(4_980_000), "1 h 23 min");
        assert_eq!(human_ms(90_000), "1 min 30 s");
    }
}
