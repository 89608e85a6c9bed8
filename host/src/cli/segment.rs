//! `herald segment count|list NAME`: how many customers a segment holds
//! now (or `--at` another time), and who, read from the deployment's
//! database through the engine's segment walk.

use super::load::deployment_at;
use super::print::Printer;
use super::ConfigArgs;
use anyhow::Result;
use chrono::{DateTime, Utc};
use herald::engine::WriteError;
use std::process::ExitCode;

/// What `herald segment` does.
#[derive(clap::Subcommand)]
pub enum SegmentCommand {
    /// How many customers are in the segment.
    Count {
        #[command(flatten)]
        config: ConfigArgs,
        /// The segment's name (`[segments.NAME]`).
        name: String,
        /// Evaluate at this time instead of now (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_parser = super::parse_instant)]
        at: Option<DateTime<Utc>>,
    },
    /// The customers in the segment, by external id.
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// The segment's name (`[segments.NAME]`).
        name: String,
        /// Evaluate at this time instead of now (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_parser = super::parse_instant)]
        at: Option<DateTime<Utc>>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Start after this external id (for paging).
        #[arg(long)]
        after: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Run a `herald segment` command.
pub async fn run(command: SegmentCommand) -> Result<ExitCode> {
    match command {
        SegmentCommand::Count { config, name, at } => {
            let (herald, now) = deployment_at(&config, at).await?;
            let count = herald
                .segment_count(&name, None, now)
                .await
                .map_err(plain)?;
            println!("{count}");
        }
        SegmentCommand::List {
            config,
            name,
            at,
            limit,
            after,
            json,
        } => {
            let (herald, now) = deployment_at(&config, at).await?;
            let members = herald
                .segment_members(&name, None, now, after.as_deref(), limit)
                .await
                .map_err(plain)?;
            Printer::new(json).list(&members.customers)?;
            if let Some(next) = members.next_after {
                eprintln!("more: pass --after {next}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plain(e: WriteError) -> anyhow::Error {
    match e {
        WriteError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}
