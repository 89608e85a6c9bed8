//! `herald plugin inspect | test | new`: the plugin developer's tools, run
//! as a vendor would — on the real bundled plugins (sms-twilio, cadence,
//! chaos) and on a freshly scaffolded crate built with cargo.

use crate::support::{herald, plugin, plugin_built_for_0_1, repo_root, run, text, Scratch};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tw-secret-token-5f3a9c";
const KEY: &str = "herald:c042:trial-day7:2026-01-12T10:00:00Z";

fn twilio_url() -> String {
    format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
}

fn inspect_json(path: &Path) -> Value {
    let out = run(herald().args(["plugin", "inspect", "--json"]).arg(path));
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_str(&text(&out.stdout)).expect("inspect --json prints JSON")
}

#[test]
fn inspect_shows_world_settings_with_secrets_and_imports() {
    let twilio = plugin("sms-twilio");
    let v = inspect_json(&twilio);
    assert_eq!(v["world"], "channel-plugin");
    assert_eq!(v["package"], "herald:plugin@0.2.0");
    assert_eq!(v["current_contract"], true);
    assert_eq!(v["name"], "sms-twilio");
    assert_eq!(v["address"], "phone");
    assert_eq!(v["accepts_callbacks"], true);
    let setting = |key: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no setting {key}: {v}"))
            .clone()
    };
    assert_eq!(setting("auth_token")["secret"], true);
    assert_eq!(setting("auth_token")["required"], true);
    assert_eq!(setting("account_sid")["secret"], false);
    assert_eq!(setting("from")["required"], false);
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports.contains(&"herald:plugin/types@0.2.0"),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@")),
        "{imports:?}"
    );

    let out = run(herald().args(["plugin", "inspect"]).arg(&twilio));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("world     channel-plugin (herald:plugin@0.2.0)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("contract  herald:plugin@0.2.0, the current contract"),
        "{stdout}"
    );
    let token_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("auth_token"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(token_line.contains("required, SECRET"), "{token_line}");
    let sid_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("account_sid"))
        .unwrap();
    assert!(!sid_line.contains("SECRET"), "{sid_line}");

    let v = inspect_json(&plugin("cadence"));
    assert_eq!(v["world"], "targeting-plugin");
    assert_eq!(v["name"], "cadence");
    assert_eq!(v["address"], "none");
    assert!(
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["key"] == "min_events"),
        "{v}"
    );
    assert!(
        !v["imports"]
            .to_string()
            .contains("wasi:http/outgoing-handler"),
        "a targeting plugin has no network: {v}"
    );
}

/// A plugin a vendor built against contract 0.1.0 inspects as such, with its
/// own 0.1.0 imports, and says it is served through the adapter.
#[test]
fn inspect_names_the_contract_a_plugin_was_built_against() {
    for (name, world) in [
        ("console", "channel-plugin"),
        ("cadence", "targeting-plugin"),
    ] {
        let old = plugin_built_for_0_1(name);
        let v = inspect_json(&old);
        assert_eq!(v["world"], world);
        assert_eq!(v["package"], "herald:plugin@0.1.0");
        assert_eq!(v["current_contract"], false);
        assert_eq!(v["name"], name);
        let imports = v["imports"].to_string();
        assert!(
            imports.contains("herald:plugin/types@0.1.0") && !imports.contains("@0.2.0"),
            "{imports}"
        );
        let out = run(herald().args(["plugin", "inspect"]).arg(&old));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(
                "contract  herald:plugin@0.1.0, an earlier contract: this Herald still serves it"
            ),
            "{stdout}"
        );
    }
}

/// `herald check` passes a deployment with a plugin built against 0.1.0,
/// warning that it is served through the adapter and what a rebuild brings.
#[test]
fn check_warns_about_a_plugin_built_against_an_earlier_contract() {
    let scratch = Scratch::new();
    let config = crate::support::Config::new()
        .channel(
            "old",
            crate::support::Channel::plugin_at(&plugin_built_for_0_1("console")),
        )
        .channel("new", crate::support::Channel::plugin("console"))
        .rule(crate::support::Rule::new(
            "r",
            crate::support::ON_CREATED,
            &["old", "new"],
            "s",
            "t",
        ))
        .write(&scratch);
    let out = run(herald().args(["check", "--config"]).arg(&config));
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        out.status.success(),
        "a warning does not fail the check: {said}"
    );
    assert!(
        said.contains("its plugin was built against herald:plugin@0.1.0, an earlier contract this Herald still serves"),
        "{said}"
    );
    assert_eq!(said.matches("an earlier contract").count(), 1, "{said}");
}

/// A copy of a bundled plugin with every `from` replaced by `to` (same length).
fn patched(scratch: &Scratch, name: &str, from: &str, to: &str) -> PathBuf {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(plugin("console")).unwrap();
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut i = 0;
    let mut replaced = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(replaced > 0);
    let path = scratch.path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn inspect_error(path: &Path) -> String {
    let out = run(herald().args(["plugin", "inspect"]).arg(path));
    assert!(!out.status.success(), "{} was accepted", path.display());
    assert!(text(&out.stdout).is_empty());
    text(&out.stderr)
}

#[test]
fn inspect_refuses_what_is_not_a_herald_plugin_and_says_why() {
    let s = Scratch::new();
    let err = inspect_error(&s.write("notes.wasm", "hello"));
    assert!(err.contains("is not a WebAssembly file"), "{err}");
    assert!(err.contains("herald:plugin/channel@0.2.0"), "{err}");

    let core = s.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = inspect_error(&core);
    assert!(
        err.contains("core WebAssembly module, not a component") && err.contains("wasm32-wasip2"),
        "{err}"
    );

    let other = patched(&s, "acme.wasm", "herald:plugin", "acmeco:plugin");
    let err = inspect_error(&other);
    assert!(
        err.contains("is not a Herald plugin")
            && err.contains("it exports acmeco:plugin/channel@0.2.0")
            && err.contains("Herald expects a component exporting herald:plugin/channel@0.2.0"),
        "{err}"
    );

    let newer = patched(
        &s,
        "newer.wasm",
        "herald:plugin/channel@0.2.0",
        "herald:plugin/channel@0.9.0",
    );
    let err = inspect_error(&newer);
    assert!(
        err.contains("was built for herald:plugin@0.9.0")
            && err.contains("herald:plugin/channel@0.9.0")
            && err.contains("this Herald serves herald:plugin@0.1.0, herald:plugin@0.2.0"),
        "{err}"
    );

    let err = inspect_error(&s.path("missing.wasm"));
    assert!(err.contains("cannot read plugin"), "{err}");
}

/// A vendor's test directory for sms-twilio.
fn twilio_case(s: &Scratch, fixtures: Value) -> Vec<String> {
    s.write(
        "settings.toml",
        &format!(
            r#"allowed_hosts = ["https://api.twilio.com"]
[settings]
account_sid = "{SID}"
auth_token = {{ env = "PLUGIN_TEST_TWILIO_TOKEN" }}
from = "+15005550006"
"#
        ),
    );
    s.write(
        "message.json",
        &json!({
            "idempotency_key": KEY,
            "rule": "trial-day7",
            "recipient": {"customer_id": "c042", "phone": "+1 (555) 123-4567", "timezone": "America/New_York"},
            "text": "How is your first week going?"
        })
        .to_string(),
    );
    s.write("fixtures.json", &fixtures.to_string());
    vec![
        "plugin".into(),
        "test".into(),
        plugin("sms-twilio").display().to_string(),
        "--settings".into(),
        s.path("settings.toml").display().to_string(),
        "--message".into(),
        s.path("message.json").display().to_string(),
        "--http".into(),
        s.path("fixtures.json").display().to_string(),
    ]
}

fn plugin_test(args: &[String], extra: &[&str]) -> Output {
    run(herald()
        .args(args)
        .args(extra)
        .env("PLUGIN_TEST_TWILIO_TOKEN", TOKEN))
}

/// The JSON report of a run that must have passed.
fn passed(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    report(out)
}

fn report(out: &Output) -> Value {
    serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("{e}: {} / {}", text(&out.stdout), text(&out.stderr)))
}

/// The only fixture of a case: Twilio answers `status` with a JSON `body`.
fn twilio_answers(status: u16, body: Value) -> Value {
    let json = json!({"content-type": "application/json"});
    json!([twilio_fixture(status, json, body)])
}

fn twilio_fixture(status: u16, headers: Value, body: Value) -> Value {
    json!({
        "method": "POST",
        "url": twilio_url(),
        "body": {"contains": ["To=%2B15551234567", "From=%2B15005550006"]},
        "response": {"status": status, "headers": headers, "body": body}
    })
}

#[test]
fn test_sends_twilio_against_fixtures_and_records_the_request() {
    let s = Scratch::new();
    let args = twilio_case(
        &s,
        twilio_answers(
            201,
            json!({"sid": "SM00000000000000000000000000000001", "status": "queued"}),
        ),
    );
    let record = s.path("recorded.json");
    let out = plugin_test(&args, &["--json", "--record", record.to_str().unwrap()]);
    let r = passed(&out);
    assert_eq!(r["outcome"], "sent");
    assert_eq!(
        r["provider_message_id"],
        "SM00000000000000000000000000000001"
    );
    assert_eq!(r["pass"], true);
    assert_eq!(r["world"], "channel-plugin");
    assert!(r["fuel"].as_u64().unwrap() > 0, "{r}");
    assert!(r["fuel"].as_u64() < r["fuel_budget"].as_u64(), "{r}");
    assert!(r["elapsed_ms"].as_f64().unwrap() > 0.0, "{r}");

    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let requests = recorded.as_array().unwrap();
    assert_eq!(requests.len(), 1, "{recorded}");
    let req = &requests[0];
    assert_eq!(req["method"], "POST");
    assert_eq!(req["url"], twilio_url());
    assert_eq!(req["result"], "answered");
    assert_eq!(req["fixture"], 1);
    assert_eq!(req["status"], 201);
    assert_eq!(req["headers"]["authorization"], "Basic [redacted]");
    assert_eq!(req["headers"]["i-twilio-idempotency-token"], KEY);
    assert_eq!(
        req["headers"]["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        req["body"],
        "To=%2B15551234567&From=%2B15005550006&Body=How+is+your+first+week+going%3F"
    );
    assert_eq!(
        &r["requests"], &recorded,
        "the report and the recording agree"
    );
    let everything = format!("{}{}{recorded}", text(&out.stdout), text(&out.stderr));
    assert!(
        !everything.contains(TOKEN),
        "the secret leaked: {everything}"
    );

    // The text report says the same for a human.
    let out = plugin_test(&args, &[]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    for want in [
        "outcome  sent: provider message id SM00000000000000000000000000000001",
        &format!("#1 POST {} -> 201 from fixture 1", twilio_url()),
        "authorization: Basic [redacted]",
        "result   PASS (expected sent)",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from\n{stdout}");
    }
    assert!(
        stdout.contains("fuel     ") && stdout.contains("time     "),
        "{stdout}"
    );
}

/// Plugins that parse provider JSON keep the workspace's 128 KiB stack
/// (`.cargo/config.toml`); console and the others linked with 32 KiB
/// (`plugins/small-stack.rs`) overflow on a body this deep.
#[test]
fn twilio_parses_a_deeply_nested_error_body_without_overflowing_its_stack() {
    let s = Scratch::new();
    let mut nested = json!(0);
    for _ in 0..120 {
        nested = json!([nested]);
    }
    let args = twilio_case(
        &s,
        twilio_answers(
            400,
            json!({"code": 21211, "message": "bad number", "more": nested, "status": 400}),
        ),
    );
    let out = plugin_test(&args, &["--json", "--expect", "invalid-address"]);
    let r = report(&out);
    assert_eq!(r["outcome"], "invalid-address", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("21211"), "{r}");
}

#[test]
fn test_maps_provider_errors_and_the_exit_code_follows_expect() {
    let s = Scratch::new();
    let args = twilio_case(
        &s,
        twilio_answers(
            400,
            json!({"code": 21211, "message": "The 'To' number +15551234567 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
        ),
    );
    let out = plugin_test(&args, &["--json"]);
    assert!(!out.status.success(), "an invalid address is not a pass");
    let r = report(&out);
    assert_eq!(r["outcome"], "invalid-address");
    assert!(r["reason"].as_str().unwrap().contains("21211"), "{r}");
    assert_eq!(r["pass"], false);
    assert!(
        r["problems"][0]
            .as_str()
            .unwrap()
            .contains("expected sent, got invalid-address"),
        "{r}"
    );
    let out = plugin_test(&args, &["--expect", "invalid-address"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("result   PASS (expected invalid-address)"));
    let out = plugin_test(&args, &["--expect", "retryable"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("FAIL: expected retryable, got invalid-address"),
        "{}",
        text(&out.stdout)
    );

    let s = Scratch::new();
    let args = twilio_case(
        &s,
        json!([twilio_fixture(
            429,
            json!({"content-type": "application/json", "retry-after": "30"}),
            json!({"code": 20429, "message": "Too Many Requests", "status": 429})
        )]),
    );
    let out = plugin_test(&args, &["--json"]);
    assert!(!out.status.success());
    let r = report(&out);
    assert_eq!(r["outcome"], "retryable");
    assert_eq!(r["retry_after_ms"], 30_000);
    let out = plugin_test(&args, &["--expect", "retryable"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout)
            .contains("outcome  retryable (retry after 30s): Twilio answered HTTP 429 error 20429"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn test_reports_unmatched_requests_as_failures() {
    let s = Scratch::new();
    // The fixture wants another recipient: the request matches nothing.
    let mut fixture = twilio_fixture(201, json!({}), json!({"sid": "SM1"}));
    fixture["body"] = json!({"contains": "To=%2B19990000000"});
    let args = twilio_case(&s, json!([fixture]));
    let out = plugin_test(&args, &["--expect", "retryable"]);
    assert!(!out.status.success(), "an unmatched request fails the test");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "#1 POST {} -> UNMATCHED, answered 501: fixture 1: the body lacks `To=%2B19990000000`",
            twilio_url()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL: 1 request(s) matched no fixture"),
        "{stdout}"
    );

    // A request outside allowed_hosts is denied as in a deployment.
    let s = Scratch::new();
    let mut args = twilio_case(&s, json!([]));
    s.write(
        "settings.toml",
        &format!(
            "allowed_hosts = [\"https://api.twilio.com\"]\n[settings]\naccount_sid = \"{SID}\"\nauth_token = \"{TOKEN}\"\nfrom = \"+15005550006\"\napi_base = \"https://evil.example.com\"\n"
        ),
    );
    args.push("--json".into());
    let out = plugin_test(&args, &[]);
    assert!(!out.status.success());
    let r = report(&out);
    assert_eq!(r["outcome"], "permanent", "{r}");
    assert_eq!(r["requests"][0]["result"], "denied");
    assert!(
        r["problems"].to_string().contains("not in allowed_hosts"),
        "{r}"
    );
    assert!(
        !text(&out.stdout).contains(TOKEN),
        "a literal secret setting is masked too"
    );
}

#[test]
fn test_reports_a_looping_plugin_as_out_of_fuel_timed_out_or_over_its_run_time() {
    let s = Scratch::new();
    s.write(
        "message.json",
        r#"{"recipient": {"customer_id": "c1"}, "text": "hi"}"#,
    );
    let base = |settings: &str| {
        s.write("settings.toml", settings);
        let mut cmd = herald();
        cmd.args(["plugin", "test"])
            .arg(plugin("chaos"))
            .arg("--settings")
            .arg(s.path("settings.toml"))
            .arg("--message")
            .arg(s.path("message.json"))
            .arg("--json");
        run(&mut cmd)
    };
    let out = base("fuel = 20000000\n[settings]\nmode = \"loop\"\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let r = report(&out);
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["kind"], "out-of-fuel", "{r}");
    assert_eq!(r["fuel"], 20_000_000);
    assert!(
        r["reason"].as_str().unwrap().contains("ran out of fuel"),
        "{r}"
    );

    let out = base(
        "timeout = \"300ms\"\ncpu = \"10s\"\nfuel = 1000000000000\n[settings]\nmode = \"loop\"\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let r = report(&out);
    assert_eq!(r["outcome"], "failed");
    assert_eq!(r["kind"], "timeout", "{r}");

    // With the deployment's default run-time budget (50ms), long before
    // the default 5s timeout.
    let out = base("fuel = 1000000000000\n[settings]\nmode = \"loop\"\n");
    assert_eq!(out.status.code(), Some(1));
    let r = report(&out);
    assert_eq!(r["kind"], "run-time", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("50ms of run time"),
        "{r}"
    );

    // And the ok mode passes, with no HTTP at all.
    let out = base("[settings]\nmode = \"ok\"\n");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        report(&out)["provider_message_id"],
        "chaos-herald:plugin-test"
    );
}

#[test]
fn test_evaluates_a_targeting_plugin() {
    let s = Scratch::new();
    // Purchases every 10 days; the customer is now 20 days late.
    let history: Vec<Value> = ["01-01", "01-11", "01-21", "01-31", "02-10"]
        .iter()
        .map(|d| json!({"kind": "purchase", "at": format!("2026-{d}T12:00:00Z"), "properties": {}}))
        .collect();
    s.write(
        "input.json",
        &json!({
            "customer": {"external_id": "c7", "timezone": "Asia/Shanghai"},
            "history": history,
            "now": "2026-03-01T12:00:00Z"
        })
        .to_string(),
    );
    s.write("settings.toml", "[settings]\nkind = \"purchase\"\n");
    let out = run(herald()
        .args(["plugin", "test"])
        .arg(plugin("cadence"))
        .arg("--settings")
        .arg(s.path("settings.toml"))
        .arg("--message")
        .arg(s.path("input.json"))
        .args(["--expect", "send", "--json"]));
    let r = passed(&out);
    assert_eq!(r["world"], "targeting-plugin");
    assert_eq!(r["outcome"], "send");
    assert!(r["variables"].is_object(), "{r}");
    assert!(
        r["fuel"].as_u64().unwrap() > 0 && r["fuel_budget"] == 11_000_000,
        "{r}"
    );

    let out = run(herald()
        .args(["plugin", "test"])
        .arg(plugin("cadence"))
        .arg("--message")
        .arg(s.path("input.json"))
        .args(["--expect", "sent"]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("use send, skip or defer"),
        "{}",
        text(&out.stderr)
    );
}

fn cargo_build(dir: &Path) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--target", "wasm32-wasip2", "--release"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo_root().join("target"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "the scaffold does not build:\n{}",
        text(&out.stderr)
    );
}

/// `herald plugin new NAME --kind KIND --dir DIR`.
fn plugin_new(name: &str, kind: &str, dir: &Path) -> Output {
    run(herald()
        .args(["plugin", "new", name, "--kind", kind, "--dir"])
        .arg(dir))
}

/// `herald plugin test` of a scaffold's build, in its directory, with the
/// files it ships and these arguments; it must pass. The JSON report.
fn test_scaffold(dir: &Path, wasm: &Path, args: &[&str]) -> Value {
    let out = run(herald()
        .current_dir(dir)
        .args(["plugin", "test"])
        .arg(wasm)
        .args(["--settings", "settings.toml", "--message", "message.json"])
        .args(args));
    passed(&out)
}

#[test]
fn new_scaffolds_a_channel_plugin_that_builds_and_passes_its_test() {
    let s = Scratch::new();
    let dir = s.path("sms-scaffold-e2e");
    let out = plugin_new("sms-scaffold-e2e", "channel", &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("cargo build --target wasm32-wasip2 --release"));
    let again = plugin_new("sms-scaffold-e2e", "channel", &dir);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists and is not empty"));

    cargo_build(&dir);
    let wasm = repo_root().join("target/wasm32-wasip2/release/sms_scaffold_e2e.wasm");
    let r = test_scaffold(&dir, &wasm, &["--http", "fixtures.json", "--json"]);
    assert_eq!(r["outcome"], "sent");
    assert_eq!(r["provider_message_id"], "msg-0001");
    assert_eq!(
        r["requests"][0]["headers"]["authorization"],
        "Bearer [redacted]"
    );
    assert_eq!(
        r["requests"][0]["body"],
        r#"{"text":"Welcome to Acme, Ada!","to":"+15551234567"}"#
    );

    let v = inspect_json(&wasm);
    assert_eq!(v["name"], "sms-scaffold-e2e");
    assert_eq!(v["world"], "channel-plugin");
    assert_eq!(v["address"], "phone");
    let api_key = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "api_key")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(api_key["secret"], true);
    assert_eq!(api_key["required"], false);
}

#[test]
fn new_scaffolds_a_targeting_plugin_that_builds_and_passes_its_test() {
    let s = Scratch::new();
    let dir = s.path("quiet-scaffold-e2e");
    let out = plugin_new("quiet-scaffold-e2e", "targeting", &dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    cargo_build(&dir);
    let wasm = repo_root().join("target/wasm32-wasip2/release/quiet_scaffold_e2e.wasm");
    let r = test_scaffold(&dir, &wasm, &["--expect", "send", "--json"]);
    assert_eq!(r["outcome"], "send");
    assert_eq!(r["variables"]["days_quiet"], 10);
    let v = inspect_json(&wasm);
    assert_eq!(v["world"], "targeting-plugin");
    assert_eq!(v["name"], "quiet-scaffold-e2e");
}
