//! Never harass: send windows in the customer's own zone (crossing midnight,
//! across a DST change), frequency caps that defer or drop, transactional
//! rules exempt from both, on the virtual clock with hand-computed times.

use crate::support::*;
use serde_json::Value;

fn rows_of<'a>(rows: &'a [Value], customer: &str, rule: &str) -> Vec<(&'a str, &'a str)> {
    rows.iter()
        .filter(|r| r["customer"] == customer && r["rule"] == rule)
        .map(|r| (r["at"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect()
}

fn run_sim(config: Config, timeline: &str, until: &str) -> Vec<Value> {
    let scratch = Scratch::new();
    let config = config.write(&scratch);
    let timeline = scratch.write("t.jsonl", timeline);
    let db = scratch.db("h.db");
    let out = run(simulate_cmd(&config, &timeline, "2026-01-01", until)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    deliveries(&config, &db)
}

#[test]
fn send_windows_defer_to_the_next_local_opening() {
    let config = Config::new()
        .inbox()
        .lines("strategy", r#"send_windows = ["09:00-10:00"]"#)
        .rule(welcome(&["inbox"]))
        .rule(
            Rule::new(
                "late-night",
                &on_event("night"),
                &["inbox"],
                "Good evening",
                "Hello",
            )
            .set("send_windows", ["21:00-02:00"]),
        )
        .rule(
            Rule::new(
                "order-confirmation",
                &on_event("order"),
                &["inbox"],
                "Order received",
                "Thanks",
            )
            .set("transactional", true),
        );
    let timeline = r#"{"at":"2026-03-08T01:00:00Z","op":"upsert","customer":{"external_id":"ny","timezone":"America/New_York"}}
{"at":"2026-03-06T15:30:00Z","op":"upsert","customer":{"external_id":"ny-before","timezone":"America/New_York"}}
{"at":"2026-01-10T12:00:00Z","op":"upsert","customer":{"external_id":"berlin","timezone":"Europe/Berlin"}}
{"at":"2026-01-10T12:00:00Z","op":"event","customer":"berlin","kind":"night"}
{"at":"2026-01-11T00:30:00Z","op":"event","customer":"berlin","kind":"night"}
{"at":"2026-01-11T02:00:00Z","op":"event","customer":"berlin","kind":"order"}
"#;
    let rows = run_sim(config, timeline, "2026-03-10");
    // Saturday 20:00 EST; the clocks go forward that night, so the next
    // 09:00 is EDT (UTC-4): 13:00 UTC, not 14:00.
    assert_eq!(
        rows_of(&rows, "ny", "welcome"),
        [
            ("2026-03-08T01:00:00Z", "deferred"),
            ("2026-03-08T13:00:00Z", "delivered")
        ]
    );
    // Two days earlier the same local 09:00 was 14:00 UTC (EST).
    assert_eq!(
        rows_of(&rows, "ny-before", "welcome"),
        [
            ("2026-03-06T15:30:00Z", "deferred"),
            ("2026-03-07T14:00:00Z", "delivered")
        ]
    );
    // 13:00 in Berlin (UTC+1) is outside 21:00-02:00: wait until 21:00 = 20:00 UTC.
    // 01:30 in Berlin is inside the window that crosses midnight: at once.
    let night: Vec<_> = rows_of(&rows, "berlin", "late-night");
    assert_eq!(
        night,
        [
            ("2026-01-10T12:00:00Z", "deferred"),
            ("2026-01-10T20:00:00Z", "delivered"),
            ("2026-01-11T00:30:00Z", "delivered"),
        ]
    );
    // The rule's own window replaces the strategy's; a transactional rule ignores both.
    assert_eq!(
        rows_of(&rows, "berlin", "order-confirmation"),
        [("2026-01-11T02:00:00Z", "delivered")]
    );
    let deferred = rows
        .iter()
        .find(|r| r["customer"] == "ny" && r["status"] == "deferred")
        .unwrap();
    assert!(
        deferred["error"]
            .as_str()
            .unwrap()
            .contains("outside the send window (09:00-10:00 in America/New_York)"),
        "{deferred}"
    );
    assert_eq!(deferred["retry_at"], "2026-03-08T13:00:00Z");
}

#[test]
fn frequency_caps_defer_or_drop_and_spare_transactional_rules() {
    let config = Config::new()
        .inbox()
        .lines("strategy", r#"caps = [{ max = 2, per = "7d" }]"#)
        .rule(Rule::new(
            "nudge",
            &on_event("nudge"),
            &["inbox"],
            "Nudge",
            "Hello",
        ))
        .rule(
            Rule::new("promo", &on_event("promo"), &["inbox"], "Promo", "Hello")
                .set("on_cap", "drop"),
        )
        .rule(
            Rule::new(
                "receipt",
                &on_event("order"),
                &["inbox"],
                "Receipt",
                "Thanks",
            )
            .set("transactional", true),
        );
    let timeline = r#"{"at":"2026-02-01T08:00:00Z","op":"upsert","customer":{"external_id":"c1"}}
{"at":"2026-02-02T08:00:00Z","op":"event","customer":"c1","kind":"nudge"}
{"at":"2026-02-03T08:00:00Z","op":"event","customer":"c1","kind":"order"}
{"at":"2026-02-04T08:00:00Z","op":"event","customer":"c1","kind":"nudge"}
{"at":"2026-02-05T08:00:00Z","op":"event","customer":"c1","kind":"promo"}
{"at":"2026-02-06T08:00:00Z","op":"event","customer":"c1","kind":"nudge"}
{"at":"2026-02-06T09:00:00Z","op":"event","customer":"c1","kind":"order"}
"#;
    let rows = run_sim(config, timeline, "2026-03-01");
    let all: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["at"].as_str().unwrap(),
                r["rule"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        all,
        [
            ("2026-02-02T08:00:00Z", "nudge", "delivered"),
            // Transactional: sent, and not counted.
            ("2026-02-03T08:00:00Z", "receipt", "delivered"),
            ("2026-02-04T08:00:00Z", "nudge", "delivered"),
            // Two in the last 7 days: the promo is dropped, as its rule says.
            ("2026-02-05T08:00:00Z", "promo", "skipped"),
            // The third nudge waits until the 02-02 one is 7 days old.
            ("2026-02-06T08:00:00Z", "nudge", "deferred"),
            ("2026-02-06T09:00:00Z", "receipt", "delivered"),
            ("2026-02-09T08:00:00Z", "nudge", "delivered"),
        ]
    );
    let dropped = rows.iter().find(|r| r["rule"] == "promo").unwrap();
    assert!(
        dropped["error"]
            .as_str()
            .unwrap()
            .contains("capped (2 per 7d); dropped"),
        "{dropped}"
    );
    let deferred = rows.iter().find(|r| r["status"] == "deferred").unwrap();
    assert!(
        deferred["error"]
            .as_str()
            .unwrap()
            .contains("capped (2 per 7d); deferred"),
        "{deferred}"
    );
}

#[test]
fn bad_windows_and_caps_are_refused_with_a_fix() {
    for (strategy, rule_extra, expected) in [
        ("send_windows = [\"9-10\"]", "", "HH:MM-HH:MM"),
        ("caps = [{ max = 0, per = \"7d\" }]", "", "max = 0"),
        (
            "caps = [{ max = 2, per = \"1mo\" }]",
            "",
            "give a fixed period",
        ),
        (
            "caps = [{ max = 2, per = \"1d\", channel = \"fax\" }]",
            "",
            "channel `fax` is not configured",
        ),
        ("", "on_cap = \"ignore\"", "use \"defer\""),
        ("", "send_windows = [\"10:00-10:00\"]", "is empty"),
    ] {
        let stderr = refusal(
            Config::new()
                .inbox()
                .lines("strategy", strategy)
                .rule(Rule::new("r", ON_CREATED, &["inbox"], "s", "t").line(rule_extra)),
        );
        assert!(
            stderr.contains(expected),
            "{strategy}{rule_extra}: {stderr}"
        );
    }
}
