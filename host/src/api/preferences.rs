//! `/customers/{external_id}/preferences`: read and change what a customer
//! hears about (topics) and how (channels) — the same preferences, with the
//! same checks, as the customer's signed preference page
//! ([`super::preference_page`]). Reading needs an admin or staff token;
//! changing also takes an ingest token (the operator's app syncing its own
//! settings screen). Staff only for customers of their regions.

use super::auth::Caller;
use super::Current;
use super::{body_of, ApiError, ErrorBody};
use crate::engine::preferences::{PreferenceChange, Preferences};
use crate::live::Live;
use crate::store::preferences::source;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new().routes(routes!(read_preferences, change_preferences))
}

/// A customer's preferences: each topic of the strategy and whether they
/// hear about it, each channel that can reach them and whether it may, and
/// the link to their preference page.
#[utoipa::path(get, path = "/customers/{external_id}/preferences", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    responses((status = 200, body = Preferences), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn read_preferences(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Preferences>, ApiError> {
    caller.require_reader()?;
    let Path(external_id) = path.map_err(super::bad_path)?;
    Ok(Json(
        h.preferences(&external_id, caller.region_scope()).await?,
    ))
}

/// Turn topics and channels on or off, all or nothing:
/// `{"topics": {"marketing": false}, "channels": {"sms": false}}`. A topic
/// whose rules are all transactional cannot be turned off; a channel
/// stopped by a STOP reply, the provider or the operator cannot be turned
/// back on here (422 saying which).
#[utoipa::path(put, path = "/customers/{external_id}/preferences", tag = "customers",
    params(("external_id" = String, Path, description = "The operator's id for the customer")),
    request_body = PreferenceChange,
    responses((status = 200, body = Preferences, description = "The preferences after the change"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "An unknown topic or channel, or a change the customer may not make")))]
async fn change_preferences(
    Current(h): Current,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Preferences>, ApiError> {
    let Path(external_id) = path.map_err(super::bad_path)?;
    let change: PreferenceChange = serde_json::from_slice(&body_of(body)?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("not a preference change ({{\"topics\": {{NAME: true|false}}, \"channels\": {{NAME: true|false}}}}): {e}"),
        )
    })?;
    let after = h
        .set_preferences(&external_id, caller.region_scope(), &change, source::API)
        .await?;
    Ok(Json(after))
}
