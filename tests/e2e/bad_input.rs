//! Bad input gets a clear error that says what to fix, and nothing good is
//! lost: CSV rows, broken templates, unknown config keys, bad timeline lines.

use crate::support::*;

#[test]
fn csv_import_skips_bad_rows_by_line_and_imports_the_rest() {
    let scratch = Scratch::new();
    let config = repo_root().join("examples/saas-trial/herald.toml");
    let db = scratch.path("h.db");
    let csv = scratch.write(
        "customers.csv",
        "external_id,name,email,phone,wechat_openid,region,timezone,locale,state,created_at,trial_started_at,trial_ends_at,vip_since,visits\n\
         c1,Li Lei,li@example.com,,,north,Asia/Shanghai,zh-CN,trial,2026-01-05,2026-01-05,2026-02-04,2025-06-01,12\n\
         c2,Bad Zone,b@example.com,,,north,Asia/Atlantis,en,trial,2026-01-05,2026-01-05,2026-02-04,,\n\
         c3,Too Few,c@example.com\n\
         c4,Bad Date,d@example.com,,,south,UTC,en,trial,2026-01-05,2026-01-05,soon,,\n\
         ,No Id,e@example.com,,,south,UTC,en,trial,2026-01-05,2026-01-05,2026-02-04,,\n\
         c6,\"王芳, Jr.\",f@example.com,+8613800000000,,east,Asia/Shanghai,zh-CN,trial,2026-01-06T08:30:00+08:00,2026-01-06,2026-02-05,,3\n",
    );
    let out = run(herald()
        .args(["import", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .arg(&csv));
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a failed row makes the exit code non-zero"
    );
    assert!(
        stderr.contains("line 3:") && stderr.contains("Asia/Atlantis"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4:") && stderr.contains("fields"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5:") && stderr.contains("trial_ends_at"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 6:") && stderr.contains("external_id"),
        "{stderr}"
    );
    assert!(
        stderr.contains("imported 2 customer(s); 4 row(s) failed"),
        "{stderr}"
    );

    let out = run(herald()
        .args(["customers", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let customers: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = customers
        .iter()
        .map(|c| c["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c1", "c6"]);
    assert_eq!(
        customers[0]["attributes"]["vip_since"], "2025-06-01",
        "undeclared ISO dates stay dates"
    );
    assert_eq!(
        customers[0]["attributes"]["visits"], 12,
        "undeclared numbers become numbers"
    );
    assert_eq!(customers[1]["name"], "王芳, Jr.");
    assert_eq!(customers[1]["created_at"], "2026-01-06T00:30:00Z");
}

/// An inbox and a date attribute; each test adds what it breaks.
fn head() -> Config {
    Config::new().inbox().attribute("ends_at", "date")
}

/// A rule `r` with this trigger through `channel`.
fn rule_r(trigger: &str, channel: &str) -> Rule {
    Rule::new("r", trigger, &[channel], "s", "t")
}

#[test]
fn broken_templates_are_refused_naming_rule_and_line() {
    let stderr = refusal(head().rule(
        r#"
id = "renewal"
trigger = { on = "date", attribute = "ends_at", before = "3d" }
channels = ["inbox"]
subject = "Renew"
text = """
Hello {{ customer.name }},
your plan ends {{ customer.ends_at | date( }}
"""
"#,
    ));
    assert!(stderr.contains("rule `renewal`, text, line 2"), "{stderr}");

    let stderr = refusal(head().rule(Rule::new(
        "hello",
        ON_CREATED,
        &["inbox"],
        "Hi {{ customer.nickname }}",
        "t",
    )));
    assert!(
        stderr.contains("rule `hello`, subject, line 1: unknown variable `customer.nickname`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[attributes]"),
        "the error says how to fix it: {stderr}"
    );
}

#[test]
fn config_mistakes_are_named() {
    let stderr = refusal(head().lines("scheduler", r#"tikc = "1s""#));
    assert!(
        stderr.contains("unknown field `tikc`") && stderr.contains("herald.toml"),
        "{stderr}"
    );

    let stderr = refusal(head().rule(rule_r(ON_CREATED, "email")));
    assert!(
        stderr.contains("channel `email` is not configured; configured channels: inbox"),
        "{stderr}"
    );

    let stderr = refusal(head().rule(rule_r(
        r#"{ on = "date", attribute = "ends_at", before = "3 days" }"#,
        "inbox",
    )));
    assert!(stderr.contains("3 days"), "{stderr}");

    let stderr = refusal(head().rule(rule_r(
        r#"{ on = "date", attribute = "starts_at" }"#,
        "inbox",
    )));
    assert!(
        stderr.contains("add `starts_at = \"date\"` under [attributes]"),
        "{stderr}"
    );
}

#[test]
fn bad_timeline_lines_are_reported_by_number_before_anything_runs() {
    let scratch = Scratch::new();
    let config = head().write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        "{\"at\":\"2026-01-01T10:00:00Z\",\"op\":\"upsert\",\"customer\":{\"external_id\":\"a\"}}\n\
         {\"at\":\"2026-01-01T10:00:00Z\",\"op\":\"upsert\",\"customer\":{\"externalid\":\"b\"}}\n\
         not json\n",
    );
    let stderr = expect_refusal(&mut simulate_cmd(
        &config,
        &timeline,
        "2026-01-01",
        "2026-01-02",
    ));
    assert!(
        stderr.contains("t.jsonl:2") && stderr.contains("externalid"),
        "{stderr}"
    );
    assert!(stderr.contains("t.jsonl:3"), "{stderr}");
}

#[test]
fn listing_commands_never_create_a_database() {
    let scratch = Scratch::new();
    let config = head().write(&scratch);
    let db = scratch.path("missing.db");
    for args in [
        vec!["deliveries"],
        vec!["customers"],
        vec!["inbox", "someone"],
    ] {
        let out = run(herald()
            .args(&args)
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(&db));
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains("no database at"),
            "{}",
            text(&out.stderr)
        );
        assert!(!db.exists(), "{args:?} created the database");
    }
}

/// A database URL is never taken as a file name: an unknown scheme is
/// refused naming what Herald takes (password masked), and a PostgreSQL
/// server that cannot be reached is an error that says so; neither leaves
/// a directory named after the URL.
#[test]
fn database_urls_are_never_file_names() {
    let scratch = Scratch::new();
    let config = Config::new()
        .inbox()
        .rule(welcome(&["inbox"]))
        .write(&scratch);
    for (db, says) in [
        (
            "mysql://root:hunter2@db/herald",
            "unknown database URL scheme `mysql://`",
        ),
        (
            "postgres://herald:hunter2@127.0.0.1:1/herald",
            "cannot connect to PostgreSQL",
        ),
    ] {
        let out = run(herald()
            .current_dir(scratch.path(""))
            .args(["customers", "--config"])
            .arg(&config)
            .args(["--db", db]));
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{db}: {stderr}");
        assert!(stderr.contains(says), "{db}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the password is masked: {stderr}"
        );
        for dir in ["mysql:", "postgres:"] {
            assert!(!scratch.path(dir).exists(), "{db} made a directory {dir}");
        }
    }
}
