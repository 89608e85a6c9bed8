//! Herald: a lifecycle reminder engine. Customers and their lifecycle state
//! live in a database behind [`store`]; a [`strategy`] of rules decides,
//! for every customer, which caring reminder is due and when; reminders are
//! rendered from templates ([`render`]) and delivered through sandboxed
//! WebAssembly channel plugins ([`plugin`], [`channels`]).
//!
//! One path for every reminder, one folder per step:
//!
//! ```text
//! customer write / event ─► plan ─► schedule (store)
//!                                       │
//!   tick: claim ─► decide ─► deliver ─► record ─► plan::next
//! ```
//!
//! [`engine`] holds the deployment and its writes (each re-planned by
//! [`plan`]); [`tick`] claims what is due, decides, renders, delivers and
//! records; [`explain`] and `herald preview` use the tick's own decide;
//! [`live`] keeps the deployment in force while `herald serve` runs and
//! [`api`] is its HTTP edge. Arrows point down: nothing imports `api`, and
//! `store` imports nothing of the engine. Time comes from an injected
//! [`clock`].

#![warn(missing_docs)]

pub mod address;
pub mod api;
pub mod channels;
pub mod check;
pub mod clock;
pub mod config;
pub mod customer;
pub mod database;
pub mod engine;
pub mod explain;
pub mod funnel;
pub mod import;
pub mod inbound;
pub mod live;
pub mod metrics;
pub mod plan;
pub mod plugin;
pub mod plugin_tools;
pub mod price;
pub mod render;
pub mod simulate;
pub mod span;
pub mod store;
pub mod strategy;
pub mod targeting;
pub mod tick;
