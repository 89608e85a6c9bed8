//! Kill `herald serve` with SIGKILL after it claimed a reminder and handed it
//! to the provider but before it recorded the result: after a restart the
//! reminder is delivered, and a provider that honours the idempotency key
//! delivers it once; on a channel that holds uncertain sends, it is held as
//! `unknown` for an operator instead of being sent again.

use crate::support::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A `serve` on a provider that hangs on the very first request (so the
/// process is killed while waiting) and then answers, with a repeated
/// idempotency key getting the original message id back; the channel sets
/// `uncertain` as given. `k1` signs up, the provider sees the send, and
/// the process is killed with SIGKILL before recording it. The provider,
/// config, database and scratch directory for the restart.
fn killed_mid_send(uncertain: &str) -> (FakeProvider, PathBuf, PathBuf, Scratch) {
    let provider = FakeProvider::start(|req, earlier| {
        let key = req.header("idempotency-key").unwrap_or("").to_string();
        if earlier.is_empty() {
            let mut reply = Reply::json(200, json!({"id": "never-seen"}));
            reply.delay = std::time::Duration::from_secs(120);
            return reply;
        }
        Reply::json(200, json!({"id": format!("msg-for-{key}")}))
    });
    let scratch = Scratch::new();
    let config = Config::new()
        .tick("100ms")
        .set("scheduler", "lease", "2s")
        .channel(
            "hook",
            webhook(&provider, "/hook", "s3cret")
                .set("timeout", "60s")
                .set("uncertain", uncertain),
        )
        .rule(welcome(&["hook"]).set("subject", "Welcome {{ customer.name }}"))
        .write(&scratch);
    let db = scratch.db("herald.db");
    let mut first = Server::start(&config, &db, &scratch, "serve1.log");
    let (status, body) = first.api("PUT", "/customers/k1", Some(r#"{"name":"Kim"}"#));
    assert_eq!(status, 200, "{body}");
    wait_for(30, || (provider.requests().len() == 1).then_some(()))
        .unwrap_or_else(|| panic!("the provider never saw the send; log: {}", first.log()));
    first.child.kill().expect("SIGKILL herald");
    first.child.wait().expect("reap");
    assert!(
        deliveries(&config, &db).is_empty(),
        "nothing was recorded before the kill"
    );
    (provider, config, db, scratch)
}

#[test]
fn killed_between_claim_and_record_the_reminder_is_still_delivered_once() {
    let (provider, config, db, scratch) = killed_mid_send("resend");
    let second = Server::start(&config, &db, &scratch, "serve2.log");
    let rows = wait_for(30, || {
        let rows = deliveries(&config, &db);
        rows.iter()
            .any(|r| r["status"] == "delivered")
            .then_some(rows)
    })
    .unwrap_or_else(|| panic!("not delivered after restart; log: {}", second.log()));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let requests = provider.requests();
    assert_eq!(requests.len(), 2, "sent again after the lease expired");
    let keys: BTreeSet<_> = requests
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "both attempts carry the same idempotency key"
    );
    let key = keys.into_iter().next().unwrap();
    assert_eq!(rows[0]["provider_message_id"], format!("msg-for-{key}"));
}

/// The same kill on a channel with `uncertain = "hold"`: the restarted
/// node knows the send was in flight (its claim ran out after the send
/// began) and holds it as `unknown` without calling the provider again.
#[test]
fn killed_between_send_and_record_a_holding_channel_holds_the_send() {
    let (provider, config, db, scratch) = killed_mid_send("hold");
    let second = Server::start(&config, &db, &scratch, "serve2.log");
    let rows = wait_for(30, || {
        let rows = deliveries(&config, &db);
        (!rows.is_empty()).then_some(rows)
    })
    .unwrap_or_else(|| panic!("nothing recorded after restart; log: {}", second.log()));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "unknown", "{rows:?}");
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("earlier send may have reached"),
        "{rows:?}"
    );
    assert_eq!(provider.requests().len(), 1, "not sent again");
}
