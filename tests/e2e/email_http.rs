//! The email-http plugin (SendGrid v3 Mail Send) against the fake SendGrid:
//! every field of a send checked on the provider side with Chinese text
//! byte-exact, each error class mapped onto its outcome in `herald
//! deliveries` (delivered, 429 retried after Retry-After, 400 failed at once,
//! 500 retried until dead, 401 failed naming `api_key`), the API key never
//! printed, and signed Event Webhook callbacks turned into delivery reports.

use crate::fakes::sendgrid::{message_id, FakeSendgrid, RETRY_AFTER_SECS};
use crate::support::*;
use serde_json::json;

const API_KEY: &str = "SG.hx3Kq9TzRvu1-keep-this-out-of-logs.Qm7wP2aYd";
const SUBJECT: &str = "【Acme】您的试用将于4天后结束";

/// An event batch as SendGrid posts it, for the two messages the fake
/// accepted for lilei@ and hanmeimei@ (ids from `message_id`).
const EVENTS: &str = r#"[{"email":"lilei@example.com","timestamp":1772355660,"event":"delivered","sg_message_id":"5f920bc04876f543473ff6.recvd-5f4b7d9c7-k2xq8-1-67C2D1A0-3.0","sg_event_id":"ZGVsaXZlcmVkLTAtMzI","response":"250 2.0.0 OK"},{"email":"hanmeimei@example.com","timestamp":1772355670,"event":"bounce","type":"bounce","sg_message_id":"2d199e9819c26b8db9273d.recvd-5f4b7d9c7-k2xq8-1-67C2D1A0-4.0","reason":"550 5.1.1 The email account that you tried to reach does not exist.","status":"5.1.1"}]"#;

/// The Signed Event Webhook's key pair, as SendGrid holds it (P-256).
fn webhook_key() -> p256::ecdsa::SigningKey {
    p256::ecdsa::SigningKey::from_slice(&[0x5e; 32]).expect("a valid P-256 scalar")
}

/// The verification key SendGrid shows the operator: base64 DER
/// (SubjectPublicKeyInfo: the P-256 header, then the uncompressed point).
fn webhook_public_key() -> String {
    use base64::Engine as _;
    const P256_SPKI_HEADER: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
    let mut der = hex::decode(P256_SPKI_HEADER).unwrap();
    der.extend_from_slice(
        webhook_key()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// The two headers SendGrid signs a batch with: ECDSA over `at ++ body`.
fn signed_headers(at: u64, body: &str) -> [(&'static str, String); 2] {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer;
    let at = at.to_string();
    let signature: p256::ecdsa::Signature = webhook_key().sign(format!("{at}{body}").as_bytes());
    [
        (
            "X-Twilio-Email-Event-Webhook-Signature",
            base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes()),
        ),
        ("X-Twilio-Email-Event-Webhook-Timestamp", at),
    ]
}

/// Seconds since the Unix epoch on the wall clock `herald serve` runs on.
fn wall_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn config(scratch: &Scratch, sendgrid: &FakeSendgrid, api_key: &str) -> std::path::PathBuf {
    let key_file = scratch.write("sendgrid.key", api_key);
    Config::new()
        .retry(3, "10m", "1h")
        .channel(
            "email",
            Channel::plugin("email-http")
                .allow(&sendgrid.origin())
                .set("timeout", "5s")
                .setting("api_key", file(&key_file))
                .setting("from_email", "noreply@acme.example")
                .setting("from_name", "Acme 云")
                .setting("reply_to", "support@acme.example")
                .setting("api_base", sendgrid.origin())
                .setting("webhook_public_key", webhook_public_key()),
        )
        .rule(
            Rule::new(
                "trial-ending",
                ON_CREATED,
                &["email"],
                SUBJECT,
                "{{ customer.name or '您' }}，您好：您的试用将于4天后结束。",
            )
            .set("html", "<p>{{ customer.name or '您' }}，您好</p>"),
        )
        .write(scratch)
}

const TIMELINE: &str = r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"lilei","name":"李雷","email":"lilei@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"hanmeimei","email":"hanmeimei@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"bad","name":"Bad","email":"bad@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"slow","name":"Slow","email":"slow@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"down","name":"Down","email":"down@example.com"}}
"#;

fn seconds_after_nine(at: &str) -> i64 {
    seconds_between("2026-03-01T09:00:00Z", at)
}

#[test]
fn sendgrid_sends_every_field_and_maps_each_answer() {
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &sendgrid, API_KEY);
    let timeline = scratch.write("t.jsonl", TIMELINE);
    let db = scratch.path("h.db");
    let out = simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));

    // Every request carries the key and SendGrid's shape.
    let requests = sendgrid.requests();
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v3/mail/send");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    // The full body for a named Chinese recipient.
    let lilei = sendgrid.sends_to("lilei@example.com");
    assert_eq!(lilei.len(), 1);
    let mut body = lilei[0].clone();
    let key = body["personalizations"][0]["custom_args"]["herald_idempotency_key"]
        .as_str()
        .expect("idempotency key as a custom arg")
        .to_string();
    assert!(!key.is_empty());
    body["personalizations"][0]["custom_args"]["herald_idempotency_key"] = json!("K");
    assert_eq!(
        body,
        json!({
            "personalizations": [{
                "to": [{"email": "lilei@example.com", "name": "李雷"}],
                "custom_args": {"herald_idempotency_key": "K"}
            }],
            "from": {"email": "noreply@acme.example", "name": "Acme 云"},
            "reply_to": {"email": "support@acme.example"},
            "subject": SUBJECT,
            "content": [
                {"type": "text/plain", "value": "李雷，您好：您的试用将于4天后结束。"},
                {"type": "text/html", "value": "<p>李雷，您好</p>"}
            ],
            "categories": ["trial-ending"]
        })
    );
    // Byte-exact UTF-8 on the wire (not \u escapes, not mangled).
    let raw = requests
        .iter()
        .find(|r| r.json()["personalizations"][0]["to"][0]["email"] == "lilei@example.com")
        .unwrap();
    let raw = std::str::from_utf8(&raw.body).expect("UTF-8 body");
    for s in [
        SUBJECT,
        "\"name\":\"李雷\"",
        "李雷，您好：您的试用将于4天后结束。",
    ] {
        assert!(raw.contains(s), "{s} not byte-exact in {raw}");
    }
    // No name → no name key at all.
    let noname = sendgrid.sends_to("hanmeimei@example.com");
    assert_eq!(
        noname[0]["personalizations"][0]["to"],
        json!([{"email": "hanmeimei@example.com"}])
    );
    assert_eq!(
        noname[0]["content"][0]["value"],
        "您，您好：您的试用将于4天后结束。"
    );

    // 429 then 202: the retry reuses the idempotency key.
    let slow = sendgrid.sends_to("slow@example.com");
    assert_eq!(slow.len(), 2);
    assert_eq!(
        slow[0]["personalizations"][0]["custom_args"],
        slow[1]["personalizations"][0]["custom_args"]
    );

    // Outcomes in `herald deliveries`.
    let rows = deliveries(&config, &db);
    let one = |c: &str| only_row(&rows, c);
    let ok = one("lilei");
    assert_eq!(ok["status"], "delivered");
    assert_eq!(ok["provider"], "email-http");
    assert_eq!(ok["provider_message_id"], message_id("lilei@example.com"));
    assert_eq!(ok["subject"], SUBJECT);
    assert_eq!(one("hanmeimei")["status"], "delivered");

    let bad = one("bad");
    assert_eq!(bad["status"], "failed", "a 400 is not retried: {bad}");
    assert!(bad["retry_at"].is_null(), "{bad}");
    let err = bad["error"].as_str().unwrap();
    assert!(
        err.contains("HTTP 400")
            && err.contains("Does not contain a valid address.")
            && err.contains("personalizations.0.to.0.email"),
        "{err}"
    );

    let slow = customer_rows(&rows, "slow");
    assert_eq!(slow.len(), 2, "{slow:?}");
    assert_eq!(slow[0]["status"], "failed");
    assert!(
        slow[0]["error"].as_str().unwrap().contains("429"),
        "{}",
        slow[0]
    );
    // The channel's backoff is at most 1h; SendGrid asked for 2h.
    let retry_at = seconds_after_nine(slow[0]["retry_at"].as_str().unwrap());
    assert!(
        retry_at >= RETRY_AFTER_SECS as i64 && retry_at < RETRY_AFTER_SECS as i64 + 120,
        "retry_at {retry_at}s after the first attempt"
    );
    assert_eq!(slow[1]["status"], "delivered");
    assert_eq!(slow[1]["attempt"], 2);
    assert!(seconds_after_nine(slow[1]["at"].as_str().unwrap()) >= RETRY_AFTER_SECS as i64);

    let down: Vec<&str> = customer_rows(&rows, "down")
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(down, ["failed", "failed", "dead"], "a 500 is retried");
    assert!(customer_rows(&rows, "down")[0]["error"]
        .as_str()
        .unwrap()
        .contains("500"));

    // The API key appears nowhere.
    let [table, table_err] = deliveries_table(&config, &db);
    assert_not_leaked(
        &[API_KEY, "keep-this-out-of-logs"],
        &[stdout, stderr, table, table_err, json!(rows).to_string()],
    );
}

#[test]
fn a_rejected_api_key_fails_at_once_and_names_the_setting() {
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let wrong = "SG.wrong-key-9d8c7b6a.also-secret";
    let config = config(&scratch, &sendgrid, wrong);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"lilei","name":"李雷","email":"lilei@example.com"}}"#,
    );
    let db = scratch.path("h.db");
    let out = simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);
    let rows = deliveries(&config, &db);
    assert_eq!(rows.len(), 1, "a 401 is not retried: {rows:?}");
    assert_eq!(rows[0]["status"], "failed");
    let err = rows[0]["error"].as_str().unwrap();
    assert!(
        err.contains("401")
            && err.contains("`api_key`")
            && err.contains("invalid, expired, or revoked"),
        "{err}"
    );
    assert_not_leaked(
        &[wrong],
        &[
            text(&out.stdout),
            text(&out.stderr),
            json!(rows).to_string(),
        ],
    );
    assert_eq!(sendgrid.requests().len(), 1);
}

/// POST `body` to `url` with extra headers; the HTTP status.
fn post(url: &str, headers: &[(&str, String)], body: &str) -> u16 {
    post_text(url, headers, body).0
}

/// POST `body` to `url` with extra headers; the HTTP status and answer.
fn post_text(url: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = Request::post(url).json(body).headers(&headers).send();
    (answer.status, answer.text())
}

#[test]
fn signed_event_webhook_reports_delivered_and_bounced() {
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &sendgrid, API_KEY);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"lilei","name":"李雷","email":"lilei@example.com"}}
{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"hanmeimei","email":"hanmeimei@example.com"}}
"#,
    );
    let db = scratch.path("h.db");
    simulate_into(&config, &timeline, MARCH_1, &db, &["--live"]);

    let server = Server::start(&config, &db, &scratch, "serve.log");
    let hook = format!("{}/hooks/email", server.base);
    // `serve` runs on the wall clock: batches are signed at its time.
    let now = wall_secs();
    let signed = signed_headers(now, EVENTS);
    // A tampered body, a wrong timestamp and a missing signature are refused.
    let tampered = EVENTS.replace("bounce\",\"sg", "delivered\",\"sg");
    assert_eq!(post(&hook, &signed, &tampered), 403);
    let mut late = signed.clone();
    late[1].1 = (now + 1).to_string();
    assert_eq!(post(&hook, &late, EVENTS), 403);
    assert_eq!(post(&hook, &[], EVENTS), 403);
    let rows = deliveries(&config, &db);
    assert!(rows.iter().all(|r| r["report"].is_null()), "{rows:?}");

    assert_eq!(post(&hook, &signed, EVENTS), 200, "{}", server.log());
    let rows = wait_for(10, || {
        let rows = deliveries(&config, &db);
        rows.iter().all(|r| !r["report"].is_null()).then_some(rows)
    })
    .unwrap_or_else(|| panic!("no reports recorded; log: {}", server.log()));
    let lilei = rows.iter().find(|r| r["customer"] == "lilei").unwrap();
    assert_eq!(lilei["report"], "delivered", "{lilei}");
    let han = rows.iter().find(|r| r["customer"] == "hanmeimei").unwrap();
    assert_eq!(han["report"], "undelivered", "{han}");
    assert_eq!(
        han["report_reason"],
        "bounce: 550 5.1.1 The email account that you tried to reach does not exist."
    );
    assert!(!server.log().contains(API_KEY));
}

/// SendGrid's events for `email`: `unsubscribe` (an opt-out) or
/// `group_resubscribe` (back in), with an event id that makes each batch
/// distinct.
fn opt_event(email: &str, event: &str, id: &str) -> String {
    json!([{"email": email, "timestamp": 1772355660, "event": event,
            "sg_event_id": id, "sg_message_id": "x.filter0001.1.0"}])
    .to_string()
}

/// A captured batch replayed later would undo what came after it (a
/// resubscribe replayed after the customer unsubscribed again would lift
/// the opt-out): its second copy is refused, as is a batch signed outside
/// the five-minute window around the server's clock.
#[test]
fn a_replayed_or_stale_event_batch_is_refused() {
    let sendgrid = FakeSendgrid::start(API_KEY);
    let scratch = Scratch::new();
    let config = config(&scratch, &sendgrid, API_KEY);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let email = "lilei@example.com";
    let body = json!({"external_id": "lilei", "name": "李雷", "email": email}).to_string();
    assert_eq!(server.api("POST", "/customers", Some(&body)).0, 200);
    let hook = format!("{}/hooks/email", server.base);
    let now = wall_secs();
    let send = |at: u64, body: &str| post_text(&hook, &signed_headers(at, body), body);

    let out = opt_event(email, "unsubscribe", "e-1");
    assert_eq!(send(now, &out).0, 200, "{}", server.log());
    assert_eq!(server.suppressed_on("email"), ["lilei"]);
    let back = opt_event(email, "group_resubscribe", "e-2");
    let back_headers = signed_headers(now, &back);
    assert_eq!(post(&hook, &back_headers, &back), 200);
    assert_eq!(server.suppressed_on("email"), Vec::<String>::new());
    assert_eq!(send(now, &opt_event(email, "unsubscribe", "e-3")).0, 200);
    assert_eq!(server.suppressed_on("email"), ["lilei"]);

    let (status, answer) = post_text(&hook, &back_headers, &back);
    assert_eq!(status, 403, "the replay is refused: {answer}");
    assert!(answer.contains("already received"), "{answer}");
    assert_eq!(
        server.suppressed_on("email"),
        ["lilei"],
        "the opt-out stands"
    );

    let again = opt_event(email, "group_resubscribe", "e-4");
    for stale in [now - 600, now + 600] {
        let (status, answer) = send(stale, &again);
        assert_eq!(status, 403, "signed at {stale}, now {now}: {answer}");
        assert!(answer.contains("callback_window"), "{answer}");
    }
    assert_eq!(server.suppressed_on("email"), ["lilei"]);
}
