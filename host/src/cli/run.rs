//! Which command group runs a command.

use super::{data, held, import, inspect, report, serve, simulate, token, Command};
use anyhow::Result;
use herald::clock::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;

/// Run one command; the exit code says whether it did what was asked.
pub async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve { config, listen } => serve::serve(config, listen).await,
        Command::Import { config, file } => import::customers(config, file).await,
        Command::Simulate {
            config,
            timeline,
            from,
            until,
            scope,
            live,
            http,
            shards,
            outputs,
        } => {
            let network = match (live, http) {
                (true, _) => simulate::Network::Live,
                (false, Some(fixtures)) => simulate::Network::Fixtures(fixtures),
                (false, None) => simulate::Network::Recorded,
            };
            simulate::simulate(
                config,
                timeline,
                (from, until),
                scope,
                network,
                shards,
                outputs,
            )
            .await
        }
        Command::Deliveries {
            config,
            customer,
            status,
            rule,
            limit,
            json,
        } => data::deliveries(config, customer, status, rule, limit, json).await,
        Command::Segment(command) => super::segment::run(command).await,
        Command::Customers {
            config,
            limit,
            after,
            json,
        } => data::customers(config, limit, after, json).await,
        Command::Inbox {
            config,
            customer,
            json,
        } => data::inbox(config, customer, json).await,
        Command::Suppressions {
            config,
            import: Some(file),
            ..
        } => import::suppressions(config, file).await,
        Command::Suppressions {
            config,
            customer,
            json,
            import: None,
        } => data::suppressions(config, customer, json).await,
        Command::Preview {
            config,
            rule,
            customer,
            step,
            at,
            json,
        } => inspect::preview(config, rule, customer, step, at, json).await,
        Command::Explain {
            config,
            customer,
            at,
            json,
        } => inspect::explain(config, customer, at, json).await,
        Command::Tasks {
            config,
            all,
            done,
            outcome,
            note,
            json,
        } => match done {
            Some(id) => data::close_task(config, id, outcome, note).await,
            None => data::tasks(config, all, json).await,
        },
        Command::Held {
            config,
            which,
            after,
            limit,
            json,
        } => held::list(config, which, after, limit, json).await,
        Command::Redrive {
            config,
            ids,
            all,
            which,
            at,
        } => held::act(config, held::Action::Redrive(at), ids, all, which).await,
        Command::Drop {
            config,
            ids,
            all,
            which,
        } => held::act(config, held::Action::Drop, ids, all, which).await,
        Command::Token { action } => token::token(action).await,
        Command::Check { config, json } => report::check(config, json).await,
        Command::Report {
            config,
            since,
            until,
            regions,
            json,
        } => report::report(config, since, until, regions, json).await,
        Command::Bench(args) => {
            crate::bench::run(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(command) => herald::plugin_tools::run(command, Arc::new(SystemClock)).await,
    }
}
