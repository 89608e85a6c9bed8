//! What segment conditions may ask about a customer's events: `count(kind)`
//! (optionally `count(kind, "90d")`: within that period before now),
//! `idle(kind, "30d")` (no such event in that period, or never) and
//! `last(kind)` (the latest one's time, RFC 3339, or none). They read the
//! `events` variable of the context — each kind's times, oldest first, in
//! Unix milliseconds — which only segment evaluation provides; a rule's
//! condition is refused at load if it names them. Events after `now` (a
//! segment evaluated at an earlier time) do not count. Owns the functions
//! only.

use crate::span::parse_exact;
use chrono::{DateTime, Utc};
use minijinja::value::Value as JinjaValue;
use minijinja::{Error as JinjaError, ErrorKind, State};
use std::collections::BTreeMap;

/// The names of the functions, for the vocabulary check.
pub const FUNCTIONS: &[&str] = &["count", "idle", "last"];

/// Each event kind's times (Unix ms), oldest first: the `events` variable.
pub type History = BTreeMap<String, Vec<i64>>;

/// The times of `kind` up to `now`, oldest first.
fn times_of(state: &State, kind: &str) -> Result<Vec<i64>, JinjaError> {
    let now = now_ms(state)?;
    let mut times = all_times_of(state, kind)?;
    times.retain(|t| *t <= now);
    Ok(times)
}

fn all_times_of(state: &State, kind: &str) -> Result<Vec<i64>, JinjaError> {
    let events = state.lookup("events").ok_or_else(|| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            "count(), idle() and last() work in segment conditions only",
        )
    })?;
    let times = events.get_attr(kind)?;
    if times.is_undefined() || times.is_none() {
        return Ok(Vec::new());
    }
    times
        .try_iter()?
        .map(|t| {
            i64::try_from(t).map_err(|_| {
                JinjaError::new(ErrorKind::InvalidOperation, "an event time is not a number")
            })
        })
        .collect()
}

fn now_ms(state: &State) -> Result<i64, JinjaError> {
    state
        .lookup("now")
        .and_then(|n| {
            n.as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        })
        .map(|d| d.timestamp_millis())
        .ok_or_else(|| {
            JinjaError::new(
                ErrorKind::InvalidOperation,
                "`now` is missing from the context",
            )
        })
}

/// `"30d"` in milliseconds; months and years are refused (not a fixed length).
fn period_ms(period: &str) -> Result<i64, JinjaError> {
    let bad = |why: String| JinjaError::new(ErrorKind::InvalidOperation, why);
    let duration = parse_exact(period).map_err(|e| bad(format!("`{period}`: {e}")))?;
    i64::try_from(duration.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            bad(format!(
                "`{period}` is not a positive period such as \"30d\""
            ))
        })
}

/// `count("paid")`, `count("paid", "90d")`.
pub fn count(
    state: &State,
    kind: String,
    within: Option<String>,
) -> Result<JinjaValue, JinjaError> {
    let times = times_of(state, &kind)?;
    let from = match within {
        None => i64::MIN,
        Some(p) => now_ms(state)?.saturating_sub(period_ms(&p)?),
    };
    Ok(JinjaValue::from(
        times.iter().filter(|t| **t > from).count(),
    ))
}

/// `idle("login", "30d")`: no `login` in the last 30 days (or ever).
pub fn idle(state: &State, kind: String, period: String) -> Result<bool, JinjaError> {
    let from = now_ms(state)?.saturating_sub(period_ms(&period)?);
    Ok(times_of(state, &kind)?.iter().all(|t| *t <= from))
}

/// `last("login")`: when the latest `login` was, or none.
pub fn last(state: &State, kind: String) -> Result<JinjaValue, JinjaError> {
    Ok(times_of(state, &kind)?
        .last()
        .and_then(|ms| DateTime::<Utc>::from_timestamp_millis(*ms))
        .map(|t| JinjaValue::from(t.to_rfc3339()))
        .unwrap_or(JinjaValue::from(())))
}
