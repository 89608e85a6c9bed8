//! `herald held`, `herald redrive` and `herald drop`: the dead letters and
//! the sends held with an unknown outcome, listed, sent again or let go.
//! The statements are the store's ([`herald::store::held`]); this file
//! only turns arguments into them and prints what changed.

use super::load::existing_store;
use super::print::{left, right, Column, Printer, Table};
use super::ConfigArgs;
use anyhow::Result;
use clap::Args;
use herald::store::held::{self, HeldFilter, HeldRow, MAX_LIST};
use herald::store::Store;
use std::process::ExitCode;

/// Which held reminders a command means.
#[derive(Args, Clone, Debug)]
pub struct HeldArgs {
    /// `dead` (every attempt failed) or `unknown` (the outcome of a send is
    /// not known); both when not given.
    #[arg(long)]
    pub status: Option<String>,
    /// Only those whose last attempt went on this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Only those of this rule.
    #[arg(long)]
    pub rule: Option<String>,
}

impl Table for HeldRow {
    const COLUMNS: &'static [Column] = &[
        right("ID", 6),
        left("SINCE (UTC)", 20),
        left("CUSTOMER", 14),
        left("RULE", 16),
        left("CHANNEL", 10),
        left("STATUS", 8),
        right("#", 3),
        left("REASON", 0),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.since.format("%Y-%m-%d %H:%M:%S").to_string(),
            self.customer.clone(),
            self.rule.clone(),
            self.channel.clone().unwrap_or_else(|| "-".into()),
            self.status.clone(),
            self.attempts.to_string(),
            self.reason.clone().unwrap_or_default(),
        ]
    }
}

/// `herald held`: list them, oldest first.
pub async fn list(
    config: ConfigArgs,
    which: HeldArgs,
    after: Option<i64>,
    limit: u32,
    json: bool,
) -> Result<ExitCode> {
    let store = existing_store(&config).await?;
    let rows = held::list(&store, &filter(which, after, limit)?).await?;
    Printer::new(json).list(&rows)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald redrive` / `herald drop`: act on the given ids, or on every
/// held row `which` matches when `all`.
pub async fn act(
    config: ConfigArgs,
    action: Action,
    ids: Vec<i64>,
    all: bool,
    which: HeldArgs,
) -> Result<ExitCode> {
    if ids.is_empty() != all {
        anyhow::bail!(
            "give the ids to {} (as `herald held` lists them), or --all with --status/--channel/--rule to choose",
            action.verb()
        );
    }
    let store = existing_store(&config).await?;
    let which = match action {
        Action::Drop => HeldArgs {
            status: Some("unknown".into()),
            ..which
        },
        Action::Redrive(_) => which,
    };
    let ids = match all {
        true => every_id(&store, which).await?,
        false => ids,
    };
    let now = chrono::Utc::now();
    let changed = match action {
        Action::Redrive(at) => held::redrive(&store, &ids, at.unwrap_or(now)).await?,
        Action::Drop => held::drop_unknown(&store, &ids, now).await?,
    };
    for id in &changed {
        println!("{} {id}", action.done());
    }
    let missed: Vec<i64> = ids.into_iter().filter(|id| !changed.contains(id)).collect();
    if !missed.is_empty() {
        eprintln!(
            "not {}: {missed:?} (not held{}; `herald held` lists what is)",
            action.done(),
            if matches!(action, Action::Drop) {
                " as unknown"
            } else {
                ""
            }
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `act` does.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Send again, due at this time (default now).
    Redrive(Option<chrono::DateTime<chrono::Utc>>),
    /// Let an unknown send go.
    Drop,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Redrive(_) => "redrive",
            Action::Drop => "drop",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Action::Redrive(_) => "redriven",
            Action::Drop => "dropped",
        }
    }
}

/// Every held id `which` matches, page by page.
async fn every_id(store: &Store, which: HeldArgs) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut filter = filter(which, None, MAX_LIST)?;
    loop {
        let page = held::list(store, &filter).await?;
        let Some(last) = page.last() else {
            return Ok(ids);
        };
        filter.after = Some(last.id);
        ids.extend(page.iter().map(|r| r.id));
    }
}

fn filter(which: HeldArgs, after: Option<i64>, limit: u32) -> Result<HeldFilter> {
    if let Some(status) = which.status.as_deref() {
        if !held::STATUSES.contains(&status) {
            anyhow::bail!("--status {status}: a held reminder is `dead` or `unknown`");
        }
    }
    if limit == 0 || limit > MAX_LIST {
        anyhow::bail!("--limit {limit}: give 1 to {MAX_LIST}");
    }
    Ok(HeldFilter {
        status: which.status,
        channel: which.channel,
        rule: which.rule,
        after,
        limit,
    })
}
