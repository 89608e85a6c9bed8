//! A rule added to a running deployment reaches the customers already in it:
//! when the strategy changes, date rules are planned again for everyone.

use crate::support::*;

/// The deployment before the change: a welcome to the inbox.
fn before() -> Config {
    Config::new()
        .inbox()
        .attribute("renews_at", "date")
        .rule(Rule::new(
            "welcome",
            ON_CREATED,
            &["inbox"],
            "Welcome",
            "Hello",
        ))
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

#[test]
fn an_added_date_rule_is_planned_for_existing_customers() {
    let scratch = Scratch::new();
    let db = scratch.path("h.db");
    let db_arg = db.to_str().unwrap();
    let v1 = before().write_as(&scratch, "v1.toml");
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{"external_id":"k","timezone":"UTC","attributes":{"renews_at":"2026-06-30"}}}"#,
    );
    let (first, _) = simulate(
        &v1,
        &timeline,
        "2026-03-01",
        "2026-04-01",
        &["--db", db_arg],
    );
    assert_eq!(
        first.iter().map(|a| a.rule.as_str()).collect::<Vec<_>>(),
        ["welcome"]
    );

    let v2 = after().write_as(&scratch, "v2.toml");
    let empty = scratch.write("empty.jsonl", "");
    let (second, stderr) = simulate(&v2, &empty, "2026-04-01", "2026-12-31", &["--db", db_arg]);
    let got: Vec<(&str, &str)> = second
        .iter()
        .map(|a| (a.rule.as_str(), a.at.as_str()))
        .collect();
    assert_eq!(got, [("renewal", "2026-06-23T09:00:00Z")], "{stderr}");
}

/// The `occurs_at` of customer `k`'s planned `renewal`, read straight from
/// the database (any herald command would plan the change itself).
fn planned_renewal(db: &std::path::Path) -> Option<i64> {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open the database");
        sqlx::query_scalar(
            "SELECT s.occurs_at FROM schedule s JOIN customers c ON c.id = s.customer_id
             WHERE c.external_id = 'k' AND s.rule_id = 'renewal'",
        )
        .fetch_optional(&mut conn)
        .await
        .expect("query the schedule")
    })
}

#[test]
fn serve_listens_first_and_then_plans_a_changed_strategy() {
    let scratch = Scratch::new();
    let db = scratch.path("h.db");
    let db_arg = db.to_str().unwrap();
    let v1 = before().write_as(&scratch, "v1.toml");
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T08:00:00Z","op":"upsert","customer":{"external_id":"k","timezone":"UTC","attributes":{"renews_at":"2031-06-30"}}}"#,
    );
    simulate(
        &v1,
        &timeline,
        "2026-03-01",
        "2026-03-02",
        &["--db", db_arg],
    );
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
