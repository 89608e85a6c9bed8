//! `POST /hooks/{channel}` (and GET, for providers that call back so): the
//! provider's request goes to the channel's plugin (`handle-callback`),
//! which checks the provider's signature and parses it into delivery reports
//! and inbound replies; the engine applies them
//! ([`crate::engine::callbacks`]); the provider gets the answer the plugin
//! chose — 403 for a bad signature, 500 (so it retries) if recording failed.

use super::Current;
use crate::channels::Delivery;
use crate::plugin::bindings::channel_api::{CallbackError, CallbackRequest};
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// The largest callback body accepted.
pub const MAX_CALLBACK_BODY: usize = 1 << 20;

/// `POST /hooks/{channel}`.
pub async fn handle(
    Current(herald): Current,
    Path(channel_name): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(channel) = herald.channels.get(&channel_name) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_channel",
            format!("no channel `{channel_name}` is configured"),
        );
    };
    let Delivery::Plugin { plugin, settings } = &channel.delivery else {
        return error(
            StatusCode::NOT_FOUND,
            "no_callbacks",
            format!("channel `{channel_name}` is built in and takes no callbacks"),
        );
    };
    if !plugin.info.accepts_callbacks {
        return error(
            StatusCode::NOT_FOUND,
            "no_callbacks",
            format!(
                "the plugin of channel `{channel_name}` ({}) takes no callbacks",
                plugin.info.name
            ),
        );
    }
    let request = callback_request(herald.public_url.as_deref(), &method, &uri, &headers, &body);
    let parsed = match plugin.handle_callback(settings, &request).await {
        Err(failure) => {
            tracing::error!(channel = %channel_name, "callback plugin failed: {failure}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_failed",
                format!("the channel's plugin failed on this callback: {failure}"),
            );
        }
        Ok(Err(CallbackError::Unauthorized(why))) => {
            tracing::warn!(channel = %channel_name, "callback refused: {why}");
            return error(StatusCode::FORBIDDEN, "bad_signature", why);
        }
        Ok(Err(CallbackError::BadRequest(why))) => {
            return error(StatusCode::BAD_REQUEST, "bad_callback", why);
        }
        Ok(Err(CallbackError::Unsupported)) => {
            return error(
                StatusCode::NOT_FOUND,
                "no_callbacks",
                format!("the plugin of channel `{channel_name}` takes no callbacks"),
            );
        }
        Ok(Ok(parsed)) => parsed,
    };
    match herald
        .apply_callback_events(&channel_name, channel.address, &parsed.events)
        .await
    {
        Ok(applied) => {
            tracing::info!(channel = %channel_name, ?applied, "callback applied");
        }
        Err(e) => {
            tracing::error!(channel = %channel_name, "callback not recorded: {e:#}");
            // A 5xx makes the provider send it again.
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the callback could not be recorded; see the server log",
            );
        }
    }
    let status = StatusCode::from_u16(parsed.response.status).unwrap_or(StatusCode::OK);
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            parsed.response.content_type.clone(),
        )],
        parsed.response.body,
    )
        .into_response()
}

/// The request as the plugin sees it: the URL the provider signed (behind a
/// proxy, the public URL), lowercase header names, the body.
fn callback_request(
    public_url: Option<&str>,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> CallbackRequest {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = match public_url {
        Some(base) => format!("{base}{path_and_query}"),
        None => format!(
            "http://{}{path_and_query}",
            headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
        ),
    };
    CallbackRequest {
        method: method.to_string(),
        url,
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}
