//! The HTTP API of `herald serve` (axum): health, customer upsert / get /
//! delete, and event ingest. Errors are JSON with a stable code and a
//! message that says what to fix; a body that does not parse changes nothing.

use crate::customer::CustomerPatch;
use crate::engine::{EventInput, Herald, WriteError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;

/// An API error: HTTP status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
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
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn parse_body<T: DeserializeOwned>(body: &Bytes, what: &str) -> Result<OneOrMany<T>, ApiError> {
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

/// The router.
pub fn router(herald: Arc<Herald>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/customers", post(upsert_customers))
        .route(
            "/customers/{external_id}",
            get(get_customer).put(put_customer).delete(delete_customer),
        )
        .route("/events", post(ingest_events))
        .route(
            "/unsubscribe",
            get(crate::unsubscribe::confirm).post(crate::unsubscribe::apply),
        )
        .route(
            "/hooks/{channel}",
            post(crate::hooks::handle).layer(axum::extract::DefaultBodyLimit::max(
                crate::hooks::MAX_CALLBACK_BODY,
            )),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(herald)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The request body, or a JSON error saying why it could not be read (for
/// one, larger than the limit) instead of axum's plain-text rejection.
fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
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

/// The largest request body the API reads.
pub const MAX_BODY: usize = 2 << 20;

async fn upsert_customers(
    State(h): State<Arc<Herald>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    match parse_body::<CustomerPatch>(&body, "customer")? {
        OneOrMany::One(patch) => Ok(Json(h.upsert_customer(&patch).await?).into_response()),
        OneOrMany::Many(patches) => {
            let mut results = Vec::with_capacity(patches.len());
            for patch in &patches {
                results.push(match h.upsert_customer(patch).await {
                    Ok(outcome) => json!({"ok": outcome}),
                    Err(WriteError::Internal(e)) => return Err(WriteError::Internal(e).into()),
                    Err(e) => {
                        let e = ApiError::from(e);
                        json!({"error": {"code": e.code, "message": e.message}})
                    }
                });
            }
            Ok(Json(json!({"results": results})).into_response())
        }
    }
}

async fn put_customer(
    State(h): State<Arc<Herald>>,
    Path(external_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    let mut value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    match object.get("external_id") {
        Some(Value::String(id)) if id != &external_id => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("external_id `{id}` in the body differs from `{external_id}` in the path"),
            ))
        }
        _ => {
            object.insert("external_id".into(), Value::String(external_id));
        }
    }
    let patch: CustomerPatch = serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("not a valid customer: {e}"),
        )
    })?;
    Ok(Json(h.upsert_customer(&patch).await?).into_response())
}

async fn get_customer(
    State(h): State<Arc<Herald>>,
    Path(external_id): Path<String>,
) -> Result<Response, ApiError> {
    match h
        .customer(&external_id)
        .await?
        .filter(|c| c.deleted_at.is_none())
    {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(WriteError::NotFound(external_id).into()),
    }
}

async fn delete_customer(
    State(h): State<Arc<Herald>>,
    Path(external_id): Path<String>,
) -> Result<Response, ApiError> {
    h.delete_customer(&external_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ingest_events(
    State(h): State<Arc<Herald>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_of(body)?;
    match parse_body::<EventInput>(&body, "event")? {
        OneOrMany::One(event) => {
            let recorded = h.record_event(&event).await?;
            Ok((
                if recorded {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                Json(json!({"recorded": recorded})),
            )
                .into_response())
        }
        OneOrMany::Many(events) => {
            let mut results = Vec::with_capacity(events.len());
            for event in &events {
                results.push(match h.record_event(event).await {
                    Ok(recorded) => json!({"recorded": recorded}),
                    Err(WriteError::Internal(e)) => return Err(WriteError::Internal(e).into()),
                    Err(e) => {
                        let e = ApiError::from(e);
                        json!({"error": {"code": e.code, "message": e.message}})
                    }
                });
            }
            Ok(Json(json!({"results": results})).into_response())
        }
    }
}
