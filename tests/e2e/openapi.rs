//! The OpenAPI document against the real `herald serve`: every documented
//! operation is called with a request built from the document itself
//! (sample path, query and body values), without a token, with a body that
//! is not JSON, with a path parameter of the wrong type and with an unknown
//! query parameter; each answer's status must be one the document lists for
//! that operation, its content type the documented one, and a JSON body must
//! validate against the documented schema (a small walker over
//! `components.schemas`: `$ref`, `oneOf`/`anyOf`/`allOf`, `type` with
//! `null`, `required`, `properties`, `items`, `additionalProperties`,
//! `minimum`/`maximum`). What schemathesis found once stays found.

use crate::access::config;
use crate::support::*;
use serde_json::{json, Map, Value};

/// One request, with the admin token or none; the answer's content type is
/// part of what is checked here.
fn call(base: &str, token: Option<&str>, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut request = Request::new(method, &format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send()
}

/// Follow `{"$ref": "#/components/schemas/X"}` to X.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
            let target = &spec["components"]["schemas"][name];
            assert!(target.is_object(), "$ref to a missing schema: {reference}");
            resolve(spec, target)
        }
        None => schema,
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}

/// Every way `value` breaks `schema`, each with its JSON path.
fn violations(spec: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(spec, schema);
    let mut out = Vec::new();
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema[key].as_array() {
            let fits = choices
                .iter()
                .filter(|c| violations(spec, c, value, at).is_empty())
                .count();
            let ok = if key == "oneOf" { fits == 1 } else { fits >= 1 };
            if !ok {
                out.push(format!("{at}: {fits} of the {key} choices match {value}"));
            }
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            out.extend(violations(spec, part, value, at));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        out.push(format!("{at}: expected {types:?}, got {value}"));
        return out;
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            out.push(format!(
                "{at}: {n} is below the minimum {}",
                schema["minimum"]
            ));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            out.push(format!(
                "{at}: {n} is above the maximum {}",
                schema["maximum"]
            ));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            if !object.contains_key(name) {
                out.push(format!("{at}: required property `{name}` is missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (name, v) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(property) => {
                    out.extend(violations(spec, property, v, &format!("{at}.{name}")))
                }
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => out.push(format!("{at}: undocumented property `{name}`")),
                    extra @ Value::Object(_) => {
                        out.extend(violations(spec, extra, v, &format!("{at}.{name}")))
                    }
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, item) in list.iter().enumerate() {
            out.extend(violations(spec, items, item, &format!("{at}[{i}]")));
        }
    }
    out
}

/// A value for a property or parameter of this name and schema that the
/// server should accept: the world's own ids where the name says so.
fn sample(spec: &Value, name: &str, schema: &Value, ids: &Ids) -> Value {
    let schema = resolve(spec, schema);
    match name {
        "external_id" | "customer" => return json!("n1"),
        "channel" => return json!("inbox"),
        "kind" => return json!("seen"),
        "message_id" => return json!(ids.message),
        "timezone" => return json!("Asia/Shanghai"),
        "email" => return json!("n1@example.com"),
        "since" | "until" if schema["format"].is_null() => return json!("7d"),
        _ => {}
    }
    if let Some(first) = schema["oneOf"]
        .as_array()
        .or(schema["anyOf"].as_array())
        .and_then(|c| c.first())
    {
        return sample(spec, name, first, ids);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec!["object"],
    };
    match types
        .iter()
        .copied()
        .find(|t| *t != "null")
        .unwrap_or("null")
    {
        "string" if schema["format"] == "date-time" => json!("2026-01-01T00:00:00Z"),
        "string" => json!(format!("sample-{name}")),
        "integer" | "number" => schema["minimum"]
            .as_i64()
            .map_or(json!(1), |m| json!(m.max(1))),
        "boolean" => json!(true),
        "array" => json!([sample(spec, name, &schema["items"], ids)]),
        "null" => Value::Null,
        _ => {
            let mut object = Map::new();
            for required in schema["required"].as_array().into_iter().flatten() {
                let field = required.as_str().unwrap();
                object.insert(
                    field.to_string(),
                    sample(spec, field, &schema["properties"][field], ids),
                );
            }
            Value::Object(object)
        }
    }
}

/// Ids of the world the samples refer to.
struct Ids {
    message: i64,
}

/// One documented operation.
struct Operation<'a> {
    method: String,
    template: String,
    op: &'a Value,
}

impl Operation<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    fn parameters(&self, place: &str) -> Vec<&Value> {
        self.op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == place)
            .collect()
    }

    fn public(&self) -> bool {
        self.op["security"].as_array().is_some_and(|reqs| {
            reqs.iter()
                .any(|r| r.as_object().is_some_and(Map::is_empty))
        })
    }

    /// The path with each parameter given by `value`.
    fn path(&self, value: impl Fn(&Value) -> String) -> String {
        let mut path = self.template.clone();
        for p in self.parameters("path") {
            let name = p["name"].as_str().unwrap();
            path = path.replace(&format!("{{{name}}}"), &value(p));
        }
        path
    }

    /// Check one answer against the document; every problem is returned.
    fn check(&self, spec: &Value, what: &str, answer: &Response) -> Vec<String> {
        let name = format!("{} ({what})", self.name());
        let Some(documented) = self.op["responses"].get(answer.status.to_string()) else {
            let listed: Vec<&String> = self.op["responses"].as_object().unwrap().keys().collect();
            return vec![format!(
                "{name}: status {} is not documented (documented: {listed:?}); body: {}",
                answer.status,
                answer.text()
            )];
        };
        let Some(content) = documented["content"].as_object() else {
            return if answer.body.is_empty() {
                vec![]
            } else {
                vec![format!(
                    "{name}: {} is documented without a body, got {:?}",
                    answer.status,
                    answer.text()
                )]
            };
        };
        let Some(actual) = &answer.content_type() else {
            return vec![format!("{name}: {} has no Content-Type", answer.status)];
        };
        let Some((_, media)) = content.iter().find(|(ty, _)| {
            ty.split(';')
                .next()
                .unwrap()
                .trim()
                .eq_ignore_ascii_case(actual)
        }) else {
            return vec![format!(
                "{name}: {} answered {actual}, documented {:?}",
                answer.status,
                content.keys().collect::<Vec<_>>()
            )];
        };
        if actual != "application/json" {
            return vec![];
        }
        let body: Value = match serde_json::from_slice(&answer.body) {
            Ok(v) => v,
            Err(e) => {
                return vec![format!(
                    "{name}: the body is not JSON ({e}): {}",
                    answer.text()
                )]
            }
        };
        violations(spec, &media["schema"], &body, "$")
            .into_iter()
            .map(|v| {
                format!(
                    "{name}: {} body does not fit the schema: {v}; body: {body}",
                    answer.status
                )
            })
            .collect()
    }
}

fn operations(spec: &Value) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (template, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                out.push(Operation {
                    method: method.to_uppercase(),
                    template: template.clone(),
                    op,
                });
            }
        }
    }
    // Deletions last (suppressions before the customer they name), so every
    // other operation still finds what it asks for.
    let rank = |o: &Operation| match o.method.as_str() {
        "DELETE" => 1,
        _ => 0,
    };
    out.sort_by(|a, b| {
        rank(a).cmp(&rank(b)).then_with(|| match rank(a) {
            1 => b.template.cmp(&a.template),
            _ => std::cmp::Ordering::Equal,
        })
    });
    out
}

fn query(op: &Operation, spec: &Value, ids: &Ids) -> String {
    let pairs: Vec<String> = op
        .parameters("query")
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap();
            let value = sample(spec, name, &p["schema"], ids);
            let text = value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            format!("{name}={}", text.replace('+', "%2B").replace(':', "%3A"))
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Exercise every documented operation; return every mismatch found and
/// the statuses seen per operation.
fn exercise(
    base: &str,
    token: &str,
    spec: &Value,
    ids: &Ids,
) -> (Vec<String>, Vec<(String, Vec<u16>)>) {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let path_value = |p: &Value| {
        let v = sample(spec, p["name"].as_str().unwrap(), &p["schema"], ids);
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    for op in operations(spec) {
        let mut statuses = Vec::new();
        let path = op.path(path_value);
        let body = op.op["requestBody"]["content"]["application/json"]["schema"]
            .is_object()
            .then(|| {
                let schema = &op.op["requestBody"]["content"]["application/json"]["schema"];
                sample(spec, "body", schema, ids).to_string()
            });
        let mut check = |what: &str, expected: Option<u16>, answer: Response| {
            statuses.push(answer.status);
            if expected.is_some_and(|e| e != answer.status) {
                problems.push(format!(
                    "{} ({what}): {} instead of {expected:?}",
                    op.name(),
                    answer.status
                ));
            }
            if answer.status >= 500 {
                problems.push(format!(
                    "{} ({what}): server error {}: {}",
                    op.name(),
                    answer.status,
                    answer.text()
                ));
            }
            problems.extend(op.check(spec, what, &answer));
        };
        let auth = (!op.public()).then_some(token);

        // Without a token: 401 for everything but the public operations.
        if !op.public() {
            let answer = call(base, None, &op.method, &path, body.as_deref());
            check("no token", Some(401), answer);
        }
        // A path parameter of the wrong type.
        if op
            .parameters("path")
            .iter()
            .any(|p| p["schema"]["type"] == "integer")
        {
            let bad = op.path(|p| {
                if p["schema"]["type"] == "integer" {
                    "not-a-number".into()
                } else {
                    path_value(p)
                }
            });
            check(
                "non-numeric path parameter",
                Some(400),
                call(base, auth, &op.method, &bad, body.as_deref()),
            );
        }
        // An unknown query parameter.
        if !op.parameters("query").is_empty() {
            let answer = call(
                base,
                auth,
                &op.method,
                &format!("{path}?no_such_parameter=1"),
                None,
            );
            check("unknown query parameter", Some(400), answer);
        }
        // A body that is not JSON, and a body of the wrong JSON type.
        if body.is_some() {
            check(
                "body not JSON",
                Some(400),
                call(base, auth, &op.method, &path, Some("{not json")),
            );
            check(
                "body a string",
                Some(400),
                call(base, auth, &op.method, &path, Some("\"x\"")),
            );
        }
        // The sample request: without query parameters, then with all of them.
        check(
            "sample",
            None,
            call(base, auth, &op.method, &path, body.as_deref()),
        );
        let q = query(&op, spec, ids);
        if !q.is_empty() {
            check(
                "sample query",
                None,
                call(base, auth, &op.method, &format!("{path}{q}"), None),
            );
        }
        seen.push((op.name(), statuses));
    }
    (problems, seen)
}

#[test]
fn every_documented_operation_answers_as_the_openapi_document_says() {
    let scratch = Scratch::new();
    let config = config(&scratch);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    for id in ["n1", "n2"] {
        let (status, body) = server.api(
            "POST",
            "/customers",
            Some(&json!({"external_id": id, "name": id, "region": "north"}).to_string()),
        );
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server.api(
        "POST",
        "/events",
        Some(&json!({"customer": "n1", "kind": "ping"}).to_string()),
    );
    assert_eq!(status, 201, "{body}");
    let message = wait_for(30, || {
        let (_, inbox) = server.api("GET", "/customers/n1/inbox", None);
        inbox["messages"][0]["id"].as_i64()
    })
    .unwrap_or_else(|| panic!("the ping never reached n1's inbox; log: {}", server.log()));

    let (status, spec) = http("GET", &format!("{}/openapi.json", server.base), None);
    assert_eq!(status, 200);
    let (problems, seen) = exercise(&server.base, &server.token, &spec, &Ids { message });
    assert!(
        problems.is_empty(),
        "{} mismatch(es) between /openapi.json and the server:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The walk reached every operation and its success paths, so the
    // schemas above were checked against real 2xx bodies.
    assert!(
        seen.len() >= 19,
        "only {} operations documented: {seen:?}",
        seen.len()
    );
    for (name, success) in [
        ("GET /customers", 200),
        ("POST /customers", 200),
        ("GET /customers/{external_id}", 200),
        ("PUT /customers/{external_id}", 200),
        ("DELETE /customers/{external_id}", 204),
        ("POST /events", 201),
        ("GET /deliveries", 200),
        ("GET /customers/{external_id}/inbox", 200),
        ("POST /customers/{external_id}/inbox/{message_id}/read", 204),
        ("GET /suppressions", 200),
        ("POST /suppressions", 201),
        ("DELETE /suppressions/{channel}/{external_id}", 204),
        ("GET /strategy", 200),
        ("GET /report", 200),
        ("POST /admin/reload", 200),
        ("GET /metrics", 200),
        ("GET /dashboard", 200),
    ] {
        let statuses = &seen
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not documented"))
            .1;
        assert!(
            statuses.contains(&success),
            "{name} never answered {success}: {statuses:?}"
        );
    }
}

#[test]
fn the_schema_walker_catches_what_it_should() {
    let spec = json!({"components": {"schemas": {
        "Page": {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "next": {"type": ["string", "null"]}}},
        "Item": {"type": "object", "required": ["id"], "additionalProperties": false,
            "properties": {"id": {"type": "integer", "minimum": 1}}},
        "Either": {"oneOf": [{"$ref": "#/components/schemas/Item"}, {"type": "array"}]}
    }}});
    let page = json!({"$ref": "#/components/schemas/Page"});
    let either = json!({"$ref": "#/components/schemas/Either"});
    let ok = |s: &Value, v: Value| violations(&spec, s, &v, "$").is_empty();
    assert!(ok(&page, json!({"items": [{"id": 1}], "next": null})));
    assert!(!ok(&page, json!({"next": "a"})), "missing required");
    assert!(
        !ok(&page, json!({"items": [{"id": "1"}]})),
        "wrong type inside a $ref"
    );
    assert!(!ok(&page, json!({"items": [{"id": 0}]})), "below minimum");
    assert!(
        !ok(&page, json!({"items": [{"id": 1, "x": 2}]})),
        "undocumented property"
    );
    assert!(
        !ok(&page, json!({"items": [], "next": 3})),
        "nullable string, not number"
    );
    assert!(ok(&either, json!([])) && ok(&either, json!({"id": 2})));
    assert!(!ok(&either, json!("x")), "no oneOf choice");
}

/// The schema of `name` in the served document's components.
fn component<'a>(spec: &'a Value, name: &str) -> &'a Value {
    let schema = &spec["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

/// Every string field of a request body in the document, as
/// (where, schema): object properties, array items, `oneOf` choices.
fn request_strings<'a>(
    spec: &'a Value,
    schema: &'a Value,
    at: String,
    out: &mut Vec<(String, &'a Value)>,
) {
    let schema = resolve(spec, schema);
    for key in ["oneOf", "anyOf", "allOf"] {
        for choice in schema[key].as_array().into_iter().flatten() {
            request_strings(spec, choice, at.clone(), out);
        }
    }
    let is_string = match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(ts) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    if is_string && schema["format"].is_null() {
        out.push((at.clone(), schema));
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        request_strings(spec, property, format!("{at}.{name}"), out);
    }
    if schema.get("items").is_some() {
        request_strings(spec, &schema["items"], format!("{at}[]"), out);
    }
}

/// The document is as strict as the server: each field the server bounds
/// carries the server's `maxLength` (from `customer::limits`), each field
/// it refuses blank `minLength` and a non-blank `pattern`, attributes their
/// count and name length; every string of every request body has a
/// `maxLength`; and the refusals of ingest tokens are worded right.
#[test]
fn the_document_carries_the_servers_limits() {
    use herald::customer::limits;
    let scratch = Scratch::new();
    let config = config(&scratch);
    let db = scratch.path("h.db");
    let server = Server::start(&config, &db, &scratch, "serve.log");
    let (status, spec) = http("GET", &format!("{}/openapi.json", server.base), None);
    assert_eq!(status, 200);

    let bounded = |schema: &str, field: &str, max: usize, non_blank: bool| {
        let property = resolve(&spec, &component(&spec, schema)["properties"][field]);
        assert_eq!(
            property["maxLength"].as_u64(),
            Some(max as u64),
            "{schema}.{field}: {property}"
        );
        if non_blank {
            assert_eq!(property["minLength"], 1, "{schema}.{field}: {property}");
            assert_eq!(property["pattern"], "\\S", "{schema}.{field}: {property}");
        }
    };
    bounded("CustomerPatch", "external_id", limits::ID, true);
    for field in [
        "name",
        "email",
        "phone",
        "wechat_openid",
        "region",
        "timezone",
        "locale",
        "state",
    ] {
        bounded("CustomerPatch", field, limits::FIELD, false);
    }
    let attributes = &component(&spec, "CustomerPatch")["properties"]["attributes"];
    assert_eq!(
        attributes["maxProperties"].as_u64(),
        Some(limits::ATTRIBUTES as u64),
        "{attributes}"
    );
    assert_eq!(
        attributes["propertyNames"]["maxLength"].as_u64(),
        Some(limits::ATTRIBUTE_NAME as u64),
        "{attributes}"
    );
    bounded("EventInput", "customer", limits::ID, true);
    bounded("EventInput", "kind", limits::EVENT_KIND, true);
    bounded("EventInput", "event_id", limits::EVENT_ID, false);
    bounded("NewSuppression", "customer", limits::ID, true);
    bounded("NewSuppression", "channel", limits::FIELD, true);
    bounded("NewSuppression", "reason", limits::FIELD, false);

    // Every string a request body carries is bounded in the document.
    let mut unbounded = Vec::new();
    for op in operations(&spec) {
        let schema = &op.op["requestBody"]["content"]["application/json"]["schema"];
        if schema.is_object() {
            let mut strings = Vec::new();
            request_strings(&spec, schema, op.name(), &mut strings);
            unbounded.extend(
                strings
                    .into_iter()
                    .filter(|(_, s)| s["maxLength"].is_null())
                    .map(|(at, _)| at),
            );
        }
    }
    assert!(
        unbounded.is_empty(),
        "strings without maxLength: {unbounded:?}"
    );

    // The server keeps the limits it documents.
    let long = json!({"customer": "n1", "kind": "k".repeat(limits::EVENT_KIND + 1)});
    let (status, answer) = server.api("POST", "/events", Some(&long.to_string()));
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer
            .to_string()
            .contains(&format!("the limit is {}", limits::EVENT_KIND)),
        "{answer}"
    );
    let blank = json!({"external_id": "  "});
    assert_eq!(
        server.api("POST", "/customers", Some(&blank.to_string())).0,
        422
    );

    // Refusals of an ingest token, in words that fit the operation.
    let ingest = create_token(&config, &db, "ingest", &[]);
    let as_ingest = |method: &str, path: &str, body: Option<&str>| {
        let (status, answer) = http_as(&ingest, method, &server.url(path), body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let replace = as_ingest("PUT", "/customers/n1", Some(r#"{"name":"x"}"#));
    assert!(
        replace.contains("an admin or staff token") && !replace.contains("an staff"),
        "{replace}"
    );
    let suppress = as_ingest(
        "POST",
        "/suppressions",
        Some(r#"{"customer":"n1","channel":"inbox"}"#),
    );
    assert!(
        !suppress.contains("reading"),
        "a write is not reading: {suppress}"
    );
    let list = as_ingest("GET", "/suppressions", None);
    assert!(list.contains("an admin or staff token"), "{list}");
    let text = spec.to_string();
    for wrong in ["an staff", "a ingest", "an ingest token may read"] {
        assert!(!text.contains(wrong), "the document says `{wrong}`");
    }
}
