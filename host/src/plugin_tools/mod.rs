//! `herald plugin ...`: the tools for plugin developers, who work without a
//! deployment — `inspect` says what a `.wasm` is, `test` runs one call of it
//! against HTTP fixtures on a fuel-metered engine, `new` scaffolds a crate
//! that builds and passes `test` at once.

pub mod harness;
pub mod inspect;
pub mod sandbox;
pub mod scaffold;

use crate::clock::SharedClock;
use anyhow::Result;
use std::process::ExitCode;

/// The `herald plugin` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Show a plugin's world and WIT version, name, address kind, settings
    /// (secret ones marked) and imports.
    Inspect(inspect::InspectArgs),
    /// Run one send (channel plugin) or one evaluate (targeting plugin) with
    /// HTTP answered from fixtures; print the outcome, the requests, time
    /// and fuel. The exit code is 0 only when the outcome is the expected one.
    Test(harness::TestArgs),
    /// Create a plugin crate that builds with
    /// `cargo build --target wasm32-wasip2 --release` and passes `herald plugin test`.
    New(scaffold::NewArgs),
}

/// Run a `herald plugin` subcommand. `clock` is the time the plugin sees
/// unless the test names one.
pub async fn run(command: PluginCommand, clock: SharedClock) -> Result<ExitCode> {
    let cache_dir = crate::config::default_cache_dir;
    match command {
        PluginCommand::Inspect(args) => inspect::run(args, cache_dir()?, clock).await,
        PluginCommand::Test(args) => harness::run(args, cache_dir()?, clock).await,
        PluginCommand::New(args) => scaffold::run(args),
    }
}
