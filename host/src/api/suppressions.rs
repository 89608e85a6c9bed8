//! `/suppressions`: who refused which channel; list (a page at a time),
//! add, remove. A
//! suppressed customer gets nothing more on that channel and the rule falls
//! back to its next channel. Staff reach only customers of their regions.

use super::auth::Caller;
use super::customers::page_limit;
use super::Current;
use super::{body_of, not_json, visible_customer, ApiError, ErrorBody};
use crate::live::Live;
use crate::store::suppressions::{self, Suppression, SuppressionKey};
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
    /// At most this many (1-1000, default 100; a limit outside is refused).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Start after this cursor: the previous page's `next_after`.
    after: Option<String>,
}

/// One page of suppressions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SuppressionPage {
    /// Oldest first (ties in a stable order).
    suppressions: Vec<Suppression>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<String>,
}

/// A page's end as the cursor clients pass back: `{ms}.{customer row}.{channel}`.
fn cursor(key: &SuppressionKey) -> String {
    format!("{}.{}.{}", key.at_ms, key.customer_id, key.channel)
}

/// The page end a cursor names, or a 400 saying where cursors come from.
fn parse_cursor(text: &str) -> Result<SuppressionKey, ApiError> {
    let mut parts = text.splitn(3, '.');
    let key = (|| {
        Some(SuppressionKey {
            at_ms: parts.next()?.parse().ok()?,
            customer_id: parts.next()?.parse().ok()?,
            channel: parts.next()?.to_string(),
        })
    })();
    key.ok_or_else(|| super::bad_cursor(text))
}

/// Body of `POST /suppressions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSuppression {
    /// The customer's external id.
    #[schema(min_length = 1, max_length = 256, pattern = "\\S")]
    customer: String,
    /// The channel they refused (one of the configured channels).
    #[schema(min_length = 1, max_length = 1024, pattern = "\\S")]
    channel: String,
    /// Why (shown in listings).
    #[serde(default)]
    #[schema(max_length = 1024)]
    reason: Option<String>,
}

impl NewSuppression {
    /// Refuse a field longer than Herald stores, saying which and the limit.
    fn check_sizes(&self) -> Result<(), ApiError> {
        use crate::customer::limits;
        let fields = [
            ("customer", self.customer.len(), limits::ID),
            ("channel", self.channel.len(), limits::FIELD),
            (
                "reason",
                self.reason.as_ref().map_or(0, String::len),
                limits::FIELD,
            ),
        ];
        match fields.into_iter().find(|(_, len, max)| len > max) {
            Some((name, len, max)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{name} is {len} bytes; the limit is {max}"),
            )),
            None => Ok(()),
        }
    }
}

/// The suppressions the caller may see, oldest first, a page at a time:
/// follow `next_after` until it is null to see each exactly once.
#[utoipa::path(get, path = "/suppressions", tag = "suppressions", params(SuppressionQuery),
    responses((status = 200, body = SuppressionPage), (status = 400, body = ErrorBody, description = "A limit outside 1-1000, a cursor the server did not make, or an unknown parameter"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "An ingest token: this needs an admin or staff token")))]
async fn list_suppressions(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<SuppressionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SuppressionPage>, ApiError> {
    caller.require_reader()?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let (list, next) = suppressions::page(
        &h.store,
        q.customer.as_deref(),
        caller.region_scope(),
        after.as_ref(),
        limit,
    )
    .await?;
    Ok(Json(SuppressionPage {
        suppressions: list,
        next_after: next.as_ref().map(cursor),
    }))
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
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "An ingest token: this needs an admin or staff token"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "No such channel is configured, or a field is longer than its limit")))]
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
    new.check_sizes()?;
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
        (status = 403, body = ErrorBody, description = "An ingest token: this needs an admin or staff token"), (status = 404, body = ErrorBody)))]
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
