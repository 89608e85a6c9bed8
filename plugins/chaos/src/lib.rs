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
//!   the pdk's mapping.

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
            accepts_callbacks: false,
            settings: vec![
                SettingSpec::optional(
                    "mode",
                    "How to misbehave: ok (default), trap, loop, oom, forbidden-host, socket, file or env",
                ),
                SettingSpec::optional(
                    "address",
                    "host:port the socket mode connects to (default 127.0.0.1:9)",
                ),
                SettingSpec::optional(
                    "url",
                    &format!("The URL fetched in forbidden-host mode (default `{DEFAULT_URL}`)"),
                ),
            ],
        }
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        herald_pdk::no_callbacks()
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
                "unknown chaos mode `{other}`: use ok, trap, loop, oom, forbidden-host, socket, file or env"
            ))),
        }
    }
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
