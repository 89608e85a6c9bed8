//! Plugins that trap, loop forever, try to allocate 1 GiB, or call a host
//! off their allow-list: each fails its own send with the reason recorded,
//! and the host goes on to deliver the next one. A loop ends at the
//! channel's run-time budget (`cpu`, 50ms by default), or at its wall-clock
//! `timeout` when that comes first.

use crate::support::*;

fn config() -> Config {
    let chaos = |mode: &str| Channel::plugin("chaos").setting("mode", mode);
    // One rule per channel, each due a minute or more after sign-up.
    let rule = |id: &str, delay: &str, channel: &str, subject: &str| {
        let trigger = match delay {
            "" => ON_CREATED.to_string(),
            delay => format!(r#"{{ on = "created", delay = "{delay}" }}"#),
        };
        Rule::new(id, &trigger, &[channel], subject, "t")
    };
    Config::new()
        .max_attempts(1)
        .channel("trap", chaos("trap"))
        .channel("loop", chaos("loop").set("timeout", "1s"))
        .channel(
            "loop-wall",
            chaos("loop").set("timeout", "300ms").set("cpu", "10s"),
        )
        // The memory cap must end it, not the run-time budget, which a
        // loaded machine can spend on allocating 32 MiB.
        .channel("oom", chaos("oom").set("memory", "32MiB").set("cpu", "5s"))
        .channel(
            "forbidden",
            chaos("forbidden-host")
                .setting("url", "http://127.0.0.1:9/steal")
                .allow("https://api.example.com"),
        )
        .channel("ok", chaos("ok"))
        .rule(rule("r-trap", "", "trap", "s"))
        .rule(rule("r-loop", "1m", "loop", "s"))
        .rule(rule("r-oom", "2m", "oom", "s"))
        .rule(rule("r-forbidden", "3m", "forbidden", "s"))
        .rule(rule("r-loop-wall", "5m", "loop-wall", "s"))
        .rule(rule("r-ok", "4m", "ok", "still here"))
}

#[test]
fn misbehaving_plugins_fail_only_their_own_send() {
    let scratch = Scratch::new();
    let config = config().write(&scratch);
    let timeline = scratch.write(
        "t.jsonl",
        r#"{"at":"2026-03-01T09:00:00Z","op":"upsert","customer":{"external_id":"c1","name":"C"}}"#,
    );
    let db = scratch.path("h.db");
    let (attempts, stderr) = simulate(&config, &timeline, MARCH_1, &["--db", db.to_str().unwrap()]);
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
    let stderr = refusal(
        Config::new()
            .channel("x", Channel::plugin_at(&bogus))
            .rule(Rule::new("r", ON_CREATED, &["x"], "s", "t")),
    );
    assert!(
        stderr.contains("[channels.x]") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
}

/// Compiled plugins are loaded as native code, so a cache directory another
/// user can write would let them run code as Herald: refused, as is a
/// fallback to a shared temporary directory when no cache directory is set.
#[test]
fn a_plugin_cache_other_users_can_write_or_none_at_all_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new();
    let config = Config::new()
        .channel("ok", Channel::plugin("chaos"))
        .rule(Rule::new("r", ON_CREATED, &["ok"], "s", "t"))
        .write(&scratch);
    let check = |configure: &dyn Fn(&mut std::process::Command)| {
        let mut cmd = herald();
        cmd.args(["check", "--config"]).arg(&config);
        configure(&mut cmd);
        let out = run(&mut cmd);
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    };

    let shared = scratch.path("shared-cache");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (ok, said) = check(&|cmd| {
        cmd.env("HERALD_CACHE_DIR", &shared);
    });
    assert!(!ok, "{said}");
    assert!(
        said.contains("writable by other users") && said.contains("chmod 700"),
        "{said}"
    );

    let (ok, said) = check(&|cmd| {
        cmd.env_remove("HERALD_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HOME");
    });
    assert!(!ok, "{said}");
    assert!(said.contains("set HERALD_CACHE_DIR"), "{said}");

    let fresh = scratch.path("fresh/cache");
    let (ok, said) = check(&|cmd| {
        cmd.env("HERALD_CACHE_DIR", &fresh);
    });
    assert!(ok, "{said}");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "created for this user alone: {mode:o}");
}
