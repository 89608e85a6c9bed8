//! `herald report` (the funnel of a period) and `herald check` (a config
//! checked without running it).

use super::load::existing_store;
use super::print::Printer;
use super::ConfigArgs;
use anyhow::Result;
use herald::funnel::parse_bound;
use std::path::PathBuf;
use std::process::ExitCode;

/// `herald report`.
pub async fn report(
    args: ConfigArgs,
    since: String,
    until: Option<String>,
    regions: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    let store = existing_store(&args).await?;
    let now = chrono::Utc::now();
    let since = parse_bound(&since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let until = match until {
        Some(text) => parse_bound(&text, now).map_err(|e| anyhow::anyhow!("--until: {e}"))?,
        None => now,
    };
    if until < since {
        anyhow::bail!("--until ({until}) is before --since ({since})");
    }
    let scope = (!regions.is_empty()).then_some(regions.as_slice());
    let config = herald::config::Config::load(&args.config)?;
    let strategy =
        herald::strategy::Strategy::compile(&config, &herald::channels::Channels::names(&config))
            .map_err(|e| {
            anyhow::anyhow!(
                "the strategy in {} has problems:\n{e}",
                args.config.display()
            )
        })?;
    let staged = herald::funnel::staged_goals(&strategy);
    let report = herald::funnel::report(&store, &staged, since, until, scope).await?;
    Printer::new(json).one(&report, herald::funnel::table)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald check`: failure on any error; warnings alone pass.
pub async fn check(config: PathBuf, json: bool) -> Result<ExitCode> {
    let report = herald::check::check_file(&config).await;
    Printer::new(json).one(&report, |r| r.table())?;
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
