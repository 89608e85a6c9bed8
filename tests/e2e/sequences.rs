//! Follow-up sequences with goals and exits, on the virtual clock: push,
//! then (3 days, no goal) SMS, then email, then a phone task for staff; a
//! goal reached after any step is recorded against that delivery and stops
//! the rest; a sequence whose condition stops holding (membership renewed)
//! ends. Expected times are computed by hand.

use crate::support::*;
use serde_json::Value;

fn config() -> Config {
    let console = || Channel::plugin("console");
    Config::new()
        .channel("push", console())
        .channel("sms", console().set("address", "phone"))
        .channel("email", console().set("address", "email"))
        .channel("calls", Channel::builtin("task"))
        .rule(
            Rule::new(
                "win-back",
                &on_event("membership_expired"),
                &["push"],
                "Your membership has ended",
                "Come back, {{ customer.name }}",
            )
            .set("when", "customer.state != 'renewed'")
            .set("goal", Raw(r#"{ event = "login", within = "3d" }"#.into()))
            .step(
                "3d",
                &["sms"],
                "Membership",
                "{{ customer.name }}, renew today and keep your points",
            )
            .step(
                "3d",
                &["email"],
                "We kept your points",
                "Dear {{ customer.name }}, your points are waiting",
            )
            .step(
                "3d",
                &["calls"],
                "Call about renewal",
                "{{ customer.name }} ignored push, SMS and email after the membership ended",
            ),
        )
}

const TIMELINE: &str = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"silent","name":"Silent Sam","phone":"+8613800000001","email":"s@example.com","state":"expired"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"comes-back","name":"Cora","phone":"+8613800000002","email":"c@example.com","state":"expired"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"late-login","name":"Lee","phone":"+8613800000003","email":"l@example.com","state":"expired"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"renews","name":"Rita","phone":"+8613800000004","email":"r@example.com","state":"expired"}}
{"at":"2026-03-02T09:00:00Z","op":"event","customer":"silent","kind":"membership_expired"}
{"at":"2026-03-02T09:00:00Z","op":"event","customer":"comes-back","kind":"membership_expired"}
{"at":"2026-03-02T09:00:00Z","op":"event","customer":"late-login","kind":"membership_expired"}
{"at":"2026-03-02T09:00:00Z","op":"event","customer":"renews","kind":"membership_expired"}
{"at":"2026-03-03T10:00:00Z","op":"event","customer":"comes-back","kind":"login"}
{"at":"2026-03-04T00:00:00Z","op":"upsert","customer":{"external_id":"renews","state":"renewed"}}
{"at":"2026-03-09T09:00:00Z","op":"event","customer":"late-login","kind":"login"}
"#;

fn steps(rows: &[Value], customer: &str) -> Vec<(String, String, String)> {
    rows.iter()
        .filter(|r| r["customer"] == customer)
        .map(|r| {
            (
                r["at"].as_str().unwrap().to_string(),
                r["channel"].as_str().unwrap_or("-").to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row(at: &str, channel: &str, status: &str) -> (String, String, String) {
    (at.into(), channel.into(), status.into())
}

#[test]
fn a_sequence_escalates_until_its_goal_or_exit() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-03-01", "2026-04-01"), &db, &[]);
    let rows = deliveries(&config, &db);

    // The whole sequence, every step 3 days after the one before; each
    // customer gets the first `n` of it.
    let sequence = [
        ("2026-03-02T09:00:00Z", "push"),
        ("2026-03-05T09:00:00Z", "sms"),
        ("2026-03-08T09:00:00Z", "email"),
        ("2026-03-11T09:00:00Z", "calls"),
    ];
    let first = |n: usize| -> Vec<(String, String, String)> {
        sequence[..n]
            .iter()
            .map(|(at, channel)| row(at, channel, "delivered"))
            .collect()
    };
    assert_eq!(steps(&rows, "silent"), first(4));
    // Logged in within 3 days of the push: the goal ends the sequence.
    assert_eq!(steps(&rows, "comes-back"), first(1));
    // Logged in a day after the email: no phone call.
    assert_eq!(steps(&rows, "late-login"), first(3));
    // Renewed before the SMS was due: the renewal (a write that makes the
    // condition false) cancels the rest of the sequence at once.
    assert_eq!(steps(&rows, "renews"), first(1));
    // Each step has its own text.
    let sms = rows
        .iter()
        .find(|r| r["customer"] == "silent" && r["channel"] == "sms")
        .unwrap();
    assert_eq!(sms["subject"], "Membership");

    // The call list holds the one customer who ignored everything.
    let tasks = run(herald()
        .args(["tasks", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(tasks.status.success(), "{}", text(&tasks.stderr));
    let tasks: Vec<Value> = text(&tasks.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["customer"], "silent");
    assert_eq!(tasks[0]["phone"], "+8613800000001");
    assert_eq!(tasks[0]["title"], "Call about renewal");
    assert_eq!(
        tasks[0]["reason"],
        "Silent Sam ignored push, SMS and email after the membership ended"
    );
    let id = tasks[0]["id"].as_i64().unwrap().to_string();
    let done = run(herald()
        .args(["tasks", "--done", &id, "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(done.status.success(), "{}", text(&done.stderr));
    let open = run(herald()
        .args(["tasks", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert_eq!(text(&open.stdout), "", "no open tasks left");

    // Goals are recorded against the delivery that preceded them.
    let goals: Vec<(String, String, String)> = deliveries(&config, &db)
        .iter()
        .filter(|r| r["goal"].is_string())
        .map(|r| {
            assert_eq!(r["goal"], "login");
            (
                r["customer"].as_str().unwrap().to_string(),
                r["channel"].as_str().unwrap().to_string(),
                r["goal_at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        goals,
        [
            (
                "comes-back".to_string(),
                "push".to_string(),
                "2026-03-03T10:00:00Z".to_string()
            ),
            (
                "late-login".to_string(),
                "email".to_string(),
                "2026-03-09T09:00:00Z".to_string()
            ),
        ]
    );
}

#[test]
fn steps_have_their_own_translations() {
    let scratch = Scratch::new();
    let config = Config::new()
        .inbox()
        .rule(
            r#"
id = "nudge"
trigger = { on = "created" }
channels = ["inbox"]
subject = "Welcome"
text = "x"

[rules.locales."zh-CN"]
subject = "欢迎"
text = "x"

[[rules.steps]]
after = "1d"
channels = ["inbox"]
subject = "Still there?"
text = "x"

[rules.steps.locales."zh-CN"]
subject = "还在吗？"
text = "x"
"#,
        )
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"zh","locale":"zh-CN"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"en","locale":"en"}}"#,
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-03-01", "2026-03-05"), &db, &[]);
    let subjects: Vec<(String, String)> = deliveries(&config, &db)
        .iter()
        .map(|r| {
            (
                r["customer"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let of = |c: &str| -> Vec<&str> {
        subjects
            .iter()
            .filter(|(who, _)| who == c)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    assert_eq!(of("zh"), ["欢迎", "还在吗？"]);
    assert_eq!(of("en"), ["Welcome", "Still there?"]);
}

/// A date rule that fires once (a week before a membership expires) keeps
/// its follow-up: the step is not canceled because the rule has no next
/// date.
#[test]
fn a_one_time_date_rule_sends_its_follow_up_steps() {
    let scratch = Scratch::new();
    let console = || Channel::plugin("console");
    let config = Config::new()
        .attribute("expires_at", "date")
        .channel("push", console())
        .channel("sms", console().set("address", "phone"))
        .rule(
            Rule::new(
                "expiry",
                r#"{ on = "date", attribute = "expires_at", before = "7d", at = "10:00" }"#,
                &["push"],
                "Your membership ends in a week",
                "Renew, {{ customer.name }}",
            )
            .step(
                "2d",
                &["sms"],
                "5 days left",
                "{{ customer.name }}, 5 days left",
            ),
        )
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T00:00:00Z","op":"upsert","customer":{"external_id":"m","name":"Mia","phone":"+8613800000009","timezone":"UTC","attributes":{"expires_at":"2026-03-20"}}}
"#,
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-03-01", "2026-04-01"), &db, &[]);
    let rows = deliveries(&config, &db);
    assert_eq!(
        steps(&rows, "m"),
        [
            row("2026-03-13T10:00:00Z", "push", "delivered"),
            row("2026-03-15T10:00:00Z", "sms", "delivered"),
        ]
    );
}
