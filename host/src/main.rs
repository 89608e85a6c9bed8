//! The `herald` executable: logging, the async runtime, and the command line
//! ([`cli`]). `herald bench` and its helpers ([`bench`]) live here too,
//! outside the library's public surface.

mod bench;
mod cli;

use clap::Parser;
use cli::{Cli, Command};

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match &cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    let json_env = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    init_logging(cli.log_json || json_env, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
