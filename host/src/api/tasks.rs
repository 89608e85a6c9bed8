//! `/tasks`: the staff call list over HTTP. A branch's staff token lists and
//! closes only calls to customers of its regions (another region's task is
//! a 404, as a missing one is); closing records what came of the call and a
//! note. Admin tokens see every region.

use super::auth::Caller;
use super::customers::page_limit;
use super::Current;
use super::{body_of, ApiError, ErrorBody};
use crate::live::Live;
use crate::store::tasks::{self, Closed, Task, TaskFilter, OUTCOMES};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest note kept with a closed task.
const MAX_NOTE: usize = 2000;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(close_task))
}

/// Query of `GET /tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskQuery {
    /// Closed tasks too (default: only open ones).
    all: Option<bool>,
    /// At most this many (1-1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Start after this task id: the previous page's `next_after`.
    after: Option<i64>,
}

/// One page of the call list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct TaskPage {
    /// Tasks in the order they were put on the list.
    tasks: Vec<Task>,
    /// Pass as `after` for the next page; null on the last one.
    next_after: Option<i64>,
}

/// The body of `POST /tasks/{id}/close`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseTask {
    /// `reached`, `no_answer`, `wrong_number`, `declined` or `other`.
    #[schema(max_length = 32)]
    outcome: String,
    /// What was said or agreed (at most 2000 characters).
    #[serde(default)]
    #[schema(max_length = 2000)]
    note: Option<String>,
}

/// The call list: open tasks (or all with `all=true`), oldest first.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, body = TaskPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_tasks(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<TaskQuery>, QueryRejection>,
) -> Result<Json<TaskPage>, ApiError> {
    caller.require_reader()?;
    let Query(q) = query.map_err(super::bad_query)?;
    let limit = page_limit(q.limit)?;
    let filter = TaskFilter {
        include_done: q.all.unwrap_or(false),
        scope: caller.region_scope().map(<[String]>::to_vec),
        after: q.after.unwrap_or(0),
        limit,
    };
    let list = tasks::list(&h.store, &filter).await?;
    let next_after = (list.len() as i64 == limit)
        .then(|| list.last().map(|t| t.id))
        .flatten();
    Ok(Json(TaskPage {
        tasks: list,
        next_after,
    }))
}

/// Close a task with what came of the call. 409 when it was closed before.
#[utoipa::path(post, path = "/tasks/{id}/close", tag = "tasks",
    params(("id" = i64, Path, description = "The task's id")),
    request_body = CloseTask,
    responses((status = 200, body = Task, description = "Closed"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "Closed before"), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "An unknown outcome or a note too long")))]
async fn close_task(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Task>, ApiError> {
    caller.require_reader()?;
    let Path(id) = path.map_err(super::bad_path)?;
    let close: CloseTask = serde_json::from_slice(&body_of(body)?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("not a closing ({{\"outcome\": ..., \"note\": ...}}): {e}"),
        )
    })?;
    check_close(&close)?;
    let scope = caller.region_scope();
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no task {id} on your call list"),
        )
    };
    match tasks::close(
        &h.store,
        id,
        Some(&close.outcome),
        close.note.as_deref(),
        scope,
        h.clock.now(),
    )
    .await?
    {
        Closed::Now => {}
        Closed::NotFound => return Err(not_found()),
        Closed::Already(at) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("task {id} was closed at {}", at.to_rfc3339()),
            ))
        }
    }
    let filter = TaskFilter {
        include_done: true,
        scope: scope.map(<[String]>::to_vec),
        after: id - 1,
        limit: 1,
    };
    let closed = tasks::list(&h.store, &filter)
        .await?
        .into_iter()
        .find(|t| t.id == id);
    closed.map(Json).ok_or_else(not_found)
}

/// Refuse an unknown outcome or a note longer than Herald keeps.
fn check_close(close: &CloseTask) -> Result<(), ApiError> {
    let invalid = |m: String| {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            m,
        ))
    };
    if !OUTCOMES.contains(&close.outcome.as_str()) {
        return invalid(format!(
            "outcome `{}` is not one of {}",
            close.outcome,
            OUTCOMES.join(", ")
        ));
    }
    if let Some(note) = &close.note {
        if note.chars().count() > MAX_NOTE {
            return invalid(format!(
                "the note is {} characters; the limit is {MAX_NOTE}",
                note.chars().count()
            ));
        }
    }
    Ok(())
}
