//! `herald-chaos`: a deliberately misbehaving channel plugin for the host's
//! fault tests.
//!
//! It owns nothing but its misbehaviours, chosen by the `mode` setting:
//! - `ok` (default): delivers nothing and returns receipt `chaos-<key>`;
//! - `trap`: panics, which traps the instance;
//! - `loop`: spins forever, to exercise the host's fuel / epoch limits;
//! - `oom`: allocates and touches 1 GiB in 1 MiB chunks, to hit the host's
//!   memory cap;
//! - `forbidden-host`: GETs the `url` setting (default `http://example.com/`)
//!   and returns the resulting error (normally the host's denial) through
//!   the pdk's mapping;
//! - `flood-log`: writes `lines` (default 1000) log lines of `bytes`
//!   (default 100000) bytes each, then delivers: the host's log quota must
//!   hold;
//! - `huge-reason` / `huge-id`: fails with a reason, or delivers with a
//!   provider message id, of `bytes` (default 10000000) bytes of mixed
//!   one- and three-byte characters: the host must store a bounded one;
//! - `kv-stall`: GETs the `url` setting (a test's signal to make the store
//!   slow), then writes a key-value entry and delivers: the wait for the
//!   write must count against the run-time budget.
//!
//! Callbacks: a body `ID BYTES` becomes an undelivered report for
//! provider message id `ID` with a reason of `BYTES` bytes, or, with
//! `BYTES` given as `id:BYTES`, a report whose id is `BYTES` bytes long.

use herald_pdk::http::Request;
use herald_pdk::{
    classify_http_status, AddressKind, Guest, Message, PluginInfo, Receipt, SendError, Setting,
    SettingSpec, Settings,
};

const DEFAULT_URL: &str = "http://example.com/";

struct Chaos;

impl Guest for Chaos {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "chaos".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            accepts_callbacks: true,
            settings: vec![
                SettingSpec::optional(
                    "mode",
                    "How to misbehave: ok (default), trap, loop, oom, forbidden-host, flood-log, huge-reason, huge-id, kv-stall, socket, file or env",
                ),
                SettingSpec::optional(
                    "address",
                    "host:port the socket mode connects to (default 127.0.0.1:9)",
                ),
                SettingSpec::optional(
                    "url",
                    &format!("The URL fetched in forbidden-host and kv-stall modes (default `{DEFAULT_URL}`)"),
                ),
                SettingSpec::optional(
                    "lines",
                    "Log lines written in flood-log mode (default 1000)",
                ),
                SettingSpec::optional(
                    "bytes",
                    "Bytes of each log line (flood-log, default 100000) or of the reason or id (huge-reason, huge-id, default 10000000)",
                ),
            ],
        }
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        let body = String::from_utf8_lossy(&request.body);
        let mut words = body.split_whitespace();
        let (Some(id), Some(size)) = (words.next(), words.next()) else {
            return Err(herald_pdk::CallbackError::BadRequest(
                "chaos: the body is `ID BYTES` or `ID id:BYTES`".to_string(),
            ));
        };
        let (provider_message_id, reason) = match size.strip_prefix("id:") {
            Some(n) => (mixed(parse_size(n)?), "chaos".to_string()),
            None => (id.to_string(), mixed(parse_size(size)?)),
        };
        let report = herald_pdk::DeliveryReport {
            provider_message_id,
            state: herald_pdk::DeliveryState::Undelivered,
            reason: Some(reason),
        };
        herald_pdk::callback_reply(
            vec![herald_pdk::CallbackEvent::Report(report)],
            200,
            "text/plain",
            "ok",
        )
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let receipt = || Receipt {
            provider_message_id: format!("chaos-{}", message.idempotency_key),
        };
        match settings.get_or("mode", "ok").trim() {
            "ok" => Ok(receipt()),
            "trap" => panic!("chaos: trap mode requested"),
            "loop" => spin_forever(),
            "oom" => exhaust_memory(),
            "forbidden-host" => {
                let url = settings.get_or("url", DEFAULT_URL);
                let response = herald_pdk::http::send(Request::get(url))?;
                classify_http_status(response.status, response.header("retry-after"))?;
                Ok(receipt())
            }
            "flood-log" => {
                let lines = number(&settings, "lines", 1000);
                let line = mixed(number(&settings, "bytes", 100_000));
                for _ in 0..lines {
                    herald_pdk::log::warn(&line);
                }
                Ok(receipt())
            }
            "huge-reason" => Err(SendError::Permanent(mixed(number(
                &settings, "bytes", HUGE,
            )))),
            "huge-id" => Ok(Receipt {
                provider_message_id: mixed(number(&settings, "bytes", HUGE)),
            }),
            "kv-stall" => {
                let url = settings.get_or("url", DEFAULT_URL);
                herald_pdk::http::send(Request::get(url))?;
                herald_pdk::kv::set("chaos-stall", b"written", Some(60));
                Ok(receipt())
            }
            // The escape attempts below report what they got: a delivered
            // receipt means the sandbox let the plugin through.
            "socket" => {
                let address = settings.get_or("address", "127.0.0.1:9");
                match std::net::TcpStream::connect(address) {
                    Ok(_) => Ok(Receipt {
                        provider_message_id: format!("chaos-connected-{address}"),
                    }),
                    Err(e) => Err(SendError::Permanent(format!(
                        "chaos: socket to {address} refused: {e}"
                    ))),
                }
            }
            "file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(Receipt {
                    provider_message_id: format!("chaos-read-{}-bytes", text.len()),
                }),
                Err(e) => Err(SendError::Permanent(format!(
                    "chaos: reading /etc/passwd refused: {e}"
                ))),
            },
            "env" => match std::env::vars().next() {
                Some((k, _)) => Ok(Receipt {
                    provider_message_id: format!("chaos-env-{k}"),
                }),
                None => Err(SendError::Permanent(
                    "chaos: the environment is empty".to_string(),
                )),
            },
            other => Err(SendError::Permanent(format!(
                "unknown chaos mode `{other}`: use ok, trap, loop, oom, forbidden-host, flood-log, huge-reason, huge-id, kv-stall, socket, file or env"
            ))),
        }
    }
}

/// Default size of a huge reason or id: 10 MB.
const HUGE: usize = 10_000_000;

/// The setting `key` as a number, or `default`.
fn number(settings: &Settings, key: &str, default: usize) -> usize {
    settings
        .get(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A callback's size word as a number.
fn parse_size(text: &str) -> Result<usize, herald_pdk::CallbackError> {
    text.parse().map_err(|_| {
        herald_pdk::CallbackError::BadRequest(format!("chaos: `{text}` is not a byte count"))
    })
}

/// About `bytes` bytes of text mixing one-byte and three-byte characters
/// (`ab失败ab失败…`), so a cut at a byte count can land inside a character.
fn mixed(bytes: usize) -> String {
    let unit = "ab失败";
    let mut text = unit.repeat(bytes / unit.len() + 1);
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// Loops forever in a way the optimiser cannot remove.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 GiB in 1 MiB chunks, writing every page so the memory is
/// really committed, and keeps it all alive. With a memory cap in place the
/// allocation fails and the instance traps; without one it reports that no
/// cap was hit.
fn exhaust_memory() -> Result<Receipt, SendError> {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(CHUNKS);
    for i in 0..CHUNKS {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.chunks_mut(4096) {
            page[0] = (i as u8) | 1;
        }
        kept.push(std::hint::black_box(chunk));
    }
    std::hint::black_box(&kept);
    Err(SendError::Permanent(format!(
        "chaos: allocated {} MiB without hitting a memory limit",
        kept.len()
    )))
}

herald_pdk::export!(Chaos);
