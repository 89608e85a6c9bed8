//! `/suppressions/addresses`: the do-not-contact list by address (admin
//! only: it applies to every customer with the address, in every region).
//! List a page at a time, add, remove. Addresses are normalised
//! ([`crate::address`]) before they are stored or looked up; one that
//! cannot be is a 422 saying what to fix.

use super::auth::Caller;
use super::customers::page_limit;
use super::Current;
use super::{body_of, not_json, ApiError, ErrorBody};
use crate::address::{self, Kind};
use crate::live::Live;
use crate::store::address_suppressions::{self as list, AddressSuppression, EntryKey};
use crate::store::tokens::Role;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_addresses, add_address))
        .routes(routes!(remove_address))
}

/// Query of `GET /suppressions/addresses`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AddressQuery {
    /// Only this kind: `email` or `phone`.
    kind: Option<String>,
    /// At most this many (1-1000, default 100; a limit outside is refused).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Start after this cursor: the previous page's `next_after`.
    after: Option<String>,
}

/// One page of the do-not-contact list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct AddressPage {
    /// Oldest first (ties by kind and address).
    addresses: Vec<AddressSuppression>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<String>,
}

/// Body of `POST /suppressions/addresses`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAddress {
    /// `email` or `phone`.
    #[schema(max_length = 16, pattern = "^(email|phone)$")]
    kind: String,
    /// The address as written: an email (lower-cased when stored) or a
    /// phone number with its country code (`+86 138-0000-0000`, `0086...`;
    /// stored as E.164).
    #[schema(min_length = 1, max_length = 254)]
    address: String,
    /// Why (shown in listings and by explain).
    #[serde(default)]
    #[schema(max_length = 1024)]
    reason: Option<String>,
}

/// A page's end as the cursor clients pass back: `{ms}.{kind}.{address}`.
fn cursor(key: &EntryKey) -> String {
    format!("{}.{}.{}", key.at_ms, key.kind, key.address)
}

/// The page end a cursor names, or a 400 saying where cursors come from.
fn parse_cursor(text: &str) -> Result<EntryKey, ApiError> {
    let mut parts = text.splitn(3, '.');
    let key = (|| {
        Some(EntryKey {
            at_ms: parts.next()?.parse().ok()?,
            kind: parts.next()?.to_string(),
            address: parts.next()?.to_string(),
        })
    })();
    key.ok_or_else(|| super::bad_cursor(text))
}

/// A 422 with `message`.
fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

/// `kind` and `raw` as a listed address, or a 422 saying what to fix.
fn normalised(kind: &str, raw: &str) -> Result<(Kind, String), ApiError> {
    let kind = Kind::parse(kind).map_err(invalid)?;
    let address = address::normalise(kind, raw).map_err(invalid)?;
    Ok((kind, address))
}

/// The do-not-contact list, oldest first, a page at a time: follow
/// `next_after` until it is null to see each entry exactly once.
#[utoipa::path(get, path = "/suppressions/addresses", tag = "suppressions", params(AddressQuery),
    responses((status = 200, body = AddressPage), (status = 400, body = ErrorBody, description = "A limit outside 1-1000, a cursor the server did not make, or an unknown parameter"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "Not an admin token"),
        (status = 422, body = ErrorBody, description = "An unknown kind")))]
async fn list_addresses(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<AddressQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AddressPage>, ApiError> {
    caller.require(Role::Admin)?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    let kind = q
        .kind
        .as_deref()
        .map(Kind::parse)
        .transpose()
        .map_err(invalid)?;
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let (addresses, next) =
        list::page(&h.store, kind.map(Kind::as_str), after.as_ref(), limit).await?;
    Ok(Json(AddressPage {
        addresses,
        next_after: next.as_ref().map(cursor),
    }))
}

/// Put an address on the do-not-contact list: nothing more goes to it on
/// any channel that sends to that kind of address, for any customer who
/// has it now or later. The address need not belong to a customer. 201
/// when added, 200 when it already was (the first entry is kept).
#[utoipa::path(post, path = "/suppressions/addresses", tag = "suppressions", request_body = NewAddress,
    responses((status = 201, body = AddressSuppression, description = "Added"), (status = 200, body = AddressSuppression, description = "It already was; the first entry is kept"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not an admin token"), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "An unknown kind, an address that cannot be normalised (a phone number without its country code), or a reason over 1024 bytes")))]
async fn add_address(
    Current(h): Current,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AddressSuppression>), ApiError> {
    caller.require(Role::Admin)?;
    let body = body_of(body)?;
    let new: NewAddress = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            not_json(e)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("not a valid address suppression: {e}"),
            )
        }
    })?;
    let reason = new.reason.as_deref().unwrap_or("added by an operator");
    if reason.len() > crate::customer::limits::FIELD {
        return Err(invalid(format!(
            "reason is {} bytes; the limit is {}",
            reason.len(),
            crate::customer::limits::FIELD
        )));
    }
    let (kind, address) = normalised(&new.kind, &new.address)?;
    let mut tx = h.store.write().await?;
    let added = list::add(
        &mut tx,
        kind.as_str(),
        &address,
        reason,
        list::source::API,
        h.clock.now(),
    )
    .await?;
    let one = [address.as_str()];
    let (emails, phones): (&[&str], &[&str]) = match kind {
        Kind::Email => (&one, &[]),
        Kind::Phone => (&[], &one),
    };
    let stored = list::for_addresses(&mut tx, emails, phones)
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("address suppression vanished after insert"))?;
    tx.commit().await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)))
}

/// Take an address off the do-not-contact list (written in any form the
/// list accepts: it is normalised first).
#[utoipa::path(delete, path = "/suppressions/addresses/{kind}/{address}", tag = "suppressions",
    params(("kind" = String, Path, description = "`email` or `phone`"),
        ("address" = String, Path, description = "The address")),
    responses((status = 204, description = "Taken off"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "Not an admin token"), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "An unknown kind or an address that cannot be normalised")))]
async fn remove_address(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let Path((kind, raw)) = path.map_err(super::bad_path)?;
    let (kind, address) = normalised(&kind, &raw)?;
    let mut tx = h.store.write().await?;
    let removed = list::remove(&mut tx, kind.as_str(), &address).await?;
    tx.commit().await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} {address} is not on the do-not-contact list"),
        ))
    }
}
