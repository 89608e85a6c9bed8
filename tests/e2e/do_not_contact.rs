//! The do-not-contact list by address, through the real binary, the real
//! sms-twilio and email-http plugins and the fake Twilio and SendGrid: an
//! address put on the list by the admin API stops every customer who has
//! it, including one created later, on every channel sending to that kind
//! of address (written in any form: `+86 138-0000-0000`, `Ann@Example.COM`),
//! while their other channels still carry the reminder; Twilio's 21211 at
//! send time and a SendGrid hard-bounce event add the address by
//! themselves; a CSV import keeps addresses no customer has (counted) and
//! refuses bad rows by line.

use crate::fakes::sendgrid::{message_id, FakeSendgrid};
use crate::fakes::twilio::{self, FakeTwilio, ACCOUNT_SID, FROM};
use crate::support::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const TOKEN: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const API_KEY: &str = "SG.dnc-test-key-keep-out-of-logs.Qm7wP2aYd";

/// SMS by Twilio first, then email by SendGrid; `ping` events fire a
/// second rule, never sent here, that explain routes.
fn config(scratch: &Scratch, twilio: &FakeTwilio, sendgrid: &FakeSendgrid) -> PathBuf {
    let token_file = scratch.write("twilio-token", TOKEN);
    let key_file = scratch.write("sendgrid-key", API_KEY);
    Config::new()
        .tick("100ms")
        .retry(3, "1m", "6h")
        .public_url("https://herald.example.com")
        .channel(
            "sms",
            Channel::plugin("sms-twilio")
                .allow(&twilio.api_base())
                .set("timeout", "5s")
                .setting("account_sid", ACCOUNT_SID)
                .setting("auth_token", file(&token_file))
                .setting("from", FROM)
                .setting("api_base", twilio.api_base()),
        )
        .channel(
            "email",
            Channel::plugin("email-http")
                .allow(&sendgrid.origin())
                .set("timeout", "5s")
                .setting("api_key", file(&key_file))
                .setting("from_email", "noreply@acme.example")
                .setting("api_base", sendgrid.origin())
                .setting("webhook_public_key", sendgrid_webhook::public_key()),
        )
        .rule(Rule::new(
            "welcome",
            ON_CREATED,
            &["sms", "email"],
            "Welcome",
            "Hello {{ customer.external_id }}",
        ))
        .rule(Rule::new(
            "later",
            &on_event("ping"),
            &["sms", "email"],
            "Later",
            "Later",
        ))
        .write(scratch)
}

/// Post a customer through the API.
fn sign_up(server: &Server, customer: Value) {
    let (status, body) = server.api("POST", "/customers", Some(&customer.to_string()));
    assert_eq!(status, 200, "{body}");
}

/// Wait until `rule` has a row for each of `customers`; all rows then.
fn rows_for(
    server: &Server,
    config: &Path,
    db: &Path,
    customers: &[&str],
    rule: &str,
) -> Vec<Value> {
    wait_for(20, || {
        let rows = deliveries(config, db);
        let all = customers.iter().all(|c| row_for(&rows, c, rule).is_some());
        all.then_some(rows)
    })
    .unwrap_or_else(|| panic!("`{rule}` has no row for everyone: {}", server.log()))
}

/// `herald explain` of `customer`'s `rule`: its detail.
fn explain(config: &Path, db: &Path, customer: &str, rule: &str) -> String {
    let out = run(herald()
        .args(["explain", customer, "--json", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let states: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let state = states.iter().find(|s| s["rule"] == rule).expect("the rule");
    state["detail"].as_str().unwrap().to_string()
}

/// The do-not-contact list's first page.
fn listed(server: &Server) -> Vec<Value> {
    let (status, page) = server.api("GET", "/suppressions/addresses", None);
    assert_eq!(status, 200, "{page}");
    page["addresses"].as_array().expect("addresses").clone()
}

#[test]
fn an_address_added_by_api_stops_customers_created_later_on_that_kind_only() {
    let twilio = FakeTwilio::start(TOKEN);
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &twilio, &sendgrid);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let add = |kind: &str, address: &str, reason: Option<&str>| {
        let body = json!({"kind": kind, "address": address, "reason": reason});
        server.api("POST", "/suppressions/addresses", Some(&body.to_string()))
    };

    // Normalised on the way in: one entry for two spellings of a number.
    let (status, entry) = add("phone", "+86 138-0000-0000", Some("hard bounce"));
    assert_eq!(status, 201, "{entry}");
    assert_eq!(entry["address"], "+8613800000000");
    assert_eq!(
        (&entry["kind"], &entry["source"]),
        (&json!("phone"), &json!("api"))
    );
    let (status, again) = add("phone", "0086 (138) 0000.0000", Some("other"));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["reason"], "hard bounce", "the first entry is kept");
    let (status, email) = add("email", "  Ann@Example.COM ", None);
    assert_eq!(status, 201, "{email}");
    assert_eq!(email["address"], "ann@example.com");
    // What cannot be normalised is refused, saying what to fix.
    let (status, err) = add("phone", "138 0000 0000", None);
    assert_eq!(status, 422, "{err}");
    assert!(err.to_string().contains("no country code"), "{err}");
    let (status, err) = add("fax", "+8613800000000", None);
    assert_eq!(status, 422, "{err}");
    assert!(err.to_string().contains("`email` or `phone`"), "{err}");
    // It spans regions: staff may not touch it.
    let staff = create_token(&config, &db, "staff", &["north"]);
    let (status, _) = http_as(&staff, "GET", &server.url("/suppressions/addresses"), None);
    assert_eq!(status, 403);
    assert_eq!(listed(&server).len(), 2);

    // Customers created after the entries, with the addresses written otherwise.
    sign_up(
        &server,
        json!({"external_id": "li", "phone": "+86 138 0000 0000", "email": "li@example.com"}),
    );
    sign_up(
        &server,
        json!({"external_id": "ann", "email": "ANN@example.com"}),
    );
    sign_up(
        &server,
        json!({"external_id": "zoe", "phone": "+14155550100", "email": "zoe@example.com"}),
    );
    let rows = rows_for(&server, &config, &db, &["li", "ann", "zoe"], "welcome");

    // li's number is listed: not texted, emailed instead.
    let li = only_row(&rows, "li");
    assert_eq!(
        (&li["channel"], &li["status"]),
        (&json!("email"), &json!("delivered")),
        "{li}"
    );
    assert!(twilio.requests_to("+8613800000000").is_empty());
    assert_eq!(sendgrid.sends_to("li@example.com").len(), 1);
    // ann's only address is listed: nothing reaches her, and the reason says why.
    let ann = only_row(&rows, "ann");
    assert_eq!(ann["status"], "skipped", "{ann}");
    let why = ann["error"].as_str().unwrap();
    assert!(
        why.contains(
            "email: ann@example.com is on the do-not-contact list (added by an operator, "
        ),
        "{why}"
    );
    assert!(sendgrid.sends_to("ANN@example.com").is_empty());
    // zoe is on no list: texted.
    let zoe = only_row(&rows, "zoe");
    assert_eq!(
        (&zoe["channel"], &zoe["status"]),
        (&json!("sms"), &json!("delivered")),
        "{zoe}"
    );

    // Explain routes through the same list.
    let detail = explain(&config, &db, "li", "later");
    assert!(
        detail.contains("would go by email, passing over sms: +8613800000000 is on the do-not-contact list (hard bounce, "),
        "{detail}"
    );

    // Taken off (named in another spelling): li's next reminder is texted.
    let (status, body) = server.api(
        "DELETE",
        "/suppressions/addresses/phone/0086%2013800000000",
        None,
    );
    assert_eq!(status, 204, "{body}");
    let (status, _) = server.api(
        "DELETE",
        "/suppressions/addresses/phone/+8613800000000",
        None,
    );
    assert_eq!(status, 404);
    let detail = explain(&config, &db, "li", "later");
    assert!(detail.contains("would go by sms"), "{detail}");
}

#[test]
fn twilio_invalid_number_lists_it_and_the_next_customer_with_it_is_passed_over() {
    let twilio = FakeTwilio::start(TOKEN);
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &twilio, &sendgrid);
    let timeline = scratch.write(
        "t.jsonl",
        &[
            json!({"at": "2026-03-01T09:00:00Z", "op": "upsert",
                   "customer": {"external_id": "first", "phone": twilio::INVALID}}),
            json!({"at": "2026-03-01T10:00:00Z", "op": "upsert",
                   "customer": {"external_id": "second", "phone": "+1 (500) 555-0001",
                                "email": "second@example.com"}}),
        ]
        .map(|l| l.to_string())
        .join("\n"),
    );
    let db = scratch.db("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let rows = deliveries(&config, &db);

    // Twilio said 21211 once: the reminder failed for good.
    let first = only_row(&rows, "first");
    assert_eq!(first["status"], "failed", "{first}");
    assert!(
        first["error"].as_str().unwrap().contains("21211"),
        "{first}"
    );
    // The number went on the list: the second customer with it is emailed.
    let second = only_row(&rows, "second");
    assert_eq!(
        (&second["channel"], &second["status"]),
        (&json!("email"), &json!("delivered")),
        "{second}"
    );
    assert_eq!(
        twilio.requests_to(twilio::INVALID).len(),
        1,
        "one send to the number"
    );

    let server = Server::start(&config, &db, &scratch, "serve.log");
    let list = listed(&server);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["address"], twilio::INVALID);
    assert_eq!(list[0]["source"], "invalid_address");
    assert!(
        list[0]["reason"].as_str().unwrap().contains("21211"),
        "{list:?}"
    );
}

/// A SendGrid hard bounce (type `bounce`) reported through the signed
/// Event Webhook lists the address; a block (type `blocked`) does not.
#[test]
fn a_sendgrid_hard_bounce_lists_the_email_and_a_block_does_not() {
    let twilio = FakeTwilio::start(TOKEN);
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &twilio, &sendgrid);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    sign_up(
        &server,
        json!({"external_id": "han", "email": "han@example.com"}),
    );
    sign_up(
        &server,
        json!({"external_id": "bo", "email": "bo@example.com"}),
    );
    let rows = rows_for(&server, &config, &db, &["han", "bo"], "welcome");
    assert!(rows.iter().all(|r| r["status"] == "delivered"), "{rows:?}");

    let event = |email: &str, kind: &str, id: &str| {
        json!({"email": email, "timestamp": 1772355670, "event": "bounce", "type": kind,
               "sg_event_id": id,
               "sg_message_id": format!("{}.recvd-5f4b7d9c7-k2xq8-1-67C2D1A0-4.0", message_id(email)),
               "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
               "status": "5.1.1"})
    };
    let batch = json!([
        event("han@example.com", "bounce", "ev-han"),
        event("bo@example.com", "blocked", "ev-bo")
    ])
    .to_string();
    let headers = sendgrid_webhook::signed_headers(&batch);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = Request::post(&server.url("/hooks/email"))
        .json(&batch)
        .headers(&headers)
        .send();
    assert_eq!(answer.status, 200, "{}; {}", answer.text(), server.log());

    let list = listed(&server);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["address"], "han@example.com");
    assert_eq!(list[0]["source"], "bounce");
    assert!(
        list[0]["reason"].as_str().unwrap().contains("5.1.1"),
        "{list:?}"
    );
    let rows = deliveries(&config, &db);
    let han = only_row(&rows, "han");
    assert_eq!(han["report"], "undelivered", "{han}");

    // A customer who signs up later with the bounced address, in capitals.
    sign_up(
        &server,
        json!({"external_id": "han2", "email": "HAN@Example.com"}),
    );
    let rows = rows_for(&server, &config, &db, &["han2"], "welcome");
    let han2 = only_row(&rows, "han2");
    assert_eq!(han2["status"], "skipped", "{han2}");
    assert!(
        han2["error"]
            .as_str()
            .unwrap()
            .contains("email: han@example.com is on the do-not-contact list"),
        "{han2}"
    );
    assert_eq!(sendgrid.sends_to("HAN@Example.com").len(), 0);
}

#[test]
fn an_imported_list_keeps_unknown_addresses_and_refuses_bad_rows_by_line() {
    let twilio = FakeTwilio::start(TOKEN);
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &twilio, &sendgrid);
    let db = scratch.db("h.db");
    let timeline = scratch.write(
        "t.jsonl",
        &json!({"at": "2026-03-01T09:00:00Z", "op": "upsert",
                "customer": {"external_id": "known", "email": "Known@Example.com"}})
        .to_string(),
    );
    simulate_into(&config, &timeline, MARCH_1, &db, &[]);
    let list = scratch.write(
        "dnc.csv",
        "email,phone,reason\n\
         known@example.com,,complained\n\
         nobody@example.com,+86 139-0000-0000,list from the old CRM\n\
         ,13900000000,no country code\n\
         not-an-email,,typo\n\
         ,,\n\
         ,+14155550199,\n",
    );
    let out = run(herald()
        .args(["suppressions", "--import"])
        .arg(&list)
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(&db));
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "bad rows make the exit code non-zero"
    );
    let name = list.display();
    assert!(
        stderr.contains(&format!("{name}:4: `13900000000` has no country code")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:5: `not-an-email` is not an email address")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:6: no address")),
        "{stderr}"
    );
    assert!(
        stderr.contains("imported 4 suppression(s); 3 row(s) failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 address(es) belong to no customer yet"),
        "{stderr}"
    );

    let server = Server::start(&config, &db, &scratch, "serve.log");
    let mut addresses: Vec<(String, String)> = listed(&server)
        .iter()
        .map(|e| {
            assert_eq!(e["source"], "import");
            (
                e["address"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            (
                "+14155550199".to_string(),
                "imported do-not-contact list".to_string()
            ),
            ("+8613900000000".into(), "list from the old CRM".into()),
            ("known@example.com".into(), "complained".into()),
            ("nobody@example.com".into(), "list from the old CRM".into()),
        ]
    );
    // A customer created later with an imported number is not texted.
    sign_up(
        &server,
        json!({"external_id": "late", "phone": "+8613900000000", "email": "late@example.com"}),
    );
    let rows = rows_for(&server, &config, &db, &["late"], "welcome");
    let late = only_row(&rows, "late");
    assert_eq!(
        (&late["channel"], &late["status"]),
        (&json!("email"), &json!("delivered")),
        "{late}"
    );
}

/// The SendGrid Signed Event Webhook as the tests sign it.
mod sendgrid_webhook {
    /// The key pair SendGrid holds (P-256).
    fn key() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[0x5e; 32]).expect("a valid P-256 scalar")
    }

    /// The verification key the operator configures: base64 DER.
    pub fn public_key() -> String {
        use base64::Engine as _;
        const P256_SPKI_HEADER: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
        let mut der = hex::decode(P256_SPKI_HEADER).unwrap();
        der.extend_from_slice(key().verifying_key().to_encoded_point(false).as_bytes());
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    /// The two headers of `body` signed now (the wall clock `serve` runs on).
    pub fn signed_headers(body: &str) -> [(&'static str, String); 2] {
        use base64::Engine as _;
        use p256::ecdsa::signature::Signer;
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let signature: p256::ecdsa::Signature = key().sign(format!("{at}{body}").as_bytes());
        [
            (
                "X-Twilio-Email-Event-Webhook-Signature",
                base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes()),
            ),
            ("X-Twilio-Email-Event-Webhook-Timestamp", at),
        ]
    }
}
