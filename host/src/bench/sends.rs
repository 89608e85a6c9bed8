//! `herald bench`, part 3: end-to-end send throughput. Sends go through the
//! real `sms-twilio` plugin (fresh instance per send, `wasi:http` over
//! loopback) to a Twilio-shaped server in this process that checks basic
//! auth and the form fields and answers 201 with a message sid; the same
//! requests are then posted by native Rust (hyper, one connection per
//! request, as `wasi:http` does). Both run at the same concurrency in one
//! run, so the ratio is measured, not estimated.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald::clock::{SharedClock, VirtualClock};
use herald::plugin::bindings::channel_api::Message;
use herald::plugin::bindings::types::Setting;
use herald::plugin::http_policy::{AllowList, HttpMode};
use herald::plugin::{KvBackend, Limits, PluginServices, Runtime, SendOutcome, DEFAULT_MEMORY};
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const ACCOUNT: &str = "AC00000000000000000000000000000042";
const TOKEN: &str = "bench-token-not-a-secret";
/// Sends in flight at once, for both sides.
const CONCURRENCY: usize = 32;

/// What the loopback provider counted.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
}

/// Start the Twilio-shaped server on a free loopback port.
async fn start_provider(counters: Arc<Counters>) -> Result<SocketAddr> {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port for the bench provider")?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            axum::routing::post(
                |State(counters): State<Arc<Counters>>,
                 UrlPath(sid): UrlPath<String>,
                 headers: HeaderMap,
                 axum::Form(form): axum::Form<HashMap<String, String>>| async move {
                    let auth_ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                        == Some(expected_authorization().as_str());
                    let fields_ok = ["To", "From", "Body"]
                        .iter()
                        .all(|k| form.get(*k).is_some_and(|v| !v.is_empty()));
                    if sid != ACCOUNT || !auth_ok || !fields_ok {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        return (
                            StatusCode::BAD_REQUEST,
                            [("content-type", "application/json")],
                            r#"{"code":21211,"message":"bad request","status":400}"#.to_string(),
                        );
                    }
                    let n = counters.accepted.fetch_add(1, Ordering::Relaxed);
                    (
                        StatusCode::CREATED,
                        [("content-type", "application/json")],
                        format!(r#"{{"sid":"SM{n:032}","status":"queued"}}"#),
                    )
                },
            ),
        )
        .with_state(counters);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// `Basic base64(account:token)`.
fn expected_authorization() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"))
    )
}

/// The form body the plugin sends for `message`, for the native side.
fn native_form(message: &Message, from: &str) -> String {
    serde_urlencoded::to_string([
        ("To", message.recipient.phone.as_deref().unwrap_or("")),
        ("From", from),
        ("Body", message.text.trim()),
    ])
    .expect("string pairs encode")
}

/// One native send: a fresh connection, the same POST, the sid parsed.
async fn native_send(addr: SocketAddr, body: String) -> Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let request = http::Request::post(format!(
        "http://{addr}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    ))
    .header("host", addr.to_string())
    .header("authorization", expected_authorization())
    .header("content-type", "application/x-www-form-urlencoded")
    .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if status.as_u16() != 201 {
        bail!("native send answered {status}");
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(v["sid"].as_str().unwrap_or_default().to_string())
}

/// Run the send benchmark and print its figures.
pub async fn send_bench(
    dir: &Path,
    sends: usize,
    message: Message,
    t0: DateTime<Utc>,
) -> Result<()> {
    let counters = Arc::new(Counters::default());
    let addr = start_provider(counters.clone()).await?;
    let path = dir.join("sms-twilio.wasm");
    let clock: SharedClock = Arc::new(VirtualClock::new(t0));
    let services = PluginServices {
        kv: KvBackend::Memory(Arc::new(Mutex::new(HashMap::new()))),
        clock,
    };
    let runtime = Arc::new(Runtime::new(
        herald::config::default_cache_dir()?,
        DEFAULT_MEMORY,
    )?);
    // The bench provider listens on loopback.
    let allowed = AllowList::parse(&[format!("http://{addr}")])
        .map_err(|e| anyhow::anyhow!(e))?
        .with_private_network(true);
    let channel = runtime
        .load_channel(&path, "sms", Limits::default(), allowed, services)
        .await
        .with_context(|| {
            format!(
                "cannot load {} (rebuild it with scripts/build-plugins)",
                path.display()
            )
        })?;
    let from = "+15005550006";
    let settings = vec![
        Setting {
            key: "account_sid".into(),
            value: ACCOUNT.into(),
        },
        Setting {
            key: "auth_token".into(),
            value: TOKEN.into(),
        },
        Setting {
            key: "from".into(),
            value: from.into(),
        },
        Setting {
            key: "api_base".into(),
            value: format!("http://{addr}"),
        },
    ];
    let messages: Vec<Message> = (0..sends)
        .map(|i| {
            let mut m = message.clone();
            m.idempotency_key = format!("herald:bench:{i}");
            m
        })
        .collect();

    // Warm up both paths (compiled-plugin cache, connections, allocator).
    channel.send(&settings, &messages[0], HttpMode::Live).await;
    native_send(addr, native_form(&messages[0], from)).await?;
    counters.accepted.store(0, Ordering::Relaxed);

    let started = Instant::now();
    let outcomes: Vec<SendOutcome> = futures::stream::iter(&messages)
        .map(|m| channel.send(&settings, m, HttpMode::Live))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let plugin_wall = started.elapsed();
    let delivered = outcomes
        .iter()
        .filter(|o| matches!(o, SendOutcome::Delivered { .. }))
        .count();
    if delivered != sends {
        let sample = outcomes
            .iter()
            .find(|o| !matches!(o, SendOutcome::Delivered { .. }));
        bail!(
            "{} of {sends} plugin sends did not deliver, e.g. {sample:?}",
            sends - delivered
        );
    }
    let accepted_by_plugin = counters.accepted.swap(0, Ordering::Relaxed);

    let started = Instant::now();
    let native: Vec<Result<String>> = futures::stream::iter(&messages)
        .map(|m| native_send(addr, native_form(m, from)))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let native_wall = started.elapsed();
    if let Some(Err(e)) = native.iter().find(|r| r.is_err()) {
        bail!("a native send failed: {e:#}");
    }
    let accepted_natively = counters.accepted.load(Ordering::Relaxed);
    if accepted_by_plugin != sends as u64 || accepted_natively != sends as u64 {
        bail!(
            "the provider accepted {accepted_by_plugin} plugin and {accepted_natively} native sends of {sends} each ({} refused)",
            counters.refused.load(Ordering::Relaxed)
        );
    }
    let plugin_rate = sends as f64 / plugin_wall.as_secs_f64();
    let native_rate = sends as f64 / native_wall.as_secs_f64();
    println!("e2e_sends={sends}");
    println!("e2e_concurrency={CONCURRENCY}");
    println!("e2e_sends_per_s={plugin_rate:.0}");
    println!("native_http_sends_per_s={native_rate:.0}");
    println!("e2e_native_ratio={:.2}", plugin_rate / native_rate);
    Ok(())
}
