//! A deployment for unit tests: a config given as text, a fresh database in
//! a temporary directory, a virtual clock, plugin HTTP to a recording sink.
//! Only built-in channels need no `.wasm`, so tests of the engine's path use
//! `inbox` and `task` channels.

use super::{Herald, OpenOptions};
use crate::clock::VirtualClock;
use crate::config::Config;
use crate::plugin::http_policy::HttpMode;
use chrono::{DateTime, TimeZone, Utc};
use std::sync::{Arc, Mutex};

/// A test deployment and what keeps it alive.
pub struct TestDeployment {
    /// The deployment.
    pub herald: Herald,
    /// Its clock.
    pub clock: VirtualClock,
    _dir: tempfile::TempDir,
}

/// 2026-03-02 09:00 UTC, a Monday: where test clocks start.
pub fn monday_9am() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// Open `config` (TOML text) on a fresh database at `now`.
pub async fn deployment(config: &str, now: DateTime<Utc>) -> TestDeployment {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config).expect("write config");
    let config = Config::parse(config, &path).expect("a valid test config");
    let clock = VirtualClock::new(now);
    let db = dir.path().join("herald.db");
    let herald = Herald::open(
        &config,
        OpenOptions {
            db: Some(crate::store::Location::Embedded(db)),
            clock: Arc::new(clock.clone()),
            http_mode: HttpMode::Sink(Arc::new(Mutex::new(Vec::new()))),
        },
    )
    .await
    .expect("open the test deployment");
    TestDeployment {
        herald,
        clock,
        _dir: dir,
    }
}

/// The inbox channel and one rule's worth of TOML around `rules`.
pub fn with_inbox(rules: &str) -> String {
    format!(
        "[channels.inbox]\nbuiltin = \"inbox\"\n\n[channels.calls]\nbuiltin = \"task\"\n\n{rules}"
    )
}
