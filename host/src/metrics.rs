//! Prometheus metrics of this process (served by `GET /metrics` at the HTTP
//! edge, text exposition format 0.0.4): sends by channel and outcome, plugin
//! call time per channel, reloads by result, refused callbacks and link
//! hits — counted where they happen
//! through the one-line hooks below — and the due backlog and tick lag, read
//! from the schedule at scrape time, each labelled with this node's
//! `instance`. The registry is process-global. Imports
//! nothing of the engine: callers hand it plain values.

use crate::store::{schedule, Store};
use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

struct Metrics {
    registry: Registry,
    sends: IntCounterVec,
    plugin_seconds: HistogramVec,
    reloads: IntCounterVec,
    restarts: IntCounterVec,
    record_failures: prometheus::IntCounter,
    inbound_refused: IntCounterVec,
    backlog: IntGauge,
    lag: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let labels = std::collections::HashMap::from([("instance".to_string(), node_name())]);
    let registry = Registry::new_custom(None, Some(labels)).expect("a valid instance label");
    let sends = IntCounterVec::new(
        Opts::new(
            "herald_sends_total",
            "Delivery attempts recorded, by channel and outcome (delivered, failed, dead, suppressed, skipped, deferred, unknown)",
        ),
        &["channel", "outcome"],
    )
    .expect("valid metric");
    let plugin_seconds = HistogramVec::new(
        HistogramOpts::new(
            "herald_plugin_call_seconds",
            "Wall time of one channel plugin send call",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]),
        &["channel"],
    )
    .expect("valid metric");
    let reloads = IntCounterVec::new(
        Opts::new(
            "herald_reloads_total",
            "Config reloads (SIGHUP, POST /admin/reload) by result (ok, refused)",
        ),
        &["result"],
    )
    .expect("valid metric");
    let restarts = IntCounterVec::new(
        Opts::new(
            "herald_task_restarts_total",
            "Background tasks (scheduler, event-writer) that panicked and were started again",
        ),
        &["task"],
    )
    .expect("valid metric");
    let record_failures = prometheus::IntCounter::new(
        "herald_record_failures_total",
        "Customers whose tick writes could not be recorded (their sends are then held or retried as the channel's `uncertain` setting says)",
    )
    .expect("valid metric");
    let inbound_refused = IntCounterVec::new(
        Opts::new(
            "herald_inbound_refused_total",
            "Provider callbacks and link hits answered 429, by route (callback, link) and reason (busy, channel_rate, client_rate)",
        ),
        &["route", "reason"],
    )
    .expect("valid metric");
    let backlog = IntGauge::new(
        "herald_due_backlog",
        "Reminders due now and not yet claimed (read from the schedule at scrape time)",
    )
    .expect("valid metric");
    let lag = Gauge::new(
        "herald_tick_lag_seconds",
        "How late the oldest due, unclaimed reminder is (0 when nothing is waiting)",
    )
    .expect("valid metric");
    for m in [
        Box::new(sends.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(plugin_seconds.clone()),
        Box::new(reloads.clone()),
        Box::new(restarts.clone()),
        Box::new(record_failures.clone()),
        Box::new(inbound_refused.clone()),
        Box::new(backlog.clone()),
        Box::new(lag.clone()),
    ] {
        registry.register(m).expect("metric names are unique");
    }
    Metrics {
        registry,
        sends,
        plugin_seconds,
        reloads,
        restarts,
        record_failures,
        inbound_refused,
        backlog,
        lag,
    }
});

/// Count recorded attempts, as (channel, outcome) pairs (hook: after the
/// tick's record transaction commits). An empty channel counts as `none`.
pub fn record_attempts<'a>(attempts: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (channel, outcome) in attempts {
        let channel = if channel.is_empty() { "none" } else { channel };
        METRICS.sends.with_label_values(&[channel, outcome]).inc();
    }
}

/// The histogram of `channel`'s plugin send calls, looked up once per loaded
/// channel: the label lookup costs about 1% of a trivial call.
pub fn plugin_call_histogram(channel: &str) -> prometheus::Histogram {
    METRICS.plugin_seconds.with_label_values(&[channel])
}

/// Time one plugin send call (hook: around the plugin's send).
pub fn plugin_call(histogram: &prometheus::Histogram, elapsed: Duration) {
    histogram.observe(elapsed.as_secs_f64());
}

/// Count a reload (`ok` or `refused`).
pub fn reload(result: &str) {
    METRICS.reloads.with_label_values(&[result]).inc();
}

/// This node's name on every metric (`instance`): `HERALD_INSTANCE`, or
/// the host name and process id, so the nodes of a fleet scraped by one
/// Prometheus stay apart (scrape with `honor_labels: true` to keep it).
fn node_name() -> String {
    if let Some(name) = std::env::var("HERALD_INSTANCE")
        .ok()
        .filter(|n| !n.trim().is_empty())
    {
        return name.trim().chars().take(128).collect();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "herald".into());
    format!("{host}:{}", std::process::id())
}

/// Count a customer whose tick writes could not be recorded.
pub fn record_failed() {
    METRICS.record_failures.inc();
}

/// Count a background task's restart after a panic.
pub fn task_restart(task: &str) {
    METRICS.restarts.with_label_values(&[task]).inc();
}

/// Count a provider callback or link hit refused with 429 (`route`:
/// callback or link; `reason`: busy, channel_rate, client_rate).
pub fn inbound_refused(route: &str, reason: &str) {
    METRICS
        .inbound_refused
        .with_label_values(&[route, reason])
        .inc();
}

/// The due backlog and how late its oldest reminder is (seconds), as the
/// schedule has them now.
pub async fn due_now(store: &Store, now: DateTime<Utc>) -> anyhow::Result<(i64, f64)> {
    let (count, oldest) = schedule::due_backlog(store, now).await?;
    let lag = oldest
        .map(|oldest| ((now - oldest).num_milliseconds().max(0)) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok((count, lag))
}

/// Everything, in the text exposition format, with the gauges read now.
pub async fn render(store: &Store, now: DateTime<Utc>) -> anyhow::Result<String> {
    let (backlog, lag) = due_now(store, now).await?;
    METRICS.backlog.set(backlog);
    METRICS.lag.set(lag);
    let mut out = Vec::new();
    TextEncoder::new().encode(&METRICS.registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backlog_and_lag_are_read_from_the_schedule() {
        use crate::store::planning::{self, Changes};
        use crate::store::schedule::PlannedOccurrence;
        let (_dir, store) = crate::store::testing::scratch().await;
        let now = chrono::TimeZone::timestamp_millis_opt(&Utc, 1_800_000_000_000).unwrap();
        let customer = crate::customer::Customer::new("k", now);
        let mut tx = store.write().await.unwrap();
        let id = crate::store::customers::save(&mut tx, &customer)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(due_now(&store, now).await.unwrap(), (0, 0.0));
        // Due 90 s ago, due 10 s ago, and due in a minute.
        let upserts = [("a", -90), ("b", -10), ("c", 60)]
            .into_iter()
            .map(|(key, seconds)| PlannedOccurrence {
                customer_id: id,
                rule_id: "r".into(),
                key: key.into(),
                due_at: now + chrono::Duration::seconds(seconds),
                anchor: None,
                context: None,
            })
            .collect();
        let mut tx = store.write().await.unwrap();
        let changes = Changes {
            upserts,
            ..Changes::default()
        };
        planning::apply(&mut tx, &changes, now).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(due_now(&store, now).await.unwrap(), (2, 90.0));
        let text = render(&store, now).await.unwrap();
        let node = format!("instance=\"{}\"", node_name());
        assert!(
            text.contains(&format!("herald_due_backlog{{{node}}} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("herald_tick_lag_seconds{{{node}}} 90")),
            "{text}"
        );
    }

    #[test]
    fn hooks_show_up_in_the_exposition() {
        plugin_call(
            &plugin_call_histogram("unit-test-channel"),
            Duration::from_millis(3),
        );
        reload("unit-test");
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&METRICS.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let node = format!("instance=\"{}\"", node_name());
        assert!(
            text.contains(&format!(
                "herald_plugin_call_seconds_count{{channel=\"unit-test-channel\",{node}}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "herald_reloads_total{{result=\"unit-test\",{node}}} 1"
            )),
            "{text}"
        );
    }
}
