//! A rule added to a running deployment reaches the customers already in it:
//! when the strategy changes, date rules are planned again for everyone.

use crate::support::*;

/// The deployment before the change: a welcome to the inbox.
fn before() -> Config {
    Config::new()
        .inbox()
        .attribute("renews_at", "date")
        .rule(welcome(&["inbox"]))
}

/// The deployment after it: the same and a date rule.
fn after() -> Config {
    before().rule(Rule::new(
        "renewal",
        r#"{ on = "date", attribute = "renews_at", before = "7d", at = "09:00" }"#,
        &["inbox"],
        "Renews on {{ customer.renews_at }}",
        "See you",
    ))
}

/// The deployment before the change simulated from 2026-03-01 to `until`
/// for one customer `k` whose renewal is on `renews_at`: the scratch
/// directory, the database in it, and the attempts.
fn first_day(renews_at: &str, until: &str) -> (Scratch, std::path::PathBuf, Vec<Attempt>) {
    let scratch = Scratch::new();
    let db = scratch.db("h.db");
    let v1 = before().write_as(&scratch, "v1.toml");
    let timeline = scratch.write(
        "t.jsonl",
        &format!(
            r#"{{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{{"external_id":"k","timezone":"UTC","attributes":{{"renews_at":"{renews_at}"}}}}}}"#
        ),
    );
    let db_arg = db.to_str().unwrap();
    let (attempts, _) = simulate(&v1, &timeline, ("2026-03-01", until), &["--db", db_arg]);
    (scratch, db, attempts)
}

#[test]
fn an_added_date_rule_is_planned_for_existing_customers() {
    let (scratch, db, first) = first_day("2026-06-30", "2026-04-01");
    assert_eq!(
        first.iter().map(|a| a.rule.as_str()).collect::<Vec<_>>(),
        ["welcome"]
    );

    let v2 = after().write_as(&scratch, "v2.toml");
    let empty = scratch.write("empty.jsonl", "");
    let db_arg = db.to_str().unwrap();
    let (second, stderr) = simulate(&v2, &empty, ("2026-04-01", "2026-12-31"), &["--db", db_arg]);
    let got: Vec<(&str, &str)> = second
        .iter()
        .map(|a| (a.rule.as_str(), a.at.as_str()))
        .collect();
    assert_eq!(got, [("renewal", "2026-06-23T09:00:00Z")], "{stderr}");
}

/// The `occurs_at` of customer `k`'s planned `renewal`, read straight from
/// the database (any herald command would plan the change itself).
fn planned_renewal(db: &std::path::Path) -> Option<i64> {
    query_i64(
        db,
        "SELECT s.occurs_at FROM schedule s JOIN customers c ON c.id = s.customer_id
         WHERE c.external_id = 'k' AND s.rule_id = 'renewal'",
    )
}

#[test]
fn serve_listens_first_and_then_plans_a_changed_strategy() {
    let (scratch, db, _) = first_day("2031-06-30", "2026-03-02");
    assert_eq!(planned_renewal(&db), None);

    let v2 = after().write_as(&scratch, "v2.toml");
    let server = Server::start(&v2, &db, &scratch, "serve.log");
    // The API answers (the re-plan runs in the scheduler, not before listening).
    let (status, _) = server.api("GET", "/strategy", None);
    assert_eq!(status, 200);
    let planned = wait_for(30, || planned_renewal(&db));
    let expected = chrono::DateTime::parse_from_rfc3339("2031-06-23T09:00:00Z")
        .unwrap()
        .timestamp_millis();
    assert_eq!(planned, Some(expected), "log: {}", server.log());
}
