//! Timelines: the JSON-lines files of customer operations `herald simulate`
//! replays (upsert, event, delete, device at an instant), parsed with every bad line
//! reported by number. Owns parsing only; may not touch the engine or store.

use crate::customer::CustomerPatch;
use crate::engine::EventInput;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

/// One operation of a timeline.
#[derive(Debug, Clone)]
pub struct TimelineOp {
    /// 1-based line number in the file.
    pub line: usize,
    /// When it happens.
    pub at: DateTime<Utc>,
    /// What happens.
    pub op: Op,
}

/// What a timeline line does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or update a customer.
    Upsert(CustomerPatch),
    /// Record an event.
    Event(EventInput),
    /// Delete a customer.
    Delete(String),
    /// Register an app installation of a customer for push.
    Device(DeviceLine),
}

/// A `device` line: what `POST /customers/{id}/devices` takes, and whose.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceLine {
    /// The customer's external id.
    pub customer: String,
    /// The push token.
    pub token: String,
    /// `android`, `ios`, `web` or `harmony`.
    pub platform: String,
    /// The app's bundle id or package name.
    pub app: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertLine {
    customer: CustomerPatch,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    customer: String,
    kind: String,
    #[serde(default)]
    properties: Map<String, Value>,
    #[serde(default)]
    event_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteLine {
    customer: String,
}

/// Parse a timeline (JSON lines). Every bad line is reported with its number.
pub fn parse_timeline(text: &str, name: &str) -> Result<Vec<TimelineOp>> {
    let mut ops = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() || raw.trim_start().starts_with("//") {
            continue;
        }
        match parse_line(raw) {
            Ok((at, op)) => ops.push(TimelineOp { line, at, op }),
            Err(e) => errors.push(format!("{name}:{line}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!(
            "the timeline has {} bad line(s):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    // Stable: operations at the same instant keep their file order.
    ops.sort_by_key(|o| o.at);
    Ok(ops)
}

fn parse_line(raw: &str) -> Result<(DateTime<Utc>, Op), String> {
    let mut value: Map<String, Value> =
        serde_json::from_str(raw).map_err(|e| format!("not a JSON object: {e}"))?;
    let at = match value.remove("at") {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
            .map_err(|_| format!("`at` = `{s}` is not an RFC 3339 timestamp"))
            .and_then(|at| crate::clock::in_range(at.with_timezone(&Utc), "`at`"))?,
        _ => return Err("missing `at` (an RFC 3339 timestamp)".into()),
    };
    let op = match value.remove("op") {
        Some(Value::String(s)) => s,
        _ => return Err("missing `op` (upsert, event, delete or device)".into()),
    };
    let rest = Value::Object(value);
    let op = match op.as_str() {
        "upsert" => Op::Upsert(
            serde_json::from_value::<UpsertLine>(rest)
                .map_err(|e| format!("upsert: {e}"))?
                .customer,
        ),
        "event" => {
            let e: EventLine = serde_json::from_value(rest).map_err(|e| format!("event: {e}"))?;
            Op::Event(EventInput {
                customer: e.customer,
                kind: e.kind,
                at: Some(at),
                properties: e.properties,
                event_id: e.event_id,
            })
        }
        "delete" => Op::Delete(
            serde_json::from_value::<DeleteLine>(rest)
                .map_err(|e| format!("delete: {e}"))?
                .customer,
        ),
        "device" => Op::Device(
            serde_json::from_value::<DeviceLine>(rest).map_err(|e| format!("device: {e}"))?,
        ),
        other => {
            return Err(format!(
                "unknown op `{other}`; use upsert, event, delete or device"
            ))
        }
    };
    Ok((at, op))
}

/// Read and parse a timeline file.
pub fn load_timeline(path: &Path) -> Result<Vec<TimelineOp>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read timeline {}", path.display()))?;
    parse_timeline(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_numbered() {
        let text = "{\"at\":\"2026-01-01T00:00:00Z\",\"op\":\"upsert\",\"customer\":{\"external_id\":\"a\"}}\n\
                    {\"at\":\"yesterday\",\"op\":\"upsert\"}\n\
                    {\"at\":\"2026-01-01T00:00:00Z\",\"op\":\"event\",\"customer\":\"a\",\"knd\":\"x\"}\n";
        let err = parse_timeline(text, "t.jsonl").unwrap_err().to_string();
        assert!(
            err.contains("t.jsonl:2") && err.contains("t.jsonl:3") && err.contains("knd"),
            "{err}"
        );
    }
}
