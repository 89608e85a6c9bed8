//! `GET /deliveries`: recorded delivery attempts, filtered and paged by id.
//! Staff see only attempts to customers of their regions.

use super::auth::Caller;
use super::customers::page_limit;
use super::Current;
use super::{ApiError, ErrorBody};
use crate::live::Live;
use crate::store::deliveries::{self, DeliveryQuery, DeliveryRow};
use axum::extract::Query;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new().routes(routes!(list_deliveries))
}

/// Query of `GET /deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    /// Only this customer (external id).
    customer: Option<String>,
    /// Only this status: delivered, failed, dead, skipped, suppressed, deferred, retrying.
    status: Option<String>,
    /// Only this rule.
    rule: Option<String>,
    /// Only this channel.
    channel: Option<String>,
    /// Only attempts at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only attempts before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Start after this id: the previous page's `next_after`.
    after: Option<i64>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One page of delivery attempts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct DeliveryPage {
    /// Attempts in id order.
    deliveries: Vec<DeliveryRow>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

/// List delivery attempts.
#[utoipa::path(get, path = "/deliveries", tag = "deliveries", params(DeliveriesQuery),
    responses((status = 200, body = DeliveryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_deliveries(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.require_reader()?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    let rows = deliveries::page(
        &h.store,
        &DeliveryQuery {
            customer: q.customer,
            status: q.status,
            rule: q.rule,
            channel: q.channel,
            since: q.since,
            until: q.until,
            scope: caller.region_scope().map(<[String]>::to_vec),
            after_id: q.after.unwrap_or(0),
            limit,
        },
    )
    .await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    Ok(Json(DeliveryPage {
        deliveries: rows,
        next_after,
    }))
}
