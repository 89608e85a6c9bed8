//! Strategy details an operator reads back: translations picked by the
//! customer's locale (with language fallback), an `updated` trigger that
//! fires only on a given new value, `herald preview` rendering exactly what a
//! customer would get now, `herald explain` saying what is coming and why a
//! rule will not fire, and an imported suppression list respected.

use crate::support::*;
use serde_json::Value;

fn config() -> Config {
    Config::new()
        .channel("email", Channel::plugin("console").set("address", "email"))
        .inbox()
        .attribute("level", "string")
        .rule(
            r#"
id = "vip-welcome"
trigger = { on = "updated", field = "level", to = "vip" }
channels = ["email", "inbox"]
subject = "Welcome to VIP, {{ customer.name }}"
text = "Your VIP benefits start today."

[rules.locales."zh-CN"]
subject = "欢迎成为VIP会员，{{ customer.name }}"
text = "您的VIP权益今天开始生效。"
"#,
        )
        .rule(Rule::new(
            "no-login",
            r#"{ on = "inactive", kinds = ["login"], for = "7d" }"#,
            &["email"],
            "We miss you",
            "Hello",
        ))
        .rule(
            Rule::new(
                "paid-survey",
                ON_CREATED,
                &["inbox"],
                "How are we doing?",
                "x",
            )
            .set("when", "customer.state == 'paid'"),
        )
        .rule(Rule::new(
            "renewal",
            &on_event("renewed"),
            &["email"],
            "Thanks for renewing {{ event.properties.plan }}",
            "x",
        ))
}

const TIMELINE: &str = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"zh","name":"李雷","email":"li@example.com","locale":"zh-CN","attributes":{"level":"gold"}}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"tw","name":"陳","email":"chen@example.com","locale":"zh_TW","attributes":{"level":"gold"}}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"en","name":"Ann","email":"ann@example.com","locale":"en-US","attributes":{"level":"gold"}}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"fr","name":"Zoé","email":"zoe@example.com","locale":"fr","attributes":{"level":"gold"}}}
{"at":"2026-03-02T09:00:00Z","op":"upsert","customer":{"external_id":"zh","attributes":{"level":"vip"}}}
{"at":"2026-03-02T09:00:00Z","op":"upsert","customer":{"external_id":"tw","attributes":{"level":"vip"}}}
{"at":"2026-03-02T09:00:00Z","op":"upsert","customer":{"external_id":"en","attributes":{"level":"platinum"}}}
{"at":"2026-03-02T09:00:00Z","op":"upsert","customer":{"external_id":"fr","attributes":{"level":"vip"}}}
{"at":"2026-03-03T09:00:00Z","op":"event","customer":"en","kind":"login"}
{"at":"2026-03-04T09:00:00Z","op":"event","customer":"en","kind":"renewed","properties":{"plan":"Gold yearly"}}
"#;

fn cli(config: &std::path::Path, db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = run(herald()
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--db")
        .arg(db));
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn locales_updated_values_preview_explain_and_imported_suppressions() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-03-01", "2026-03-05"), &db, &[]);
    let rows = deliveries(&config, &db);
    let vip: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["rule"] == "vip-welcome")
        .map(|r| {
            (
                r["customer"].as_str().unwrap(),
                r["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        vip,
        [
            ("zh", "欢迎成为VIP会员，李雷"),
            // zh_TW has no translation of its own: the same language's.
            ("tw", "欢迎成为VIP会员，陳"),
            // No French: the rule's own text. `en` became platinum, not vip.
            ("fr", "Welcome to VIP, Zoé"),
        ]
    );

    // Preview renders what `en` would get from vip-welcome now, in English,
    // and the renewal with the event that triggered it.
    let (ok, stdout, stderr) = cli(
        &config,
        &db,
        &[
            "preview",
            "--rule",
            "vip-welcome",
            "--customer",
            "zh",
            "--at",
            "2026-03-05T10:00:00Z",
            "--json",
        ],
    );
    assert!(ok, "{stderr}");
    let p: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(p["outcome"], "send");
    assert_eq!(p["channel"], "email");
    assert_eq!(p["subject"], "欢迎成为VIP会员，李雷");
    assert_eq!(p["text"], "您的VIP权益今天开始生效。");
    let (ok, stdout, stderr) = cli(
        &config,
        &db,
        &[
            "preview",
            "--rule",
            "renewal",
            "--customer",
            "en",
            "--at",
            "2026-03-05T10:00:00Z",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("subject:  Thanks for renewing Gold yearly"),
        "{stdout}"
    );
    let (ok, _, stderr) = cli(
        &config,
        &db,
        &["preview", "--rule", "nope", "--customer", "en"],
    );
    assert!(
        !ok && stderr.contains("no rule `nope`; the rules are: vip-welcome"),
        "{stderr}"
    );

    // Explain: what is coming for `en`, and why the rest will not fire.
    let explain = |customer: &str| -> Vec<Value> {
        let (ok, stdout, stderr) = cli(
            &config,
            &db,
            &[
                "explain",
                customer,
                "--at",
                "2026-03-05T10:00:00Z",
                "--json",
            ],
        );
        assert!(ok, "{stderr}");
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let en = explain("en");
    let state = |states: &[Value], rule: &str| -> (String, String, Value) {
        let s = states.iter().find(|s| s["rule"] == rule).unwrap();
        (
            s["state"].as_str().unwrap().to_string(),
            s["detail"].as_str().unwrap().to_string(),
            s["due"].clone(),
        )
    };
    let (st, _, due) = state(&en, "no-login");
    assert_eq!(st, "upcoming");
    assert_eq!(due, "2026-03-10T09:00:00Z", "7 days after the last login");
    let (st, detail, _) = state(&en, "paid-survey");
    assert_eq!(st, "condition false", "{detail}");
    assert!(detail.contains("only when its `when` holds"), "{detail}");
    let (st, detail, _) = state(&en, "vip-welcome");
    assert_eq!(st, "not triggered");
    assert!(detail.contains("`level` changes"), "{detail}");
    let (st, _, _) = state(&en, "renewal");
    assert_eq!(st, "sent");

    // An imported suppression list: `en` refused email by phone.
    let list = scratch.write(
        "suppress.csv",
        "customer,channel,reason\nen,email,asked by phone\nghost,email,x\nzh,fax,x\n",
    );
    let (ok, _, stderr) = cli(
        &config,
        &db,
        &["suppressions", "--import", list.to_str().unwrap()],
    );
    assert!(!ok, "two bad rows make the exit code non-zero");
    assert!(
        stderr.contains("suppress.csv:3: no customer `ghost`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("suppress.csv:4: channel `fax` is not configured"),
        "{stderr}"
    );
    assert!(
        stderr.contains("imported 1 suppression(s); 2 row(s) failed"),
        "{stderr}"
    );
    let (_, stdout, _) = cli(&config, &db, &["suppressions", "--json"]);
    let s: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(s["customer"], "en");
    assert_eq!(s["source"], "import");
    // Now the no-login reminder (email only) cannot reach `en`; explain says so.
    let (ok, stdout, stderr) = cli(
        &config,
        &db,
        &[
            "preview",
            "--rule",
            "no-login",
            "--customer",
            "en",
            "--at",
            "2026-03-10T09:00:00Z",
            "--json",
        ],
    );
    assert!(ok, "{stderr}");
    let p: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(p["outcome"], "skip");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("email (the customer unsubscribed)"),
        "{p}"
    );
    let (_, detail, _) = state(&explain("en"), "renewal");
    assert!(
        detail.contains("email (the customer unsubscribed)"),
        "{detail}"
    );
}
