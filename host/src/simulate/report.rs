//! `herald simulate --report out.html`: the [`SummaryReport`] as one
//! self-contained HTML page (inline CSS and SVG, no script, nothing fetched):
//! headline numbers, messages per day by rule and by channel as stacked bar
//! charts, the rule × channel × month table, busiest hours against rate
//! limits, and costs. Every string from the config or the customers is
//! escaped.
//!
//! Owns the page's markup only; may not compute figures (the summary does)
//! or touch the engine.

use super::summary::{human_ms, Series, SummaryReport};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

const CSS: &str = include_str!("report.css");

/// Series colours (Tableau 10), in order; a chart with more series cycles.
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Text made safe for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page.
pub fn render_html(r: &SummaryReport) -> String {
    let mut h = String::new();
    let period = format!("{} → {}", day(&r.from), day(&r.until));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Herald simulation {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n\
         <header><h1>Simulation summary</h1><p>{} (UTC) · {} attempt(s): {}</p></header>\n",
        esc(&period),
        esc(&period),
        r.attempts,
        esc(&statuses(&r.by_status)),
    );
    headline(&mut h, r);
    let _ = write!(
        h,
        "<section id=\"by-rule\"><h2>Messages per day by rule</h2>"
    );
    chart(&mut h, "by-rule", &r.per_day.dates, &r.per_day.by_rule);
    h.push_str("</section>\n<section id=\"by-channel\"><h2>Messages per day by channel</h2>");
    chart(
        &mut h,
        "by-channel",
        &r.per_day.dates,
        &r.per_day.by_channel,
    );
    h.push_str("</section>\n");
    months(&mut h, r);
    channels(&mut h, r);
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

/// `2026-03-01` of an RFC 3339 instant.
fn day(t: &str) -> &str {
    t.get(..10).unwrap_or(t)
}

fn statuses(by: &BTreeMap<String, u64>) -> String {
    if by.is_empty() {
        return "none".into();
    }
    by.iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn headline(h: &mut String, r: &SummaryReport) {
    h.push_str("<div class=\"cards\" id=\"headline\">\n");
    let mut card = |id: &str, value: &str, label: &str| {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"value\" id=\"{id}\">{}</div><div class=\"label\">{}</div></div>",
            esc(value),
            esc(label)
        );
    };
    card(
        "headline-messages",
        &r.messages.to_string(),
        "messages delivered",
    );
    card(
        "headline-customers",
        &r.customers_reached.to_string(),
        "customers reached",
    );
    card("headline-attempts", &r.attempts.to_string(), "attempts");
    for c in &r.costs {
        card(
            &format!("headline-cost-{}", c.currency.to_ascii_lowercase()),
            &format!("{} {}", c.amount, c.currency),
            &format!("cost of {} message(s)", c.messages),
        );
    }
    if r.costs.is_empty() {
        card("headline-cost", "-", "no channel has a price");
    }
    h.push_str("</div>\n");
}

/// A round number at least `n`: 1, 2 or 5 times a power of ten.
fn nice_ceiling(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let candidate = step.saturating_mul(m);
            if candidate >= n || candidate == u64::MAX {
                return candidate;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// A stacked bar chart of messages per day, one colour per series, with a
/// legend; a tooltip (`<title>`) on every bar segment.
fn chart(h: &mut String, id: &str, dates: &[String], series: &[Series]) {
    if dates.is_empty() || series.is_empty() {
        h.push_str("<p class=\"empty\">No messages.</p>");
        return;
    }
    let (w, ht) = (960.0f64, 260.0f64);
    let (left, right, top, bottom) = (52.0, 32.0, 12.0, 34.0);
    let (pw, ph) = (w - left - right, ht - top - bottom);
    let totals: Vec<u64> = (0..dates.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.messages.get(i).copied().unwrap_or(0))
                .fold(0u64, u64::saturating_add)
        })
        .collect();
    let max = nice_ceiling(totals.iter().copied().max().unwrap_or(0).max(1));
    let y = |v: u64| top + ph - ph * (v as f64 / max as f64);
    let slot = pw / dates.len() as f64;
    let gap = if slot > 4.0 {
        (slot * 0.18).min(6.0)
    } else {
        0.0
    };
    let _ = write!(
        h,
        "<svg class=\"chart\" id=\"chart-{id}\" data-days=\"{}\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"messages per day\" xmlns=\"http://www.w3.org/2000/svg\" shape-rendering=\"crispEdges\">",
        dates.len()
    );
    // Gridlines at 0, the middle (when it is a whole number) and the top.
    let ticks: Vec<u64> = if max.is_multiple_of(2) {
        vec![0, max / 2, max]
    } else {
        vec![0, max]
    };
    for tick in ticks {
        let ty = y(tick);
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            w - right,
            left - 6.0,
            ty + 4.0
        );
    }
    for (i, date) in dates.iter().enumerate() {
        let x = left + slot * i as f64 + gap / 2.0;
        let mut base = 0u64;
        for (k, s) in series.iter().enumerate() {
            let n = s.messages.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let (y0, y1) = (y(base), y(base.saturating_add(n)));
            base = base.saturating_add(n);
            let _ = write!(
                h,
                "<rect x=\"{x:.2}\" y=\"{y1:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\"><title>{}: {} {n}</title></rect>",
                (slot - gap).max(0.5),
                y0 - y1,
                PALETTE[k % PALETTE.len()],
                esc(date),
                esc(&s.name)
            );
        }
    }
    // At most eight date labels, evenly spaced from the first.
    let every = dates.len().div_ceil(8).max(1);
    for (i, date) in dates.iter().enumerate() {
        if i % every == 0 {
            let x = left + slot * (i as f64 + 0.5);
            let _ = write!(
                h,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                ht - 12.0,
                esc(date)
            );
        }
    }
    h.push_str("</svg><ul class=\"legend\">");
    for (k, s) in series.iter().enumerate() {
        let total = s.messages.iter().fold(0u64, |a, n| a.saturating_add(*n));
        let _ = write!(
            h,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{} ({total})</li>",
            PALETTE[k % PALETTE.len()],
            esc(&s.name)
        );
    }
    h.push_str("</ul>");
}

/// Rule × channel rows, one column per month, messages in each.
fn months(h: &mut String, r: &SummaryReport) {
    h.push_str("<section id=\"months\"><h2>Messages by rule, channel and month</h2>");
    if r.cells.is_empty() {
        h.push_str("<p class=\"empty\">No attempts.</p></section>\n");
        return;
    }
    let months: BTreeSet<&str> = r.cells.iter().map(|c| c.month.as_str()).collect();
    let mut rows: BTreeMap<(&str, &str), BTreeMap<&str, u64>> = BTreeMap::new();
    for c in &r.cells {
        *rows
            .entry((c.rule.as_str(), c.channel.as_str()))
            .or_default()
            .entry(c.month.as_str())
            .or_default() += c.messages;
    }
    h.push_str("<div class=\"scroll\"><table><thead><tr><th>rule</th><th>channel</th>");
    for m in &months {
        let _ = write!(h, "<th class=\"num\">{}</th>", esc(m));
    }
    h.push_str("<th class=\"num\">total</th></tr></thead><tbody>");
    for ((rule, channel), by_month) in &rows {
        let _ = write!(
            h,
            "<tr data-rule=\"{}\" data-channel=\"{}\"><td>{}</td><td>{}</td>",
            esc(rule),
            esc(channel),
            esc(rule),
            if channel.is_empty() {
                "-".to_string()
            } else {
                esc(channel)
            }
        );
        let mut total = 0u64;
        for m in &months {
            let n = by_month.get(m).copied().unwrap_or(0);
            total = total.saturating_add(n);
            let zero = if n == 0 { " zero" } else { "" };
            let _ = write!(
                h,
                "<td class=\"num{zero}\" data-month=\"{}\">{n}</td>",
                esc(m)
            );
        }
        let _ = write!(
            h,
            "<td class=\"num\" data-field=\"total\">{total}</td></tr>"
        );
    }
    let _ = write!(
        h,
        "<tr class=\"total\"><td colspan=\"{}\">all rules</td><td class=\"num\">{}</td></tr>",
        months.len() + 2,
        r.messages
    );
    h.push_str("</tbody></table></div><p class=\"note\">Messages are attempts that handed a message to the channel (delivered); skipped, deferred and failed attempts are counted in the summary JSON.</p></section>\n");
}

/// Busiest hours against rate limits, prices and costs.
fn channels(h: &mut String, r: &SummaryReport) {
    h.push_str("<section id=\"channels\"><h2>Channels: busiest hour, rate limit and cost</h2><div class=\"scroll\"><table><thead><tr><th>channel</th><th class=\"num\">messages</th><th>busiest hour (UTC)</th><th class=\"num\">in it</th><th>rate limit</th><th class=\"num\">per hour</th><th class=\"num\">queue if due at once</th><th class=\"num\">longest paced</th><th class=\"num\">price</th><th class=\"num\">cost</th></tr></thead><tbody>");
    for c in &r.channels {
        let (hour, in_it) = match &c.busiest_hour {
            Some(b) => (
                b.start.replacen('T', " ", 1).chars().take(16).collect(),
                b.messages.to_string(),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let (limit, per_hour, queue, paced) = match &c.rate_limit {
            None => (
                "none".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            ),
            Some(l) => (
                format!("{} (burst {})", l.rate, l.burst),
                if l.busiest_hour_at_limit {
                    format!("<span class=\"warn\">{} · at limit</span>", l.per_hour)
                } else {
                    l.per_hour.to_string()
                },
                human_ms(l.busiest_hour_queue_ms),
                l.longest_paced
                    .as_ref()
                    .map(|p| format!("{} in {}", p.messages, human_ms(p.duration_ms)))
                    .unwrap_or_else(|| "-".into()),
            ),
        };
        let money = |m: &Option<super::summary::Money>| {
            m.as_ref()
                .map(|m| format!("{} {}", m.amount, m.currency))
                .unwrap_or_else(|| "-".into())
        };
        // `per_hour` carries its own markup; everything else is escaped.
        let _ = write!(
            h,
            "<tr data-channel=\"{}\"><td>{}</td><td class=\"num\" data-field=\"messages\">{}</td><td data-field=\"busiest-hour\">{}</td><td class=\"num\" data-field=\"busiest-hour-messages\">{}</td><td data-field=\"rate\">{}</td><td class=\"num\" data-field=\"per-hour\">{per_hour}</td><td class=\"num\" data-field=\"queue\">{}</td><td class=\"num\" data-field=\"paced\">{}</td><td class=\"num\" data-field=\"price\">{}</td><td class=\"num\" data-field=\"cost\">{}</td></tr>",
            esc(&c.channel),
            esc(&c.channel),
            c.messages,
            esc(&hour),
            esc(&in_it),
            esc(&limit),
            esc(&queue),
            esc(&paced),
            esc(&money(&c.price)),
            esc(&money(&c.cost)),
        );
    }
    h.push_str("</tbody></table></div>");
    let costs: Vec<String> = r
        .costs
        .iter()
        .map(|c| format!("{} {}", c.amount, c.currency))
        .collect();
    let _ = write!(
        h,
        "<p class=\"note\" id=\"costs\">Total cost: {}{}.</p>",
        esc(&if costs.is_empty() {
            "none priced".to_string()
        } else {
            costs.join(" + ")
        }),
        if r.unpriced_messages > 0 {
            format!(
                " ({} message(s) on channels without a price)",
                r.unpriced_messages
            )
        } else {
            String::new()
        }
    );
    if r.channels.iter().any(|c| c.rate_limit.is_some()) {
        h.push_str("<p class=\"note\">The engine's rate limiter already paced these sends on the virtual clock, so attempt times include its waits. <em>Queue if due at once</em>: how long the last of the busiest hour's messages would wait if they all came due together ((messages − burst) × interval). <em>Longest paced</em>: the longest stretch the simulation sent back to back at the limit.</p>");
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::super::summary::{
        BusiestHour, ChannelRow, CostRow, Money, PerDay, Series, SummaryReport,
    };
    use super::*;

    fn hostile() -> SummaryReport {
        let evil = "<script>alert('x')</script>&\"";
        SummaryReport {
            format: "herald-simulate-summary/1".into(),
            from: "2026-03-01T00:00:00Z".into(),
            until: "2026-03-03T00:00:00Z".into(),
            attempts: 3,
            messages: 3,
            customers_reached: 2,
            by_status: BTreeMap::from([("delivered".to_string(), 3)]),
            cells: vec![super::super::summary::CellRow {
                rule: evil.into(),
                channel: evil.into(),
                month: "2026-03".into(),
                messages: 3,
                attempts: 3,
                by_status: BTreeMap::new(),
            }],
            channels: vec![ChannelRow {
                channel: evil.into(),
                messages: 3,
                busiest_hour: Some(BusiestHour {
                    start: "2026-03-01T09:00:00Z".into(),
                    messages: 2,
                }),
                rate_limit: None,
                price: Some(Money {
                    amount: "0.045".into(),
                    currency: "CNY".into(),
                }),
                cost: Some(Money {
                    amount: "0.135".into(),
                    currency: "CNY".into(),
                }),
            }],
            costs: vec![CostRow {
                currency: "CNY".into(),
                amount: "0.135".into(),
                messages: 3,
            }],
            unpriced_messages: 0,
            per_day: PerDay {
                dates: vec!["2026-03-01".into(), "2026-03-02".into()],
                by_rule: vec![Series {
                    name: evil.into(),
                    messages: vec![2, 1],
                }],
                by_channel: vec![Series {
                    name: evil.into(),
                    messages: vec![2, 1],
                }],
            },
        }
    }

    #[test]
    fn escapes_names_and_fetches_nothing() {
        let page = render_html(&hostile());
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        for remote in ["http://", "https://", "src=", "<link", "@import", "url("] {
            let outside = page.replace("http://www.w3.org/2000/svg", "");
            assert!(!outside.contains(remote), "{remote} in the page");
        }
        assert!(
            page.contains("id=\"headline-cost-cny\">0.135 CNY<"),
            "{page}"
        );
    }

    #[test]
    fn bars_are_stacked_to_scale() {
        let page = render_html(&hostile());
        // Two days, one series: two bars; the tallest day (2) sets the
        // scale of 2, so its bar fills the plot height (214 px).
        assert_eq!(page.matches("<rect ").count(), 4);
        assert!(page.contains("height=\"214.00\""), "{page}");
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4_999), 5_000);
    }
}
