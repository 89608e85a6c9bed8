//! `herald bench`, part 6: the HTTP API under load. A real `herald serve`
//! child (see [`super::serve`]) holds customers whose `on-payment`
//! rule fires on every payment event into the inbox, so its scheduler sends
//! while events arrive. An open-loop client posts `POST /events` at a fixed
//! rate with an ingest token: request `i` is due at `start + i / rate`
//! whatever happened to earlier ones, and its latency is counted from that
//! due time (a slow server cannot hide its latency by slowing the client
//! down — no coordinated omission). Afterwards every event id is looked up
//! in the database.

use super::serve::{create_db, populate, ten_rule_config, ServeChild};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use herald::store::probe::{self, Count};
use herald::store::Location;
use herald::store::Store;
use http_body_util::{BodyExt, Full};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Keep-alive connections the client spreads requests over.
const CONNECTIONS: usize = 64;
/// Customers the events are spread over.
const CUSTOMERS: u64 = 10_000;

/// One request the client must make.
struct Job {
    index: u64,
    due: Instant,
}

/// What the client saw.
#[derive(Default)]
struct Seen {
    latencies_us: std::sync::Mutex<Vec<u64>>,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

fn event_body(index: u64) -> String {
    serde_json::json!({
        "customer": format!("cust-{}", index % CUSTOMERS + 1),
        "kind": "payment",
        "event_id": format!("load-{index}"),
        "properties": {"amount": 990, "currency": "CNY"},
    })
    .to_string()
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(sender: &mut Sender, addr: &str, auth: &str, index: u64) -> Result<()> {
    sender.ready().await?;
    let request = http::Request::post(format!("http://{addr}/events"))
        .header("host", addr)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(event_body(index))))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status.as_u16() != 201 {
        bail!(
            "event {index} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// One keep-alive connection taking jobs off the shared queue.
async fn worker(
    addr: String,
    auth: String,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    seen: Arc<Seen>,
) {
    let mut sender: Option<Sender> = None;
    loop {
        let Some(job) = jobs.lock().await.recv().await else {
            return;
        };
        let mut result = Err(anyhow::anyhow!("not sent"));
        // A connection the server closed is reopened once per request.
        for _ in 0..2 {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                match connect(&addr).await {
                    Ok(s) => sender = Some(s),
                    Err(e) => {
                        result = Err(e);
                        continue;
                    }
                }
            }
            let s = sender.as_mut().expect("connected above");
            result = post(s, &addr, &auth, job.index).await;
            if result.is_ok() || !s.is_closed() {
                break;
            }
        }
        match result {
            Ok(()) => {
                let us = job.due.elapsed().as_micros() as u64;
                seen.latencies_us.lock().expect("latency lock").push(us);
            }
            Err(e) => {
                seen.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = seen.first_error.lock().expect("error lock");
                if first.is_none() {
                    *first = Some(format!("{e:#}"));
                }
            }
        }
    }
}

/// Run the API load benchmark and print its figures. `now` is the wall-clock
/// time the child runs at.
pub async fn api_bench(rate: u64, seconds: u64, now: DateTime<Utc>) -> Result<()> {
    if rate == 0 || seconds == 0 {
        bail!("--api-rate and --api-seconds must be at least 1");
    }
    let scratch = tempfile::Builder::new()
        .prefix("herald-bench-api-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let db = scratch.path().join("serve.db");
    let config = scratch.path().join("herald.toml");
    std::fs::write(&config, ten_rule_config("serve.db"))
        .context("cannot write the serve config")?;
    create_db(&config, &db, now).await?;
    populate(&db, CUSTOMERS, now).await?;
    let token = {
        let store = Store::open(&Location::Embedded(db.clone())).await?;
        let (token, _) = herald::store::tokens::create(
            &store,
            herald::store::tokens::Role::Ingest,
            &[],
            Some("bench"),
            now,
        )
        .await?;
        probe::close(&store).await;
        token
    };
    let serve = ServeChild::start(&config, &db, &[], Duration::from_secs(60))?;
    let addr = serve
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let auth = format!("Bearer {token}");
    // The token works before the clock starts.
    let mut probe = connect(&addr).await?;
    post(&mut probe, &addr, &auth, u64::MAX)
        .await
        .context("the warm-up event was refused")?;
    drop(probe);

    let total = rate * seconds;
    let seen = Arc::new(Seen::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(worker(addr.clone(), auth.clone(), rx.clone(), seen.clone())))
        .collect();
    eprintln!(
        "api: {total} events at {rate}/s over {CONNECTIONS} keep-alive connections to {}",
        serve.base
    );
    let start = Instant::now() + Duration::from_millis(50);
    for index in 0..total {
        let due = start + Duration::from_nanos(index * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        tx.send(Job { index, due })
            .map_err(|_| anyhow::anyhow!("the client workers stopped"))?;
    }
    drop(tx);
    for w in workers {
        w.await.context("a client worker panicked")?;
    }
    let wall = start.elapsed().as_secs_f64();

    // Let the scheduler finish the reminders the events planned, then stop it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let store = Store::open(&Location::Embedded(db.clone())).await?;
    while probe::count(&store, Count::PendingOf("on-payment")).await? > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    serve.stop(Duration::from_secs(30))?;
    let stored = probe::event_ids(&store, "load-").await?;
    let reminders = probe::count(&store, Count::Delivered(Some("on-payment"))).await?;
    probe::close(&store).await;
    let lost = (0..total)
        .filter(|i| !stored.contains(&format!("load-{i}")))
        .count();
    let errors = seen.errors.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *seen.latencies_us.lock().expect("latency lock"));
    latencies.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    println!("api_rate_target={rate}");
    println!("api_seconds={seconds}");
    println!("api_events_sent={total}");
    println!("api_events_per_s={:.0}", latencies.len() as f64 / wall);
    println!("api_p50_ms={:.2}", pct(0.50));
    println!("api_p99_ms={:.2}", pct(0.99));
    println!("api_max_ms={:.2}", pct(1.0));
    println!("api_errors={errors}");
    println!("api_events_lost={lost}");
    println!("api_reminders_delivered={reminders}");
    if errors > 0 || lost > 0 {
        let first = seen.first_error.lock().expect("error lock").clone();
        eprintln!(
            "error={errors} requests failed, {lost} events are not in the database (first error: {})",
            first.unwrap_or_else(|| "none".into())
        );
        bail!("events were refused or lost under load");
    }
    Ok(())
}
