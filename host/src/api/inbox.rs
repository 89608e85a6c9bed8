//! `/customers/{external_id}/inbox`: a customer's in-app messages, and
//! marking one read. Staff reach only customers of their regions.

use super::auth::Caller;
use super::Current;
use super::{visible_customer, ApiError, ErrorBody};
use crate::live::Live;
use crate::store::inbox::{self, InboxMessage};
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_inbox))
        .routes(routes!(mark_read))
}

/// The customer's in-app messages, oldest first.
#[utoipa::path(get, path = "/customers/{external_id}/inbox", tag = "inbox",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    responses((status = 200, body = Vec<InboxMessage>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_inbox(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<InboxMessage>>, ApiError> {
    caller.require_reader()?;
    let Path(external_id) = path.map_err(super::bad_path)?;
    let customer = visible_customer(&h, &caller, &external_id).await?;
    Ok(Json(inbox::list(&h.store, customer.id).await?))
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
