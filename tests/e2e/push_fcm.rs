//! The push-fcm plugin through the real `herald serve` against the fake
//! FCM (`fakes::fcm`): the service account's signed JWT exchanged for an
//! access token that later sends reuse from the key-value store, one
//! message per registered device with the subject as title and the rule as
//! data, a token FCM says is unregistered forgotten and the reminder carried
//! by the rule's next channel, a message reaching one of two devices
//! delivered, and a revoked access token fetched again within the send.

use crate::fakes::fcm::FakeFcm;
use crate::support::*;
use serde_json::{json, Value};

fn config(scratch: &Scratch, fcm: &FakeFcm) -> std::path::PathBuf {
    let account = scratch.write("service-account.json", &fcm.service_account());
    Config::new()
        .tick("100ms")
        .channel(
            "push",
            Channel::plugin("push-fcm")
                .allow(&fcm.provider.origin())
                .set("timeout", "5s")
                .setting("service_account", file(&account))
                .setting("api_base", fcm.provider.origin()),
        )
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["push", "inbox"],
            "Your order has shipped",
            "Hello {{ customer.name }}, it is on its way.",
        ))
        .write(scratch)
}

fn sign_up(server: &Server, id: &str, devices: &[(&str, &str)]) {
    let customer = json!({"external_id": id, "name": id});
    let (status, body) = server.api("POST", "/customers", Some(&customer.to_string()));
    assert_eq!(status, 200, "{body}");
    for (token, platform) in devices {
        let device = json!({"token": token, "platform": platform, "app": "com.acme.shop"});
        let (status, body) = server.api(
            "POST",
            &format!("/customers/{id}/devices"),
            Some(&device.to_string()),
        );
        assert_eq!(status, 201, "{body}");
    }
}

fn devices_of(server: &Server, id: &str) -> Vec<String> {
    let (_, body) = server.api("GET", &format!("/customers/{id}"), None);
    body["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|d| d["token"].as_str().unwrap().to_string())
        .collect()
}

fn channel_and_status(row: &Value) -> (String, String) {
    (
        row["channel"].as_str().unwrap_or("").to_string(),
        row["status"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn fcm_pushes_every_device_and_forgets_unregistered_tokens() {
    let fcm = FakeFcm::start();
    let scratch = Scratch::new();
    let config = config(&scratch, &fcm);
    let db = scratch.db("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    sign_up(
        &server,
        "amy",
        &[("amy-phone", "android"), ("amy-ipad", "ios")],
    );
    sign_up(&server, "bo", &[("dead-bo", "android")]);
    sign_up(
        &server,
        "cy",
        &[("foreign-cy", "android"), ("cy-phone", "android")],
    );

    server.events_delivered(&config, &db, &["amy", "bo", "cy"], "ping", "ping");
    let rows = wait_for(20, || {
        let rows = deliveries(&config, &db);
        let bo = customer_rows(&rows, "bo");
        bo.iter().any(|r| r["channel"] == "inbox").then_some(rows)
    })
    .unwrap_or_else(|| panic!("bo never reached the inbox: {}", server.log()));

    // amy: one message per device, as FCM v1 wants it.
    assert_eq!(
        channel_and_status(&only_row(&rows, "amy")),
        ("push".into(), "delivered".into())
    );
    for device in ["amy-phone", "amy-ipad"] {
        let sent = fcm.messages_to(device);
        assert_eq!(sent.len(), 1, "{device}: {sent:?}");
        let m = &sent[0]["message"];
        assert_eq!(m["notification"]["title"], "Your order has shipped");
        assert_eq!(m["notification"]["body"], "Hello amy, it is on its way.");
        assert_eq!(m["data"]["herald_rule"], "ping");
    }
    let id = only_row(&rows, "amy")["provider_message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.starts_with("projects/herald-test/messages/0:"), "{id}");

    // bo: unregistered: failed on push with FCM's words, forgotten, inbox.
    let bo = customer_rows(&rows, "bo");
    assert_eq!(bo.len(), 2, "{bo:?}");
    assert_eq!(channel_and_status(bo[0]), ("push".into(), "failed".into()));
    let error = bo[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("invalid address: FCM answered HTTP 404 UNREGISTERED"),
        "{error}"
    );
    assert_eq!(
        channel_and_status(bo[1]),
        ("inbox".into(), "delivered".into())
    );
    assert!(devices_of(&server, "bo").is_empty());

    // cy: one device of another project, one good: delivered.
    assert_eq!(
        channel_and_status(&only_row(&rows, "cy")),
        ("push".into(), "delivered".into())
    );
    assert_eq!(fcm.messages_to("cy-phone").len(), 1);

    // Later sends reuse the cached access token.
    let issued = fcm.tokens_issued();
    assert!((1..=3).contains(&issued), "{issued} tokens for one tick");
    sign_up(&server, "di", &[("di-phone", "web")]);
    server.events_delivered(&config, &db, &["di"], "ping", "ping");
    assert_eq!(fcm.tokens_issued(), issued, "the cached token was reused");

    // A revoked access token: 401, a new token, the same device again.
    sign_up(&server, "eve", &[("revoke-eve", "android")]);
    let rows = server.events_delivered(&config, &db, &["eve"], "ping", "ping");
    assert_eq!(
        channel_and_status(&only_row(&rows, "eve")),
        ("push".into(), "delivered".into())
    );
    assert_eq!(fcm.tokens_issued(), issued + 1);
    assert_eq!(
        fcm.messages_to("revoke-eve").len(),
        2,
        "sent again after the refresh"
    );
    assert_not_leaked(&["MIIEv"], &[server.log(), json!(rows).to_string()]);
}
