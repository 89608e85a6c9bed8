//! `/customers/{external_id}/devices`: register and forget a customer's app
//! installations for push. The app's backend registers a token when the app
//! gets one (an ingest token may), and forgets it when the app is
//! uninstalled or signs out; staff tokens only for customers of their
//! regions (another region's customer is a 404).

use super::auth::Caller;
use super::Current;
use super::{body_of, ApiError, ErrorBody};
use crate::live::Live;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(register_device))
        .routes(routes!(forget_device))
}

/// The body of `POST /customers/{external_id}/devices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDevice {
    /// The push provider's token for the installation.
    #[schema(min_length = 1, max_length = 4096)]
    token: String,
    /// `android`, `ios`, `web` or `harmony`.
    #[schema(max_length = 16)]
    platform: String,
    /// The app's bundle id or package name.
    #[schema(min_length = 1, max_length = 256)]
    app: String,
}

/// Register an app installation for push (or refresh it). A customer keeps
/// their 10 most recently registered devices; a token registered for
/// another customer moves to this one.
#[utoipa::path(post, path = "/customers/{external_id}/devices", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    request_body = NewDevice,
    responses((status = 201, description = "Registered"), (status = 200, description = "Already registered: refreshed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "A blank or too long token or app, or an unknown platform")))]
async fn register_device(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(external_id) = path.map_err(super::bad_path)?;
    let device: NewDevice = serde_json::from_slice(&body_of(body)?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("not a device (token, platform, app): {e}"),
        )
    })?;
    let new = h
        .register_device(
            &external_id,
            &device.token,
            &device.platform,
            &device.app,
            caller.region_scope(),
        )
        .await?;
    Ok(if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    })
}

/// Forget an app installation (uninstalled, signed out). 404 when the
/// customer has no such device.
#[utoipa::path(delete, path = "/customers/{external_id}/devices/{token}", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer"),
        ("token" = String, Path, description = "The device's push token (percent-encoded)")),
    responses((status = 204, description = "Forgotten"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn forget_device(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((external_id, token)) = path.map_err(super::bad_path)?;
    if h.forget_device(&external_id, &token, caller.region_scope())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("customer `{external_id}` has no device with that token"),
        ))
    }
}
