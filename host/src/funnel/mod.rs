//! The funnel and the weekly review: the per-rule and per-channel report of a
//! period ([`report()`]: planned → sent → delivered → opened → clicked →
//! converted, rates, response time), counted from what the store reads
//! ([`crate::store::funnel`]). Tracking links are made at render time
//! ([`crate::render::tracking`]); the endpoints, `GET /report` and the
//! dashboard live at the HTTP edge.

mod report;
pub mod stages;

pub use report::{parse_bound, report, staged_goals, table, Funnel, Report};
