//! The funnel: tracked links and the open pixel in real sends (webhook
//! plugin to a fake provider), the signed redirect and pixel served by
//! `herald serve`, `herald report` and `GET /report` checked against a
//! hand-counted scenario (admin and region-scoped staff tokens), and the
//! `/dashboard` page rendered by a real headless Chromium.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

const PUBLIC: &str = "https://herald.example";
const PERIOD: &str = "since=2026-03-01&until=2026-03-08";

/// The welcome mail: two links in the text (the first before a full stop),
/// two in the HTML (one with `&amp;`), and the unsubscribe link.
const WELCOME_TEXT: &str = "Start here: https://shop.example/start?src=mail&x=1.\nHelp: https://help.example/faq\nStop: {{ unsubscribe_url }}";
const WELCOME_HTML: &str = r#"<html><body><p>Hi {{ customer.name }}</p><p><a href="https://shop.example/start?src=mail&amp;x=1">Start</a> <a href='https://help.example/faq'>Help</a></p></body></html>"#;

/// Four customers in two regions get `welcome` by mail (HTML with two
/// links, a goal); c4's mail is rejected by the provider; c1 and c3 get
/// `nudge` by SMS (text with one link); c1 buys within the goal window, c2
/// after it; c5 signs up after the reported week.
struct Scenario {
    scratch: Scratch,
    provider: FakeProvider,
    config: PathBuf,
    db: PathBuf,
}

impl Scenario {
    fn build() -> Scenario {
        let provider = FakeProvider::start(|r, seen| {
            if String::from_utf8_lossy(&r.body).contains("bad@example.com") {
                Reply::json(400, json!({"error": "mailbox does not exist"}))
            } else {
                Reply::json(200, json!({"id": format!("m{}", seen.len() + 1)}))
            }
        });
        let scratch = Scratch::new();
        let config = Config::new()
            .public_url(&format!("{PUBLIC}/"))
            .set("tracking", "clicks", true)
            .set("tracking", "opens", true)
            .channel(
                "mail",
                webhook(&provider, "/mail", "k3y").set("address", "email"),
            )
            .channel(
                "sms",
                webhook(&provider, "/sms", "k3y").set("address", "phone"),
            )
            .rule(
                welcome(&["mail"])
                    .set("subject", "Welcome, {{ customer.name }}")
                    .set("text", WELCOME_TEXT)
                    .set("html", WELCOME_HTML)
                    .set(
                        "goal",
                        Raw(r#"{ event = "purchase", within = "3d" }"#.into()),
                    ),
            )
            .rule(Rule::new(
                "nudge",
                &on_event("nudge"),
                &["sms"],
                "Nudge",
                "Your cart is waiting: https://shop.example/cart",
            ))
            .write(&scratch);
        let customer = |id: &str, region: &str, email: &str| {
            json!({"at": "2026-03-02T09:00:00Z", "op": "upsert", "customer": {
                "external_id": id, "name": format!("<b>{id}</b>"), "region": region,
                "email": email, "phone": "+15005550006"}})
        };
        let ops = [
            customer("c1", "north", "c1@example.com"),
            customer("c2", "north", "c2@example.com"),
            customer("c3", "south", "c3@example.com"),
            customer("c4", "south", "bad@example.com"),
            json!({"at": "2026-03-02T10:00:00Z", "op": "event", "customer": "c1", "kind": "nudge"}),
            json!({"at": "2026-03-02T10:00:00Z", "op": "event", "customer": "c3", "kind": "nudge"}),
            json!({"at": "2026-03-03T09:00:00Z", "op": "event", "customer": "c1", "kind": "purchase"}),
            json!({"at": "2026-03-06T09:00:00Z", "op": "event", "customer": "c2", "kind": "purchase"}),
            {
                let mut late = customer("c5", "north", "c5@example.com");
                late["at"] = json!("2026-03-20T09:00:00Z");
                late
            },
        ];
        let timeline = scratch.write(
            "timeline.jsonl",
            &ops.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let db = scratch.path("herald.db");
        simulate_into(
            &config,
            &timeline,
            ("2026-03-01", "2026-03-25"),
            &db,
            &["--live"],
        );
        Scenario {
            scratch,
            provider,
            config,
            db,
        }
    }

    /// The body the provider received for a customer on a channel.
    fn sent(&self, channel: &str, customer: &str) -> Value {
        self.provider
            .requests()
            .into_iter()
            .filter(|r| r.path == format!("/{channel}"))
            .map(|r| r.json())
            .find(|b| b["recipient"]["customer_id"] == customer)
            .unwrap_or_else(|| panic!("no {channel} message to {customer}"))
    }

    fn serve(&self) -> Server {
        Server::start(&self.config, &self.db, &self.scratch, "serve.log")
    }

    fn token(&self, args: &[&str]) -> String {
        let out = run(herald()
            .args(["token", "create", "--config"])
            .arg(&self.config)
            .arg("--db")
            .arg(&self.db)
            .args(args));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .last()
            .expect("the token is printed")
            .trim()
            .to_string()
    }

    /// `(kind, url)` of every stored hit, oldest first.
    fn hits(&self) -> Vec<(String, Option<String>, i64)> {
        use sqlx::Row;
        let (runtime, mut conn) = open_db(&self.db);
        let rows = runtime
            .block_on(
                sqlx::query("SELECT kind, url, delivery_id FROM tracking_events ORDER BY id")
                    .fetch_all(&mut conn),
            )
            .expect("read tracking_events");
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

/// The tracked links (`{PUBLIC}/t/c/...`) of a body, in order.
fn tracked_links(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find(&format!("{PUBLIC}/t/")) {
        let link: String = rest[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '<' | '>'))
            .collect();
        rest = &rest[at + link.len()..];
        // As a mail client's linkifier: a sentence's full stop is not the link's.
        out.push(link.trim_end_matches('.').to_string());
    }
    out
}

/// A GET with extra headers: status, lowercase headers, body bytes.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, HashMap<String, String>, Vec<u8>) {
    let answer = Request::get(url).headers(headers).send();
    (answer.status, answer.headers, answer.body)
}

/// Follow a link as the customer's browser would reach this server.
fn on(server: &Server, link: &str) -> String {
    format!(
        "{}{}",
        server.base,
        link.strip_prefix(PUBLIC).expect("a link to the public URL")
    )
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

#[test]
fn tracked_links_redirect_and_record_forged_ones_are_refused() {
    let s = Scenario::build();
    let mail = s.sent("mail", "c1");
    let text_links = tracked_links(mail["text"].as_str().unwrap());
    let html_links = tracked_links(mail["html"].as_str().unwrap());
    // Two links in the text (the sentence's full stop left out), two hrefs
    // and the pixel in the HTML; the unsubscribe link is left alone.
    assert_eq!(text_links.len(), 2, "{mail}");
    assert!(
        mail["text"]
            .as_str()
            .unwrap()
            .contains(&format!("{PUBLIC}/unsubscribe?c=c1&ch=mail&s=")),
        "{mail}"
    );
    assert_eq!(html_links.len(), 3, "{mail}");
    assert!(html_links[2].contains("/t/o/") && html_links[2].ends_with(".gif"));
    assert!(!mail.to_string().contains("shop.example"), "{mail}");

    let server = s.serve();
    let follow = |link: &str| get(&on(&server, link), &[("User-Agent", "test-browser/1.0")]);
    let (status, headers, _) = follow(&text_links[0]);
    assert_eq!(status, 302);
    assert_eq!(
        headers["location"],
        "https://shop.example/start?src=mail&x=1"
    );
    let (status, headers, _) = follow(&text_links[1]);
    assert_eq!(status, 302);
    assert_eq!(headers["location"], "https://help.example/faq");
    // The href's `&amp;` is the URL's `&`.
    let (status, headers, _) = follow(&html_links[0]);
    assert_eq!(status, 302);
    assert_eq!(
        headers["location"],
        "https://shop.example/start?src=mail&x=1"
    );
    let hits = s.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.iter().all(|(kind, _, _)| kind == "click"));
    assert_eq!(hits[1].1.as_deref(), Some("https://help.example/faq"));
    let delivery = hits[0].2;
    assert!(
        hits.iter().all(|h| h.2 == delivery),
        "all against c1's delivery"
    );
    let rows = deliveries(&s.config, &s.db);
    let c1_mail = rows
        .iter()
        .find(|d| d["customer"] == "c1" && d["rule"] == "welcome")
        .unwrap();
    assert_eq!(c1_mail["id"], delivery);
    assert_eq!(c1_mail["status"], "delivered");

    // Forged tokens: another URL under the same signature, another
    // delivery, a changed signature, garbage. 400 JSON, never a redirect,
    // nothing recorded.
    let token = text_links[0].rsplit('/').next().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 5, "{token}");
    use base64::Engine;
    let evil = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("https://evil.example/");
    let other_row = (parts[0].parse::<i64>().unwrap() + 1).to_string();
    let flipped = format!(
        "{}{}",
        &parts[4][..31],
        if parts[4].ends_with('0') { "1" } else { "0" }
    );
    for forged in [
        format!("{}.{}.{}.{evil}.{}", parts[0], parts[1], parts[2], parts[4]),
        format!(
            "{other_row}.{}.{}.{}.{}",
            parts[1], parts[2], parts[3], parts[4]
        ),
        format!(
            "{}.{}.{}.{}.{flipped}",
            parts[0], parts[1], parts[2], parts[3]
        ),
        "not-a-token".to_string(),
    ] {
        let (status, headers, body) = get(&format!("{}/t/c/{forged}", server.base), &[]);
        assert_eq!(status, 400, "{forged}");
        assert!(!headers.contains_key("location"), "{forged}: {headers:?}");
        assert_eq!(json_of(&body)["error"]["code"], "bad_link");
    }
    let (status, _, body) = get(&format!("{}/t/o/1.1.00.gif", server.base), &[]);
    assert_eq!(status, 400);
    assert_eq!(json_of(&body)["error"]["code"], "bad_link");
    assert_eq!(s.hits().len(), 3, "forged links record nothing");
}

#[test]
fn the_open_pixel_is_a_gif_and_every_hit_is_kept() {
    let s = Scenario::build();
    let mail = s.sent("mail", "c2");
    let pixel = tracked_links(mail["html"].as_str().unwrap())
        .into_iter()
        .find(|l| l.contains("/t/o/"))
        .expect("the HTML carries the pixel");
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&format!("<img src=\"{pixel}\" width=\"1\" height=\"1\"")),
        "{mail}"
    );
    // SMS (text only) gets no pixel.
    let sms = s.sent("sms", "c1");
    assert!(sms["html"].is_null() && !sms["text"].as_str().unwrap().contains("/t/o/"));
    let server = s.serve();
    for _ in 0..2 {
        let (status, headers, body) = get(&on(&server, &pixel), &[]);
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/gif");
        assert!(headers["cache-control"].contains("no-store"));
        assert!(body.starts_with(b"GIF89a") && body.len() == 43, "{body:?}");
    }
    let hits = s.hits();
    assert_eq!(hits.len(), 2, "both loads are stored: {hits:?}");
    assert!(hits.iter().all(|h| h.0 == "open" && h.1.is_none()));
    // ... and counted once.
    let admin = s.token(&["--role", "admin"]);
    let (status, _, body) = get(
        &format!("{}/report?{PERIOD}", server.base),
        &[("Authorization", &format!("Bearer {admin}"))],
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let report = json_of(&body);
    assert_eq!(report["total"]["opened"], 1, "{report}");
    assert_eq!(report["total"]["clicked"], 0, "{report}");
}

/// The funnel lines of a report by name.
fn lines(report: &Value, section: &str) -> HashMap<String, Value> {
    report[section]
        .as_array()
        .unwrap_or_else(|| panic!("no {section}: {report}"))
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

/// planned, sent, delivered, failed, opened, clicked, converted.
fn counts(f: &Value) -> [u64; 7] {
    [
        "planned",
        "sent",
        "delivered",
        "failed",
        "opened",
        "clicked",
        "converted",
    ]
    .map(|k| f[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {f}")))
}

fn rate(f: &Value, key: &str) -> f64 {
    f[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {f}"))
}

/// The customers' clicks and opens: c1 clicks the mail's start link twice
/// and its help link once and opens it; c2 opens; c3 clicks the mail's
/// start link and its SMS link. Returns the wall-clock window in which c2's
/// open (the median response of `welcome`) happened, in ms.
fn respond(s: &Scenario, server: &Server) -> (i64, i64) {
    let links = |channel: &str, customer: &str, body: &str| {
        tracked_links(s.sent(channel, customer)[body].as_str().unwrap())
    };
    let hit = |link: &str| {
        let (status, _, _) = get(&on(server, link), &[]);
        assert!(status == 302 || status == 200, "{status} for {link}");
    };
    let c1 = links("mail", "c1", "html");
    hit(&c1[0]);
    hit(&c1[0]);
    hit(&links("mail", "c1", "text")[1]);
    hit(&c1[2]); // the pixel
    let before = chrono::Utc::now().timestamp_millis();
    hit(&links("mail", "c2", "html")[2]);
    let after = chrono::Utc::now().timestamp_millis();
    hit(&links("mail", "c3", "html")[0]);
    hit(&links("sms", "c3", "text")[0]);
    (before, after)
}

#[test]
fn the_report_counts_the_funnel_per_rule_and_channel() {
    let s = Scenario::build();
    let server = s.serve();
    let (before, after) = respond(&s, &server);
    assert_eq!(s.hits().len(), 7);

    let report_cmd = |extra: &[&str]| {
        let out = run(herald()
            .args([
                "report",
                "--since",
                "2026-03-01",
                "--until",
                "2026-03-08",
                "--config",
            ])
            .arg(&s.config)
            .arg("--db")
            .arg(&s.db)
            .args(extra));
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let report: Value = serde_json::from_str(&report_cmd(&["--json"])).expect("JSON");
    let rules = lines(&report, "rules");
    let channels = lines(&report, "channels");
    // Counted by hand from the scenario: c5 signed up after the week.
    assert_eq!(counts(&rules["welcome"]), [4, 4, 3, 1, 2, 2, 1], "{report}");
    assert_eq!(counts(&rules["nudge"]), [2, 2, 2, 0, 0, 1, 0], "{report}");
    assert_eq!(counts(&report["total"]), [6, 6, 5, 1, 2, 3, 1], "{report}");
    assert_eq!(counts(&channels["mail"]), [4, 4, 3, 1, 2, 2, 1], "{report}");
    assert_eq!(counts(&channels["sms"]), [2, 2, 2, 0, 0, 1, 0], "{report}");
    assert_eq!(rules.len(), 2);
    let w = &rules["welcome"];
    assert_eq!(rate(w, "delivery_rate"), 0.75);
    assert!((rate(w, "open_rate") - 2.0 / 3.0).abs() < 1e-9);
    assert!((rate(w, "click_rate") - 2.0 / 3.0).abs() < 1e-9);
    assert!((rate(w, "conversion_rate") - 1.0 / 3.0).abs() < 1e-9);
    assert!(rules["nudge"]["open_rate"] == 0.0);
    // Response: c1 (first hit), c2 (open), c3 (click) → the median is c2's
    // open, made between `before` and `after`, after a send at 09:00.
    assert_eq!(w["responded"], 3);
    let sent = chrono::DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .timestamp_millis();
    let median = rate(w, "median_response_seconds") * 1000.0;
    assert!(
        median >= (before - sent) as f64 - 1.0 && median <= (after - sent) as f64 + 1.0,
        "median {median} ms not within [{}, {}]",
        before - sent,
        after - sent
    );
    assert_eq!(report["total"]["responded"], 4);

    // The table says the same.
    let table = report_cmd(&[]);
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("welcome")[1..12],
        ["4", "4", "3", "1", "2", "2", "1", "75.0", "66.7", "66.7", "33.3"],
        "{table}"
    );
    assert_eq!(
        row("all")[1..8],
        ["6", "6", "5", "1", "2", "3", "1"],
        "{table}"
    );
    assert_eq!(
        row("sms")[1..8],
        ["2", "2", "2", "0", "0", "1", "0"],
        "{table}"
    );

    // The API: the same report for an admin; staff count only their region.
    let admin = s.token(&["--role", "admin"]);
    let north = s.token(&["--role", "staff", "--region", "north"]);
    let ingest = s.token(&["--role", "ingest"]);
    let api = |token: &str, query: &str| {
        let (status, _, body) = get(
            &format!("{}/report?{query}", server.base),
            &[("Authorization", &format!("Bearer {token}"))],
        );
        (status, json_of(&body))
    };
    let (status, by_api) = api(&admin, PERIOD);
    assert_eq!(status, 200, "{by_api}");
    assert_eq!(by_api, report);
    let (status, staff) = api(&north, PERIOD);
    assert_eq!(status, 200, "{staff}");
    assert_eq!(staff["regions"], json!(["north"]));
    let staff_rules = lines(&staff, "rules");
    assert_eq!(
        counts(&staff_rules["welcome"]),
        [2, 2, 2, 0, 2, 1, 1],
        "{staff}"
    );
    assert_eq!(
        counts(&staff_rules["nudge"]),
        [1, 1, 1, 0, 0, 0, 0],
        "{staff}"
    );
    assert_eq!(counts(&staff["total"]), [3, 3, 3, 0, 2, 1, 1], "{staff}");
    // The CLI's --region gives the staff view too.
    let cli_north: Value =
        serde_json::from_str(&report_cmd(&["--json", "--region", "north"])).unwrap();
    assert_eq!(cli_north, staff);

    let (status, body) = api(&ingest, PERIOD);
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = get(&format!("{}/report?{PERIOD}", server.base), &[]);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, body) = api(&admin, "since=last-week");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_query");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("7d"),
        "{body}"
    );
    let (status, body) = api(&admin, "since=2026-03-08&until=2026-03-01");
    assert_eq!(status, 400, "{body}");
    // The default period is the last 7 days of the wall clock: the
    // scenario's March sends are not in it, its clicks are not sends.
    let (status, body) = api(&admin, "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(counts(&body["total"]), [0; 7], "{body}");
}

/// The attributes of every `<rect class="bar" …>` in a dumped DOM.
fn bars(dom: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    for piece in dom.split("<rect ").skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        let mut attrs = HashMap::new();
        let mut rest = tag;
        while let Some(eq) = rest.find("=\"") {
            let name = rest[..eq].trim().to_string();
            let value_end = rest[eq + 2..].find('"').unwrap_or(rest.len() - eq - 2);
            attrs.insert(name, rest[eq + 2..eq + 2 + value_end].to_string());
            rest = &rest[(eq + 2 + value_end + 1).min(rest.len())..];
        }
        if attrs.get("class").map(String::as_str) == Some("bar") {
            out.push(attrs);
        }
    }
    out
}

#[test]
fn the_dashboard_draws_the_funnel_in_a_headless_browser() {
    let s = Scenario::build();
    let server = s.serve();
    respond(&s, &server);
    let admin = s.token(&["--role", "admin"]);
    let dom = chromium_dom(&format!("{}/dashboard#token={admin}&{PERIOD}", server.base));
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    let drawn = bars(&dom);
    let value = |rule: &str, metric: &str| -> u64 {
        drawn
            .iter()
            .find(|b| b["data-rule"] == rule && b["data-metric"] == metric)
            .unwrap_or_else(|| panic!("no {rule}/{metric} bar in {drawn:?}"))["data-value"]
            .parse()
            .unwrap()
    };
    assert_eq!(drawn.len(), 10, "two rules × five metrics: {drawn:?}");
    let metrics = ["sent", "delivered", "opened", "clicked", "converted"];
    assert_eq!(metrics.map(|m| value("welcome", m)), [4, 3, 2, 2, 1]);
    assert_eq!(metrics.map(|m| value("nudge", m)), [2, 2, 0, 1, 0]);
    // Bar heights follow the counts (the tallest is welcome's 4 sends).
    let height = |rule: &str, metric: &str| -> f64 {
        drawn
            .iter()
            .find(|b| b["data-rule"] == rule && b["data-metric"] == metric)
            .unwrap()["height"]
            .parse()
            .unwrap()
    };
    assert!(height("welcome", "sent") > height("welcome", "delivered"));
    assert_eq!(
        height("welcome", "delivered"),
        height("nudge", "sent") * 1.5
    );
    assert_eq!(height("nudge", "opened"), 0.0);
    // The table row of the total.
    assert!(
        dom.contains("<td>All rules</td><td>6</td><td>6</td><td>5</td><td>1</td><td>2</td><td>3</td><td>1</td>"),
        "{dom}"
    );

    // A staff token sees its region's numbers only; a bad token gets a
    // message, not a chart.
    let north = s.token(&["--role", "staff", "--region", "north"]);
    let dom = chromium_dom(&format!("{}/dashboard#token={north}&{PERIOD}", server.base));
    let staff_bars = bars(&dom);
    let sent: Vec<(String, String)> = staff_bars
        .iter()
        .filter(|b| b["data-metric"] == "sent")
        .map(|b| (b["data-rule"].clone(), b["data-value"].clone()))
        .collect();
    assert_eq!(
        sent,
        [("nudge", "1"), ("welcome", "2")].map(|(r, v)| (r.to_string(), v.to_string())),
        "{dom}"
    );
    let dom = chromium_dom(&format!("{}/dashboard#token=wrong&{PERIOD}", server.base));
    assert!(dom.contains("data-state=\"error\""), "{dom}");
    assert!(dom.contains("unknown or revoked token"), "{dom}");
    assert!(bars(&dom).is_empty());
}

/// A goal of ordered stages: the report counts, per stage, the delivered
/// messages whose customer went on to it in order within the window, and
/// the conversion from the stage before. Worked out by hand below.
#[test]
fn a_staged_goal_counts_each_stage_in_order_within_its_window() {
    let scratch = Scratch::new();
    let config = Config::new()
        .inbox()
        .rule(
            Rule::new(
                "wake",
                &on_event("dormant"),
                &["inbox"],
                "Come back",
                "We miss you",
            )
            .line(r#"goal = { stages = ["click", "download", "login", "apply"], within = "7d" }"#),
        )
        .write(&scratch);
    // Five customers woken at 03-01 10:00Z (the message goes at once):
    // a: click, download, login, apply, in order, within 7 days → 4 stages.
    // b: click, login (no download), apply → 1 stage (click).
    // c: a download before the click does not count, the one after does → 2.
    // d: click 03-09 (8 days later: outside the window) → 0.
    // e: nothing → 0.
    let mut timeline = Vec::new();
    for c in ["a", "b", "c", "d", "e"] {
        timeline.push(format!(
            r#"{{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{{"external_id":"{c}"}}}}"#
        ));
        timeline.push(format!(
            r#"{{"at":"2026-03-01T10:00:00Z","op":"event","customer":"{c}","kind":"dormant"}}"#
        ));
    }
    for (c, kind, at) in [
        ("a", "click", "03-01T11"),
        ("a", "download", "03-01T12"),
        ("a", "login", "03-02T08"),
        ("a", "apply", "03-05T08"),
        ("b", "click", "03-01T11"),
        ("b", "login", "03-01T12"),
        ("b", "apply", "03-02T08"),
        ("c", "download", "03-01T11"),
        ("c", "click", "03-01T12"),
        ("c", "download", "03-01T13"),
        ("d", "click", "03-09T11"),
    ] {
        timeline.push(format!(
            r#"{{"at":"2026-{at}:00:00Z","op":"event","customer":"{c}","kind":"{kind}"}}"#
        ));
    }
    let timeline = scratch.write("t.jsonl", &timeline.join("\n"));
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, ("2026-03-01", "2026-03-12"), &db, &[]);
    let out = run(herald()
        .args([
            "report",
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-12",
            "--json",
            "--config",
        ])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let wake = &lines(&report, "rules")["wake"];
    assert_eq!(wake["delivered"], 5, "{wake}");
    let stages: Vec<(String, u64)> = wake["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["event"].as_str().unwrap().to_string(),
                s["reached"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("click".into(), 3),
            ("download".into(), 2),
            ("login".into(), 1),
            ("apply".into(), 1)
        ]
    );
    let rates: Vec<f64> = wake["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["conversion_rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [0.6, 2.0 / 3.0, 0.5, 1.0]);
    // The goal is the last stage's event, credited whatever came before it:
    // a and b applied within 7 days (b skipped the download, so the ordered
    // stages stop at its click).
    assert_eq!(wake["converted"], 2, "{wake}");
    // The table shows the stages too.
    let table = text(
        &run(herald()
            .args([
                "report",
                "--since",
                "2026-03-01",
                "--until",
                "2026-03-12",
                "--config",
            ])
            .arg(&config)
            .arg("--db")
            .arg(&db))
        .stdout,
    );
    assert!(
        table.contains("STAGES of wake (after 5 delivered)") && table.contains("download"),
        "{table}"
    );
}
