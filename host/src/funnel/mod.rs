//! The funnel and the weekly review: click tracking and the open pixel
//! ([`tracking`], recorded by [`hits`]), the per-rule and per-channel report
//! of a period ([`report()`]: planned → sent → delivered → opened → clicked →
//! converted, rates, response time), and its HTTP side ([`http`]): the
//! tracking endpoints, `GET /report` and the `/dashboard` page.

pub mod hits;
pub mod http;
mod report;
pub mod tracking;

pub use report::{parse_bound, report, table, Funnel, Report};
pub use tracking::Tracker;
