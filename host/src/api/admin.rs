//! Admin endpoints: `POST /admin/reload` (read the config file again and put
//! it in force, or refuse it with every problem — [`crate::live::reload`])
//! and `GET /metrics` (Prometheus text exposition, [`crate::metrics`]).

use super::auth::Caller;
use super::{ApiError, Current, ErrorBody};
use crate::live::reload::{reload, Reloaded};
use crate::live::Live;
use crate::store::tokens::Role;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A refused reload: every error, as `herald check` words them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Refused {
    /// `{"code": "config_refused", "message": ...}`.
    pub error: RefusedDetail,
}

/// The inside of [`Refused`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefusedDetail {
    /// Always `config_refused`.
    pub code: String,
    /// What happened.
    pub message: String,
    /// Each problem, naming its place and how to fix it.
    pub problems: Vec<String>,
}

/// The admin routes.
pub fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(reload_config))
        .routes(routes!(scrape))
}

/// Read the config file again and put it in force (admin token). A config
/// with errors is refused (422, with every problem) and the running one
/// stays in force.
#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    responses(
        (status = 200, body = Reloaded, description = "the new config is in force"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, body = Refused, description = "the new config has errors; the old one keeps running"),
    ),
    security(("bearer" = [])))]
async fn reload_config(
    State(live): State<Arc<Live>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    Ok(match reload(&live).await {
        Ok(reloaded) => Json(reloaded).into_response(),
        Err(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(Refused {
                error: RefusedDetail {
                    code: "config_refused".into(),
                    message: format!(
                        "the new config has {} problem(s); the running config stays in force. Fix them (run `herald check`) and reload again",
                        problems.len()
                    ),
                    problems,
                },
            }),
        )
            .into_response(),
    })
}

/// Prometheus metrics in the text exposition format 0.0.4 (admin token;
/// configure Prometheus with `authorization: { credentials: TOKEN }`).
#[utoipa::path(get, path = "/metrics", tag = "admin",
    responses(
        (status = 200, content_type = "text/plain", body = String, description = "metrics, text exposition format 0.0.4"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn scrape(Current(herald): Current, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let text = crate::metrics::render(&herald.store, herald.clock.now()).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}
