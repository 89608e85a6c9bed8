//! `herald bench` keeps working: a small run prints every figure and its
//! own correctness checks (not a timed test: no figure is compared to a target).

use crate::support::*;
use std::collections::HashMap;

#[test]
fn bench_smoke_run_prints_every_key() {
    let plugins = plugin("console").parent().unwrap().to_path_buf();
    let out = run(herald()
        .args([
            "bench",
            "--customers",
            "5000",
            "--due",
            "500",
            "--calls",
            "50",
            "--sends",
            "100",
            "--sim-customers",
            "100",
            "--rss-customers",
            "1000",
            "--api-rate",
            "200",
            "--api-seconds",
            "2",
            "--plugins-dir",
        ])
        .arg(&plugins));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let figures: HashMap<String, String> = text(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for key in [
        "plugin_call_us",
        "native_call_us",
        "plugin_native_ratio",
        "plan_rows_per_s",
        "rows_read_per_due_row",
        "replay_ratio",
        "sqlite_floor_rows_per_s",
        "plan_floor_ratio",
        "plugin_call_p50_us",
        "e2e_sends_per_s",
        "native_http_sends_per_s",
        "e2e_native_ratio",
        "simulate_customer_years_per_s",
        "simulate_wall_seconds",
        "simulate_floor_sql_us_per_attempt",
        "simulate_floor_plugin_us_per_attempt",
        "simulate_floor_customer_years_per_s",
        "rss_mb",
        "hwm_mb",
        "api_events_per_s",
        "api_p50_ms",
        "api_p99_ms",
    ] {
        let value: f64 = figures
            .get(key)
            .unwrap_or_else(|| panic!("no {key}: {figures:?}"))
            .parse()
            .unwrap();
        assert!(value.is_finite() && value >= 0.0, "{key}={value}");
    }
    assert_eq!(figures["done_rows"], "500");
    assert_eq!(figures["simulate_customers"], "100");
    let floor_rows: u64 = figures["simulate_floor_sql_rows"].parse().unwrap();
    assert!(
        floor_rows > 0,
        "shard 0 keeps the paid customers' renewals pending"
    );
    assert_eq!(figures["rss_customers"], "1000");
    assert_eq!(
        figures["rss_due_delivered"], "10",
        "1 in 100 customers is due"
    );
    assert_eq!(figures["api_events_sent"], "400");
    assert_eq!(figures["api_events_lost"], "0");
    assert_eq!(figures["api_errors"], "0");
    assert_eq!(figures["planned_next"], "500");
    assert_eq!(
        figures["fullscan_steps"], "0",
        "the claim reads through the due index"
    );
}
