//! The push-jpush plugin through the real binary against the fake JPush
//! (`fakes::jpush`), on the virtual clock of `herald simulate --live` over a
//! database that already holds the customers and their devices (imported
//! from CSV): one push to all of a customer's registration ids with title,
//! alert and extras per platform; ids JPush does not know make Herald forget
//! them and carry the reminder on the next channel; a rate-limited push is
//! retried after `X-Rate-Limit-Reset`; wrong credentials fail with what to
//! fix and are never printed.

use crate::fakes::jpush::{self, APP_KEY, MASTER_SECRET};
use crate::support::*;
use serde_json::json;

fn config(jpush: &FakeProvider, secret: &str) -> Config {
    Config::new()
        .retry(3, "10s", "1h")
        .channel(
            "push",
            Channel::plugin("push-jpush")
                .allow(&jpush.origin())
                .set("timeout", "5s")
                .setting("app_key", APP_KEY)
                .setting("master_secret", secret)
                .setting("apns_production", "false")
                .setting("api_base", jpush.origin()),
        )
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["push", "inbox"],
            "积分即将过期",
            "{{ customer.name }}，您的积分将于本月底过期",
        ))
}

const CUSTOMERS: &str = "external_id,name,timezone,created_at,push_token,push_platform,push_app\n\
    amy,李雷,Asia/Shanghai,2026-01-01,1a0018970a8f8c2b3d,android,com.acme.shop\n\
    bo,韩梅梅,Asia/Shanghai,2026-01-01,dead-bo,android,com.acme.shop\n\
    cy,Cy,Asia/Shanghai,2026-01-01,busy-cy,ios,com.acme.shop\n";

/// Import the customers, then simulate a ping to each at 10:00 UTC.
fn run(scratch: &Scratch, config: &std::path::Path) -> (std::path::PathBuf, String) {
    let db = scratch.path("h.db");
    let csv = scratch.write("customers.csv", CUSTOMERS);
    let out = run_cmd(
        herald()
            .args(["import", "--config"])
            .arg(config)
            .arg("--db")
            .arg(&db)
            .arg(&csv),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let timeline = scratch.write(
        "t.jsonl",
        &["amy", "bo", "cy"]
            .map(|c| {
                format!(
                    r#"{{"at":"2026-03-02T10:00:00Z","op":"event","customer":"{c}","kind":"ping"}}"#
                )
            })
            .join("\n"),
    );
    let out = run_cmd(
        simulate_cmd(config, &timeline, "2026-03-02", "2026-03-03")
            .arg("--live")
            .arg("--db")
            .arg(&db),
    );
    (db, format!("{}\n{}", text(&out.stdout), text(&out.stderr)))
}

fn run_cmd(cmd: &mut std::process::Command) -> std::process::Output {
    crate::support::run(cmd)
}

#[test]
fn jpush_pushes_forgets_unknown_ids_and_waits_out_its_rate_limit() {
    let fake = jpush::start();
    let scratch = Scratch::new();
    let config = config(&fake, MASTER_SECRET).write(&scratch);
    let (db, output) = run(&scratch, &config);
    let rows = deliveries(&config, &db);

    // amy: one push, as JPush documents it.
    let amy = only_row(&rows, "amy");
    assert_eq!(
        (&amy["channel"], &amy["status"]),
        (&json!("push"), &json!("delivered")),
        "{output}"
    );
    assert_eq!(amy["provider_message_id"], "18100295599391745");
    let pushes = fake.requests();
    let to_amy = pushes
        .iter()
        .map(|r| r.json())
        .find(|b| b["audience"]["registration_id"] == json!(["1a0018970a8f8c2b3d"]))
        .expect("a push to amy");
    assert_eq!(to_amy["platform"], json!(["android"]));
    assert_eq!(to_amy["notification"]["android"]["title"], "积分即将过期");
    assert_eq!(
        to_amy["notification"]["android"]["alert"],
        "李雷，您的积分将于本月底过期"
    );
    assert_eq!(
        to_amy["notification"]["android"]["extras"]["herald_rule"],
        "ping"
    );
    assert_eq!(
        to_amy["options"],
        json!({"apns_production": false, "time_to_live": 86400})
    );

    // bo: 1011: failed on push, the id forgotten, the inbox at once.
    let bo = customer_rows(&rows, "bo");
    assert_eq!(bo.len(), 2, "{bo:?}");
    assert_eq!(
        (&bo[0]["channel"], &bo[0]["status"]),
        (&json!("push"), &json!("failed"))
    );
    assert!(bo[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid address: JPush answered HTTP 400 error 1011"));
    assert_eq!(
        (&bo[1]["channel"], &bo[1]["status"]),
        (&json!("inbox"), &json!("delivered"))
    );
    assert_eq!(bo[0]["at"], bo[1]["at"], "the next channel at once");

    // cy: rate limited, retried no sooner than the reset, then delivered.
    let cy = customer_rows(&rows, "cy");
    assert_eq!(cy.len(), 2, "{cy:?}");
    assert_eq!(cy[0]["status"], "failed");
    assert!(
        cy[0]["error"].as_str().unwrap().contains("2002"),
        "{:?}",
        cy[0]
    );
    assert_eq!(
        (&cy[1]["channel"], &cy[1]["status"]),
        (&json!("push"), &json!("delivered"))
    );
    let waited = seconds_between(cy[0]["at"].as_str().unwrap(), cy[1]["at"].as_str().unwrap());
    assert!(
        (30..=60).contains(&waited),
        "retried after {waited}s, not before X-Rate-Limit-Reset"
    );

    // bo's registration id is gone from the database; amy's stays.
    let count = |customer: &str| {
        query_i64(&db, &format!("SELECT COUNT(*) FROM devices d JOIN customers c ON c.id = d.customer_id WHERE c.external_id = '{customer}'"))
    };
    assert_eq!((count("amy"), count("bo")), (Some(1), Some(0)));
}

#[test]
fn jpush_wrong_credentials_fail_with_a_fix_it_message() {
    let fake = jpush::start();
    let scratch = Scratch::new();
    let wrong = "00000000000000000000bad0";
    let config = config(&fake, wrong).write(&scratch);
    let (db, output) = run(&scratch, &config);
    let rows = deliveries(&config, &db);
    let amy = customer_rows(&rows, "amy");
    let error = amy[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("1004") && error.contains("app_key and master_secret"),
        "{error}"
    );
    assert_not_leaked(&[wrong], &[output, json!(rows).to_string()]);
}

/// `simulate --http`: JPush's answers from fixtures instead of the network
/// or the recording sink's `200 {}`: a known id is delivered with JPush's
/// msg_id, a request no fixture matches gets 501 and the run says which;
/// `--http` cannot be combined with `--live` or `--from-db`.
#[test]
fn simulate_answers_jpush_from_fixtures_and_names_what_matched_none() {
    let scratch = Scratch::new();
    let config = Config::new()
        .retry(1, "10s", "1h")
        .channel(
            "push",
            Channel::plugin("push-jpush")
                .allow("https://api.jpush.cn")
                .setting("app_key", APP_KEY)
                .setting("master_secret", MASTER_SECRET),
        )
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["push"],
            "积分",
            "积分将过期",
        ))
        .write(&scratch);
    let fixtures = scratch.write(
        "answers.json",
        r#"[{"method": "POST", "url": "https://api.jpush.cn/v3/push",
             "body": {"contains": "\"1a0018970a8f8c2b3d\""},
             "response": {"status": 200, "body": {"sendno": "0", "msg_id": "777"}}}]"#,
    );
    let timeline = scratch.write(
        "t.jsonl",
        &[
            r#"{"at":"2026-03-02T09:00:00Z","op":"upsert","customer":{"external_id":"amy"}}"#,
            r#"{"at":"2026-03-02T09:00:00Z","op":"device","customer":"amy","token":"1a0018970a8f8c2b3d","platform":"android","app":"com.acme.shop"}"#,
            r#"{"at":"2026-03-02T09:00:00Z","op":"upsert","customer":{"external_id":"bo"}}"#,
            r#"{"at":"2026-03-02T09:00:00Z","op":"device","customer":"bo","token":"19abc","platform":"ios","app":"com.acme.shop"}"#,
            r#"{"at":"2026-03-02T10:00:00Z","op":"event","customer":"amy","kind":"ping"}"#,
            r#"{"at":"2026-03-02T10:00:00Z","op":"event","customer":"bo","kind":"ping"}"#,
        ]
        .join("\n"),
    );
    let db = scratch.db("h.db");
    let out = run_cmd(
        simulate_cmd(&config, &timeline, "2026-03-02", "2026-03-03")
            .arg("--http")
            .arg(&fixtures)
            .arg("--db")
            .arg(&db),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "1 HTTP request(s) answered from fixtures, 1 matched none, 0 outside allowed_hosts"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: 1 HTTP request(s) matched no fixture")
            && stderr.contains("POST https://api.jpush.cn/v3/push: fixture 1: the body lacks"),
        "the warning names the request and why: {stderr}"
    );
    let rows = deliveries(&config, &db);
    let amy = only_row(&rows, "amy");
    assert_eq!(
        (&amy["status"], &amy["provider_message_id"]),
        (&json!("delivered"), &json!("777")),
        "{amy}"
    );
    let bo = only_row(&rows, "bo");
    assert_ne!(bo["status"], "delivered", "{bo}");

    for (other, says) in [
        ("--live", "cannot be used with"),
        ("--from-db", "drop --http"),
    ] {
        let out = run_cmd(
            simulate_cmd(&config, &timeline, "2026-03-02", "2026-03-03")
                .args(["--http"])
                .arg(&fixtures)
                .arg(other),
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains(says),
            "{other}: {}",
            text(&out.stderr)
        );
    }
}
