//! `herald simulate`'s summary of a small hand-written timeline, through the
//! real binary and the console plugin: the table on stderr, the JSON of
//! `--summary`, and the `--report` page opened in headless Chromium — its
//! numbers in the DOM and its charts drawn in a screenshot. Every figure
//! below was worked out by hand:
//!
//! - 09:00 on 1 March five customers with phones sign up: `welcome` on
//!   `sms` (rate 1/m, burst 2) goes to two at once and to the others one a
//!   minute later each, 09:01, 09:02, 09:03 — busiest hour 09:00 with 5,
//!   (5 − 2) × 1 min = 3 min of queue, 61 sends allowed an hour;
//! - 14:30 on 2 March three customers with only an email sign up: three
//!   `welcome` emails;
//! - 10:00 on 3 March one of each visits: `nudge` by sms and by email.
//!
//! 6 SMS × 0.045 CNY = 0.27 CNY; 4 emails × 0.0008 USD = 0.0032 USD.

use crate::support::*;
use serde_json::{json, Value};

const FROM_UNTIL: (&str, &str) = ("2026-03-01", "2026-03-05");

fn timeline() -> String {
    let mut lines = Vec::new();
    for id in ["p1", "p2", "p3", "p4", "p5"] {
        lines.push(json!({"at": "2026-03-01T09:00:00Z", "op": "upsert", "customer": {"external_id": id, "name": "Phone", "phone": "+8613800000001"}}));
    }
    for id in ["e1", "e2", "e3"] {
        lines.push(json!({"at": "2026-03-02T14:30:00Z", "op": "upsert", "customer": {"external_id": id, "name": "Mail", "email": format!("{id}@example.com")}}));
    }
    for id in ["p1", "e1"] {
        lines.push(
            json!({"at": "2026-03-03T10:00:00Z", "op": "event", "customer": id, "kind": "visit"}),
        );
    }
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn config() -> Config {
    Config::new()
        .channel(
            "sms",
            Channel::plugin("console")
                .set("address", "phone")
                .set("price", "0.045 CNY")
                .set("rate", "1/m")
                .set("burst", 2),
        )
        .channel(
            "email",
            Channel::plugin("console")
                .set("address", "email")
                .set("price", "0.0008 USD"),
        )
        .rule(welcome(&["sms", "email"]))
        .rule(Rule::new(
            "nudge",
            &on_event("visit"),
            &["sms", "email"],
            "Still there?",
            "Hello again",
        ))
}

#[test]
fn summary_table_json_and_report_page_match_the_hand_count() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let timeline = scratch.write("t.jsonl", &timeline());
    let summary_path = scratch.path("summary.json");
    let report_path = scratch.path("report.html");
    let (attempts, stderr) = simulate(
        &config,
        &timeline,
        FROM_UNTIL,
        &[
            "--summary",
            summary_path.to_str().unwrap(),
            "--report",
            report_path.to_str().unwrap(),
        ],
    );

    // stdout is still pure JSONL, and the limiter paced the SMS.
    assert_eq!(attempts.len(), 10, "{attempts:#?}");
    let sms_times: Vec<&str> = attempts
        .iter()
        .filter(|a| a.channel == "sms" && a.rule == "welcome")
        .map(|a| a.at.as_str())
        .collect();
    assert_eq!(
        sms_times,
        [
            "2026-03-01T09:00:00Z",
            "2026-03-01T09:00:00Z",
            "2026-03-01T09:01:00Z",
            "2026-03-01T09:02:00Z",
            "2026-03-01T09:03:00Z"
        ]
    );

    // The table on stderr.
    for want in [
        "summary 2026-03-01T00:00:00Z → 2026-03-05T00:00:00Z: 10 attempt(s), 10 message(s) to 8 customer(s)",
        "2026-03-01 09:00 (5)",
        "1/m burst 2 (61/h)",
        "5 in 3 min",
        "2026-03-02 14:00 (3)",
        "cost: 0.27 CNY + 0.0032 USD",
    ] {
        assert!(stderr.contains(want), "no `{want}` in stderr:\n{stderr}");
    }
    let row = |rule: &str, channel: &str| -> Vec<String> {
        stderr
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|w| w.len() >= 4 && w[0] == rule && w[1] == channel && w[2] == "2026-03")
            .unwrap_or_else(|| panic!("no {rule}/{channel} row in:\n{stderr}"))
    };
    assert_eq!(row("welcome", "sms")[3], "5");
    assert_eq!(row("welcome", "email")[3], "3");
    assert_eq!(row("nudge", "sms")[3], "1");
    assert_eq!(row("nudge", "email")[3], "1");

    // The JSON of --summary.
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    assert_eq!(s["format"], "herald-simulate-summary/1");
    assert_eq!(
        (&s["attempts"], &s["messages"], &s["customers_reached"]),
        (&json!(10), &json!(10), &json!(8))
    );
    let channel = |name: &str| -> &Value {
        s["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == name)
            .unwrap_or_else(|| panic!("no channel {name} in {s:#}"))
    };
    let sms = channel("sms");
    assert_eq!(sms["messages"], 6);
    assert_eq!(
        sms["busiest_hour"],
        json!({"start": "2026-03-01T09:00:00Z", "messages": 5})
    );
    assert_eq!(
        sms["rate_limit"],
        json!({
            "rate": "1/m",
            "burst": 2,
            "interval_us": 60_000_000u64,
            "per_hour": 61,
            "busiest_hour_at_limit": false,
            "busiest_hour_queue_ms": 180_000,
            "longest_paced": {
                "start": "2026-03-01T09:00:00.000Z",
                "end": "2026-03-01T09:03:00.000Z",
                "messages": 5,
                "duration_ms": 180_000
            }
        })
    );
    assert_eq!(sms["price"], json!({"amount": "0.045", "currency": "CNY"}));
    assert_eq!(sms["cost"], json!({"amount": "0.27", "currency": "CNY"}));
    let email = channel("email");
    assert_eq!(email["rate_limit"], Value::Null);
    assert_eq!(
        email["cost"],
        json!({"amount": "0.0032", "currency": "USD"})
    );
    assert_eq!(
        s["costs"],
        json!([
            {"currency": "CNY", "amount": "0.27", "messages": 6},
            {"currency": "USD", "amount": "0.0032", "messages": 4}
        ])
    );
    assert_eq!(
        s["per_day"],
        json!({
            "dates": ["2026-03-01", "2026-03-02", "2026-03-03"],
            "by_rule": [
                {"name": "nudge", "messages": [0, 0, 2]},
                {"name": "welcome", "messages": [5, 3, 0]}
            ],
            "by_channel": [
                {"name": "email", "messages": [0, 3, 1]},
                {"name": "sms", "messages": [5, 0, 1]}
            ]
        })
    );

    // The page, as headless Chromium reads it.
    let url = file_url(&report_path);
    let dom = chromium_dom(&url);
    for want in [
        "id=\"headline-messages\">10<",
        "id=\"headline-customers\">8<",
        "id=\"headline-cost-cny\">0.27 CNY<",
        "id=\"headline-cost-usd\">0.0032 USD<",
        "data-field=\"busiest-hour\">2026-03-01 09:00<",
        "data-field=\"busiest-hour-messages\">5<",
        "data-field=\"per-hour\">61<",
        "data-field=\"queue\">3 min<",
        "data-field=\"paced\">5 in 3 min<",
        "data-field=\"cost\">0.27 CNY<",
        "data-field=\"cost\">0.0032 USD<",
        "<tr data-rule=\"welcome\" data-channel=\"sms\"><td>welcome</td><td>sms</td><td class=\"num\" data-month=\"2026-03\">5<",
        "id=\"chart-by-rule\" data-days=\"3\"",
        "id=\"chart-by-channel\" data-days=\"3\"",
    ] {
        assert!(dom.contains(want), "no `{want}` in the page:\n{dom}");
    }
    // Bar segments: by rule welcome 5 and 3, nudge 2; by channel sms 5,
    // email 3, and email 1 under sms 1 on the 3rd.
    assert_eq!(dom.matches("<rect ").count(), 7, "{dom}");

    // The charts are drawn: the first two series colours fill thousands of
    // pixels (the legend swatches alone are 100 each).
    let shot = chromium_screenshot(&url, &scratch.path("report.png"), (1280, 1400));
    assert_eq!((shot.width, shot.height), (1280, 1400));
    for colour in ["#4e79a7", "#f28e2b"] {
        let n = shot.count(colour);
        assert!(
            n > 20_000,
            "{colour}: {n} pixels; the charts look empty (see {})",
            shot.file.display()
        );
    }
}

#[test]
fn a_bad_price_is_refused_with_what_to_write() {
    for (price, says) in [
        ("0.045", "an amount and a currency code"),
        ("CNY 0.045", "the amount comes first"),
        (
            "0.045 RMB",
            "`RMB` is not an ISO 4217 currency code (the renminbi is CNY)",
        ),
    ] {
        let stderr = refusal(
            Config::new()
                .channel(
                    "sms",
                    Channel::plugin("console")
                        .set("address", "phone")
                        .set("price", price),
                )
                .rule(welcome(&["sms"])),
        );
        assert!(stderr.contains(says), "{price}: {stderr}");
        assert!(
            stderr.contains("e.g. price = \"0.045 CNY\""),
            "{price}: {stderr}"
        );
    }
}
