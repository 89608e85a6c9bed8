//! `GET /held`, `POST /held/redrive`, `POST /held/drop`: the dead letters
//! and the sends held with an unknown outcome, for admin tokens (the same
//! as `herald held`, `herald redrive` and `herald drop`).

use super::auth::Caller;
use super::{body_of, not_json, ApiError, Current, ErrorBody};
use crate::engine::Herald;
use crate::live::Live;
use crate::store::held::{self, HeldFilter, HeldRow, MAX_LIST, STATUSES};
use crate::store::tokens::Role;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most ids one redrive or drop takes.
const MAX_IDS: usize = 1000;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_held))
        .routes(routes!(redrive))
        .routes(routes!(drop_unknown))
}

/// Query of `GET /held`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct HeldQuery {
    /// `dead` or `unknown`; both when absent.
    #[param(pattern = "^(dead|unknown)$")]
    status: Option<String>,
    /// Only those whose last attempt went on this channel.
    channel: Option<String>,
    /// Only those of this rule.
    rule: Option<String>,
    /// Start after this id: the previous page's `next_after`.
    after: Option<i64>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// One page of held reminders.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct HeldPage {
    /// Held reminders in id order.
    held: Vec<HeldRow>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

/// The schedule ids to act on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HeldIds {
    /// Ids as `GET /held` lists them (1 to 1000).
    #[schema(min_items = 1, max_items = 1000)]
    ids: Vec<i64>,
}

/// What a redrive or drop changed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct HeldChange {
    /// The ids changed.
    changed: Vec<i64>,
    /// The ids left alone: not held (or, for a drop, not `unknown`).
    not_held: Vec<i64>,
}

/// List dead letters and sends held with an unknown outcome.
#[utoipa::path(get, path = "/held", tag = "held", params(HeldQuery),
    responses((status = 200, body = HeldPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_held(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<HeldQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HeldPage>, ApiError> {
    caller.require(Role::Admin)?;
    let Query(q) = query.map_err(super::bad_query)?;
    if let Some(status) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(bad_query(format!(
            "status `{status}`: a held reminder is `dead` or `unknown`"
        )));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(bad_query(format!("limit {limit}: give 1 to {MAX_LIST}")));
    }
    let filter = HeldFilter {
        status: q.status,
        channel: q.channel,
        rule: q.rule,
        after: q.after,
        limit,
    };
    let rows = held::list(&h.store, &filter).await?;
    let next_after = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(HeldPage {
        held: rows,
        next_after,
    }))
}

/// Send held reminders again: pending and due now, attempts counted
/// afresh, the same occurrence key (a provider that honours Herald's
/// idempotency key drops a repeat).
#[utoipa::path(post, path = "/held/redrive", tag = "held", request_body = HeldIds,
    responses((status = 200, body = HeldChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn redrive(
    Current(h): Current,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HeldChange>, ApiError> {
    act(&h, &caller, body, Act::Redrive).await
}

/// Let sends held with an unknown outcome go: never sent again.
#[utoipa::path(post, path = "/held/drop", tag = "held", request_body = HeldIds,
    responses((status = 200, body = HeldChange), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn drop_unknown(
    Current(h): Current,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HeldChange>, ApiError> {
    act(&h, &caller, body, Act::Drop).await
}

/// What a `POST /held/...` does.
enum Act {
    Redrive,
    Drop,
}

/// Check the caller and the body, then redrive or drop the ids, now.
async fn act(
    h: &Herald,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
    act: Act,
) -> Result<Json<HeldChange>, ApiError> {
    caller.require(Role::Admin)?;
    let ids = ids_of(body)?;
    let now = h.clock.now();
    let changed = match act {
        Act::Redrive => held::redrive(&h.store, &ids, now).await?,
        Act::Drop => held::drop_unknown(&h.store, &ids, now).await?,
    };
    Ok(Json(change(ids, changed)))
}

/// The ids of a redrive or drop body, 1 to [`MAX_IDS`] of them.
fn ids_of(body: Result<Bytes, BytesRejection>) -> Result<Vec<i64>, ApiError> {
    let body = body_of(body)?;
    let HeldIds { ids } = serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            not_json(e)
        } else {
            bad_body(format!(
                "give {{\"ids\": [1, 2, ...]}} as `GET /held` lists them: {e}"
            ))
        }
    })?;
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(bad_body(format!(
            "{} ids: give 1 to {MAX_IDS} per request",
            ids.len()
        )));
    }
    Ok(ids)
}

fn change(asked: Vec<i64>, changed: Vec<i64>) -> HeldChange {
    let not_held = asked
        .into_iter()
        .filter(|id| !changed.contains(id))
        .collect();
    HeldChange { changed, not_held }
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

fn bad_body(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
}
