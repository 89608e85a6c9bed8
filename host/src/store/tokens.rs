//! API bearer tokens: creation (the token is returned once, only its SHA-256
//! is stored), lookup by presented token, listing and revocation.

use super::backend::on;
use super::Fields;
use super::Store;
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Head office: every endpoint, every region.
    Admin,
    /// Branch staff: read and change customers of their regions only.
    Staff,
    /// A feeding system: may only post customers and events (of its
    /// regions, if it was given any), and never revives a deleted customer.
    Ingest,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Ingest => "ingest",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "staff" => Ok(Role::Staff),
            "ingest" => Ok(Role::Ingest),
            other => Err(format!(
                "unknown role `{other}`: use admin, staff or ingest"
            )),
        }
    }
}

/// A stored token (never the secret itself).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// Row id, for revocation.
    pub id: i64,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    /// What it may do.
    pub role: Role,
    /// For staff: the regions it sees; for ingest: the regions it may
    /// write (none: every region).
    pub regions: Vec<String>,
    /// A label.
    pub name: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The prefix every token starts with, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "hrld_";

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Check a role/regions combination before creating a token.
pub fn validate(role: Role, regions: &[String]) -> Result<()> {
    match role {
        Role::Staff if regions.is_empty() => {
            bail!("a staff token needs at least one --region (the regions whose customers it may see)")
        }
        Role::Admin if !regions.is_empty() => bail!(
            "--region applies to staff and ingest tokens; an admin token is not limited to regions"
        ),
        _ => {}
    }
    if let Some(bad) = regions.iter().find(|r| r.trim().is_empty()) {
        bail!("region names cannot be empty (got `{bad}`)");
    }
    Ok(())
}

/// Create a token; returns the token text (shown once) and its row.
pub async fn create(
    store: &Store,
    role: Role,
    regions: &[String],
    name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, TokenInfo)> {
    on!(store.pool(), |db, d| {
        validate(role, regions)?;
        let mut secret = [0u8; 24];
        getrandom::getrandom(&mut secret)
            .map_err(|e| anyhow::anyhow!("cannot read random bytes for a token: {e}"))?;
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let regions_json = serde_json::to_string(regions)?;
        let id: i64 = sqlx::query_scalar(&d.sql(
            "INSERT INTO api_tokens (hash, prefix, role, regions, name, created_at)
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        ))
        .bind(hash(&token))
        .bind(&prefix)
        .bind(role.as_str())
        .bind(&regions_json)
        .bind(name)
        .bind(super::to_millis(now))
        .fetch_one(db)
        .await
        .context("cannot store the token")?;
        Ok((
            token,
            TokenInfo {
                id,
                prefix,
                role,
                regions: regions.to_vec(),
                name: name.map(str::to_string),
                created_at: now,
                revoked_at: None,
            },
        ))
    })
}

fn info<R: Fields>(row: &R) -> Result<TokenInfo>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let role = row.text("role");
    let regions = row.text("regions");
    Ok(TokenInfo {
        id: row.int("id"),
        prefix: row.text("prefix"),
        role: role.parse().map_err(anyhow::Error::msg)?,
        regions: serde_json::from_str(&regions).context("stored token regions are not JSON")?,
        name: row.opt_text("name"),
        created_at: super::from_millis(row.int("created_at")),
        revoked_at: row.opt_int("revoked_at").map(super::from_millis),
    })
}

/// The live (not revoked) token matching `token`, if any.
pub async fn find(store: &Store, token: &str) -> Result<Option<TokenInfo>> {
    on!(store.pool(), |db, d| {
        let row =
            sqlx::query(&d.sql("SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL"))
                .bind(hash(token))
                .fetch_optional(db)
                .await?;
        row.as_ref().map(info).transpose()
    })
}

/// Every token, newest first.
pub async fn list(store: &Store) -> Result<Vec<TokenInfo>> {
    on!(store.pool(), |db, d| {
        let rows = sqlx::query(&d.sql("SELECT * FROM api_tokens ORDER BY id DESC"))
            .fetch_all(db)
            .await?;
        rows.iter().map(info).collect()
    })
}

/// Revoke a token by id; false when there is no such live token.
pub async fn revoke(store: &Store, id: i64, now: DateTime<Utc>) -> Result<bool> {
    on!(store.pool(), |db, d| {
        let done = sqlx::query(
            &d.sql("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
        )
        .bind(super::to_millis(now))
        .bind(id)
        .execute(db)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}
