//! The HTTP edge of `herald serve` (axum): every handler lives here — the
//! API resources, provider callbacks ([`hooks`]), the unsubscribe and preference pages,
//! tracking links and the dashboard ([`funnel`]), reload and the metrics
//! scrape ([`admin`]) — with the router, the listener ([`server`]), the
//! OpenAPI document derived from the handlers (`/openapi.json`, utoipa), and
//! what every handler shares: JSON errors with a stable code and a message
//! that says what to fix, and body parsing that changes nothing when a body
//! is bad. [`auth`] says who is calling; `limits` holds callbacks and link
//! hits to their `[server.inbound]` limits. Nothing else imports this module.

mod address_suppressions;
mod admin;
pub mod auth;
mod customers;
mod deliveries;
mod devices;
mod events;
mod funnel;
mod held;
pub mod hooks;
mod html;
mod inbox;
mod limits;
mod preference_page;
mod preferences;
mod segments;
pub mod server;
mod strategy;
mod suppressions;
mod tasks;
mod unsubscribe;

use crate::engine::{Herald, WriteError};
use crate::live::Live;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// An API error: HTTP status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with this status, stable code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl ApiError {
    /// The error as the JSON body it is sent as (also per item of a batch):
    /// the same type the OpenAPI document describes.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            WriteError::NotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no customer with external_id `{id}`"),
            ),
            WriteError::Internal(e) => {
                tracing::error!("internal error: {e:#}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        WriteError::Internal(e).into()
    }
}

/// One object or an array of them.
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

pub(crate) fn parse_body<T: DeserializeOwned>(
    body: &Bytes,
    what: &str,
) -> Result<OneOrMany<T>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let bad = |e: serde_json::Error, index: Option<usize>| {
        let at = index.map(|i| format!(" (item {i})")).unwrap_or_default();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("not a valid {what}{at}: {e}"),
        )
    };
    match value {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(serde_json::from_value(item).map_err(|e| bad(e, Some(i)))?);
            }
            Ok(OneOrMany::Many(out))
        }
        other => Ok(OneOrMany::One(
            serde_json::from_value(other).map_err(|e| bad(e, None))?,
        )),
    }
}

/// The error body every handler sends (and each failed item of a batch).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `{"code": "...", "message": "..."}`: a stable code and what to fix.
    error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (invalid_json, invalid_body,
    /// invalid_query, invalid_path, invalid, not_found, unauthorized,
    /// forbidden, too_large, bad_link, too_many_requests, internal...).
    code: String,
    /// What went wrong and how to fix it.
    message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Lifecycle reminder engine API. Every endpoint except /health, /openapi.json, /hooks, /unsubscribe, /preferences and the tracking links needs `Authorization: Bearer <token>` (`herald token create`)."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The documented routes: each resource module adds its handlers, and the
/// OpenAPI document is assembled from the same list the router serves.
pub fn documented_routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(customers::routes())
        .merge(devices::routes())
        .merge(preferences::routes())
        .merge(segments::routes())
        .merge(events::routes())
        .merge(deliveries::routes())
        .merge(inbox::routes())
        .merge(suppressions::routes())
        .merge(address_suppressions::routes())
        .merge(strategy::routes())
        .merge(admin::routes())
        .merge(funnel::routes())
        .merge(held::routes())
        .merge(tasks::routes())
}

/// The OpenAPI document the server serves at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// The router.
pub fn router(live: Arc<Live>) -> Router {
    let (api, doc) = documented_routes().split_for_parts();
    let doc = Arc::new(doc);
    api.route("/health", get(health))
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route(
            "/preferences",
            get(preference_page::show).post(preference_page::save),
        )
        .route(
            "/unsubscribe",
            get(unsubscribe::confirm).post(unsubscribe::apply),
        )
        .route(
            "/hooks/{channel}",
            axum::routing::post(hooks::handle).get(hooks::handle).layer(
                axum::extract::DefaultBodyLimit::max(hooks::MAX_CALLBACK_BODY),
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            live.clone(),
            limits::guard,
        ))
        .with_state(live)
}

/// `ok`, or `recovered` with what panicked when a background task had to
/// be started again since the process started.
async fn health(axum::extract::State(live): axum::extract::State<Arc<Live>>) -> Json<Value> {
    let restarts = live.restarts.snapshot();
    if restarts.is_empty() {
        return Json(json!({"status": "ok"}));
    }
    Json(json!({"status": "recovered", "restarts": restarts}))
}

/// The request body, or a JSON error saying why it could not be read (for
/// one, larger than the limit) instead of axum's plain-text rejection.
pub(crate) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                format!(
                    "the body is larger than {} MiB; send fewer items per request",
                    MAX_BODY >> 20
                ),
            )
        } else {
            ApiError::new(
                status,
                "unreadable_body",
                format!("cannot read the body: {rejection}"),
            )
        }
    })
}

/// A body that is not JSON.
pub(crate) fn not_json(e: serde_json::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        format!("the body is not JSON: {e}"),
    )
}

/// A path whose parameters do not parse (a message id that is not a
/// number, bytes that are not UTF-8): a JSON 400 instead of axum's plain text.
pub(crate) fn bad_path(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text())
}

/// An `after` cursor the server did not make.
pub(crate) fn bad_cursor(text: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!(
            "after = `{}` is not a cursor of this listing; pass the previous page's `next_after` as it is",
            text.chars().take(64).collect::<String>()
        ),
    )
}

/// A query string that does not fit the endpoint.
pub(crate) fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

/// The live customer with this external id if the caller may see it; a 404
/// otherwise (another region's customer looks like no customer at all).
pub(crate) async fn visible_customer(
    h: &Herald,
    caller: &auth::Caller,
    external_id: &str,
) -> Result<crate::customer::Customer, ApiError> {
    h.customer(external_id)
        .await?
        .filter(|c| c.deleted_at.is_none() && caller.sees(c))
        .ok_or_else(|| WriteError::NotFound(external_id.to_string()).into())
}

/// The largest request body the API reads.
pub const MAX_BODY: usize = 2 << 20;

/// Extractor for handlers: the deployment in force when the request arrived.
pub struct Current(pub Arc<Herald>);

impl FromRequestParts<Arc<Live>> for Current {
    type Rejection = Infallible;

    async fn from_request_parts(
        _parts: &mut Parts,
        live: &Arc<Live>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Current(live.herald()))
    }
}
