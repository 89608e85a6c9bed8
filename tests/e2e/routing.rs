//! Routing by what the customer has, through the real binary: a rule's
//! channels in order, each passed over when the customer cannot be reached
//! on it (no device for push), when its `channel_when` is false, or moved
//! first when the customer's `preferred_channel` names it; `explain` says
//! which channel a reminder would go by and why the ones before it were
//! passed over; a `channel_when` naming a channel the rule does not list is
//! refused at start.

use crate::support::*;
use serde_json::Value;

fn console(prefix: &str, address: &str) -> Channel {
    Channel::plugin("console")
        .set("address", address)
        .setting("prefix", prefix)
}

/// `offer` and `later` route alike; `later` never fires in the timeline, so
/// `explain` says where it would go.
fn config() -> Config {
    let rule = |id: &str| {
        Rule::new(
            id,
            &on_event(id),
            &["push", "sms", "email"],
            "An offer for you",
            "Hello {{ customer.name }}",
        )
        .line(r#"channel_when = { sms = "customer.level == 'vip'" }"#)
    };
    Config::new()
        .attribute("level", "string")
        .channel("push", console("push", "push"))
        .channel("sms", console("sms", "phone"))
        .channel("email", console("email", "email"))
        .rule(rule("offer"))
        .rule(rule("later"))
}

fn upsert(id: &str, fields: &str) -> String {
    format!(
        r#"{{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{{"external_id":"{id}","name":"{id}"{fields}}}}}"#
    )
}

fn device(id: &str) -> String {
    format!(
        r#"{{"at":"2026-03-01T09:01:00Z","op":"device","customer":"{id}","token":"tok-{id}","platform":"android","app":"com.acme.app"}}"#
    )
}

fn offer(id: &str) -> String {
    format!(r#"{{"at":"2026-03-01T10:00:00Z","op":"event","customer":"{id}","kind":"offer"}}"#)
}

#[test]
fn channels_are_chosen_by_address_condition_and_preference_and_explained() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let customers = [
        // id, fields, has a device
        (
            "app",
            r#","phone":"+8613800000001","email":"app@example.com""#,
            true,
        ),
        (
            "vip",
            r#","phone":"+8613800000002","attributes":{"level":"vip"}"#,
            false,
        ),
        (
            "plain",
            r#","phone":"+8613800000003","email":"plain@example.com","attributes":{"level":"new"}"#,
            false,
        ),
        (
            "mailer",
            r#","email":"mailer@example.com","attributes":{"preferred_channel":"email"}"#,
            true,
        ),
        (
            "faxer",
            r#","attributes":{"preferred_channel":"fax"}"#,
            true,
        ),
        ("nobody", r#","phone":"+8613800000006""#, false),
    ];
    let mut lines = Vec::new();
    for (id, fields, has_device) in customers {
        lines.push(upsert(id, fields));
        if has_device {
            lines.push(device(id));
        }
        lines.push(offer(id));
    }
    let timeline = scratch.write("t.jsonl", &lines.join("\n"));
    let db = scratch.db("h.db");
    let db_arg = db.display().to_string();
    let (attempts, stderr) = simulate(
        &config,
        &timeline,
        ("2026-03-01", "2026-03-02"),
        &["--db", &db_arg],
    );
    let mut got: Vec<(String, String, String)> = attempts
        .iter()
        .map(|a| (a.customer.clone(), a.channel.clone(), a.status.clone()))
        .collect();
    got.sort();
    let row = |c: &str, ch: &str, st: &str| (c.to_string(), ch.to_string(), st.to_string());
    assert_eq!(
        got,
        [
            row("app", "push", "delivered"),
            row("faxer", "push", "delivered"),
            row("mailer", "email", "delivered"),
            // no device, sms's condition false, no email: nothing can carry it
            row("nobody", "", "skipped"),
            row("plain", "email", "delivered"),
            row("vip", "sms", "delivered"),
        ],
        "{stderr}"
    );

    let explain = |customer: &str| -> String {
        let out = run(herald()
            .args([
                "explain",
                customer,
                "--at",
                "2026-03-02T00:00:00Z",
                "--json",
                "--config",
            ])
            .arg(&config)
            .arg("--db")
            .arg(&db));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let states: Vec<Value> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let later = states.iter().find(|s| s["rule"] == "later").expect("later");
        assert_eq!(later["state"], "not triggered", "{later}");
        later["detail"].as_str().unwrap().to_string()
    };
    let plain = explain("plain");
    assert!(
        plain.contains("would go by email, passing over push (no device registered for push), sms (its channel_when is false)"),
        "{plain}"
    );
    let mailer = explain("mailer");
    assert!(
        mailer.contains("would go by email (the customer's preferred channel)"),
        "{mailer}"
    );
    let nobody = explain("nobody");
    assert!(
        nobody.contains("no channel can reach the customer: push (no device registered for push), sms (its channel_when is false), email (needs email)"),
        "{nobody}"
    );
}

#[test]
fn a_condition_on_a_channel_the_rule_does_not_list_is_refused() {
    let bad = Config::new().channel("sms", console("sms", "phone")).rule(
        Rule::new("offer", &on_event("offer"), &["sms"], "Hi", "Hi")
            .line(r#"channel_when = { push = "true" }"#),
    );
    let err = refusal(bad);
    assert!(
        err.contains("rule `offer`: channel_when names `push`, which is not in its channels (sms)"),
        "{err}"
    );
}
