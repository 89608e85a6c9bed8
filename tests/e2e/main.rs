//! End-to-end tests: the real `herald` binary, the real plugins built from
//! `plugins/` (run `scripts/build-plugins` first; `scripts/test` does), and
//! fake providers that are real HTTP servers on loopback.

mod support;

mod api;
mod bad_input;
mod bench;
mod crash;
mod plugin_faults;
mod racing;
mod saas_trial;
mod strategy_change;
mod webhook;
