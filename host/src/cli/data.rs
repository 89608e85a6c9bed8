//! The listings of a deployment's data: `herald deliveries`, `customers`,
//! `inbox`, `suppressions` and `tasks` (and `tasks --done`).

use super::load::existing_store;
use super::print::{left, right, Column, Printer, Table};
use super::ConfigArgs;
use anyhow::Result;
use herald::customer::Customer;
use herald::store::customers::{self, CustomerFilter};
use herald::store::deliveries::{self, DeliveryFilter, DeliveryRow};
use herald::store::inbox;
use herald::store::suppressions::{self, Suppression};
use herald::store::tasks::{self, Closed, Task, TaskFilter};
use std::process::ExitCode;

const TIME: &str = "%Y-%m-%d %H:%M:%S";

impl Table for DeliveryRow {
    const COLUMNS: &'static [Column] = &[
        left("AT (UTC)", 20),
        left("CUSTOMER", 14),
        left("RULE", 16),
        left("CHANNEL", 10),
        left("PROVIDER", 12),
        right("#", 3),
        left("STATUS", 10),
        left("DETAIL", 0),
    ];

    fn cells(&self) -> Vec<String> {
        let mut detail = match (&self.error, &self.provider_message_id) {
            (Some(e), _) => e.clone(),
            (None, Some(id)) => format!("id {id}"),
            _ => String::new(),
        };
        if let Some(from) = &self.failover_from {
            detail.push_str(&format!(" (failover from {from})"));
        }
        if let Some(report) = &self.report {
            detail.push_str(&format!("; provider report: {report}"));
            if let Some(reason) = &self.report_reason {
                detail.push_str(&format!(" ({reason})"));
            }
        }
        vec![
            self.at.format(TIME).to_string(),
            self.customer.clone(),
            self.rule.clone(),
            self.channel.clone().unwrap_or_else(|| "-".into()),
            self.provider.clone().unwrap_or_else(|| "-".into()),
            self.attempt.to_string(),
            self.status.clone(),
            detail,
        ]
    }
}

impl Table for Customer {
    const COLUMNS: &'static [Column] = &[
        left("EXTERNAL ID", 16),
        left("NAME", 24),
        left("STATE", 10),
        left("REGION", 10),
        left("TIMEZONE", 20),
        left("CONTACT", 0),
    ];

    fn cells(&self) -> Vec<String> {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let contact = [&self.email, &self.phone, &self.wechat_openid]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            self.external_id.clone(),
            or_dash(&self.name),
            or_dash(&self.state),
            or_dash(&self.region),
            self.timezone.clone(),
            contact,
        ]
    }
}

impl Table for Suppression {
    const COLUMNS: &'static [Column] = &[
        left("SINCE (UTC)", 20),
        left("CUSTOMER", 14),
        left("CHANNEL", 10),
        left("SOURCE", 9),
        left("REASON", 0),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.at.format(TIME).to_string(),
            self.customer.clone(),
            self.channel.clone(),
            self.source.clone(),
            self.reason.clone(),
        ]
    }
}

impl Table for Task {
    const COLUMNS: &'static [Column] = &[
        right("ID", 5),
        left("SINCE (UTC)", 17),
        left("CUSTOMER", 14),
        left("PHONE", 18),
        left("RULE", 16),
        left("TASK", 0),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.created_at.format("%Y-%m-%d %H:%M").to_string(),
            self.customer.clone(),
            self.phone.clone().unwrap_or_else(|| "-".into()),
            self.rule.clone(),
            format!(
                "{}{}: {}",
                self.title,
                match (&self.done_at, &self.outcome) {
                    (Some(_), Some(outcome)) => format!(" (done: {outcome})"),
                    (Some(_), None) => " (done)".to_string(),
                    _ => String::new(),
                },
                self.reason.trim().replace('\n', " ")
            ),
        ]
    }
}

/// `herald deliveries`: the latest attempts, oldest first.
pub async fn deliveries(
    args: ConfigArgs,
    customer: Option<String>,
    status: Option<String>,
    rule: Option<String>,
    limit: i64,
    json: bool,
) -> Result<ExitCode> {
    let store = existing_store(&args).await?;
    let filter = DeliveryFilter {
        customer,
        status,
        rule,
        limit,
    };
    Printer::new(json).list(&deliveries::list(&store, &filter).await?)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald customers`: live customers by external id.
pub async fn customers(
    args: ConfigArgs,
    limit: i64,
    after: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let store = existing_store(&args).await?;
    let mut tx = store.read().await?;
    let filter = CustomerFilter {
        limit,
        after,
        ..Default::default()
    };
    Printer::new(json).list(&customers::list(&mut tx, &filter).await?)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald inbox CUSTOMER`: the customer's in-app messages.
pub async fn inbox(args: ConfigArgs, customer: String, json: bool) -> Result<ExitCode> {
    let store = existing_store(&args).await?;
    let Some(c) = customers::by_external_id(&mut store.read().await?, &customer).await? else {
        anyhow::bail!("no customer with external_id `{customer}`");
    };
    let messages = inbox::list(&store, c.id).await?;
    if json {
        for m in &messages {
            println!("{}", serde_json::to_string(m)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for m in &messages {
        let unread = if m.read_at.is_some() {
            ""
        } else {
            "  (unread)"
        };
        println!(
            "── {} [{}] {}{unread}\n{}\n",
            m.created_at.format("%Y-%m-%d %H:%M"),
            m.rule,
            m.subject,
            m.text.trim_end()
        );
    }
    if messages.is_empty() {
        println!("(no messages for {customer})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `herald suppressions`: who refused which channel.
pub async fn suppressions(
    args: ConfigArgs,
    customer: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let store = existing_store(&args).await?;
    let rows = suppressions::list(&store, customer.as_deref(), None).await?;
    Printer::new(json).list(&rows)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald tasks`: the staff call list; `--done ID` marks one done.
pub async fn tasks(args: ConfigArgs, all: bool, json: bool) -> Result<ExitCode> {
    let store = existing_store(&args).await?;
    let filter = TaskFilter {
        include_done: all,
        limit: i64::MAX,
        ..Default::default()
    };
    Printer::new(json).list(&tasks::list(&store, &filter).await?)?;
    Ok(ExitCode::SUCCESS)
}

/// `herald tasks --done ID [--outcome O] [--note N]`: close a task.
pub async fn close_task(
    args: ConfigArgs,
    id: i64,
    outcome: Option<String>,
    note: Option<String>,
) -> Result<ExitCode> {
    if let Some(o) = outcome.as_deref().filter(|o| !tasks::OUTCOMES.contains(o)) {
        anyhow::bail!(
            "--outcome `{o}` is not one of {}",
            tasks::OUTCOMES.join(", ")
        );
    }
    let store = existing_store(&args).await?;
    match tasks::close(
        &store,
        id,
        outcome.as_deref(),
        note.as_deref(),
        None,
        chrono::Utc::now(),
    )
    .await?
    {
        Closed::Now => println!("task {id} done"),
        Closed::NotFound => anyhow::bail!("no task with id {id}; `herald tasks` lists them"),
        Closed::Already(at) => anyhow::bail!("task {id} was done at {}", at.to_rfc3339()),
    }
    Ok(ExitCode::SUCCESS)
}
