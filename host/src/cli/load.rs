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
use herald::store::{Location, Store};
use std::sync::{Arc, Mutex};

/// `--db`'s database, or the config's.
pub fn database_location(args: &ConfigArgs, config: &Config) -> Result<Location> {
    match args.db()? {
        Some(location) => Ok(location),
        None => config.database(),
    }
}

/// Open an existing database for the listing commands; they never create
/// a SQLite file.
pub async fn existing_store(args: &ConfigArgs) -> Result<Store> {
    let config = Config::load(&args.config)?;
    let location = database_location(args, &config)?;
    if let Some(path) = location.sqlite_path().filter(|p| !p.exists()) {
        anyhow::bail!(
            "no database at {}: nothing has run with this config yet (start `herald serve` or `herald import`), or pass --db",
            path.display()
        );
    }
    Store::open(&location).await
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
            db: args.db()?,
            clock: Arc::new(VirtualClock::new(now)),
            http_mode: HttpMode::Sink(Arc::new(Mutex::new(Vec::new()))),
        },
    )
    .await?;
    Ok((herald, now))
}
