//! Targeting plugins through the host: the purchase-cadence plugin alerts a
//! customer at the first missed interval of their own rhythm and not before,
//! with its variables in the template; a plugin that burns its fuel, runs out
//! of memory or traps has that evaluation skipped with the reason, and the
//! other rules go on.

use crate::support::*;
use serde_json::Value;

fn sent(rows: &[Value], customer: &str, rule: &str) -> Vec<(String, String, String)> {
    rows.iter()
        .filter(|r| r["customer"] == customer && r["rule"] == rule)
        .map(|r| {
            (
                r["at"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn cadence_alerts_at_the_first_missed_interval() {
    cadence_alerts_at_first_missed_interval(&plugin("cadence"));
}

/// The same, through the plugin as built against contract 0.1.0.
#[test]
fn cadence_built_for_contract_0_1_alerts_at_the_first_missed_interval() {
    cadence_alerts_at_first_missed_interval(&plugin_built_for_0_1("cadence"));
}

fn cadence_alerts_at_first_missed_interval(plugin: &std::path::Path) {
    let scratch = Scratch::new();
    let config = Config::new()
        .inbox()
        .rule(
            Rule::new(
                "cadence-break",
                r#"{ on = "inactive", kinds = ["purchase"], for = "1d" }"#,
                &["inbox"],
                "Time to restock? You usually order every {{ target.usual_interval_days }} days ({{ target.days_overdue }} days overdue)",
                "Hello",
            )
            .set("targeting", targeting_at(plugin, r#"settings = { kind = "purchase" }"#)),
        )
        .write(&scratch);
    // Every two months for eight months (Jan 5, Mar 5, May 5, Jul 5, Sep 5),
    // then nothing. Gaps: 59, 61, 61, 62 days: the median is 61 days, so with
    // the default 20% tolerance the alert is due 61 × 1.2 = 73.2 days after
    // Sep 5 10:00, i.e. 2026-11-17 14:48.
    let mut timeline = vec![
        r#"{"at":"2026-01-01T10:00:00Z","op":"upsert","customer":{"external_id":"bimonthly"}}"#
            .to_string(),
    ];
    for day in ["01-05", "03-05", "05-05", "07-05", "09-05"] {
        timeline.push(format!(
            r#"{{"at":"2026-{day}T10:00:00Z","op":"event","customer":"bimonthly","kind":"purchase"}}"#
        ));
    }
    // A customer with only two purchases: too little history, skipped.
    timeline.push(
        r#"{"at":"2026-01-01T10:00:00Z","op":"upsert","customer":{"external_id":"newbie"}}"#.into(),
    );
    timeline.push(
        r#"{"at":"2026-02-01T10:00:00Z","op":"event","customer":"newbie","kind":"purchase"}"#
            .into(),
    );
    timeline.push(
        r#"{"at":"2026-03-01T10:00:00Z","op":"event","customer":"newbie","kind":"purchase"}"#
            .into(),
    );
    // A timeline is in time order.
    timeline.sort_by_key(|line| line[7..31].to_string());
    let timeline = scratch.write("t.jsonl", &timeline.join("\n"));
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-01-01", "2027-01-01"), &db, &[]);
    let rows = deliveries(&config, &db);
    let bimonthly = sent(&rows, "bimonthly", "cadence-break");
    let delivered: Vec<_> = bimonthly.iter().filter(|r| r.1 == "delivered").collect();
    assert_eq!(delivered.len(), 1, "{bimonthly:?}");
    assert_eq!(delivered[0].0, "2026-11-17T14:48:00Z", "{bimonthly:?}");
    assert_eq!(
        delivered[0].2,
        "Time to restock? You usually order every 61.0 days (12 days overdue)"
    );
    // With one or two purchases there was no rhythm yet (skipped); from the
    // third on the plugin asked to wait until the expected date (recorded,
    // not sent), and each purchase started a new wait.
    let before_third: Vec<_> = bimonthly
        .iter()
        .filter(|r| r.0.as_str() < "2026-05-05")
        .collect();
    assert!(
        before_third.iter().all(|r| r.1 == "skipped"),
        "{bimonthly:?}"
    );
    let after: Vec<_> = bimonthly
        .iter()
        .filter(|r| r.0.as_str() >= "2026-05-05" && r.1 != "delivered")
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|r| r.1 == "deferred"),
        "{bimonthly:?}"
    );
    let newbie = sent(&rows, "newbie", "cadence-break");
    // After sign-up and after each of the two purchases: no rhythm yet.
    assert_eq!(
        newbie
            .iter()
            .map(|r| (r.0.as_str(), r.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("2026-01-02T10:00:00Z", "skipped"),
            ("2026-02-02T10:00:00Z", "skipped"),
            ("2026-03-02T10:00:00Z", "skipped")
        ]
    );
    let reason = rows
        .iter()
        .find(|r| r["customer"] == "newbie" && r["at"] == "2026-03-02T10:00:00Z")
        .unwrap()["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        reason,
        "targeting: only 2 purchase events; the cadence needs 3"
    );
}

#[test]
fn a_plugin_that_burns_its_fuel_or_memory_is_skipped_with_the_reason() {
    let scratch = Scratch::new();
    let rule = |id: &str, mode: &str, extra: &str| {
        let subject = format!("{id} {{{{ target.checked }}}}");
        let greedy = targeting(
            "greedy",
            &format!(r#"settings = {{ mode = "{mode}" }}{extra}"#),
        );
        Rule::new(id, ON_CREATED, &["inbox"], &subject, "x").set("targeting", greedy)
    };
    let config = Config::new()
        .inbox()
        .rule(rule("spin", "spin", ", fuel = 2000000, timeout = \"10s\""))
        .rule(rule("alloc", "alloc", ", memory = \"16MiB\""))
        .rule(rule("trap", "trap", ""))
        .rule(rule("skip", "skip", ""))
        .rule(rule("defer", "defer", ""))
        .rule(rule("ok", "ok", ""))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1"}}"#,
    );
    let db = scratch.db("h.db");
    let out = run(
        simulate_cmd(&config, &timeline, "2026-03-01", "2026-03-01T09:30:00Z")
            .arg("--db")
            .arg(&db),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = deliveries(&config, &db);
    let by_rule =
        |rule: &str| -> Vec<Value> { rows.iter().filter(|r| r["rule"] == rule).cloned().collect() };
    let error_of = |rule: &str| by_rule(rule)[0]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(by_rule("spin")[0]["status"], "skipped");
    assert!(
        error_of("spin").contains("ran out of fuel"),
        "{}",
        error_of("spin")
    );
    assert_eq!(by_rule("alloc")[0]["status"], "skipped");
    assert!(
        error_of("alloc").contains("memory"),
        "{}",
        error_of("alloc")
    );
    assert_eq!(by_rule("trap")[0]["status"], "skipped");
    assert!(error_of("trap").contains("trapped"), "{}", error_of("trap"));
    assert_eq!(by_rule("skip")[0]["status"], "skipped");
    assert_eq!(error_of("skip"), "targeting: greedy says no");
    let defer = by_rule("defer");
    assert_eq!(defer.len(), 1, "asked again only after an hour: {defer:?}");
    assert_eq!(defer[0]["status"], "deferred");
    assert_eq!(defer[0]["retry_at"], "2026-03-01T10:00:00Z");
    let ok = by_rule("ok");
    assert_eq!(ok[0]["status"], "delivered");
    assert_eq!(
        ok[0]["subject"], "ok True",
        "the plugin's variable reached the template"
    );
}

#[test]
fn a_channel_plugin_named_as_targeting_is_refused() {
    let stderr = refusal(
        Config::new().inbox().rule(
            Rule::new("r", ON_CREATED, &["inbox"], "{{ target.x }}", "x")
                .set("targeting", targeting("console", "")),
        ),
    );
    assert!(
        stderr.contains("is a channel plugin; rule `r` needs a targeting plugin"),
        "{stderr}"
    );
}
