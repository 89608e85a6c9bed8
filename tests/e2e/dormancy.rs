//! Dormancy triggers on the virtual clock, the lending-app models of the
//! brief: registered but no visit within 3 days; application not finished in
//! 3 days; credit granted but no loan in 7 days; loan repaid but no new loan
//! in 30 days; and no login for a week, repeated weekly at most three times
//! while the customer stays away. Expected times are computed by hand.

use crate::support::*;
use serde_json::Value;

/// The five dormancy rules, all to the inbox.
fn config() -> Config {
    Config::new()
        .inbox()
        .rule(Rule::new(
            "no-visit",
            r#"{ on = "inactive", kinds = ["visit"], for = "3d", since = "created" }"#,
            &["inbox"],
            "Come and have a look",
            "Hello",
        ))
        .rule(Rule::new(
            "application-unfinished",
            r#"{ on = "inactive", kinds = ["application_finished"], for = "3d", since = "application_started" }"#,
            &["inbox"],
            "Finish your application",
            "Hello",
        ))
        .rule(Rule::new(
            "credit-unused",
            r#"{ on = "inactive", kinds = ["loan"], for = "7d", since = "credit_granted" }"#,
            &["inbox"],
            "Your credit is ready",
            "Hello",
        ))
        .rule(Rule::new(
            "repaid-no-new-loan",
            r#"{ on = "inactive", kinds = ["loan"], for = "30d", since = "loan_repaid" }"#,
            &["inbox"],
            "Need another loan?",
            "Hello",
        ))
        .rule(Rule::new(
            "no-login",
            r#"{ on = "inactive", kinds = ["login"], for = "7d", repeat = "7d", max = 3 }"#,
            &["inbox"],
            "We miss you",
            "Hello",
        ))
}

const TIMELINE: &str = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"never-visits"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"visits"}}
{"at":"2026-03-02T10:00:00Z","op":"event","customer":"visits","kind":"visit"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"applicant"}}
{"at":"2026-03-01T12:00:00Z","op":"event","customer":"applicant","kind":"application_started"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"finisher"}}
{"at":"2026-03-01T12:00:00Z","op":"event","customer":"finisher","kind":"application_started"}
{"at":"2026-03-02T12:00:00Z","op":"event","customer":"finisher","kind":"application_finished"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"credit-idle"}}
{"at":"2026-03-02T08:00:00Z","op":"event","customer":"credit-idle","kind":"credit_granted"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"credit-used"}}
{"at":"2026-03-02T08:00:00Z","op":"event","customer":"credit-used","kind":"credit_granted"}
{"at":"2026-03-05T08:00:00Z","op":"event","customer":"credit-used","kind":"loan"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"repaid"}}
{"at":"2026-03-01T10:00:00Z","op":"event","customer":"repaid","kind":"loan"}
{"at":"2026-03-10T10:00:00Z","op":"event","customer":"repaid","kind":"loan_repaid"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"away"}}
{"at":"2026-03-01T09:05:00Z","op":"event","customer":"away","kind":"login"}
{"at":"2026-03-03T20:00:00Z","op":"event","customer":"away","kind":"login"}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"returns"}}
{"at":"2026-03-03T20:00:00Z","op":"event","customer":"returns","kind":"login"}
{"at":"2026-03-12T08:00:00Z","op":"event","customer":"returns","kind":"login"}
"#;

fn sent(rows: &[Value], customer: &str, rule: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r["customer"] == customer && r["rule"] == rule && r["status"] == "delivered")
        .map(|r| r["at"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_four_dormancy_models_and_a_weekly_we_miss_you() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-03-01", "2026-05-01"), &db, &[]);
    let rows = deliveries(&config, &db);

    // Registered but no visit within 3 days of signing up.
    assert_eq!(
        sent(&rows, "never-visits", "no-visit"),
        ["2026-03-04T09:00:00Z"]
    );
    assert!(sent(&rows, "visits", "no-visit").is_empty());
    // Application started, not finished within 3 days.
    assert_eq!(
        sent(&rows, "applicant", "application-unfinished"),
        ["2026-03-04T12:00:00Z"]
    );
    assert!(sent(&rows, "finisher", "application-unfinished").is_empty());
    assert!(
        sent(&rows, "never-visits", "application-unfinished").is_empty(),
        "nothing without the reference event"
    );
    // Credit granted, no loan within 7 days.
    assert_eq!(
        sent(&rows, "credit-idle", "credit-unused"),
        ["2026-03-09T08:00:00Z"]
    );
    assert!(sent(&rows, "credit-used", "credit-unused").is_empty());
    // Loan repaid, no new loan within 30 days (the earlier loan does not count).
    assert_eq!(
        sent(&rows, "repaid", "repaid-no-new-loan"),
        ["2026-04-09T10:00:00Z"]
    );
    // No login for a week since the last one: weekly, three times at most.
    assert_eq!(
        sent(&rows, "away", "no-login"),
        [
            "2026-03-10T20:00:00Z",
            "2026-03-17T20:00:00Z",
            "2026-03-24T20:00:00Z"
        ]
    );
    // A login in between starts a new spell, counted from it.
    assert_eq!(
        sent(&rows, "returns", "no-login"),
        [
            "2026-03-10T20:00:00Z",
            "2026-03-19T08:00:00Z",
            "2026-03-26T08:00:00Z",
            "2026-04-02T08:00:00Z"
        ]
    );
    // Never logged in: counted from sign-up.
    assert_eq!(
        sent(&rows, "never-visits", "no-login"),
        [
            "2026-03-08T09:00:00Z",
            "2026-03-15T09:00:00Z",
            "2026-03-22T09:00:00Z"
        ]
    );
}

#[test]
fn bad_inactive_triggers_are_refused_with_a_fix() {
    for (trigger, expected) in [
        (
            r#"{ on = "inactive", kinds = [], for = "7d" }"#,
            "kinds = [\"login\"]",
        ),
        (
            r#"{ on = "inactive", kinds = ["login"], for = "0d" }"#,
            "positive period",
        ),
        (
            r#"{ on = "inactive", kinds = ["login"], for = "7d", repeat = "7d" }"#,
            "`repeat` needs `max`",
        ),
        (
            r#"{ on = "inactive", kinds = ["login"], for = "7d", max = 3 }"#,
            "add `repeat",
        ),
        (r#"{ on = "inactive", kinds = ["login"] }"#, "for"),
    ] {
        let stderr =
            refusal(
                Config::new()
                    .inbox()
                    .rule(Rule::new("r", trigger, &["inbox"], "s", "t")),
            );
        assert!(stderr.contains(expected), "{trigger}: {stderr}");
    }
}
