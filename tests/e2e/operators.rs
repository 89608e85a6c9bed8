//! Running Herald for a business: `herald check` on a good config and on one
//! with many problems at once; a disabled channel passed over for the rule's
//! next one; reloads by SIGHUP and `POST /admin/reload` (a new rule takes
//! effect, a broken config is refused while the old one keeps sending, a
//! send in flight during a reload is delivered exactly once); and the
//! Prometheus counters at `/metrics`; a channel's plugin swapped by a reload
//! (the file replaced, or the config pointed at another one).

use crate::support::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "whsec-ops-7d1e-never-printed";

/// A deployment sending `welcome` on sign-up through the webhook plugin to
/// `provider`.
fn deployment(provider: &FakeProvider) -> Config {
    Config::new()
        .tick("100ms")
        .max_attempts(1)
        .channel(
            "hook",
            webhook(provider, "/hook", env("OPS_HOOK_SECRET"))
                .set("timeout", "10s")
                .set("uncertain", "resend"),
        )
        .rule(welcome(&["hook"]).set("subject", "Welcome {{ customer.name }}"))
}

/// `deployment` with a rule answering a `ping` event.
fn with_ping(config: Config) -> Config {
    config.rule(Rule::new(
        "pong",
        &on_event("ping"),
        &["hook"],
        "Pong",
        "You pinged",
    ))
}

/// The provider: 200 for everyone except customers whose id starts with
/// `bad` (400); `hold` requests are answered after 3 s.
fn provider() -> FakeProvider {
    FakeProvider::start(|req, _| {
        let body = req.json();
        let customer = body["recipient"]["customer_id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if customer.starts_with("bad") {
            return Reply::json(400, json!({"error": "recipient rejected"}));
        }
        let mut reply = Reply::json(200, json!({"id": format!("msg-{customer}")}));
        if customer.starts_with("hold") {
            reply.delay = Duration::from_secs(3);
        }
        reply
    })
}

fn check(config: &Path, json: bool) -> (bool, String, String) {
    let mut cmd = herald();
    cmd.args(["check", "--config"])
        .arg(config)
        .env("OPS_HOOK_SECRET", SECRET)
        .env("OPS_SET_SECRET", SECRET);
    if json {
        cmd.arg("--json");
    }
    let out = run(&mut cmd);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Start `herald serve` with the webhook secret in its environment.
fn serve(config: &Path, scratch: &Scratch) -> Server {
    std::env::set_var("OPS_HOOK_SECRET", SECRET);
    Server::start(config, &scratch.path("h.db"), scratch, "serve.log")
}

/// (rule, customer) of every request the provider received.
fn sent(provider: &FakeProvider) -> Vec<(String, String)> {
    provider
        .requests()
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["rule"].as_str().unwrap_or("").to_string(),
                b["recipient"]["customer_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn wait_sent(provider: &FakeProvider, rule: &str, customer: &str) {
    let found = wait_for(20, || {
        sent(provider)
            .iter()
            .any(|(r, c)| r == rule && c == customer)
            .then_some(())
    });
    assert!(
        found.is_some(),
        "no `{rule}` request for {customer}; got {:?}",
        sent(provider)
    );
}

fn add_customer(server: &Server, id: &str) {
    let (status, body) = server.api(
        "POST",
        "/customers",
        Some(&json!({"external_id": id, "name": id}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
}

fn sighup(server: &Server) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -HUP failed");
}

fn wait_log(server: &Server, needle: &str, times: usize) {
    let found = wait_for(30, || {
        (server.log().matches(needle).count() >= times).then_some(())
    });
    assert!(
        found.is_some(),
        "`{needle}` not logged {times} time(s); log:\n{}",
        server.log()
    );
}

fn metrics(server: &Server) -> String {
    let answer = Request::get(&server.url("/metrics"))
        .bearer(&server.token)
        .send();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.text()
}

/// The value of one sample line of the exposition (`name{labels}`), if present.
/// The value of `series` (written without the node's `instance` label,
/// which every sample carries).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        assert!(
            l.starts_with('#') || l.contains("instance=\""),
            "a sample without the instance label: {l}"
        );
        without_instance(l)
            .strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// A sample line with its `instance="..."` label taken out.
fn without_instance(line: &str) -> String {
    let Some(start) = line.find("instance=\"") else {
        return line.to_string();
    };
    let end = line[start + 10..]
        .find('"')
        .map_or(line.len(), |i| start + 11 + i);
    let mut out = format!("{}{}", &line[..start], &line[end..]);
    for (from, to) in [(",,", ","), ("{,", "{"), (",}", "}"), ("{}", "")] {
        out = out.replace(from, to);
    }
    out
}

#[test]
fn check_passes_a_good_config_and_prints_the_table() {
    let provider = provider();
    let scratch = Scratch::new();
    let config = with_ping(
        deployment(&provider)
            .inbox()
            .channel("spare", Channel::builtin("inbox").set("enabled", false)),
    )
    .write(&scratch);
    let (ok, stdout, stderr) = check(&config, false);
    assert!(ok, "a good config passes: {stdout}{stderr}");
    for want in [
        "CHANNELS",
        "RULES",
        "hook",
        "webhook",
        "welcome",
        "pong",
        "0 error(s)",
    ] {
        assert!(stdout.contains(want), "`{want}` missing:\n{stdout}");
    }
    let spare = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("spare"))
        .expect("spare row");
    assert!(spare.contains("disabled"), "{spare}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));

    let (ok, stdout, _) = check(&config, true);
    assert!(ok);
    let report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let status = |kind: &str, name: &str| {
        report[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name || c["id"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    // The provider listens on loopback, so the channel allows private
    // addresses: its one warning says so.
    assert_eq!(status("channels", "hook"), "warning");
    let hook = report["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hook")
        .unwrap();
    let problems = hook["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{hook}");
    assert!(
        problems[0]
            .to_string()
            .contains("allow_private_network = true"),
        "{hook}"
    );
    assert_eq!(status("channels", "inbox"), "ok");
    assert_eq!(status("channels", "spare"), "disabled");
    assert_eq!(status("rules", "welcome"), "ok");
    assert_eq!(status("rules", "pong"), "ok");
}

#[test]
fn check_reports_every_problem_at_once_with_its_fix() {
    let scratch = Scratch::new();
    let config = Config::new()
        .channel(
            "sms",
            Channel::plugin("sms-twilio")
                .allow("https://api.twilio.com")
                .setting("account_sid", "AC0123456789abcdef0123456789abcdef")
                .setting("from", "+15005550006")
                .setting("colour", "blue"),
        )
        .channel(
            "hook",
            Channel::plugin("webhook")
                .allowed_hosts(&[
                    "ftp://files.example.com",
                    "https://hooks.example.com/path",
                    "https://ok.example.com",
                ])
                .set("cpu", "0s")
                .set("uncertain", "hold")
                .setting("url", "https://ok.example.com/h")
                .setting("secret", env("OPS_UNSET_SECRET_5b1"))
                .setting("signature_header", file(Path::new("no-such-secret.txt"))),
        )
        .channel(
            "good",
            Channel::plugin("webhook")
                .allow("https://ok.example.com")
                .setting("url", "https://ok.example.com/h")
                .setting("secret", env("OPS_SET_SECRET")),
        )
        .channel("cad", Channel::plugin("cadence"))
        .rule(
            Rule::new(
                "broken",
                ON_CREATED,
                &["good"],
                "Hello {{ customer.name",
                "Hi",
            )
            .step("1d", &["good"], "Again", "{{ customer.shoe_size }}"),
        )
        .rule(
            Rule::new("targeted", ON_CREATED, &["good"], "s", "t")
                .set("targeting", targeting("webhook", "")),
        )
        .rule(Rule::new("via-sms", ON_CREATED, &["sms"], "s", "t"))
        .write(&scratch);
    let (ok, stdout, stderr) = check(&config, false);
    assert!(!ok, "errors make the exit code non-zero:\n{stdout}");
    for want in [
        // missing required setting, with where to add it
        "needs the setting `auth_token`",
        "add it under [channels.sms.settings]",
        // unknown setting: a warning
        "warning: plugin `sms-twilio` has no setting `colour`",
        // unresolvable secrets, with the fix
        "environment variable OPS_UNSET_SECRET_5b1 is not set; set it",
        "cannot read secret file",
        // bad allowed hosts, each named, with the form to write
        "`ftp://files.example.com` must use http, https or tcp",
        "`https://hooks.example.com/path` must be an origin without path",
        "write `scheme://host[:port]`",
        // a run-time budget that allows nothing
        "cpu: a run-time budget of 0 lets the plugin run nothing",
        // wrong worlds, both ways
        "is a targeting plugin; channel `cad` needs a channel plugin",
        "is a channel plugin; rule `targeted` needs a targeting plugin",
        // templates: the rule's own and a step's
        "subject, line 1",
        "shoe_size",
        // a rule on a broken channel
        "channel `sms` has errors",
        // a plugin channel that does not say what to do with unknown outcomes
        "channel `good` does not say what to do with a send whose outcome is unknown",
    ] {
        assert!(stdout.contains(want), "`{want}` missing:\n{stdout}");
    }
    for leak in [SECRET, "whsec"] {
        assert!(
            !stdout.contains(leak) && !stderr.contains(leak),
            "a secret was printed:\n{stdout}{stderr}"
        );
    }
    let (_, stdout, _) = check(&config, true);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let status = |kind: &str, key: &str, name: &str| {
        report[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[key] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status("channels", "name", "sms"), "error");
    assert_eq!(status("channels", "name", "hook"), "error");
    assert_eq!(status("channels", "name", "cad"), "error");
    assert_eq!(status("channels", "name", "good"), "warning");
    assert_eq!(status("rules", "id", "broken"), "error");
    assert_eq!(status("rules", "id", "targeted"), "error");
    assert_eq!(status("rules", "id", "via-sms"), "error");
    let hook_problems = report["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "hook")
        .unwrap()["problems"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        hook_problems, 5,
        "two hosts, two secrets and the budget: {stdout}"
    );
}

#[test]
fn a_disabled_channel_is_passed_over_and_its_only_rule_skipped() {
    let scratch = Scratch::new();
    // The disabled channel's plugin does not even exist: it is not loaded.
    let config = Config::new()
        .channel(
            "push",
            Channel::plugin_at(Path::new("no-such-plugin.wasm")).set("enabled", false),
        )
        .inbox()
        .rule(welcome(&["push", "inbox"]))
        .rule(Rule::new(
            "push-only",
            ON_CREATED,
            &["push"],
            "Pushed",
            "Hi",
        ))
        .write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"k"}}"#,
    );
    let db = scratch.path("h.db");
    let (attempts, stderr) = simulate(&config, &timeline, MARCH_1, &["--db", db.to_str().unwrap()]);
    let got: Vec<(&str, &str, &str)> = attempts
        .iter()
        .map(|a| (a.rule.as_str(), a.channel.as_str(), a.status.as_str()))
        .collect();
    assert!(
        got.contains(&("welcome", "inbox", "delivered")),
        "{got:?} {stderr}"
    );
    assert!(
        got.iter()
            .any(|(r, _, s)| *r == "push-only" && *s == "skipped"),
        "{got:?}"
    );
    let skipped = deliveries(&config, &db)
        .into_iter()
        .find(|d| d["rule"] == "push-only")
        .expect("a delivery row for push-only");
    let reason = skipped["error"].as_str().unwrap_or("");
    assert!(
        reason.contains("every channel of this rule is disabled") && reason.contains("push"),
        "{skipped}"
    );

    // The start warns about the rule, here as JSON logs (HERALD_LOG_FORMAT=json).
    let out = run(simulate_cmd(&config, &timeline, "2026-03-01", "2026-03-02")
        .arg("--db")
        .arg(scratch.path("again.db"))
        .env("HERALD_LOG_FORMAT", "json"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let warning = text(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("every channel of this rule is disabled"))
        })
        .unwrap_or_else(|| panic!("no JSON warning in: {}", text(&out.stderr)));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["fields"]["rule"], "push-only");

    let (ok, stdout, _) = check(&config, false);
    assert!(
        ok,
        "a disabled channel's problems are only warnings:\n{stdout}"
    );
    let push = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("push "))
        .expect("push row");
    assert!(
        push.contains("disabled") && push.contains("once enabled"),
        "{push}"
    );
    assert!(
        stdout.contains("every channel is disabled (push)"),
        "{stdout}"
    );
}

#[test]
fn sighup_puts_a_new_rule_in_force_and_a_broken_config_is_refused() {
    let provider = provider();
    let scratch = Scratch::new();
    let config = deployment(&provider).write(&scratch);
    let server = serve(&config, &scratch);
    add_customer(&server, "c1");
    wait_sent(&provider, "welcome", "c1");

    // Before the reload the event has no rule.
    let ping = json!({"customer": "c1", "kind": "ping"}).to_string();
    assert_eq!(server.api("POST", "/events", Some(&ping)).0, 201);

    std::fs::write(&config, with_ping(deployment(&provider)).toml()).unwrap();
    sighup(&server);
    wait_log(&server, "reloaded", 1);
    let ping2 = json!({"customer": "c1", "kind": "ping", "event_id": "p2"}).to_string();
    assert_eq!(server.api("POST", "/events", Some(&ping2)).0, 201);
    wait_sent(&provider, "pong", "c1");
    assert_eq!(
        sent(&provider).iter().filter(|(r, _)| r == "pong").count(),
        1,
        "only the event after the reload has the rule: {:?}",
        sent(&provider)
    );

    // A broken config: refused on SIGHUP and on POST, the running one stays.
    let broken = with_ping(deployment(&provider))
        .toml()
        .replace("Hello\"", "{{ customer.name \"")
        .replace("OPS_HOOK_SECRET", "OPS_UNSET_SECRET_77c");
    std::fs::write(&config, &broken).unwrap();
    sighup(&server);
    wait_log(&server, "reload refused", 1);
    let (status, body) = server.api("POST", "/admin/reload", None);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "config_refused");
    let problems: Vec<String> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(problems.len() >= 2, "{problems:?}");
    let (ok, check_out, _) = {
        let out = run(herald().args(["check", "--config"]).arg(&config));
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    assert!(!ok);
    for p in &problems {
        let message = p.split_once("]: ").map(|(_, m)| m).unwrap_or(p);
        let message = match message.strip_prefix("rule `") {
            Some(rest) => rest.split_once("`: ").map(|(_, m)| m).unwrap_or(message),
            None => message,
        };
        assert!(
            check_out.contains(message),
            "the API's problem `{p}` is not in herald check's output:\n{check_out}"
        );
    }
    assert!(problems.iter().any(|p| p.contains("OPS_UNSET_SECRET_77c")));
    assert!(problems.iter().any(|p| p.contains("rule `welcome`")));

    // The old deployment keeps sending: a new customer is welcomed, and the
    // rule the first reload added still fires.
    add_customer(&server, "c2");
    wait_sent(&provider, "welcome", "c2");
    let ping3 = json!({"customer": "c2", "kind": "ping"}).to_string();
    assert_eq!(server.api("POST", "/events", Some(&ping3)).0, 201);
    wait_sent(&provider, "pong", "c2");

    let m = metrics(&server);
    assert_eq!(
        sample(&m, "herald_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "herald_reloads_total{result=\"refused\"}"),
        Some(2.0),
        "{m}"
    );
}

#[test]
fn a_send_in_flight_during_a_reload_is_delivered_exactly_once() {
    let provider = provider();
    let scratch = Scratch::new();
    let config = deployment(&provider).write(&scratch);
    let server = serve(&config, &scratch);
    add_customer(&server, "hold-1");
    // The provider holds the request for 3 s; reload while it is in flight.
    wait_sent(&provider, "welcome", "hold-1");
    std::fs::write(&config, with_ping(deployment(&provider)).toml()).unwrap();
    let (status, body) = server.api("POST", "/admin/reload", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rules"], 2);
    let delivered = wait_for(20, || {
        let rows = deliveries(&config, &scratch.path("h.db"));
        let done: Vec<Value> = rows
            .into_iter()
            .filter(|d| d["rule"] == "welcome")
            .collect();
        (!done.is_empty()).then_some(done)
    })
    .expect("the held send is recorded");
    // A few more ticks on the new deployment change nothing.
    std::thread::sleep(Duration::from_millis(1500));
    let rows: Vec<Value> = deliveries(&config, &scratch.path("h.db"))
        .into_iter()
        .filter(|d| d["rule"] == "welcome")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "delivered", "{delivered:?}");
    assert_eq!(
        sent(&provider)
            .iter()
            .filter(|(r, c)| r == "welcome" && c == "hold-1")
            .count(),
        1,
        "the provider got it once"
    );
    // And the new rule is in force.
    let ping = json!({"customer": "hold-1", "kind": "ping"}).to_string();
    assert_eq!(server.api("POST", "/events", Some(&ping)).0, 201);
    wait_sent(&provider, "pong", "hold-1");
}

/// Replace `path` the way a deploy does: write beside it, rename over it.
fn replace_file(path: &Path, with: &Path) {
    let staged = path.with_extension("new");
    std::fs::copy(with, &staged).expect("stage the new plugin");
    std::fs::rename(&staged, path).expect("move it into place");
}

/// The delivery row of `rule` for `customer`, once there is one.
fn delivered(config: &Path, scratch: &Scratch, rule: &str, customer: &str) -> Value {
    wait_for(20, || {
        deliveries(config, &scratch.path("h.db"))
            .into_iter()
            .find(|d| d["rule"] == rule && d["customer"] == customer)
    })
    .unwrap_or_else(|| panic!("no `{rule}` delivery for {customer}"))
}

#[test]
fn a_plugin_swapped_under_a_running_server_sends_after_the_reload() {
    let provider = provider();
    let scratch = Scratch::new();
    // The channel's plugin is a file of the deployment's own.
    let wasm = scratch.path("hook.wasm");
    std::fs::copy(plugin("webhook"), &wasm).unwrap();
    let hook = |plugin: &Path| {
        Channel::plugin_at(plugin)
            .allow(&provider.origin())
            .setting("url", provider.url("/hook"))
            .setting("secret", env("OPS_HOOK_SECRET"))
    };
    let deployment = |plugin: &Path| {
        Config::new()
            .tick("100ms")
            .max_attempts(1)
            .channel("hook", hook(plugin))
            .rule(welcome(&["hook"]))
    };
    let config = deployment(&wasm).write(&scratch);
    let server = serve(&config, &scratch);
    add_customer(&server, "c1");
    wait_sent(&provider, "welcome", "c1");
    assert_eq!(
        delivered(&config, &scratch, "welcome", "c1")["provider"],
        "webhook"
    );

    // A new build of the plugin replaces the file (here: the console plugin,
    // which logs a message instead of posting it); the reload loads it.
    replace_file(&wasm, &plugin("console"));
    let (status, body) = server.api("POST", "/admin/reload", None);
    assert_eq!(status, 200, "{body}; log: {}", server.log());
    add_customer(&server, "c2");
    let c2 = delivered(&config, &scratch, "welcome", "c2");
    assert_eq!(
        (c2["status"].as_str(), c2["provider"].as_str()),
        (Some("delivered"), Some("console")),
        "{c2}; log: {}",
        server.log()
    );
    assert_eq!(
        sent(&provider),
        [("welcome".to_string(), "c1".to_string())],
        "the swapped plugin posts nothing"
    );

    // Pointing the config at another plugin file works the same by SIGHUP.
    std::fs::write(&config, deployment(&plugin("webhook")).toml()).unwrap();
    sighup(&server);
    wait_log(&server, "reloaded", 2);
    add_customer(&server, "c3");
    wait_sent(&provider, "welcome", "c3");
    assert_eq!(
        delivered(&config, &scratch, "welcome", "c3")["provider"],
        "webhook"
    );
}

#[test]
fn metrics_count_sends_by_channel_and_outcome() {
    let provider = provider();
    let scratch = Scratch::new();
    let config = deployment(&provider).write(&scratch);
    let server = serve(&config, &scratch);
    for id in ["ok-1", "ok-2", "ok-3", "bad-1"] {
        add_customer(&server, id);
    }
    let all = wait_for(20, || {
        let rows = deliveries(&config, &scratch.path("h.db"));
        (rows.len() >= 4).then_some(rows)
    })
    .expect("four attempts recorded");
    assert_eq!(all.len(), 4);

    let m = metrics(&server);
    assert_eq!(
        sample(
            &m,
            "herald_sends_total{channel=\"hook\",outcome=\"delivered\"}"
        ),
        Some(3.0),
        "{m}"
    );
    // max_attempts = 1: the 400 is final.
    let failed = sample(
        &m,
        "herald_sends_total{channel=\"hook\",outcome=\"failed\"}",
    )
    .unwrap_or(0.0)
        + sample(&m, "herald_sends_total{channel=\"hook\",outcome=\"dead\"}").unwrap_or(0.0);
    assert_eq!(failed, 1.0, "{m}");
    assert_eq!(
        sample(&m, "herald_plugin_call_seconds_count{channel=\"hook\"}"),
        Some(4.0),
        "{m}"
    );
    assert_eq!(sample(&m, "herald_due_backlog"), Some(0.0), "{m}");
    assert_eq!(sample(&m, "herald_tick_lag_seconds"), Some(0.0), "{m}");
    assert!(
        m.contains("# TYPE herald_plugin_call_seconds histogram"),
        "{m}"
    );

    // Admin only.
    assert_eq!(Request::get(&server.url("/metrics")).send().status, 401);
    let ingest = create_token(&config, &scratch.path("h.db"), "ingest", &[]);
    let answer = Request::get(&server.url("/metrics")).bearer(&ingest).send();
    assert_eq!(answer.status, 403);
}
