//! End-to-end tests: the real `herald` binary, the real plugins built from
//! `plugins/` (run `scripts/build-plugins` first; `scripts/test` does), and
//! fake providers that are real HTTP servers on loopback.

mod fakes;
mod support;

mod access;
mod api;
mod bad_input;
mod bench;
mod call_list;
mod channels;
mod chaos;
mod crash;
mod devices;
mod do_not_contact;
mod dormancy;
mod edge;
mod email_http;
mod email_smtp;
mod explain;
mod fleet;
mod funnel;
mod guards;
mod hardening;
mod held;
mod openapi;
mod operators;
mod plugin_cli;
mod plugin_faults;
mod plugin_quotas;
mod preferences;
mod push_fcm;
mod push_jpush;
mod racing;
mod reactivation;
mod routing;
mod saas_trial;
mod segments;
mod sequences;
mod simulate_report;
mod simulate_snapshot;
mod sms_aliyun;
mod sms_twilio;
mod strategy_change;
mod targeting;
mod triggers;
mod unsubscribe;
mod webhook;
mod wechat;
