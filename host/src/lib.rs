//! Herald: a lifecycle reminder engine. Customers and their lifecycle state
//! live in SQLite; a strategy of rules decides which caring reminder is due
//! for each customer and when; reminders are rendered from templates and
//! delivered through sandboxed WebAssembly channel plugins.
//!
//! One path for every reminder: a customer write or event is planned into the
//! schedule ([`planner`]); the tick claims what is due ([`scheduler`]), decides,
//! renders ([`render`]) and delivers ([`dispatch`], [`plugin`]); the attempt is
//! recorded ([`store`]). Time comes from an injected [`clock`].

pub mod api;
pub mod bench_api;
pub mod bench_floor;
pub mod bench_sends;
pub mod bench_serve;
pub mod bench_simulate;
pub mod caps;
pub mod check;
pub mod clock;
pub mod config;
pub mod customer;
pub mod dispatch;
pub mod engine;
pub mod explain;
pub mod failover;
pub mod funnel;
pub mod group_commit;
pub mod hooks;
pub mod import;
pub mod links;
pub mod live;
pub mod metrics;
pub mod planner;
pub mod plugin;
pub mod plugin_tools;
pub mod ratelimit;
pub mod reload;
pub mod render;
pub mod scheduler;
pub mod serve;
pub mod simulate;
pub mod span;
pub mod store;
pub mod strategy;
pub mod suppression_import;
pub mod targeting;
pub mod unsubscribe;
pub mod windows;
