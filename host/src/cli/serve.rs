//! `herald serve`: the deployment on the wall clock, its API listening.

use super::ConfigArgs;
use anyhow::Result;
use herald::clock::{SharedClock, SystemClock};
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::live::Live;
use herald::plugin::http_policy::HttpMode;
use std::process::ExitCode;
use std::sync::Arc;

/// Serve until SIGINT/SIGTERM.
pub async fn serve(args: ConfigArgs, listen: Option<String>) -> Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let clock: SharedClock = Arc::new(SystemClock);
    // A changed strategy is planned for every customer by the scheduler
    // once the API is up (see live::scheduler).
    let herald = Arc::new(
        Herald::load(
            &config,
            OpenOptions {
                db: args.db()?,
                clock,
                http_mode: HttpMode::Live,
            },
        )
        .await?,
    );
    let listen = listen.unwrap_or_else(|| config.file.server.listen.clone());
    let live = Live::reloadable(herald, args.config.clone());
    herald::api::server::run(live, &listen).await?;
    Ok(ExitCode::SUCCESS)
}
