//! `POST /events`: ingest one event or a batch. An `event_id` makes ingestion
//! idempotent (a repeat answers `recorded: false` and changes nothing). Staff
//! may post events only for customers of their regions.

use super::auth::Caller;
use super::{body_of, parse_body, ApiError, ErrorBody, OneOrMany};
use crate::engine::EventInput;
use crate::live::Live;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new().routes(routes!(ingest_events))
}

/// The body of `POST /events`: one event or an array of them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // documents the body; `parse_body` reads it, naming a bad item
pub(super) enum EventPosts {
    /// One event.
    One(EventInput),
    /// Several, each answered in `results`, in order.
    Many(Vec<EventInput>),
}

/// Whether an event was recorded (`false`: its `event_id` already was).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Recorded {
    /// `true` when recorded now, `false` for a repeated `event_id`.
    recorded: bool,
}

/// The 200 answer of `POST /events`: a repeated event, or `results` for an
/// array.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum EventAnswer {
    /// The body was one event whose `event_id` was already recorded.
    One(Recorded),
    /// The body was an array.
    Many(EventResults),
}

/// Each item of an array of events, answered in order.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct EventResults {
    /// One entry per item: `{"recorded": ...}` or an error body.
    results: Vec<EventItem>,
}

/// The answer for one item of an array.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(super) enum EventItem {
    /// Recorded, or already recorded.
    Recorded(Recorded),
    /// Refused or not written (this item only; see the operation for
    /// which of the others are recorded).
    Err(ErrorBody),
}

/// An event of a batch left untried because an earlier part failed.
fn not_tried() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_recorded",
        "not recorded: an earlier part of this batch could not be written, so this event was not tried; send it again",
    )
}

/// Record one event (an object) or many (an array; each item answered in
/// `results`, in order). 201 when recorded, 200 when the `event_id` was
/// already recorded. An array is written a part of 256 events at a time,
/// each part committed on its own, so other posts are not held up behind
/// it: it is not all-or-nothing. An item answered with an error (`internal`
/// when its part could not be written, `not_recorded` for the items after
/// it) is not stored; every item answered `recorded` is, once. Send the
/// refused items again; with `event_id`s, sending the whole array again is
/// safe too.
#[utoipa::path(post, path = "/events", tag = "events",
    request_body(content = EventPosts, description = "One event, or an array of them"),
    responses((status = 201, body = Recorded, description = "`{\"recorded\": true}`"),
        (status = 200, body = EventAnswer, description = "`{\"recorded\": false}` (a repeated event_id), or `{\"results\": [...]}` for an array"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such customer (for staff: none in their regions)"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn ingest_events(
    State(live): State<Arc<Live>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    match parse_body::<EventInput>(&body, "event")? {
        OneOrMany::One(event) => {
            // Single events from concurrent requests share transactions.
            let scope = caller.region_scope().map(<[String]>::to_vec);
            let recorded = live.event_writer().record(event, scope).await?;
            Ok(if recorded {
                (StatusCode::CREATED, Json(Recorded { recorded })).into_response()
            } else {
                Json(EventAnswer::One(Recorded { recorded })).into_response()
            })
        }
        OneOrMany::Many(events) => {
            // Written a part at a time through the same writer, so single
            // posts are not held up behind a large batch; each item is
            // answered on its own.
            let scope = caller.region_scope().map(<[String]>::to_vec);
            let results = live
                .event_writer()
                .record_batch(events, scope)
                .await
                .into_iter()
                .map(|result| match result {
                    Some(Ok(recorded)) => EventItem::Recorded(Recorded { recorded }),
                    Some(Err(e)) => EventItem::Err(ApiError::from(e).body()),
                    None => EventItem::Err(not_tried().body()),
                })
                .collect();
            Ok(Json(EventAnswer::Many(EventResults { results })).into_response())
        }
    }
}
