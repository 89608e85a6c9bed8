//! Triggers and conditions no other test reaches, on the virtual clock with
//! hand-computed times: a rule `on = "deleted"` fires when the customer is
//! deleted, and that customer's other pending reminders are never sent; a
//! cron date trigger across a whole year in two zones with their DST
//! changes; a `when` that holds when the reminder is planned but no longer
//! when it is due, so the reminder is skipped then.

use crate::support::*;
use serde_json::Value;

/// (at, rule, status) of every attempt for `customer`, in time order.
fn attempts_of(rows: &[Value], customer: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = rows
        .iter()
        .filter(|r| r["customer"] == customer)
        .map(|r| {
            (
                r["at"].as_str().unwrap().to_string(),
                r["rule"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn attempt(at: &str, rule: &str, status: &str) -> (String, String, String) {
    (at.into(), rule.into(), status.into())
}

/// Simulate `timeline` from `from` to `until`; the `herald deliveries` rows.
fn simulated(config: Config, timeline: &str, from: &str, until: &str) -> Vec<Value> {
    let scratch = Scratch::new();
    let config = config.write(&scratch);
    let timeline = scratch.write("t.jsonl", timeline);
    let db = scratch.db("h.db");
    let (_, stderr) = simulate(
        &config,
        &timeline,
        (from, until),
        &["--db", db.to_str().unwrap()],
    );
    assert!(stderr.contains("0 refused"), "{stderr}");
    deliveries(&config, &db)
}

#[test]
fn a_deleted_trigger_fires_on_deletion_and_the_rest_is_never_sent() {
    // Every rule by email (the console plugin logs what it would send).
    let by_email =
        |id: &str, trigger: &str, subject: &str| Rule::new(id, trigger, &["email"], subject, "x");
    let config = Config::new()
        .channel("email", Channel::plugin("console").set("address", "email"))
        .rule(by_email(
            "welcome",
            ON_CREATED,
            "Welcome {{ customer.name }}",
        ))
        .rule(by_email(
            "day7",
            r#"{ on = "created", delay = "7d" }"#,
            "A week with us",
        ))
        .rule(by_email(
            "quiet-5d",
            r#"{ on = "inactive", kinds = ["login"], for = "5d" }"#,
            "Still there?",
        ))
        .rule(by_email(
            "goodbye",
            r#"{ on = "deleted" }"#,
            "Goodbye {{ customer.name }}",
        ));
    let timeline = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"leaver","name":"Ana","email":"ana@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"stayer","name":"Bo","email":"bo@example.com"}}
{"at":"2026-03-03T12:00:00Z","op":"delete","customer":"leaver"}
"#;
    let rows = simulated(config, timeline, "2026-03-01", "2026-03-20");
    // Deleted two days in: the goodbye at that moment; the day-7 message
    // (03-08 09:00) and the quiet-5d reminder (5 days after sign-up, 03-06
    // 09:00) were pending and never go out.
    assert_eq!(
        attempts_of(&rows, "leaver"),
        [
            attempt("2026-03-01T09:00:00Z", "welcome", "delivered"),
            attempt("2026-03-03T12:00:00Z", "goodbye", "delivered"),
        ]
    );
    let goodbye = rows.iter().find(|r| r["rule"] == "goodbye").unwrap();
    assert_eq!(goodbye["subject"], "Goodbye Ana", "{goodbye}");
    assert_eq!(goodbye["channel"], "email", "{goodbye}");
    // The customer who stays gets the same rules' reminders, and no goodbye.
    assert_eq!(
        attempts_of(&rows, "stayer"),
        [
            attempt("2026-03-01T09:00:00Z", "welcome", "delivered"),
            attempt("2026-03-06T09:00:00Z", "quiet-5d", "delivered"),
            attempt("2026-03-08T09:00:00Z", "day7", "delivered"),
        ]
    );
}

#[test]
fn a_cron_date_trigger_fires_all_year_at_local_time() {
    // 09:00 on the 1st of every month in the customer's zone, from the first
    // such time after the member's start date (2026-01-15, 10:00 local).
    let config = Config::new()
        .inbox()
        .attribute("member_since", "date")
        .rule(Rule::new(
            "monthly-digest",
            r#"{ on = "date", attribute = "member_since", cron = "0 0 9 1 * *" }"#,
            &["inbox"],
            "Your monthly digest",
            "x",
        ));
    let timeline = r#"{"at":"2026-01-02T00:00:00Z","op":"upsert","customer":{"external_id":"ny","timezone":"America/New_York","attributes":{"member_since":"2026-01-15"}}}
{"at":"2026-01-02T00:00:00Z","op":"upsert","customer":{"external_id":"sydney","timezone":"Australia/Sydney","attributes":{"member_since":"2026-01-15"}}}
"#;
    let rows = simulated(config, timeline, "2026-01-01", "2027-01-01");
    let sent = |customer: &str| -> Vec<String> {
        attempts_of(&rows, customer)
            .into_iter()
            .map(|(at, rule, status)| {
                assert_eq!(
                    (rule.as_str(), status.as_str()),
                    ("monthly-digest", "delivered")
                );
                at
            })
            .collect()
    };
    // New York: EST (UTC-5) until 2026-03-08, EDT (UTC-4) until 2026-11-01
    // 02:00, so 09:00 on Nov 1 is EST again. 2027-01-01 09:00 is after the
    // simulated year.
    assert_eq!(
        sent("ny"),
        [
            "2026-02-01T14:00:00Z",
            "2026-03-01T14:00:00Z",
            "2026-04-01T13:00:00Z",
            "2026-05-01T13:00:00Z",
            "2026-06-01T13:00:00Z",
            "2026-07-01T13:00:00Z",
            "2026-08-01T13:00:00Z",
            "2026-09-01T13:00:00Z",
            "2026-10-01T13:00:00Z",
            "2026-11-01T14:00:00Z",
            "2026-12-01T14:00:00Z",
        ]
    );
    // Sydney: AEDT (UTC+11) until 2026-04-05, AEST (UTC+10) until
    // 2026-10-04, then AEDT: 09:00 local is the evening before in UTC, so
    // 2027-01-01 09:00 local (2026-12-31 22:00Z) is inside the year.
    assert_eq!(
        sent("sydney"),
        [
            "2026-01-31T22:00:00Z",
            "2026-02-28T22:00:00Z",
            "2026-03-31T22:00:00Z",
            "2026-04-30T23:00:00Z",
            "2026-05-31T23:00:00Z",
            "2026-06-30T23:00:00Z",
            "2026-07-31T23:00:00Z",
            "2026-08-31T23:00:00Z",
            "2026-09-30T23:00:00Z",
            "2026-10-31T22:00:00Z",
            "2026-11-30T22:00:00Z",
            "2026-12-31T22:00:00Z",
        ]
    );
}

#[test]
fn a_condition_that_turns_false_before_the_reminder_is_due_skips_it_then() {
    // Three days after an abandoned cart, if the customer's offer has not
    // expired: true for everyone below when the cart is abandoned but
    // `already-over`; by the time the reminder is due, false for `expires`
    // too, with no write in between to re-plan it.
    let config = Config::new()
        .inbox()
        .attribute("offer_ends_at", "date")
        .rule(
            Rule::new(
                "offer-reminder",
                r#"{ on = "event", kind = "cart_abandoned", delay = "3d" }"#,
                &["inbox"],
                "Your offer is good until {{ customer.offer_ends_at }}",
                "x",
            )
            .set("when", "customer.offer_ends_at | days_until >= 0"),
        );
    let timeline = r#"{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{"external_id":"expires","timezone":"UTC","attributes":{"offer_ends_at":"2026-03-03"}}}
{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{"external_id":"still-open","timezone":"UTC","attributes":{"offer_ends_at":"2026-03-10"}}}
{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{"external_id":"already-over","timezone":"UTC","attributes":{"offer_ends_at":"2026-02-20"}}}
{"at":"2026-03-01T09:00:00Z","op":"event","customer":"expires","kind":"cart_abandoned"}
{"at":"2026-03-01T09:00:00Z","op":"event","customer":"still-open","kind":"cart_abandoned"}
{"at":"2026-03-01T09:00:00Z","op":"event","customer":"already-over","kind":"cart_abandoned"}
"#;
    let rows = simulated(config, timeline, "2026-03-01", "2026-03-10");
    // Planned on 03-01 (2 days left), due 03-04: the offer ended the day before.
    assert_eq!(
        attempts_of(&rows, "expires"),
        [attempt("2026-03-04T09:00:00Z", "offer-reminder", "skipped")]
    );
    let skipped = rows.iter().find(|r| r["customer"] == "expires").unwrap();
    assert_eq!(skipped["error"], "condition no longer holds", "{skipped}");
    assert!(skipped["channel"].is_null(), "nothing was sent: {skipped}");
    assert_eq!(
        attempts_of(&rows, "still-open"),
        [attempt(
            "2026-03-04T09:00:00Z",
            "offer-reminder",
            "delivered"
        )]
    );
    // False already when the cart was abandoned: never planned, no attempt.
    let over = attempts_of(&rows, "already-over");
    assert!(over.is_empty(), "{over:?}");
}
