//! `/customers/{external_id}/inbox`: a customer's in-app messages, a page
//! at a time, and marking one read. Staff reach only customers of their regions.

use super::auth::Caller;
use super::customers::page_limit;
use super::Current;
use super::{visible_customer, ApiError, ErrorBody};
use crate::live::Live;
use crate::store::inbox::{self, InboxKey, InboxMessage};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_inbox))
        .routes(routes!(mark_read))
}

/// Query of `GET /customers/{external_id}/inbox`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct InboxQuery {
    /// At most this many (1-1000, default 100; a limit outside is refused).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Start after this cursor: the previous page's `next_after`.
    after: Option<String>,
}

/// One page of a customer's messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct InboxPage {
    /// Oldest first.
    messages: Vec<InboxMessage>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<String>,
}

/// The page end a cursor (`{ms}.{id}`) names, or a 400.
fn parse_cursor(text: &str) -> Result<InboxKey, ApiError> {
    text.split_once('.')
        .and_then(|(at, id)| {
            Some(InboxKey {
                at_ms: at.parse().ok()?,
                id: id.parse().ok()?,
            })
        })
        .ok_or_else(|| super::bad_cursor(text))
}

/// The customer's in-app messages, oldest first, a page at a time: follow
/// `next_after` until it is null to see each exactly once.
#[utoipa::path(get, path = "/customers/{external_id}/inbox", tag = "inbox",
    params(("external_id" = String, Path, description = "The operator's id for the customer"), InboxQuery),
    responses((status = 200, body = InboxPage), (status = 400, body = ErrorBody, description = "A limit outside 1-1000, a cursor the server did not make, or an unknown parameter"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "An ingest token: this needs an admin or staff token"),
        (status = 404, body = ErrorBody)))]
async fn list_inbox(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Json<InboxPage>, ApiError> {
    caller.require_reader()?;
    let Path(external_id) = path.map_err(super::bad_path)?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let customer = visible_customer(&h, &caller, &external_id).await?;
    let (messages, next) = inbox::page(&h.store, customer.id, after, limit).await?;
    Ok(Json(InboxPage {
        messages,
        next_after: next.map(|k| format!("{}.{}", k.at_ms, k.id)),
    }))
}

/// Mark a message read (the first read time is kept).
#[utoipa::path(post, path = "/customers/{external_id}/inbox/{message_id}/read", tag = "inbox",
    params(("external_id" = String, Path, description = "The operator's id for the customer"),
        ("message_id" = i64, Path, description = "The message id from the inbox listing")),
    responses((status = 204, description = "Marked read"),
        (status = 400, body = ErrorBody, description = "The message id is not a number"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn mark_read(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<(String, i64)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require_reader()?;
    let Path((external_id, message_id)) = path.map_err(super::bad_path)?;
    let customer = visible_customer(&h, &caller, &external_id).await?;
    if inbox::mark_read(&h.store, customer.id, message_id, h.clock.now()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("customer `{external_id}` has no inbox message {message_id}"),
        ))
    }
}
