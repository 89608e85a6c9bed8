//! Opening what a command works on: the config, the database of an existing
//! deployment (listings never create one), and the deployment itself for a
//! read-only look at some instant.

use super::ConfigArgs;
use anyhow::Result;
use chrono::{DateTime, Utc};
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::plugin::http_policy::HttpMode;
use herald::store::Store;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The config's database, or `--db`'s.
pub fn database_path(args: &ConfigArgs, config: &Config) -> PathBuf {
    args.db
        .clone()
        .unwrap_or_else(|| config.resolve(&config.file.database.path))
}

/// Open an existing database for the listing commands; they never create one.
pub async fn existing_store(args: &ConfigArgs) -> Result<Store> {
    let config = Config::load(&args.config)?;
    let path = database_path(args, &config);
    if !path.exists() {
        anyhow::bail!(
            "no database at {}: nothing has run with this config yet (start `herald serve` or `herald import`), or pass --db",
            path.display()
        );
    }
    Store::open(&path).await
}

/// Open an existing deployment for a read-only look at `at` (default now);
/// plugin HTTP goes to a recording sink so nothing leaves the machine.
pub async fn deployment_at(
    args: &ConfigArgs,
    at: Option<DateTime<Utc>>,
) -> Result<(Herald, DateTime<Utc>)> {
    drop(existing_store(args).await?);
    let config = Config::load(&args.config)?;
    let now = at.unwrap_or_else(Utc::now);
    let herald = Herald::open(
        &config,
        OpenOptions {
            db: args.db.as_deref(),
            clock: Arc::new(VirtualClock::new(now)),
            http_mode: HttpMode::Sink(Arc::new(Mutex::new(Vec::new()))),
        },
    )
    .await?;
    Ok((herald, now))
}
