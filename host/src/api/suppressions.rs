//! `/suppressions`: who refused which channel; list, add, remove. A
//! suppressed customer gets nothing more on that channel and the rule falls
//! back to its next channel. Staff reach only customers of their regions.

use super::auth::Caller;
use super::Current;
use super::{body_of, not_json, visible_customer, ApiError, ErrorBody};
use crate::live::Live;
use crate::store::suppressions::{self, Suppression};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_suppressions, add_suppression))
        .routes(routes!(remove_suppression))
}

/// Query of `GET /suppressions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct SuppressionQuery {
    /// Only this customer (external id).
    customer: Option<String>,
}

/// Body of `POST /suppressions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSuppression {
    /// The customer's external id.
    #[schema(min_length = 1)]
    customer: String,
    /// The channel they refused (one of the configured channels).
    #[schema(min_length = 1)]
    channel: String,
    /// Why (shown in listings).
    #[serde(default)]
    reason: Option<String>,
}

/// Every suppression the caller may see, oldest first.
#[utoipa::path(get, path = "/suppressions", tag = "suppressions", params(SuppressionQuery),
    responses((status = 200, body = Vec<Suppression>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_suppressions(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<SuppressionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Suppression>>, ApiError> {
    caller.require_reader()?;
    let Query(q) = query.map_err(super::bad_query)?;
    Ok(Json(
        suppressions::list(&h.store, q.customer.as_deref(), caller.region_scope()).await?,
    ))
}

fn known_channel(h: &crate::engine::Herald, channel: &str) -> Result<(), ApiError> {
    if h.channels.get(channel).is_some() || h.channels.is_disabled(channel) {
        return Ok(());
    }
    let mut names: Vec<&str> = h.channels.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!(
            "no channel `{channel}` is configured; channels: {}",
            names.join(", ")
        ),
    ))
}

/// Suppress a customer on a channel. 201 when added, 200 when it already was.
#[utoipa::path(post, path = "/suppressions", tag = "suppressions", request_body = NewSuppression,
    responses((status = 201, body = Suppression, description = "Added"), (status = 200, body = Suppression, description = "It already was; the first one is kept"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "No such channel is configured")))]
async fn add_suppression(
    Current(h): Current,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Suppression>), ApiError> {
    caller.require_reader()?;
    let body = body_of(body)?;
    let new: NewSuppression = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            not_json(e)
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("not a valid suppression: {e}"),
            )
        }
    })?;
    known_channel(&h, &new.channel)?;
    let customer = visible_customer(&h, &caller, &new.customer).await?;
    let reason = new.reason.as_deref().unwrap_or("added by an operator");
    let now = h.clock.now();
    let mut tx = h.store.write().await?;
    let added = suppressions::add(
        &mut tx,
        customer.id,
        &new.channel,
        reason,
        suppressions::source::API,
        now,
    )
    .await?;
    tx.commit().await?;
    let stored = suppressions::list(&h.store, Some(&customer.external_id), None)
        .await?
        .into_iter()
        .find(|s| s.channel == new.channel)
        .ok_or_else(|| anyhow::anyhow!("suppression vanished after insert"))?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)))
}

/// Lift a suppression.
#[utoipa::path(delete, path = "/suppressions/{channel}/{external_id}", tag = "suppressions",
    params(("channel" = String, Path, description = "The channel"),
        ("external_id" = String, Path, description = "The customer's external id")),
    responses((status = 204, description = "Lifted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_suppression(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require_reader()?;
    let Path((channel, external_id)) = path.map_err(super::bad_path)?;
    let customer = visible_customer(&h, &caller, &external_id).await?;
    let mut tx = h.store.write().await?;
    let lifted = suppressions::remove(&mut tx, customer.id, &channel).await?;
    tx.commit().await?;
    if lifted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("customer `{external_id}` is not suppressed on `{channel}`"),
        ))
    }
}
