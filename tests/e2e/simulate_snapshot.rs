//! `herald simulate --from-db` and `--compare` over a deployment's own
//! customers: a live SQLite database built by `herald import` (2,000
//! customers; 100,000 with `HERALD_TEST_FULL=1`) and a suppression list,
//! simulated from 2030-01-01 for 90 days. Every expected send is worked out
//! by hand from how the customers were generated; the live database, its
//! `-wal` and its `-shm` must be byte for byte as they were.

use crate::support::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How many customers the live deployment has.
fn size() -> usize {
    if std::env::var("HERALD_TEST_FULL").is_ok_and(|v| v == "1") {
        100_000
    } else {
        2_000
    }
}

const FROM: &str = "2030-01-01";
const FOR: &str = "90d";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

/// 2030-01-01 + 90 days.
fn end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 4, 1, 0, 0, 0).unwrap()
}

/// Customer `i` as generated: `c000042`, in UTC, renewing on 2030-01-20
/// plus `i % 100` days, paid when `i % 3 == 0` (else on trial),
/// unsubscribed from the inbox when `i % 10 == 0`, and (only in the
/// comparison's timeline) paying at 12:00 on 2030-02-01 plus `(i / 7) % 28`
/// days when `i % 7 == 0`.
struct Person {
    id: String,
    renews: NaiveDate,
    trial: bool,
    suppressed: bool,
    pays: Option<DateTime<Utc>>,
}

fn person(i: usize) -> Person {
    let renews = NaiveDate::from_ymd_opt(2030, 1, 20).unwrap() + Duration::days((i % 100) as i64);
    Person {
        id: format!("c{i:06}"),
        renews,
        trial: !i.is_multiple_of(3),
        suppressed: i.is_multiple_of(10),
        pays: i.is_multiple_of(7).then(|| {
            Utc.with_ymd_and_hms(2030, 2, 1, 12, 0, 0).unwrap()
                + Duration::days(((i / 7) % 28) as i64)
        }),
    }
}

fn at_nine(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(9, 0, 0).unwrap().and_utc()
}

/// The configured strategy: a renewal reminder 7 days before, a "lapsed"
/// note the day after for customers on trial, thanks 2 days after a payment.
fn base() -> Config {
    Config::new()
        .attribute("renews_at", "date")
        .inbox()
        .rule(renewal())
        .rule(
            Rule::new(
                "lapsed",
                r#"{ on = "date", attribute = "renews_at", after = "1d", at = "09:00" }"#,
                &["inbox"],
                "Lapsed",
                "x",
            )
            .set("when", "customer.state == 'trial'"),
        )
        .rule(thanks("2d"))
}

/// The other strategy: no "lapsed" note, a new check-in 15 days before the
/// renewal, and thanks 5 days after a payment instead of 2.
fn other() -> Config {
    Config::new()
        .attribute("renews_at", "date")
        .inbox()
        .rule(renewal())
        .rule(Rule::new(
            "checkin",
            r#"{ on = "date", attribute = "renews_at", before = "15d", at = "09:00" }"#,
            &["inbox"],
            "Check in",
            "x",
        ))
        .rule(thanks("5d"))
}

fn renewal() -> Rule {
    Rule::new(
        "renewal",
        r#"{ on = "date", attribute = "renews_at", before = "7d", at = "09:00" }"#,
        &["inbox"],
        "Renews on {{ customer.renews_at }}",
        "x",
    )
}

fn thanks(delay: &str) -> Rule {
    Rule::new(
        "thanks",
        &format!(r#"{{ on = "event", kind = "payment", delay = "{delay}" }}"#),
        &["inbox"],
        "Thanks",
        "x",
    )
}

/// What a strategy sends customer `p` in the period, by hand:
/// (rule, when, delivered); a suppressed customer's reminder is skipped.
fn by_hand(
    p: &Person,
    other_strategy: bool,
    with_payments: bool,
) -> Vec<(&'static str, DateTime<Utc>, bool)> {
    let mut out = vec![("renewal", at_nine(p.renews - Duration::days(7)))];
    if other_strategy {
        out.push(("checkin", at_nine(p.renews - Duration::days(15))));
    } else if p.trial {
        out.push(("lapsed", at_nine(p.renews + Duration::days(1))));
    }
    if let Some(paid) = p.pays.filter(|_| with_payments) {
        let delay = if other_strategy { 5 } else { 2 };
        out.push(("thanks", paid + Duration::days(delay)));
    }
    out.into_iter()
        .filter(|(_, at)| (start()..end()).contains(at))
        .map(|(rule, at)| (rule, at, !p.suppressed))
        .collect()
}

/// A deployment with `n` customers imported and every tenth suppressed on
/// the inbox: its config and its database file.
fn live_deployment(scratch: &Scratch, n: usize) -> (PathBuf, PathBuf) {
    let config = base().write_as(scratch, "herald.toml");
    let db = scratch.path("live.db");
    let mut csv = String::from(
        "external_id,name,email,phone,wechat_openid,region,timezone,locale,state,created_at,renews_at\n",
    );
    let mut suppressions = String::from("customer,channel,reason\n");
    for i in 0..n {
        let p = person(i);
        let state = if p.trial { "trial" } else { "paid" };
        csv.push_str(&format!("{},,,,,,UTC,,{state},,{}\n", p.id, p.renews));
        if p.suppressed {
            suppressions.push_str(&format!("{},inbox,asked to stop\n", p.id));
        }
    }
    let csv = scratch.write("customers.csv", &csv);
    let suppressions = scratch.write("suppressions.csv", &suppressions);
    for args in [vec!["import"], vec!["suppressions", "--import"]] {
        let file = if args[0] == "import" {
            &csv
        } else {
            &suppressions
        };
        let out = run(herald()
            .args(&args)
            .arg(file)
            .arg("--config")
            .arg(&config)
            .arg("--db")
            .arg(&db));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    (config, db)
}

/// SHA-256 of the database, its `-wal` and its `-shm` (None when absent).
fn files(db: &Path) -> [Option<String>; 3] {
    use sha2::Digest;
    ["", "-wal", "-shm"].map(|suffix| {
        std::fs::read(format!("{}{suffix}", db.display()))
            .ok()
            .map(|bytes| hex::encode(sha2::Sha256::digest(bytes)))
    })
}

fn from_db(config: &Path, db: &Path, more: &[&str]) -> std::process::Output {
    run(herald()
        .args([
            "simulate",
            "--from-db",
            "--from",
            FROM,
            "--for",
            FOR,
            "--config",
        ])
        .arg(config)
        .arg("--db")
        .arg(db)
        .args(more))
}

#[test]
fn from_db_sends_what_the_live_state_says_and_leaves_the_live_database_as_it_was() {
    let scratch = Scratch::new();
    let (config, db) = live_deployment(&scratch, size());
    let before = files(&db);
    // Whatever the importing processes left beside the database (a -wal
    // and a -shm, a -wal alone when one exited while closing it, or
    // nothing) must stay as it was: nothing checkpointed, nothing created.
    let out = from_db(&config, &db, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(files(&db), before, "the live database changed");
    let attempts = parse_attempts(&text(&out.stdout));

    let got: BTreeSet<(String, String, String, String)> = attempts
        .iter()
        .map(|a| {
            (
                a.customer.clone(),
                a.rule.clone(),
                a.at.clone(),
                a.status.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), attempts.len(), "an attempt came twice");
    let expected: BTreeSet<(String, String, String, String)> = (0..size())
        .flat_map(|i| {
            let p = person(i);
            by_hand(&p, false, false)
                .into_iter()
                .map(move |(rule, at, delivered)| {
                    let status = if delivered { "delivered" } else { "skipped" };
                    (
                        p.id.clone(),
                        rule.to_string(),
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        status.to_string(),
                    )
                })
        })
        .collect();
    assert_eq!(got, expected, "{stderr}");

    // A few by name: renews 2030-01-21, on trial.
    let of = |id: &str| -> Vec<(&str, &str, &str)> {
        attempts
            .iter()
            .filter(|a| a.customer == id)
            .map(|a| (a.rule.as_str(), a.at.as_str(), a.status.as_str()))
            .collect()
    };
    assert_eq!(
        of("c000001"),
        [
            ("renewal", "2030-01-14T09:00:00Z", "delivered"),
            ("lapsed", "2030-01-22T09:00:00Z", "delivered")
        ]
    );
    // Paid: no lapsed note. Suppressed: skipped. Renews 2030-04-08: the
    // reminder is due 2030-04-01 09:00, after the period.
    assert_eq!(
        of("c000003"),
        [("renewal", "2030-01-16T09:00:00Z", "delivered")]
    );
    assert_eq!(
        of("c000000"),
        [("renewal", "2030-01-13T09:00:00Z", "skipped")]
    );
    assert_eq!(of("c000078"), []);

    // Per rule and month, by hand for every 100 customers (offset o =
    // i % 100 days after 2030-01-20; every tenth suppressed): renewal in
    // January for o in 0..=18 less o = 0, 10 (17), February 19..=46 less
    // 20, 30, 40 (25), March 47..=77 less 50, 60, 70 (28).
    let mut per_month: BTreeMap<(String, String), usize> = BTreeMap::new();
    for a in attempts.iter().filter(|a| a.status == "delivered") {
        *per_month
            .entry((a.rule.clone(), a.at[..7].to_string()))
            .or_default() += 1;
    }
    if size() == 2_000 {
        let want: BTreeMap<(String, String), usize> = [
            ("lapsed", "2030-01", 120),
            ("lapsed", "2030-02", 347),
            ("lapsed", "2030-03", 373),
            ("renewal", "2030-01", 340),
            ("renewal", "2030-02", 500),
            ("renewal", "2030-03", 560),
        ]
        .into_iter()
        .map(|(r, m, n)| ((r.to_string(), m.to_string()), n))
        .collect();
        assert_eq!(per_month, want);
    }

    // From the present (the default --from): nothing is due before 2030.
    let out = run(herald()
        .args(["simulate", "--from-db", "--for", "1d", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(files(&db), before, "the live database changed");
}

#[test]
fn compare_counts_what_changes_per_month_and_names_customers_with_their_reasons() {
    let scratch = Scratch::new();
    let (config, db) = live_deployment(&scratch, size());
    let other_config = other().write_as(&scratch, "other.toml");
    let payments: String = (0..size())
        .filter_map(|i| {
            let p = person(i);
            p.pays.map(|at| {
                format!(
                    "{{\"at\":\"{}\",\"op\":\"event\",\"customer\":\"{}\",\"kind\":\"payment\"}}\n",
                    at.to_rfc3339(),
                    p.id
                )
            })
        })
        .collect();
    let timeline = scratch.write("payments.jsonl", &payments);
    let before = files(&db);

    let compare = |more: &[&str]| {
        let out = from_db(
            &config,
            &db,
            &[
                &["--compare", other_config.to_str().unwrap()][..],
                &["--timeline", timeline.to_str().unwrap()][..],
                more,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let json: Value = serde_json::from_str(&compare(&["--json"])).expect("one JSON object");
    assert_eq!(files(&db), before, "the live database changed");

    // Messages per rule and month, by hand.
    let mut want: BTreeMap<(String, String), [u64; 2]> = BTreeMap::new();
    for i in 0..size() {
        let p = person(i);
        for (side, other_strategy) in [(0, false), (1, true)] {
            for (rule, at, delivered) in by_hand(&p, other_strategy, true) {
                if delivered {
                    want.entry((rule.to_string(), at.format("%Y-%m").to_string()))
                        .or_default()[side] += 1;
                }
            }
        }
    }
    let mut got: BTreeMap<(String, String), [u64; 2]> = BTreeMap::new();
    let changes = json["changes"].as_array().expect("changes");
    for change in changes {
        assert_eq!(change["channel"], "inbox");
        for m in change["months"].as_array().unwrap() {
            got.insert(
                (
                    change["rule"].as_str().unwrap().to_string(),
                    m["month"].as_str().unwrap().to_string(),
                ),
                [m["base"].as_u64().unwrap(), m["other"].as_u64().unwrap()],
            );
        }
    }
    want.retain(|(rule, _), _| rule != "renewal");
    assert_eq!(got, want, "{json}");
    let unchanged = &json["unchanged"][0];
    assert_eq!(unchanged[0], "renewal", "{json}");
    if size() == 2_000 {
        // renewal: 340 + 500 + 560, as in the test above. thanks: the 286
        // payers less 29 suppressed, paying on day d = (i / 7) % 28 of
        // February; +2 days stays in February for d <= 25, +5 days for
        // d <= 22.
        assert_eq!(unchanged[2], 1_400);
        assert_eq!(got[&("thanks".into(), "2030-02".into())], [239, 211]);
        assert_eq!(got[&("thanks".into(), "2030-03".into())], [18, 46]);
        assert_eq!(got[&("checkin".into(), "2030-01".into())], [0, 480]);
        assert_eq!(got[&("lapsed".into(), "2030-03".into())], [373, 0]);
    }

    let change = |rule: &str| {
        changes
            .iter()
            .find(|c| c["rule"] == rule)
            .unwrap_or_else(|| panic!("no change of {rule}: {json}"))
    };
    let customers = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["customer"].as_str().unwrap().to_string())
            .collect()
    };
    // The lapsed note is gone: the first on trial and not suppressed lose it.
    let lapsed = change("lapsed");
    assert_eq!(
        customers(&lapsed["lose"]),
        ["c000001", "c000002", "c000004"]
    );
    assert_eq!(lapsed["gain"], serde_json::json!([]));
    let first = &lapsed["lose"][0];
    assert_eq!(
        first["base_reason"],
        "sent: last at 2030-01-22T09:00:00+00:00"
    );
    assert!(
        first["other_reason"]
            .as_str()
            .unwrap()
            .starts_with("no rule `lapsed` in "),
        "{first}"
    );
    // The check-in is new, planned for existing customers when the other
    // strategy opened the copy: c000001 renews on 2030-01-21.
    let checkin = change("checkin");
    assert_eq!(
        customers(&checkin["gain"]),
        ["c000001", "c000002", "c000003"]
    );
    let first = &checkin["gain"][0];
    assert_eq!(
        first["other_reason"],
        "sent: last at 2030-01-06T09:00:00+00:00"
    );
    assert!(
        first["base_reason"]
            .as_str()
            .unwrap()
            .starts_with("no rule `checkin` in "),
        "{first}"
    );
    let expected_gaining = (0..size())
        .filter(|&i| {
            by_hand(&person(i), true, false)
                .iter()
                .any(|(rule, _, delivered)| *rule == "checkin" && *delivered)
        })
        .count();
    assert_eq!(checkin["gaining"], expected_gaining as u64);
    // Thanks moved by 3 days: months change, every payer still gets one.
    let thanks = change("thanks");
    assert_eq!(
        (thanks["gaining"].as_u64(), thanks["losing"].as_u64()),
        (Some(0), Some(0))
    );

    // The same as a person reads it.
    let text = compare(&[]);
    assert!(
        text.contains("lapsed on inbox: ") && text.contains("Unchanged: renewal on inbox"),
        "{text}"
    );
    assert!(
        text.contains("    c000001: 1 → 0\n      A: sent: last at 2030-01-22T09:00:00+00:00\n"),
        "{text}"
    );
    assert_eq!(files(&db), before, "the live database changed");
}

#[test]
fn from_db_copies_the_database_while_serve_has_it_open() {
    let scratch = Scratch::new();
    let (config, db) = live_deployment(&scratch, 100);
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let (status, _) = server.api("GET", "/strategy", None);
    assert_eq!(status, 200);
    let out = from_db(&config, &db, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let delivered = parse_attempts(&text(&out.stdout))
        .into_iter()
        .filter(|a| a.status == "delivered")
        .count();
    let by_hand_count = (0..100)
        .flat_map(|i| by_hand(&person(i), false, false))
        .filter(|(_, _, delivered)| *delivered)
        .count();
    assert_eq!(delivered, by_hand_count, "log: {}", server.log());
}

#[test]
fn from_db_refuses_to_send_and_names_what_it_cannot_copy() {
    let scratch = Scratch::new();
    let config = base().write_as(&scratch, "herald.toml");
    let missing = scratch.path("missing.db");
    let err = expect_refusal(
        herald()
            .args(["simulate", "--from-db", "--for", "1d", "--live", "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&missing),
    );
    assert!(err.contains("drop --live"), "{err}");
    let err = expect_refusal(
        herald()
            .args(["simulate", "--from-db", "--for", "1d", "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&missing),
    );
    assert!(err.contains("there is no database at"), "{err}");
    assert!(
        !missing.exists(),
        "a database was created at {}",
        missing.display()
    );
    let err = expect_refusal(
        herald()
            .args(["simulate", "--from-db", "--for", "1d", "--config"])
            .arg(&config)
            .args(["--db", "postgres://herald:s3cret@127.0.0.1:1/herald"]),
    );
    assert!(
        err.contains("PostgreSQL") && !err.contains("s3cret"),
        "{err}"
    );
}
