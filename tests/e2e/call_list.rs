//! The staff call list over the API: a branch's staff token lists and
//! closes only calls to its region's customers (another region's task is a
//! 404), closing records an outcome and a note (once: a second close is a
//! 409), admin sees every region, and the CLI shows and closes the same
//! list.

use crate::support::*;
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<i64> {
    page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn branches_work_their_own_call_list_over_the_api() {
    let scratch = Scratch::new();
    let config = Config::new()
        .channel("calls", Channel::builtin("task"))
        .rule(Rule::new(
            "call-me",
            &on_event("call"),
            &["calls"],
            "Call {{ customer.name }}",
            "Asked for a call",
        ))
        .write(&scratch);
    let mut timeline = Vec::new();
    for (id, region, hour) in [("n1", "north", 9), ("s1", "south", 10), ("n2", "north", 11)] {
        timeline.push(format!(r#"{{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{{"external_id":"{id}","name":"{id}","phone":"+8613800000{hour:03}","region":"{region}"}}}}"#));
        timeline.push(format!(
            r#"{{"at":"2026-03-01T{hour:02}:00:00Z","op":"event","customer":"{id}","kind":"call"}}"#
        ));
    }
    let timeline = scratch.write("t.jsonl", &timeline.join("\n"));
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &[]);
    let server = Server::start(&config, &db, &scratch, "serve.log");

    // Tasks 1 (n1), 2 (s1), 3 (n2), in the order they were put on the list.
    let (status, all) = server.api("GET", "/tasks", None);
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), [1, 2, 3]);
    assert_eq!(all["tasks"][0]["title"], "Call n1");
    let north = create_token(&config, &db, "staff", &["north"]);
    let get = |token: &str, path: &str| http_as(token, "GET", &server.url(path), None);
    let close = |token: &str, id: i64, body: Value| {
        http_as(
            token,
            "POST",
            &server.url(&format!("/tasks/{id}/close")),
            Some(&body.to_string()),
        )
    };
    let (_, mine) = get(&north, "/tasks");
    assert_eq!(ids(&mine), [1, 3], "north sees only its customers: {mine}");
    let (_, first) = get(&north, "/tasks?limit=1");
    assert_eq!((ids(&first), &first["next_after"]), (vec![1], &json!(1)));
    let (_, rest) = get(&north, "/tasks?after=1");
    assert_eq!((ids(&rest), &rest["next_after"]), (vec![3], &json!(null)));

    // Close n1's call with what came of it.
    let (status, closed) = close(
        &north,
        1,
        json!({"outcome": "reached", "note": "will borrow next week"}),
    );
    assert_eq!(status, 200, "{closed}");
    assert_eq!(
        (&closed["outcome"], &closed["note"]),
        (&json!("reached"), &json!("will borrow next week"))
    );
    assert!(closed["done_at"].is_string(), "{closed}");
    // Once only; never another region's; only known outcomes; notes bounded.
    let (status, again) = close(&north, 1, json!({"outcome": "no_answer"}));
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("conflict")),
        "{again}"
    );
    let (status, other) = close(&north, 2, json!({"outcome": "reached"}));
    assert_eq!(status, 404, "south's task is not on north's list: {other}");
    let (status, bad) = close(&north, 3, json!({"outcome": "maybe"}));
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reached, no_answer, wrong_number, declined, other"),
        "{bad}"
    );
    assert_eq!(
        close(
            &north,
            3,
            json!({"outcome": "other", "note": "x".repeat(2001)})
        )
        .0,
        422
    );
    assert_eq!(close(&north, 3, json!({"result": "other"})).0, 400);
    let ingest = create_token(&config, &db, "ingest", &[]);
    assert_eq!(close(&ingest, 3, json!({"outcome": "other"})).0, 403);

    // Open tasks now 2 and 3; with all=true, 1 carries its outcome.
    assert_eq!(ids(&server.api("GET", "/tasks", None).1), [2, 3]);
    let (_, everything) = server.api("GET", "/tasks?all=true", None);
    assert_eq!(ids(&everything), [1, 2, 3]);
    assert_eq!(everything["tasks"][0]["outcome"], "reached");

    // The CLI reads and closes the same list.
    let cli = |args: &[&str]| {
        run(herald()
            .arg("tasks")
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(&db))
    };
    let out = cli(&["--done", "2", "--outcome", "bogus"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("is not one of"),
        "{}",
        text(&out.stderr)
    );
    assert!(cli(&[
        "--done",
        "2",
        "--outcome",
        "wrong_number",
        "--note",
        "number belongs to someone else"
    ])
    .status
    .success());
    let listed = text(&cli(&["--all", "--json"]).stdout);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (&rows[1]["outcome"], &rows[1]["note"]),
        (
            &json!("wrong_number"),
            &json!("number belongs to someone else")
        )
    );
    let table = text(&cli(&["--all"]).stdout);
    assert!(
        table.contains("(done: reached)") && table.contains("(done: wrong_number)"),
        "{table}"
    );
}
