//! The shipped SaaS trial strategy (examples/saas-trial) simulated over 14
//! months. Every expected send below was worked out by hand from the rules:
//! local 10:00 in each customer's zone, across DST changes, conversions,
//! deletions and a moved expiry date.

use crate::support::*;
use std::collections::BTreeSet;

const TIMELINE: &str = r#"
{"at":"2026-01-05T01:00:00Z","op":"upsert","customer":{"external_id":"a-shanghai","name":"Wang Fang","email":"a@example.com","timezone":"Asia/Shanghai","state":"trial","attributes":{"trial_started_at":"2026-01-05","trial_ends_at":"2026-02-04"}}}
{"at":"2026-02-20T15:30:00Z","op":"upsert","customer":{"external_id":"b-newyork","name":"Bob","email":"b@example.com","timezone":"America/New_York","state":"trial","attributes":{"trial_started_at":"2026-02-20","trial_ends_at":"2026-03-22"}}}
{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{"external_id":"c-berlin","name":"Clara","email":"c@example.com","timezone":"Europe/Berlin","state":"trial","attributes":{"trial_started_at":"2026-03-01","trial_ends_at":"2026-03-31"}}}
{"at":"2026-03-20T12:00:00Z","op":"upsert","customer":{"external_id":"c-berlin","state":"paid","attributes":{"paid_started_at":"2026-03-20","paid_ends_at":"2026-06-20","plan":"pro"}}}
{"at":"2026-03-20T12:00:05Z","op":"event","customer":"c-berlin","kind":"payment","properties":{"amount":990,"currency":"CNY"},"event_id":"pay-1"}
{"at":"2026-03-20T12:00:06Z","op":"event","customer":"c-berlin","kind":"payment","properties":{"amount":990,"currency":"CNY"},"event_id":"pay-1"}
{"at":"2026-04-01T09:00:00Z","op":"upsert","customer":{"external_id":"d-deleted","name":"Dan","email":"d@example.com","timezone":"UTC","state":"trial","attributes":{"trial_started_at":"2026-04-01","trial_ends_at":"2026-05-01"}}}
{"at":"2026-04-03T00:00:00Z","op":"delete","customer":"d-deleted"}
{"at":"2026-05-01T00:00:00Z","op":"upsert","customer":{"external_id":"e-moved","name":"Emi","email":"e@example.com","timezone":"Asia/Tokyo","state":"trial","attributes":{"trial_started_at":"2026-05-01","trial_ends_at":"2026-05-31"}}}
{"at":"2026-05-20T00:00:00Z","op":"upsert","customer":{"external_id":"e-moved","attributes":{"trial_ends_at":"2026-06-14"}}}
{"at":"2026-07-01T04:00:00Z","op":"upsert","customer":{"external_id":"f-sms","name":"王芳","phone":"+8613800000001","timezone":"Asia/Shanghai","state":"trial","attributes":{"trial_started_at":"2026-07-01","trial_ends_at":"2026-07-31"}}}
{"at":"2026-08-01T00:00:00Z","op":"upsert","customer":{"external_id":"g-inbox","name":"Gus","timezone":"UTC","state":"trial","attributes":{"trial_started_at":"2026-08-01","trial_ends_at":"2026-08-31"}}}
"#;

fn expected() -> BTreeSet<(String, String, String, String)> {
    let rows: &[(&str, &str, &str, &str)] = &[
        // Shanghai, UTC+8 all year: 10:00 local is 02:00Z.
        (
            "a-shanghai",
            "trial-welcome",
            "2026-01-05T01:00:00Z",
            "email",
        ),
        ("a-shanghai", "trial-day7", "2026-01-12T02:00:00Z", "email"),
        (
            "a-shanghai",
            "trial-ending",
            "2026-01-31T02:00:00Z",
            "email",
        ),
        (
            "a-shanghai",
            "trial-expired",
            "2026-02-04T02:00:00Z",
            "email",
        ),
        (
            "a-shanghai",
            "trial-3months",
            "2026-05-04T02:00:00Z",
            "email",
        ),
        (
            "a-shanghai",
            "trial-yearly",
            "2027-02-04T02:00:00Z",
            "email",
        ),
        // New York: EST (UTC-5) until 2026-03-08, then EDT (UTC-4). 10:00 local either way.
        (
            "b-newyork",
            "trial-welcome",
            "2026-02-20T15:30:00Z",
            "email",
        ),
        ("b-newyork", "trial-day7", "2026-02-27T15:00:00Z", "email"),
        ("b-newyork", "trial-ending", "2026-03-18T14:00:00Z", "email"),
        (
            "b-newyork",
            "trial-expired",
            "2026-03-22T14:00:00Z",
            "email",
        ),
        (
            "b-newyork",
            "trial-3months",
            "2026-06-22T14:00:00Z",
            "email",
        ),
        // Berlin converts on 2026-03-20: no more trial reminders, the paid ones instead.
        // CET (UTC+1) until 2026-03-29, then CEST (UTC+2). The duplicate payment event is ignored.
        ("c-berlin", "trial-welcome", "2026-03-01T08:00:00Z", "email"),
        ("c-berlin", "trial-day7", "2026-03-08T09:00:00Z", "email"),
        ("c-berlin", "paid-confirm", "2026-03-20T12:00:05Z", "email"),
        ("c-berlin", "paid-month1", "2026-04-20T08:00:00Z", "email"),
        ("c-berlin", "paid-ending", "2026-05-20T08:00:00Z", "email"),
        ("c-berlin", "paid-expired", "2026-06-20T08:00:00Z", "email"),
        // Deleted two days in: only the welcome.
        (
            "d-deleted",
            "trial-welcome",
            "2026-04-01T09:00:00Z",
            "email",
        ),
        // Tokyo (UTC+9); the trial end moved from 05-31 to 06-14 before the first reminder about it.
        ("e-moved", "trial-welcome", "2026-05-01T00:00:00Z", "email"),
        ("e-moved", "trial-day7", "2026-05-08T01:00:00Z", "email"),
        ("e-moved", "trial-ending", "2026-06-10T01:00:00Z", "email"),
        ("e-moved", "trial-expired", "2026-06-14T01:00:00Z", "email"),
        ("e-moved", "trial-3months", "2026-09-14T01:00:00Z", "email"),
        // Phone only: SMS.
        ("f-sms", "trial-welcome", "2026-07-01T04:00:00Z", "sms"),
        ("f-sms", "trial-day7", "2026-07-08T02:00:00Z", "sms"),
        ("f-sms", "trial-ending", "2026-07-27T02:00:00Z", "sms"),
        ("f-sms", "trial-expired", "2026-07-31T02:00:00Z", "sms"),
        ("f-sms", "trial-3months", "2026-10-31T02:00:00Z", "sms"),
        // No address at all: the in-app inbox. 31 Aug + 3 months is 30 Nov.
        ("g-inbox", "trial-welcome", "2026-08-01T00:00:00Z", "inbox"),
        ("g-inbox", "trial-day7", "2026-08-08T10:00:00Z", "inbox"),
        ("g-inbox", "trial-ending", "2026-08-27T10:00:00Z", "inbox"),
        ("g-inbox", "trial-expired", "2026-08-31T10:00:00Z", "inbox"),
        ("g-inbox", "trial-3months", "2026-11-30T10:00:00Z", "inbox"),
    ];
    rows.iter()
        .map(|(c, r, a, ch)| (c.to_string(), r.to_string(), a.to_string(), ch.to_string()))
        .collect()
}

/// Customers are simulated in shards at once; the attempts come out the
/// same, in the same order, however many shards there are, and they are the
/// hand-checked ones.
#[test]
fn shards_change_nothing_but_the_speed() {
    let scratch = Scratch::new();
    let timeline = scratch.write("timeline.jsonl", TIMELINE.trim_start());
    let config = repo_root().join("examples/saas-trial/herald.toml");
    let period = ["--from", "2026-01-01", "--until", "2027-03-01"];
    let stdout_with = |shards: &str| {
        let out = run(herald()
            .args(["simulate", "--config"])
            .arg(&config)
            .arg("--timeline")
            .arg(&timeline)
            .args(period)
            .args(["--shards", shards]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let one = stdout_with("1");
    let three = stdout_with("3");
    assert_eq!(one, three, "three shards printed other attempts than one");
    let got: BTreeSet<_> = parse_attempts(&three)
        .into_iter()
        .map(|a| (a.customer, a.rule, a.at, a.channel))
        .collect();
    assert_eq!(got, expected());
    let refused = run(herald()
        .args(["simulate", "--config"])
        .arg(&config)
        .arg("--timeline")
        .arg(&timeline)
        .args(period)
        .args(["--shards", "2", "--live"]));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--live runs in one shard"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn saas_trial_strategy_over_fourteen_months() {
    let scratch = Scratch::new();
    let timeline = scratch.write("timeline.jsonl", TIMELINE.trim_start());
    let db = scratch.db("sim.db");
    let config = repo_root().join("examples/saas-trial/herald.toml");
    let (attempts, stderr) = simulate(
        &config,
        &timeline,
        ("2026-01-01", "2027-03-01"),
        &["--db", db.to_str().unwrap()],
    );
    assert!(
        attempts.iter().all(|a| a.status == "delivered"),
        "{attempts:#?}"
    );
    let got: BTreeSet<_> = attempts
        .iter()
        .map(|a| {
            (
                a.customer.clone(),
                a.rule.clone(),
                a.at.clone(),
                a.channel.clone(),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        attempts.len(),
        "an occurrence was delivered twice: {attempts:#?}"
    );
    let want = expected();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nunexpected: {extra:#?}\nstderr: {stderr}"
    );

    // Output is in time order and the subjects are rendered per customer.
    let times: Vec<&String> = attempts.iter().map(|a| &a.at).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    let ending = attempts
        .iter()
        .find(|a| a.customer == "e-moved" && a.rule == "trial-ending")
        .unwrap();
    assert_eq!(ending.subject, "Your Acme Cloud trial ends in 4 days");
    let welcome = attempts
        .iter()
        .find(|a| a.customer == "f-sms" && a.rule == "trial-welcome")
        .unwrap();
    assert!(welcome.subject.contains("王芳"), "{}", welcome.subject);

    // The inbox customer's messages are readable with `herald inbox`.
    let out = run(herald()
        .args(["inbox", "g-inbox", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let messages: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[2]["rule"], "trial-ending");
    assert!(messages[2]["text"].as_str().unwrap().contains("2026-08-31"));
}

/// Which rules the shipped sample timeline fires for which customers, worked
/// out by hand from examples/saas-trial/herald.toml and timeline.jsonl
/// (simulated 2026-01-01 to 2027-03-01, each pair exactly once):
/// - all 36 customers sign up in trial: `trial-welcome`, and `trial-day7` a
///   week later, while still in trial (those who pay do so on day 20;
///   c012 is deleted on day 10, after its day-7 message);
/// - the 12 who pay (c002 c005 c008 c011 c014 c017 c020 c023 c026 c029 c032
///   c035) do so before their trial's last 4 days, so they get no further
///   trial messages; c012 is deleted before; the other 23 get
///   `trial-ending`, `trial-expired` and `trial-3months` (the trial ends
///   moved for c003, c010, c024 and c031 move those, not their number);
/// - `trial-yearly` falls before 2027-03-01 only for trials ending by
///   2026-02-28: c001 c003 (moved to 02-24) c004 c006 c007 c009;
/// - every payer gets `paid-confirm` for its payment event and
///   `paid-month1`; `paid-ending` (a month before the term ends) for all
///   but c026 and c032, whose terms end 2027-04-10 and 2027-04-28;
///   `paid-expired` for the terms that end by 2027-03-01: c002 c005 c008
///   c011 c017 c023 c029 c035; `paid-yearly` for none (the first would be
///   2027-05-09).
fn shipped_sample_expected() -> std::collections::BTreeMap<(String, String), usize> {
    let all: Vec<String> = (1..=36).map(|i| format!("c{i:03}")).collect();
    let paid = [
        "c002", "c005", "c008", "c011", "c014", "c017", "c020", "c023", "c026", "c029", "c032",
        "c035",
    ];
    let stayed_in_trial: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|c| !paid.contains(c) && *c != "c012")
        .collect();
    assert_eq!(stayed_in_trial.len(), 23);
    let everyone: Vec<&str> = all.iter().map(String::as_str).collect();
    let fired: &[(&str, &[&str])] = &[
        ("trial-welcome", &everyone),
        ("trial-day7", &everyone),
        ("trial-ending", &stayed_in_trial),
        ("trial-expired", &stayed_in_trial),
        ("trial-3months", &stayed_in_trial),
        (
            "trial-yearly",
            &["c001", "c003", "c004", "c006", "c007", "c009"],
        ),
        ("paid-confirm", &paid),
        ("paid-month1", &paid),
        (
            "paid-ending",
            &[
                "c002", "c005", "c008", "c011", "c014", "c017", "c020", "c023", "c029", "c035",
            ],
        ),
        (
            "paid-expired",
            &[
                "c002", "c005", "c008", "c011", "c017", "c023", "c029", "c035",
            ],
        ),
    ];
    fired
        .iter()
        .flat_map(|(rule, customers)| {
            customers
                .iter()
                .map(move |c| ((c.to_string(), rule.to_string()), 1))
        })
        .collect()
}

#[test]
fn shipped_sample_timeline_runs_clean() {
    let root = repo_root();
    let (attempts, stderr) = simulate(
        &root.join("examples/saas-trial/herald.toml"),
        &root.join("examples/saas-trial/timeline.jsonl"),
        ("2026-01-01", "2027-03-01"),
        &[],
    );
    assert!(attempts.len() > 100, "{stderr}");
    assert!(attempts.iter().all(|a| a.status == "delivered"));
    assert!(stderr.contains("0 refused"), "{stderr}");
    let mut fired: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for a in &attempts {
        *fired
            .entry((a.customer.clone(), a.rule.clone()))
            .or_default() += 1;
    }
    let want = shipped_sample_expected();
    let missing: Vec<_> = want.keys().filter(|k| !fired.contains_key(*k)).collect();
    let unexpected: Vec<_> = fired
        .iter()
        .filter(|(k, n)| want.get(*k) != Some(*n))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "rules that did not fire: {missing:?}\nfired but not expected (or more than once): {unexpected:?}"
    );
}
