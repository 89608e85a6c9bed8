//! `herald token create | list | revoke`: API bearer tokens. Tokens are
//! usually made before the first `serve`, so the database is created here
//! when it does not exist yet.

use super::load::database_location;
use super::print::{left, right, Column, Printer, Table};
use super::TokenAction;
use anyhow::Result;
use herald::config::Config;
use herald::store::tokens::{self, TokenInfo};
use herald::store::Store;
use std::process::ExitCode;

impl Table for TokenInfo {
    const COLUMNS: &'static [Column] = &[
        right("ID", 4),
        left("PREFIX", 12),
        left("ROLE", 7),
        left("REGIONS", 20),
        left("NAME", 16),
        left("STATE", 0),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.id.to_string(),
            self.prefix.clone(),
            self.role.as_str().to_string(),
            if self.regions.is_empty() {
                "-".to_string()
            } else {
                self.regions.join(",")
            },
            self.name.clone().unwrap_or_else(|| "-".into()),
            self.revoked_at
                .map(|r| format!("revoked {r}"))
                .unwrap_or_else(|| "active".into()),
        ]
    }
}

/// Run a token action.
pub async fn token(action: TokenAction) -> Result<ExitCode> {
    let args = match &action {
        TokenAction::Create { config, .. }
        | TokenAction::List { config, .. }
        | TokenAction::Revoke { config, .. } => config,
    };
    let config = Config::load(&args.config)?;
    let store = Store::open(&database_location(args, &config)?).await?;
    let now = chrono::Utc::now();
    match action {
        TokenAction::Create {
            role,
            regions,
            name,
            ..
        } => {
            let (token, info) =
                tokens::create(&store, role, &regions, name.as_deref(), now).await?;
            let scope = if regions.is_empty() {
                String::new()
            } else {
                format!(" for region(s) {}", regions.join(", "))
            };
            eprintln!(
                "created {} token {} (id {}){scope}; it is shown only now:",
                info.role.as_str(),
                info.prefix,
                info.id,
            );
            println!("{token}");
        }
        TokenAction::List { json, .. } => Printer::new(json).list(&tokens::list(&store).await?)?,
        TokenAction::Revoke { id, .. } => {
            if !tokens::revoke(&store, id, now).await? {
                anyhow::bail!("no active token with id {id}; see `herald token list`");
            }
            eprintln!("revoked token {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
