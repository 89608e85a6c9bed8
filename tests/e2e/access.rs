//! Access by role and region through the real `herald serve`: every
//! endpoint tried without a token, with a bad token, and with admin, staff
//! (one region) and ingest tokens across two regions; HTML and SQL
//! metacharacters in customer fields stored and returned verbatim; and the
//! OpenAPI document checked against what the server actually routes.

use crate::support::*;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A `herald serve` deployment that answers a `ping` event in the inbox.
pub fn config(scratch: &Scratch) -> PathBuf {
    Config::new()
        .tick("100ms")
        .inbox()
        .rule(Rule::new(
            "ping",
            &on_event("ping"),
            &["inbox"],
            "Pong for {{ customer.name }}",
            "Hello {{ customer.name }}",
        ))
        .write(scratch)
}

/// A name full of HTML and SQL metacharacters.
const NASTY: &str = r#"<script>alert("x")</script>' OR 1=1; DROP TABLE customers;-- &amp; 李"#;

struct World {
    _scratch: Scratch,
    server: Server,
    admin: String,
    north: String,
    ingest: String,
}

impl World {
    fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        let body = body.map(Value::to_string);
        match token {
            Some(t) => http_as(t, method, &url, body.as_deref()),
            None => http(method, &url, body.as_deref()),
        }
    }
}

fn world() -> World {
    let scratch = Scratch::new();
    let config = config(&scratch);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let north = create_token(&config, &db, "staff", &["north"]);
    let ingest = create_token(&config, &db, "ingest", &[]);
    let admin = server.token.clone();
    let w = World {
        _scratch: scratch,
        server,
        admin,
        north,
        ingest,
    };
    for (id, region) in [("n1", "north"), ("n2", "north"), ("s1", "south")] {
        let (status, body) = w.call(
            Some(&w.admin),
            "POST",
            "/customers",
            Some(&json!({"external_id": id, "name": NASTY, "region": region, "email": format!("{id}@example.com")})),
        );
        assert_eq!(status, 200, "{body}");
    }
    // One delivery each for n1 and s1, in their inboxes.
    for id in ["n1", "s1"] {
        let (status, body) = w.call(
            Some(&w.admin),
            "POST",
            "/events",
            Some(&json!({"customer": id, "kind": "ping", "event_id": format!("e-{id}")})),
        );
        assert_eq!(status, 201, "{body}");
    }
    let delivered = wait_for(30, || {
        let (_, page) = w.call(Some(&w.admin), "GET", "/deliveries", None);
        (page["deliveries"].as_array().map_or(0, Vec::len) == 2).then_some(())
    });
    assert!(
        delivered.is_some(),
        "the two pings were not delivered; log: {}",
        w.server.log()
    );
    w
}

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    let mut out: Vec<String> = list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no `{key}` array in {list}"))
        .iter()
        .map(|c| c[field].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Every documented operation that needs a token, as (method, path with
/// sample parameters). Public operations declare an empty security
/// requirement (`"security": [{}]`).
fn documented_operations(spec: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete", "patch"] {
            let Some(op) = item.get(method) else { continue };
            let public = op["security"].as_array().is_some_and(|reqs| {
                reqs.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            if !public {
                let concrete = path
                    .replace("{external_id}", "n1")
                    .replace("{message_id}", "1")
                    .replace("{channel}", "inbox")
                    .replace("{token}", "t1");
                out.push((method.to_uppercase(), concrete));
            }
        }
    }
    out
}

#[test]
fn every_endpoint_refuses_a_missing_or_bad_token_and_the_spec_matches_the_routes() {
    let w = world();
    let (status, spec) = w.call(None, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    let ops = documented_operations(&spec);
    for expected in [
        ("GET", "/customers"),
        ("POST", "/customers"),
        ("GET", "/customers/n1"),
        ("PUT", "/customers/n1"),
        ("DELETE", "/customers/n1"),
        ("POST", "/customers/n1/devices"),
        ("DELETE", "/customers/n1/devices/t1"),
        ("POST", "/events"),
        ("GET", "/deliveries"),
        ("GET", "/customers/n1/inbox"),
        ("POST", "/customers/n1/inbox/1/read"),
        ("GET", "/suppressions"),
        ("POST", "/suppressions"),
        ("DELETE", "/suppressions/inbox/n1"),
        ("GET", "/strategy"),
        ("POST", "/admin/reload"),
        ("GET", "/metrics"),
    ] {
        assert!(
            ops.iter().any(|(m, p)| m == expected.0 && p == expected.1),
            "{expected:?} is not documented in /openapi.json: {ops:?}"
        );
    }
    assert!(
        spec["components"]["securitySchemes"]["bearer"].is_object(),
        "the spec declares the bearer scheme"
    );
    // Each documented operation exists on the server (401, not 404/405)
    // and refuses a request without a token or with a wrong one.
    for (method, path) in &ops {
        let (status, body) = w.call(None, method, path, Some(&json!({})));
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert_eq!(code(&body), "unauthorized", "{method} {path}");
        let (status, _) = w.call(
            Some("hrld_not-a-real-token"),
            method,
            path,
            Some(&json!({})),
        );
        assert_eq!(status, 401, "{method} {path} with a bad token");
    }
    // Public endpoints stay public.
    assert_eq!(w.call(None, "GET", "/health", None).0, 200);
}

#[test]
fn staff_see_and_change_only_their_region_admin_sees_all() {
    let w = world();
    let admin = Some(w.admin.as_str());
    let north = Some(w.north.as_str());

    // Lists.
    let (_, all) = w.call(admin, "GET", "/customers", None);
    assert_eq!(ids(&all, "customers", "external_id"), ["n1", "n2", "s1"]);
    let (status, mine) = w.call(north, "GET", "/customers", None);
    assert_eq!(status, 200, "{mine}");
    assert_eq!(ids(&mine, "customers", "external_id"), ["n1", "n2"]);
    let (_, filtered) = w.call(north, "GET", "/customers?region=south", None);
    assert_eq!(
        ids(&filtered, "customers", "external_id"),
        Vec::<String>::new()
    );
    let (_, page) = w.call(admin, "GET", "/customers?limit=2", None);
    assert_eq!(ids(&page, "customers", "external_id"), ["n1", "n2"]);
    assert_eq!(page["next_after"], "n2");
    let (_, rest) = w.call(admin, "GET", "/customers?limit=2&after=n2", None);
    assert_eq!(ids(&rest, "customers", "external_id"), ["s1"]);
    assert_eq!(rest["next_after"], Value::Null);
    let (status, body) = w.call(admin, "GET", "/customers?limit=0", None);
    assert_eq!((status, code(&body)), (400, "invalid_query"), "{body}");

    // Another region's customer is a 404 everywhere, exactly like a missing one.
    let (status, missing) = w.call(north, "GET", "/customers/nobody", None);
    assert_eq!(status, 404);
    for (method, path, body) in [
        ("GET", "/customers/s1", None),
        ("PUT", "/customers/s1", Some(json!({"name": "taken over"}))),
        ("DELETE", "/customers/s1", None),
        ("GET", "/customers/s1/inbox", None),
        (
            "POST",
            "/events",
            Some(json!({"customer": "s1", "kind": "ping"})),
        ),
        (
            "POST",
            "/customers",
            Some(json!({"external_id": "s1", "name": "taken over"})),
        ),
        (
            "POST",
            "/suppressions",
            Some(json!({"customer": "s1", "channel": "inbox"})),
        ),
        ("DELETE", "/suppressions/inbox/s1", None),
    ] {
        let (status, answer) = w.call(north, method, path, body.as_ref());
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(code(&answer), code(&missing), "{method} {path}");
        assert!(
            !answer.to_string().contains("south"),
            "no hint of the other region: {answer}"
        );
    }
    // Nothing of s1 changed.
    let (_, s1) = w.call(admin, "GET", "/customers/s1", None);
    assert_eq!(s1["name"], NASTY);

    // Staff cannot create a customer outside their regions or move one out.
    let (status, body) = w.call(
        north,
        "POST",
        "/customers",
        Some(&json!({"external_id": "x1", "region": "south"})),
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("north"),
        "{body}"
    );
    let (status, _) = w.call(
        north,
        "POST",
        "/customers",
        Some(&json!({"external_id": "x2"})),
    );
    assert_eq!(
        status, 422,
        "a staff-created customer needs one of their regions"
    );
    let (status, body) = w.call(
        north,
        "PUT",
        "/customers/n2",
        Some(&json!({"region": "south"})),
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = w.call(
        north,
        "POST",
        "/customers",
        Some(&json!({"external_id": "n3", "region": "north"})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = w.call(admin, "GET", "/customers/x1", None);
    assert_eq!(status, 404, "refused writes stored nothing: {body}");

    // Their own region works.
    let (status, n1) = w.call(north, "GET", "/customers/n1", None);
    assert_eq!(status, 200, "{n1}");
    let (status, _) = w.call(
        north,
        "POST",
        "/events",
        Some(&json!({"customer": "n1", "kind": "seen"})),
    );
    assert_eq!(status, 201);

    // Deliveries: staff see only their region's.
    let (_, all) = w.call(admin, "GET", "/deliveries", None);
    assert_eq!(ids(&all, "deliveries", "customer"), ["n1", "s1"]);
    let (_, mine) = w.call(north, "GET", "/deliveries", None);
    assert_eq!(ids(&mine, "deliveries", "customer"), ["n1"]);
    let (_, by_rule) = w.call(
        admin,
        "GET",
        "/deliveries?rule=ping&customer=s1&status=delivered",
        None,
    );
    assert_eq!(ids(&by_rule, "deliveries", "customer"), ["s1"]);

    // Inbox: list and mark read.
    let (status, inbox) = w.call(north, "GET", "/customers/n1/inbox", None);
    assert_eq!(status, 200, "{inbox}");
    let inbox = &inbox["messages"];
    let message = inbox[0]["id"].as_i64().expect("message id");
    assert_eq!(inbox[0]["read_at"], Value::Null);
    let (status, _) = w.call(
        north,
        "POST",
        &format!("/customers/n1/inbox/{message}/read"),
        None,
    );
    assert_eq!(status, 204);
    let (_, inbox) = w.call(north, "GET", "/customers/n1/inbox", None);
    assert!(inbox["messages"][0]["read_at"].is_string(), "{inbox}");
    // s1's message id is not reachable through n1.
    let (_, s1_inbox) = w.call(admin, "GET", "/customers/s1/inbox", None);
    let theirs = s1_inbox["messages"][0]["id"].as_i64().unwrap();
    let (status, _) = w.call(
        north,
        "POST",
        &format!("/customers/n1/inbox/{theirs}/read"),
        None,
    );
    assert_eq!(status, 404);

    // Suppressions: add, list (scoped), remove.
    let (status, body) = w.call(
        north,
        "POST",
        "/suppressions",
        Some(&json!({"customer": "n1", "channel": "inbox", "reason": "asked by phone"})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["source"], "api");
    let (status, _) = w.call(
        north,
        "POST",
        "/suppressions",
        Some(&json!({"customer": "n1", "channel": "inbox"})),
    );
    assert_eq!(status, 200, "adding twice keeps the first");
    let (status, body) = w.call(
        north,
        "POST",
        "/suppressions",
        Some(&json!({"customer": "n1", "channel": "fax"})),
    );
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    let (_, body) = w.call(
        admin,
        "POST",
        "/suppressions",
        Some(&json!({"customer": "s1", "channel": "inbox"})),
    );
    assert_eq!(body["customer"], "s1");
    let (_, mine) = w.call(north, "GET", "/suppressions", None);
    assert_eq!(mine["suppressions"].as_array().unwrap().len(), 1, "{mine}");
    let (_, all) = w.call(admin, "GET", "/suppressions", None);
    assert_eq!(all["suppressions"].as_array().unwrap().len(), 2, "{all}");
    let (status, _) = w.call(north, "DELETE", "/suppressions/inbox/n1", None);
    assert_eq!(status, 204);
    let (status, _) = w.call(north, "DELETE", "/suppressions/inbox/n1", None);
    assert_eq!(status, 404);

    // Admin-only operations.
    for (method, path) in [("POST", "/admin/reload"), ("GET", "/metrics")] {
        let (status, body) = w.call(north, method, path, None);
        assert_eq!((status, code(&body)), (403, "forbidden"), "{method} {path}");
    }

    // Strategy is readable by staff.
    let (status, strategy) = w.call(north, "GET", "/strategy", None);
    assert_eq!(status, 200, "{strategy}");
    assert_eq!(strategy["rules"][0]["id"], "ping");
    assert_eq!(strategy["channels"][0]["name"], "inbox");

    // Admin deletes across regions.
    let (status, _) = w.call(admin, "DELETE", "/customers/s1", None);
    assert_eq!(status, 204);
    // A deleted customer of another region cannot be revived into one's
    // own region (its history would come with it).
    let (status, body) = w.call(
        north,
        "POST",
        "/customers",
        Some(&json!({"external_id": "s1", "region": "north"})),
    );
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (_, mine) = w.call(north, "GET", "/deliveries", None);
    assert_eq!(ids(&mine, "deliveries", "customer"), ["n1"]);
}

#[test]
fn ingest_tokens_only_post_customers_and_events() {
    let w = world();
    let ingest = Some(w.ingest.as_str());
    let (status, body) = w.call(
        ingest,
        "POST",
        "/customers",
        Some(&json!([{"external_id": "i1", "region": "south"}, {"external_id": "i2"}])),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("ok").is_some()),
        "{body}"
    );
    // Ingest tokens cannot read customers, not even through an upsert's answer.
    assert_eq!(body["results"][0]["ok"]["external_id"], "i1");
    assert!(body["results"][0]["ok"].get("customer").is_none(), "{body}");
    let (status, body) = w.call(
        ingest,
        "POST",
        "/customers",
        Some(&json!({"external_id": "s1"})),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"external_id": "s1", "created": false, "changed": []})
    );
    let (status, _) = w.call(
        ingest,
        "POST",
        "/events",
        Some(&json!({"customer": "s1", "kind": "seen"})),
    );
    assert_eq!(status, 201);
    for (method, path, body) in [
        ("GET", "/customers", None),
        ("GET", "/customers/i1", None),
        ("PUT", "/customers/i1", Some(json!({"name": "x"}))),
        ("DELETE", "/customers/i1", None),
        ("GET", "/deliveries", None),
        ("GET", "/customers/n1/inbox", None),
        ("GET", "/suppressions", None),
        (
            "POST",
            "/suppressions",
            Some(json!({"customer": "n1", "channel": "inbox"})),
        ),
        ("GET", "/strategy", None),
        ("POST", "/admin/reload", None),
    ] {
        let (status, answer) = w.call(ingest, method, path, body.as_ref());
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(code(&answer), "forbidden");
    }
    let (status, _) = w.call(Some(&w.admin), "GET", "/customers/i1", None);
    assert_eq!(status, 200, "ingested customers are stored");
}

#[test]
fn metacharacters_in_customer_fields_are_stored_and_returned_verbatim() {
    let w = world();
    let (_, n1) = w.call(Some(&w.admin), "GET", "/customers/n1", None);
    assert_eq!(n1["name"], NASTY, "stored and returned byte for byte");
    let (_, list) = w.call(Some(&w.admin), "GET", "/customers", None);
    assert_eq!(
        list["customers"].as_array().unwrap().len(),
        3,
        "the table is still there"
    );
    // A SQL-looking filter value is a value, not SQL.
    let (status, none) = w.call(
        Some(&w.admin),
        "GET",
        "/customers?region=north'%20OR%20'1'='1",
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(none["customers"].as_array().unwrap().len(), 0, "{none}");
    // The inbox message rendered from the name keeps it as text.
    let (_, inbox) = w.call(Some(&w.admin), "GET", "/customers/n1/inbox", None);
    assert_eq!(inbox["messages"][0]["subject"], format!("Pong for {NASTY}"));
}

#[test]
fn tokens_are_stored_hashed_listed_without_secret_and_revocable() {
    let scratch = Scratch::new();
    let config = config(&scratch);
    let db = scratch.path("h.db");
    let token = create_token(&config, &db, "staff", &["north", "east"]);
    let raw = std::fs::read(&db).unwrap_or_default();
    let wal = std::fs::read(scratch.path("h.db-wal")).unwrap_or_default();
    let needle = token.as_bytes();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the token itself is not in the database"
        );
    }
    let list = run(herald()
        .args(["token", "list", "--json", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    let listed = text(&list.stdout);
    assert!(!listed.contains(&token), "{listed}");
    let row: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(row["role"], "staff");
    assert_eq!(row["regions"], json!(["north", "east"]));
    // Bad role / region combinations are refused with what to fix.
    let refused = expect_refusal(
        herald()
            .args(["token", "create", "--role", "staff", "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&db),
    );
    assert!(refused.contains("--region"), "{refused}");
    let refused = expect_refusal(
        herald()
            .args([
                "token", "create", "--role", "admin", "--region", "x", "--config",
            ])
            .arg(&config)
            .arg("--db")
            .arg(&db),
    );
    assert!(
        refused.contains("admin token is not limited to regions"),
        "{refused}"
    );
    let refused = expect_refusal(
        herald()
            .args(["token", "create", "--role", "root", "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&db),
    );
    assert!(refused.contains("admin, staff or ingest"), "{refused}");

    // A revoked token stops working.
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let url = format!("{}/customers", server.base);
    assert_eq!(http_as(&token, "GET", &url, None).0, 200);
    let id = row["id"].as_i64().unwrap().to_string();
    let out = run(herald()
        .args(["token", "revoke", &id, "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(http_as(&token, "GET", &url, None).0, 401);
}
