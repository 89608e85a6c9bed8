//! Segments: `[segments.NAME] when` over customers' fields and event
//! history (`count`, `idle`, `last`), counted and listed by `herald segment`
//! at a given time and by the API now, region-scoped for staff; bad
//! conditions are refused at load or answered with what to fix. Every
//! number below is worked out by hand from the timeline.

use crate::support::*;
use serde_json::{json, Value};

fn config() -> Config {
    Config::new()
        .inbox()
        .rule(welcome(&["inbox"]))
        .lines(
            "segments.dormant",
            r#"when = "customer.state == 'borrower' and idle('login', '30d')"
description = "Borrowers with no login for 30 days""#,
        )
        .lines("segments.repeat-payers", r#"when = "count('paid') >= 2""#)
        .lines(
            "segments.recent-payers",
            r#"when = "count('paid', '30d') >= 1""#,
        )
        .lines(
            "segments.last-login-march",
            r#"when = "(last('login') or '') >= '2026-03'""#,
        )
}

/// a: borrower (north), login 03-20, paid 02-01 and 03-01.
/// b: borrower (north), login 02-15, paid 03-15.
/// c: borrower (south), never logged in, never paid.
/// d: registered (south), never logged in, paid 01-10, 01-20, 03-25.
/// e: borrower (north), logged in never, deleted 02-01.
const TIMELINE: &str = r#"{"at":"2026-01-01T00:00:00Z","op":"upsert","customer":{"external_id":"a","state":"borrower","region":"north"}}
{"at":"2026-01-01T00:00:00Z","op":"upsert","customer":{"external_id":"b","state":"borrower","region":"north"}}
{"at":"2026-01-01T00:00:00Z","op":"upsert","customer":{"external_id":"c","state":"borrower","region":"south"}}
{"at":"2026-01-01T00:00:00Z","op":"upsert","customer":{"external_id":"d","state":"registered","region":"south"}}
{"at":"2026-01-01T00:00:00Z","op":"upsert","customer":{"external_id":"e","state":"borrower","region":"north"}}
{"at":"2026-01-10T00:00:00Z","op":"event","customer":"d","kind":"paid"}
{"at":"2026-01-20T00:00:00Z","op":"event","customer":"d","kind":"paid"}
{"at":"2026-02-01T00:00:00Z","op":"event","customer":"a","kind":"paid"}
{"at":"2026-02-01T00:00:00Z","op":"delete","customer":"e"}
{"at":"2026-02-15T00:00:00Z","op":"event","customer":"b","kind":"login"}
{"at":"2026-03-01T00:00:00Z","op":"event","customer":"a","kind":"paid"}
{"at":"2026-03-15T00:00:00Z","op":"event","customer":"b","kind":"paid"}
{"at":"2026-03-20T00:00:00Z","op":"event","customer":"a","kind":"login"}
{"at":"2026-03-25T00:00:00Z","op":"event","customer":"d","kind":"paid"}"#;

fn segment(
    config: &std::path::Path,
    db: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = run(herald()
        .arg("segment")
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--db")
        .arg(db));
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn ids(page: &Value) -> Vec<String> {
    page["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["external_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn segments_count_and_list_by_fields_and_event_history() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-01-01", "2026-04-01"), &db, &[]);

    // At 2026-04-01T00:00Z (30 days before: 03-02T00:00Z):
    // dormant: b (last login 02-15) and c (never); not a (03-20), not d
    // (not a borrower), not e (deleted).
    // repeat-payers: a (2), d (3). recent-payers (after 03-02): b (03-15), d
    // (03-25); a's 03-01 is 31 days before. last login in March: a.
    let at = ["--at", "2026-04-01"];
    for (name, want) in [
        ("dormant", 2),
        ("repeat-payers", 2),
        ("recent-payers", 2),
        ("last-login-march", 1),
    ] {
        let (ok, out, err) = segment(&config, &db, &[&["count", name][..], &at[..]].concat());
        assert!(ok, "{name}: {err}");
        assert_eq!(out.trim(), want.to_string(), "{name}");
    }
    let (ok, out, err) = segment(
        &config,
        &db,
        &["list", "dormant", "--json", "--at", "2026-04-01"],
    );
    assert!(ok, "{err}");
    let listed: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["external_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(listed, ["b", "c"]);
    // Paged: one at a time, with where to go on.
    let (_, out, err) = segment(
        &config,
        &db,
        &[
            "list",
            "recent-payers",
            "--json",
            "--limit",
            "1",
            "--at",
            "2026-04-01",
        ],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("more: pass --after b"), "{err}");
    let (_, out, _) = segment(
        &config,
        &db,
        &[
            "list",
            "recent-payers",
            "--json",
            "--after",
            "b",
            "--at",
            "2026-04-01",
        ],
    );
    assert!(out.contains("\"external_id\":\"d\""), "{out}");
    // A month earlier (03-01, 30 days before: 01-30): a logged in never yet
    // and is dormant too; b's 02-15 login is recent.
    let (_, out, _) = segment(
        &config,
        &db,
        &["list", "dormant", "--json", "--at", "2026-03-01"],
    );
    assert_eq!(out.lines().count(), 2, "a and c: {out}");
    assert!(
        out.contains("\"external_id\":\"a\"") && out.contains("\"external_id\":\"c\""),
        "{out}"
    );

    let (ok, _, err) = segment(&config, &db, &["count", "nope"]);
    assert!(!ok);
    assert!(
        err.contains(
            "no segment `nope`; segments: dormant, last-login-march, recent-payers, repeat-payers"
        ),
        "{err}"
    );

    // The API, now (2026-12): every login is months old, so dormant is every
    // borrower (a, b, c); nobody paid in the last 30 days. Staff see their region.
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let (status, all) = server.api("GET", "/segments", None);
    assert_eq!(status, 200, "{all}");
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (status, dormant) = server.api("GET", "/segments/dormant", None);
    assert_eq!(status, 200, "{dormant}");
    assert_eq!(
        (&dormant["count"], &dormant["description"]),
        (&json!(3), &json!("Borrowers with no login for 30 days"))
    );
    assert_eq!(
        server.api("GET", "/segments/recent-payers", None).1["count"],
        0
    );
    let north = create_token(&config, &db, "staff", &["north"]);
    let (_, scoped) = http_as(&north, "GET", &server.url("/segments/dormant"), None);
    assert_eq!(scoped["count"], 2, "a and b: {scoped}");
    let (_, page) = http_as(
        &north,
        "GET",
        &server.url("/segments/dormant/customers?limit=1"),
        None,
    );
    assert_eq!(
        (ids(&page), &page["next_after"]),
        (vec!["a".to_string()], &json!("a")),
        "{page}"
    );
    let (_, page) = http_as(
        &north,
        "GET",
        &server.url("/segments/dormant/customers?after=a"),
        None,
    );
    assert_eq!(
        (ids(&page), &page["next_after"]),
        (vec!["b".to_string()], &json!(null)),
        "{page}"
    );
    assert_eq!(server.api("GET", "/segments/nope", None).0, 404);
    let ingest = create_token(&config, &db, "ingest", &[]);
    assert_eq!(
        http_as(&ingest, "GET", &server.url("/segments"), None).0,
        403
    );
}

#[test]
fn bad_segment_conditions_say_what_to_fix() {
    // At load: an undeclared attribute, and history functions in a rule.
    let refused = refusal(config().lines("segments.vip", r#"when = "customer.tier == 'vip'""#));
    assert!(
        refused.contains("[segments.vip], when, line 1: unknown variable `customer.tier`"),
        "{refused}"
    );
    let refused =
        refusal(config().rule(
            Rule::new("r", ON_CREATED, &["inbox"], "s", "t").set("when", "count('paid') > 1"),
        ));
    assert!(
        refused.contains(
            "count(), idle() and last() over a customer's events work in segment conditions"
        ),
        "{refused}"
    );
    // When evaluated: a period that is not one.
    let scratch = Scratch::new();
    let config = config()
        .lines("segments.broken", r#"when = "idle('login', 'soon')""#)
        .write(&scratch);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-01-01", "2026-04-01"), &db, &[]);
    let (ok, _, err) = segment(&config, &db, &["count", "broken"]);
    assert!(!ok);
    assert!(
        err.contains("[segments.broken]") && err.contains("`soon`"),
        "{err}"
    );
}
