//! Who is calling: the `Authorization: Bearer` token of a request, checked
//! against the stored hashes, as a [`Caller`] with a role and (for staff) the
//! regions it may see. Handlers ask the caller for the permission they need
//! and for the region scope to apply to what they read and write.

use super::ApiError;
use crate::customer::Customer;
use crate::live::Live;
use crate::store::tokens::{self, Role};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use std::sync::Arc;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's row id.
    pub token_id: i64,
    /// What the token may do.
    pub role: Role,
    /// For staff: the regions it sees; empty for admin and ingest.
    pub regions: Vec<String>,
}

impl Caller {
    /// Refuse unless the caller has exactly this role (admin passes every
    /// check; a staff check passes admin and staff tokens).
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role == role || self.role == Role::Admin {
            return Ok(());
        }
        let needed = match role {
            Role::Staff => "an admin or staff token".to_string(),
            other => with_article(other.as_str()) + " token",
        };
        Err(forbidden(format!(
            "this needs {needed}; yours is {} token",
            with_article(self.role.as_str())
        )))
    }

    /// Refuse ingest tokens: anything but posting customers and events
    /// (reading, suppressing, marking read) needs an admin or staff token.
    pub fn require_reader(&self) -> Result<(), ApiError> {
        if self.role == Role::Ingest {
            Err(forbidden(
                "ingest tokens may only post customers and events; this needs an admin or staff token",
            ))
        } else {
            Ok(())
        }
    }

    /// The regions this caller is limited to; `None` means every region.
    pub fn region_scope(&self) -> Option<&[String]> {
        match self.role {
            Role::Staff => Some(&self.regions),
            Role::Ingest if !self.regions.is_empty() => Some(&self.regions),
            Role::Admin | Role::Ingest => None,
        }
    }

    /// Whether the caller may see a customer in `region`.
    pub fn sees_region(&self, region: Option<&str>) -> bool {
        crate::engine::in_scope(self.region_scope(), region)
    }

    /// Whether the caller may see this customer (staff: only their regions).
    pub fn sees(&self, customer: &Customer) -> bool {
        self.sees_region(customer.region.as_deref())
    }
}

/// A role name with its indefinite article: "an admin", "a staff".
fn with_article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if vowel { "an" } else { "a" })
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

impl FromRequestParts<Arc<Live>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, live: &Arc<Live>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                unauthorized(
                    "missing `Authorization: Bearer <token>`; create a token with `herald token create --role admin|staff|ingest`",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let herald = live.herald();
        match tokens::find(&herald.store, token).await? {
            Some(info) => Ok(Caller {
                token_id: info.id,
                role: info.role,
                regions: info.regions,
            }),
            None => Err(unauthorized(
                "unknown or revoked token; create one with `herald token create`",
            )),
        }
    }
}
