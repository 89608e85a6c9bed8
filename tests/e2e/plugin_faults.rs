//! Plugins that trap, loop forever, try to allocate 1 GiB, or call a host
//! off their allow-list: each fails its own send with the reason recorded,
//! and the host goes on to deliver the next one. A loop ends at the
//! channel's run-time budget (`cpu`, 50ms by default), or at its wall-clock
//! `timeout` when that comes first.

use crate::support::*;

fn config(plugin: &str) -> String {
    format!(
        r#"
[retry]
max_attempts = 1

[channels.trap]
plugin = "{plugin}"
settings = {{ mode = "trap" }}

[channels.loop]
plugin = "{plugin}"
settings = {{ mode = "loop" }}
timeout = "1s"

[channels.loop-wall]
plugin = "{plugin}"
settings = {{ mode = "loop" }}
timeout = "300ms"
cpu = "10s"

[channels.oom]
plugin = "{plugin}"
settings = {{ mode = "oom" }}
memory = "32MiB"

[channels.forbidden]
plugin = "{plugin}"
settings = {{ mode = "forbidden-host", url = "http://127.0.0.1:9/steal" }}
allowed_hosts = ["https://api.example.com"]

[channels.ok]
plugin = "{plugin}"
settings = {{ mode = "ok" }}

[[rules]]
id = "r-trap"
trigger = {{ on = "created" }}
channels = ["trap"]
subject = "s"
text = "t"

[[rules]]
id = "r-loop"
trigger = {{ on = "created", delay = "1m" }}
channels = ["loop"]
subject = "s"
text = "t"

[[rules]]
id = "r-oom"
trigger = {{ on = "created", delay = "2m" }}
channels = ["oom"]
subject = "s"
text = "t"

[[rules]]
id = "r-forbidden"
trigger = {{ on = "created", delay = "3m" }}
channels = ["forbidden"]
subject = "s"
text = "t"

[[rules]]
id = "r-loop-wall"
trigger = {{ on = "created", delay = "5m" }}
channels = ["loop-wall"]
subject = "s"
text = "t"

[[rules]]
id = "r-ok"
trigger = {{ on = "created", delay = "4m" }}
channels = ["ok"]
subject = "still here"
text = "t"
"#
    )
}

#[test]
fn misbehaving_plugins_fail_only_their_own_send() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "herald.toml",
        &config(&plugin("chaos").display().to_string()),
    );
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1","name":"C"}}"#,
    );
    let db = scratch.path("h.db");
    let (attempts, stderr) = simulate(
        &config,
        &timeline,
        "2026-03-01",
        "2026-03-02",
        &["--db", db.to_str().unwrap()],
    );
    let by_rule = |r: &str| {
        attempts
            .iter()
            .find(|a| a.rule == r)
            .unwrap_or_else(|| panic!("no attempt for {r}: {stderr}"))
    };
    assert_eq!(by_rule("r-trap").status, "dead");
    assert_eq!(by_rule("r-loop").status, "dead");
    assert_eq!(by_rule("r-loop-wall").status, "dead");
    assert_eq!(by_rule("r-oom").status, "dead");
    assert_eq!(
        by_rule("r-forbidden").status,
        "failed",
        "a denied host is a permanent failure"
    );
    assert_eq!(by_rule("r-ok").status, "delivered");
    assert_eq!(attempts.len(), 6);

    let rows = deliveries(&config, &db);
    let error = |rule: &str| -> String {
        rows.iter().find(|r| r["rule"] == rule).unwrap()["error"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(error("r-trap").contains("trapped"), "{}", error("r-trap"));
    assert!(
        error("r-loop").contains("ran for more than its 50ms of run time")
            && error("r-loop").contains("`cpu`"),
        "{}",
        error("r-loop")
    );
    assert!(
        error("r-loop-wall").contains("timed out"),
        "{}",
        error("r-loop-wall")
    );
    assert!(error("r-oom").contains("memory"), "{}", error("r-oom"));
    assert!(
        error("r-forbidden").contains("allowed_hosts"),
        "{}",
        error("r-forbidden")
    );
    assert!(
        stderr.contains("denied"),
        "the denied request is logged: {stderr}"
    );
}

#[test]
fn a_plugin_of_the_wrong_kind_or_version_is_refused_at_start() {
    let scratch = Scratch::new();
    // Not a component at all.
    let bogus = scratch.write("bogus.wasm", "definitely not wasm");
    let config = scratch.write(
        "herald.toml",
        &format!(
            "[channels.x]\nplugin = \"{}\"\n[[rules]]\nid = \"r\"\ntrigger = {{ on = \"created\" }}\nchannels = [\"x\"]\nsubject = \"s\"\ntext = \"t\"\n",
            bogus.display()
        ),
    );
    let timeline = scratch.write("t.jsonl", "");
    let stderr = expect_refusal(&mut simulate_cmd(
        &config,
        &timeline,
        "2026-03-01",
        "2026-03-02",
    ));
    assert!(
        stderr.contains("[channels.x]") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}
