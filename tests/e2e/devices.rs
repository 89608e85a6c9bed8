//! Customers' app installations for push, through the real `herald serve`:
//! registered and forgotten over the API (checked input, refreshed rather
//! than doubled, the ten most recent kept, another region's customer a
//! 404), and imported from CSV; a rule whose first channel needs push
//! reaches only customers with a device (the webhook plugin, declared
//! `address = "push"`, receives every token) and passes the others to its
//! next channel; a receiver answering `410 Gone` makes Herald forget the
//! tokens and carry the reminder on the next channel at once.

use crate::support::*;
use serde_json::{json, Value};

const SECRET: &str = "whsec-devices";

/// Answers 410 when the first token starts with `dead`, else delivers.
fn push_receiver() -> FakeProvider {
    FakeProvider::start(|req, _| {
        let body = req.json();
        let first = body["recipient"]["push_tokens"][0]["token"]
            .as_str()
            .unwrap_or("");
        if first.starts_with("dead") {
            return Reply::json(410, json!({"error": "token unregistered"}));
        }
        let customer = body["recipient"]["customer_id"].as_str().unwrap_or("");
        Reply::json(200, json!({"id": format!("push-{customer}")}))
    })
}

fn config(scratch: &Scratch, receiver: &FakeProvider) -> std::path::PathBuf {
    Config::new()
        .tick("100ms")
        .channel(
            "push",
            webhook(receiver, "/push", SECRET)
                .set("address", "push")
                .set("timeout", "5s"),
        )
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["push", "inbox"],
            "Ping",
            "Ping {{ customer.name }}",
        ))
        .write(scratch)
}

fn register(server: &Server, customer: &str, token: &str, platform: &str) -> (u16, Value) {
    let body = json!({"token": token, "platform": platform, "app": "com.acme.app"});
    server.api(
        "POST",
        &format!("/customers/{customer}/devices"),
        Some(&body.to_string()),
    )
}

fn tokens_of(server: &Server, customer: &str) -> Vec<String> {
    let (status, body) = server.api("GET", &format!("/customers/{customer}"), None);
    assert_eq!(status, 200, "{body}");
    body["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices in {body}"))
        .iter()
        .map(|d| d["token"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn devices_are_registered_checked_capped_and_forgotten() {
    let receiver = push_receiver();
    let scratch = Scratch::new();
    let config = config(&scratch, &receiver);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    for (id, region) in [("amy", "north"), ("sam", "south")] {
        let customer = json!({"external_id": id, "name": id, "region": region});
        let (status, body) = server.api("POST", "/customers", Some(&customer.to_string()));
        assert_eq!(status, 200, "{body}");
    }

    assert_eq!(register(&server, "amy", "tok-a:1", "android").0, 201);
    assert_eq!(
        register(&server, "amy", "tok-a:1", "android").0,
        200,
        "refreshed"
    );
    assert_eq!(tokens_of(&server, "amy"), ["tok-a:1"]);

    let (status, body) = register(&server, "amy", "tok-x", "nokia");
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("platform `nokia` is not one of android, ios, web, harmony"),
        "{body}"
    );
    assert_eq!(register(&server, "amy", " ", "ios").0, 422);
    let (status, body) = server.api("POST", "/customers/amy/devices", Some(r#"{"token":"t"}"#));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("missing field `platform`"),
        "{body}"
    );
    assert_eq!(register(&server, "nobody", "tok-n", "ios").0, 404);

    // A staff token of the north sees amy's devices, not sam's customer.
    let north = create_token(&config, &db, "staff", &["north"]);
    let body = json!({"token": "tok-s", "platform": "ios", "app": "com.acme.app"}).to_string();
    let (status, _) = http_as(
        &north,
        "POST",
        &server.url("/customers/sam/devices"),
        Some(&body),
    );
    assert_eq!(status, 404, "another region's customer");
    let (status, _) = http_as(
        &north,
        "POST",
        &server.url("/customers/amy/devices"),
        Some(&body),
    );
    assert_eq!(status, 201);

    // A token registered for someone else moves to them.
    assert_eq!(register(&server, "sam", "tok-s", "ios").0, 201);
    assert_eq!(tokens_of(&server, "amy"), ["tok-a:1"]);
    assert_eq!(tokens_of(&server, "sam"), ["tok-s"]);

    // Ten devices at most: the one registered longest ago goes.
    for n in 0..10 {
        assert_eq!(
            register(&server, "sam", &format!("tok-s{n}"), "android").0,
            201
        );
    }
    let kept = tokens_of(&server, "sam");
    assert_eq!(kept.len(), 10, "{kept:?}");
    assert!(!kept.contains(&"tok-s".to_string()), "{kept:?}");
    assert_eq!(kept[0], "tok-s9", "most recent first: {kept:?}");

    // Forgetting: percent-encoded token in the path; twice is a 404.
    let (status, body) = server.api("DELETE", "/customers/amy/devices/tok-a%3A1", None);
    assert_eq!(status, 204, "{body}");
    assert!(tokens_of(&server, "amy").is_empty());
    let (status, _) = server.api("DELETE", "/customers/amy/devices/tok-a%3A1", None);
    assert_eq!(status, 404);
}

#[test]
fn push_reaches_customers_with_a_device_and_a_gone_token_moves_on() {
    let receiver = push_receiver();
    let scratch = Scratch::new();
    let config = config(&scratch, &receiver);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    for id in ["amy", "bo", "cy"] {
        let customer = json!({"external_id": id, "name": id});
        let (status, body) = server.api("POST", "/customers", Some(&customer.to_string()));
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(register(&server, "amy", "live-amy-phone", "android").0, 201);
    assert_eq!(register(&server, "amy", "live-amy-tablet", "ios").0, 201);
    assert_eq!(register(&server, "cy", "dead-cy", "android").0, 201);

    let rows = server.events_delivered(&config, &db, &["amy", "bo", "cy"], "ping", "ping");
    let rows = wait_for(20, || {
        let rows = deliveries(&config, &db);
        let cy_done = customer_rows(&rows, "cy")
            .iter()
            .any(|r| r["channel"] == "inbox");
        cy_done.then_some(rows)
    })
    .unwrap_or_else(|| panic!("cy never reached the inbox: {rows:?}\n{}", server.log()));

    // amy: pushed once, to both devices, newest first.
    let amy = only_row(&rows, "amy");
    assert_eq!(
        (&amy["channel"], &amy["status"]),
        (&json!("push"), &json!("delivered"))
    );
    let to_amy: Vec<Value> = receiver
        .requests()
        .iter()
        .map(|r| r.json())
        .filter(|b| b["recipient"]["customer_id"] == "amy")
        .collect();
    assert_eq!(to_amy.len(), 1);
    assert_eq!(
        to_amy[0]["recipient"]["push_tokens"],
        json!([
            {"token": "live-amy-tablet", "platform": "ios", "app": "com.acme.app"},
            {"token": "live-amy-phone", "platform": "android", "app": "com.acme.app"},
        ])
    );

    // bo: no device, so the inbox, and push was never tried.
    let bo = only_row(&rows, "bo");
    assert_eq!(
        (&bo["channel"], &bo["status"]),
        (&json!("inbox"), &json!("delivered"))
    );

    // cy: the receiver said the token is gone: failed on push with the
    // reason, the token forgotten, then the inbox at once.
    let cy = customer_rows(&rows, "cy");
    assert_eq!(cy.len(), 2, "{cy:?}");
    assert_eq!(
        (&cy[0]["channel"], &cy[0]["status"]),
        (&json!("push"), &json!("failed"))
    );
    let error = cy[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid address: webhook answered HTTP 410")
            && error.contains("token unregistered"),
        "{error}"
    );
    assert_eq!(
        (&cy[1]["channel"], &cy[1]["status"]),
        (&json!("inbox"), &json!("delivered"))
    );
    assert!(
        tokens_of(&server, "cy").is_empty(),
        "the dead token is forgotten"
    );
    assert_eq!(tokens_of(&server, "amy").len(), 2, "live tokens stay");
}

#[test]
fn devices_come_in_with_a_csv_import() {
    let receiver = push_receiver();
    let scratch = Scratch::new();
    let config = config(&scratch, &receiver);
    let db = scratch.db("h.db");
    let csv = scratch.write(
        "customers.csv",
        "external_id,name,push_token,push_platform,push_app\n\
         amy,Amy,tok-amy,ios,com.acme.app\n\
         bo,Bo,,,\n\
         cy,Cy,tok-cy,,com.acme.app\n\
         di,Di,tok-di,blackberry,com.acme.app\n",
    );
    let out = run(herald()
        .args(["import", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .arg(&csv));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 4: push_token, push_platform and push_app go together"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5: platform `blackberry` is not one of"),
        "{stderr}"
    );
    let server = Server::start(&config, &db, &scratch, "serve.log");
    assert_eq!(tokens_of(&server, "amy"), ["tok-amy"]);
    assert!(tokens_of(&server, "bo").is_empty());
}

/// Devices in a timeline, and the `app_uninstalled` event: `herald simulate`
/// routes to push only while a customer has a device, on the virtual clock.
#[test]
fn timelines_register_devices_and_an_uninstall_event_forgets_them() {
    let scratch = Scratch::new();
    let config = Config::new()
        .channel(
            "push",
            Channel::plugin("console")
                .set("address", "push")
                .setting("prefix", "push"),
        )
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["push", "inbox"],
            "Ping",
            "Ping {{ customer.name }}",
        ))
        .write(&scratch);
    let line = |at: &str, rest: &str| format!(r#"{{"at":"2026-03-01T{at}:00Z",{rest}}}"#);
    let timeline = scratch.write(
        "t.jsonl",
        &[
            line("09:00", r#""op":"upsert","customer":{"external_id":"amy","name":"Amy"}"#),
            line("09:00", r#""op":"upsert","customer":{"external_id":"bo","name":"Bo"}"#),
            line("09:01", r#""op":"device","customer":"amy","token":"tok-amy","platform":"ios","app":"com.acme.app""#),
            line("09:02", r#""op":"device","customer":"bo","token":"tok-bo","platform":"android","app":"com.other.app""#),
            line("10:00", r#""op":"event","customer":"amy","kind":"ping""#),
            line("10:00", r#""op":"event","customer":"bo","kind":"ping""#),
            line("11:00", r#""op":"event","customer":"amy","kind":"app_uninstalled","properties":{"token":"tok-amy"}"#),
            line("11:00", r#""op":"event","customer":"bo","kind":"app_uninstalled","properties":{"app":"com.acme.app"}"#),
            line("12:00", r#""op":"event","customer":"amy","kind":"ping""#),
            line("12:00", r#""op":"event","customer":"bo","kind":"ping""#),
        ]
        .join("\n"),
    );
    let db = scratch.db("sim.db");
    let db_arg = db.display().to_string();
    let (attempts, stderr) = simulate(
        &config,
        &timeline,
        ("2026-03-01", "2026-03-02"),
        &["--db", &db_arg],
    );
    let got: Vec<(String, String, String)> = attempts
        .iter()
        .map(|a| (a.at.clone(), a.customer.clone(), a.channel.clone()))
        .collect();
    let want = |at: &str, c: &str, ch: &str| {
        (
            format!("2026-03-01T{at}:00Z"),
            c.to_string(),
            ch.to_string(),
        )
    };
    assert_eq!(
        got,
        [
            want("10:00", "amy", "push"),
            want("10:00", "bo", "push"),
            // amy's only device is gone; bo's is of another app, so it stays.
            want("12:00", "amy", "inbox"),
            want("12:00", "bo", "push"),
        ],
        "{stderr}"
    );
    let bad = scratch.write(
        "bad.jsonl",
        &line("09:00", r#""op":"device","customer":"amy","token":"t""#),
    );
    let out = run(herald()
        .args(["simulate", "--config"])
        .arg(&config)
        .arg("--timeline")
        .arg(&bad)
        .args(["--from", "2026-03-01", "--until", "2026-03-02"]));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.jsonl:1: device: missing field `platform`"),
        "{stderr}"
    );
}
