//! Prometheus metrics of this process (`GET /metrics`, text exposition
//! format 0.0.4): sends by channel and outcome, plugin call time per channel,
//! reloads by result — counted where they happen through the one-line hooks
//! below — and the due backlog and tick lag, read from the schedule table at
//! scrape time. The registry is process-global.

use crate::store::{from_millis, to_millis};
use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use sqlx::{Row, SqlitePool};
use std::sync::LazyLock;
use std::time::Duration;

struct Metrics {
    registry: Registry,
    sends: IntCounterVec,
    plugin_seconds: HistogramVec,
    reloads: IntCounterVec,
    backlog: IntGauge,
    lag: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let sends = IntCounterVec::new(
        Opts::new(
            "herald_sends_total",
            "Delivery attempts recorded, by channel and outcome (delivered, failed, dead, suppressed, skipped, deferred)",
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
        backlog,
        lag,
    }
});

/// Count recorded attempts (hook: after the tick's record transaction commits).
pub fn record_attempts(records: &[crate::scheduler::AttemptRecord]) {
    for r in records {
        let channel = if r.channel.is_empty() {
            "none"
        } else {
            &r.channel
        };
        METRICS.sends.with_label_values(&[channel, &r.status]).inc();
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

/// The due backlog and the oldest due time, as the schedule has them now.
pub async fn due_now(pool: &SqlitePool, now: DateTime<Utc>) -> anyhow::Result<(i64, f64)> {
    let row = sqlx::query(
        "SELECT COUNT(*), MIN(due_at) FROM schedule WHERE status = 'pending' AND due_at <= ?",
    )
    .bind(to_millis(now))
    .fetch_one(pool)
    .await?;
    let count: i64 = row.get(0);
    let lag = row
        .get::<Option<i64>, _>(1)
        .map(|oldest| ((now - from_millis(oldest)).num_milliseconds().max(0)) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok((count, lag))
}

/// Everything, in the text exposition format, with the gauges read now.
pub async fn render(pool: &SqlitePool, now: DateTime<Utc>) -> anyhow::Result<String> {
    let (backlog, lag) = due_now(pool, now).await?;
    METRICS.backlog.set(backlog);
    METRICS.lag.set(lag);
    let mut out = Vec::new();
    TextEncoder::new().encode(&METRICS.registry.gather(), &mut out)?;
    Ok(String::from_utf8(out)?)
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `/metrics` route.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<std::sync::Arc<crate::live::Live>> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(scrape))
}

/// Prometheus metrics in the text exposition format 0.0.4 (admin token;
/// configure Prometheus with `authorization: { credentials: TOKEN }`).
#[utoipa::path(get, path = "/metrics", tag = "admin",
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "metrics, text exposition format 0.0.4"),
        (status = 401, body = crate::api::ErrorBody),
        (status = 403, body = crate::api::ErrorBody),
    ),
    security(("bearer" = [])))]
async fn scrape(
    crate::live::Current(herald): crate::live::Current,
    caller: crate::api::auth::Caller,
) -> Result<axum::response::Response, crate::api::ApiError> {
    use axum::response::IntoResponse;
    caller.require(crate::store::tokens::Role::Admin)?;
    let text = render(&herald.store.pool, herald.clock.now()).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backlog_and_lag_are_read_from_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("h.db"))
            .await
            .unwrap();
        let now = from_millis(1_800_000_000_000);
        sqlx::query("INSERT INTO customers (id, external_id, timezone, created_at, updated_at) VALUES (1, 'k', 'UTC', 0, 0)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(due_now(&store.pool, now).await.unwrap(), (0, 0.0));
        // Due 90 s ago, due 10 s ago, due in the future, and a done row.
        for (key, due, status) in [
            ("a", -90_000, "pending"),
            ("b", -10_000, "pending"),
            ("c", 60_000, "pending"),
            ("d", -500_000, "done"),
        ] {
            sqlx::query("INSERT INTO schedule (customer_id, rule_id, occurrence_key, occurs_at, due_at, status, created_at, updated_at) VALUES (1, 'r', ?, 0, ?, ?, 0, 0)")
                .bind(key)
                .bind(to_millis(now) + due)
                .bind(status)
                .execute(&store.pool)
                .await
                .unwrap();
        }
        assert_eq!(due_now(&store.pool, now).await.unwrap(), (2, 90.0));
        let text = render(&store.pool, now).await.unwrap();
        assert!(text.contains("herald_due_backlog 2"), "{text}");
        assert!(text.contains("herald_tick_lag_seconds 90"), "{text}");
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
        assert!(
            text.contains("herald_plugin_call_seconds_count{channel=\"unit-test-channel\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("herald_reloads_total{result=\"unit-test\"} 1"),
            "{text}"
        );
    }
}
