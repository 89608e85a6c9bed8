//! `herald-greedy`: a targeting plugin that misbehaves on purpose, for
//! Herald's own tests of the limits it puts on every plugin call (fuel,
//! memory cap, deadline, traps) and of the three ordinary decisions.
//!
//! It owns only the `mode` setting's behaviours: `spin`, `alloc`, `trap`,
//! `sleep`, `ok`, `skip` and `defer`. Never configure it in production.

wit_bindgen::generate!({
    path: "../../wit",
    world: "herald:plugin/targeting-plugin",
});

use std::hint::black_box;

use exports::herald::plugin::targeting::{CustomerView, Decision, Event, Guest, Variable};
use herald::plugin::types::{AddressKind, PluginInfo, Setting, SettingSpec};

const MODES: &str = "spin, alloc, trap, sleep, ok, skip or defer";
const GIB: usize = 1 << 30;
const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;
const HOUR_MS: i64 = 3_600_000;

struct Plugin;

fn spec(key: &str, description: &str, required: bool) -> SettingSpec {
    SettingSpec {
        key: key.to_string(),
        description: description.to_string(),
        secret: false,
        required,
    }
}

fn setting<'a>(settings: &'a [Setting], key: &str) -> Option<&'a str> {
    settings
        .iter()
        .find(|s| s.key == key)
        .map(|s| s.value.trim())
}

/// Burns instructions until the host's fuel (or deadline) stops it. The
/// counter goes through `black_box`, so the optimiser can neither remove
/// the loop nor prove it endless.
fn spin() -> u64 {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
        if black_box(n) == u64::MAX {
            return n;
        }
    }
}

/// Allocates 1 GiB in 1 MiB chunks and writes one byte to every 4 KiB page
/// of each, so the linear memory really grows; the host's memory cap should
/// trap it. Only one byte a page is written (no memset of the whole chunk),
/// so the fuel spent stays far below the default budget and the memory cap,
/// not the fuel limit, is what stops it.
fn alloc() -> usize {
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(GIB / CHUNK);
    for _ in 0..GIB / CHUNK {
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
        for page in chunk.spare_capacity_mut().iter_mut().step_by(PAGE) {
            page.write(1);
        }
        chunks.push(black_box(chunk));
    }
    black_box(&chunks).iter().map(|c| c.capacity()).sum()
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "greedy".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            settings: vec![
                spec(
                    "mode",
                    "What to do: spin (loop forever), alloc (touch 1 GiB), trap (panic), sleep (block for sleep_ms), ok (send checked = true), skip, defer (one hour)",
                    true,
                ),
                spec(
                    "sleep_ms",
                    "How long mode = sleep blocks, in milliseconds (default 60000)",
                    false,
                ),
            ],
            accepts_callbacks: false,
        }
    }

    fn evaluate(
        settings: Vec<Setting>,
        _customer: CustomerView,
        _history: Vec<Event>,
        now: i64,
    ) -> Decision {
        match setting(&settings, "mode") {
            Some("spin") => {
                let n = spin();
                Decision::Skip(format!("greedy spun {n} times and was never stopped"))
            }
            Some("alloc") => {
                let bytes = alloc();
                Decision::Send(vec![Variable {
                    name: "allocated_bytes".to_string(),
                    value_json: bytes.to_string(),
                }])
            }
            Some("trap") => panic!("greedy was told to trap (mode = \"trap\")"),
            Some("sleep") => {
                let ms = match setting(&settings, "sleep_ms").map(str::parse::<u64>) {
                    None => 60_000,
                    Some(Ok(ms)) => ms,
                    Some(Err(_)) => {
                        return Decision::Skip(
                            "setting sleep_ms is not a whole number of milliseconds".to_string(),
                        )
                    }
                };
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Decision::Skip(format!("greedy slept {ms} ms and was never stopped"))
            }
            Some("ok") => Decision::Send(vec![Variable {
                name: "checked".to_string(),
                value_json: "true".to_string(),
            }]),
            Some("skip") => Decision::Skip("greedy says no".to_string()),
            Some("defer") => Decision::Defer(now + HOUR_MS),
            Some(other) => Decision::Skip(format!("unknown mode {other:?}; set mode to {MODES}")),
            None => Decision::Skip(format!("setting mode is missing; set it to {MODES}")),
        }
    }
}

export!(Plugin);
