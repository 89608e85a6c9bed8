//! `/segments`: the strategy's segments, how many customers each holds now
//! and who, for admin and staff tokens (staff count and see only customers
//! of their regions).

use super::auth::Caller;
use super::customers::page_limit;
use super::Current;
use super::{ApiError, ErrorBody};
use crate::customer::Customer;
use crate::live::Live;
use crate::strategy::segments::Segment;
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
        .routes(routes!(list_segments))
        .routes(routes!(count_segment))
        .routes(routes!(segment_customers))
}

/// A segment and how many customers it holds now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SegmentCount {
    #[serde(flatten)]
    segment: Segment,
    /// Customers in it now (a staff caller: of their regions).
    count: u64,
}

/// Query of `GET /segments/{name}/customers`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersQuery {
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Start after this external id: the previous page's `next_after`.
    after: Option<String>,
}

/// One page of a segment's members.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MembersPage {
    /// Members ordered by external id.
    customers: Vec<Customer>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<String>,
}

/// The segment called `name`, or a 404 naming the ones there are.
fn segment_of(h: &crate::engine::Herald, name: &str) -> Result<Segment, ApiError> {
    h.strategy.segment(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = h
            .strategy
            .segments
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no segment `{name}`; segments: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        )
    })
}

/// The strategy's segments.
#[utoipa::path(get, path = "/segments", tag = "segments",
    responses((status = 200, body = Vec<Segment>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_segments(
    Current(h): Current,
    caller: Caller,
) -> Result<Json<Vec<Segment>>, ApiError> {
    caller.require_reader()?;
    Ok(Json(h.strategy.segments.clone()))
}

/// How many customers segment `name` holds now.
#[utoipa::path(get, path = "/segments/{name}", tag = "segments",
    params(("name" = String, Path, description = "The segment's name")),
    responses((status = 200, body = SegmentCount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "The segment's condition fails for a customer")))]
async fn count_segment(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<SegmentCount>, ApiError> {
    caller.require_reader()?;
    let Path(name) = path.map_err(super::bad_path)?;
    let segment = segment_of(&h, &name)?;
    let count = h
        .segment_count(&name, caller.region_scope(), h.clock.now())
        .await?;
    Ok(Json(SegmentCount { segment, count }))
}

/// The customers in segment `name` now, a page at a time.
#[utoipa::path(get, path = "/segments/{name}/customers", tag = "segments",
    params(("name" = String, Path, description = "The segment's name"), MembersQuery),
    responses((status = 200, body = MembersPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "The segment's condition fails for a customer")))]
async fn segment_customers(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<MembersPage>, ApiError> {
    caller.require_reader()?;
    let Path(name) = path.map_err(super::bad_path)?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    segment_of(&h, &name)?;
    let members = h
        .segment_members(
            &name,
            caller.region_scope(),
            h.clock.now(),
            q.after.as_deref(),
            limit as usize,
        )
        .await?;
    Ok(Json(MembersPage {
        customers: members.customers,
        next_after: members.next_after,
    }))
}
