//! The funnel over HTTP: the click redirect `GET /t/c/{token}` and the open
//! pixel `GET /t/o/{token}.gif` (public: customers' mail clients and
//! browsers call them), `GET /report` (the funnel as JSON for admin and
//! staff tokens, staff counting only their regions), and `GET /dashboard`,
//! a self-contained page that draws the report.

use super::auth::Caller;
use super::Current;
use super::{ApiError, ErrorBody};
use crate::funnel::{parse_bound, Report};
use crate::live::Live;
use crate::store::tracking::{self, Hit, Kind};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The funnel's routes, to merge into the API router.
pub fn routes() -> OpenApiRouter<Arc<Live>> {
    OpenApiRouter::new()
        .routes(routes!(get_report))
        .routes(routes!(click))
        .routes(routes!(open))
        .routes(routes!(dashboard))
}

/// Query of `GET /report`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// Start of the period: a span back from now (`7d`, `12h`, `1mo`), a date
    /// (`2026-03-01`, UTC) or an RFC 3339 time. Default `7d`.
    since: Option<String>,
    /// End of the period (exclusive), in the same forms. Default now.
    until: Option<String>,
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// The funnel of a period, per rule and per channel. Staff tokens count
/// only customers of their regions.
#[utoipa::path(get, path = "/report", tag = "funnel", params(ReportQuery),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_report(
    Current(h): Current,
    caller: Caller,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<Report>, ApiError> {
    caller.require_reader()?;
    let Query(q) = query.map_err(super::bad_query)?;
    let now = h.clock.now();
    let since = parse_bound(q.since.as_deref().unwrap_or("7d"), now)
        .map_err(|e| bad_query(format!("since: {e}")))?;
    let until = match q.until.as_deref() {
        Some(text) => parse_bound(text, now).map_err(|e| bad_query(format!("until: {e}")))?,
        None => now,
    };
    if until < since {
        return Err(bad_query(format!(
            "the period ends ({}) before it starts ({}); make `until` later than `since`",
            until.to_rfc3339(),
            since.to_rfc3339()
        )));
    }
    let staged = crate::funnel::staged_goals(&h.strategy);
    let report =
        crate::funnel::report(&h.store, &staged, since, until, caller.region_scope()).await?;
    Ok(Json(report))
}

fn bad_link(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_link",
        format!("this {what} is damaged or was not made by this Herald: its signature does not match, so it leads nowhere"),
    )
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
}

/// Store a hit; a failure to record never keeps the customer from their
/// link, so it is logged rather than returned.
async fn record(h: &crate::engine::Herald, hit: Hit<'_>) {
    match tracking::record_hit(&h.store, &hit).await {
        Ok(Some(_)) => {}
        Ok(None) => tracing::debug!(
            schedule = hit.schedule_id,
            attempt = hit.attempt,
            "{} of a message with no recorded delivery (a preview?); not counted",
            hit.kind.as_str()
        ),
        Err(e) => tracing::error!("{e:#}"),
    }
}

/// A URL as a `Location` header: bytes outside visible ASCII percent-encoded.
fn location(url: &str) -> HeaderValue {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).expect("visible ASCII only")
}

/// Follow a tracked link: records the click against the delivery and
/// redirects to the link's own URL. A token that does not verify is a 400,
/// never a redirect.
#[utoipa::path(get, path = "/t/c/{token}", tag = "funnel", security(()),
    params(("token" = String, Path, description = "The signed token of the link")),
    responses((status = 302, description = "Redirect to the link's URL"), (status = 400, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "Too many link hits from this address, or at once (`[server.inbound]`); `Retry-After` says when to come back")))]
async fn click(
    Current(h): Current,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let link = h
        .tracking
        .verify_click(&token)
        .ok_or_else(|| bad_link("link"))?;
    record(
        &h,
        Hit {
            kind: Kind::Click,
            schedule_id: link.schedule_id,
            attempt: link.attempt,
            link: Some((link.link, &link.url)),
            user_agent: user_agent(&headers),
            at: h.clock.now(),
        },
    )
    .await;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location(&link.url)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response())
}

/// A transparent 1x1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The open pixel (`/t/o/{token}.gif`): records the open against the
/// delivery and answers a transparent 1x1 GIF.
#[utoipa::path(get, path = "/t/o/{token}", tag = "funnel", security(()),
    params(("token" = String, Path, description = "The signed token of the message, followed by `.gif`")),
    responses((status = 200, description = "A 1x1 transparent GIF", content_type = "image/gif"),
              (status = 400, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "Too many link hits from this address, or at once (`[server.inbound]`); `Retry-After` says when to come back")))]
async fn open(
    Current(h): Current,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let message = h
        .tracking
        .verify_open(&token)
        .ok_or_else(|| bad_link("image link"))?;
    record(
        &h,
        Hit {
            kind: Kind::Open,
            schedule_id: message.schedule_id,
            attempt: message.attempt,
            link: None,
            user_agent: user_agent(&headers),
            at: h.clock.now(),
        },
    )
    .await;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/gif")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, private"),
            ),
        ],
        PIXEL,
    )
        .into_response())
}

/// The page: inline script and style only, data from `/report`.
const PAGE: &str = include_str!("dashboard.html");

/// The funnel dashboard: a self-contained page that reads the token from
/// the URL fragment (`/dashboard#token=…`), fetches `/report` with it and
/// draws a bar chart per rule and a table.
#[utoipa::path(get, path = "/dashboard", tag = "funnel", security(()),
    responses((status = 200, description = "The dashboard page", content_type = "text/html")))]
async fn dashboard() -> Response {
    (
        [
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        Html(PAGE),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_header_safe() {
        assert_eq!(
            location("https://shop.example/商品?q=a b")
                .to_str()
                .unwrap(),
            "https://shop.example/%E5%95%86%E5%93%81?q=a%20b"
        );
    }

    #[test]
    fn the_routes_are_documented_public_ones_without_a_token() {
        let doc = serde_json::to_value(routes().into_openapi()).unwrap();
        let paths = &doc["paths"];
        assert!(paths["/report"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "since"));
        for public in ["/t/c/{token}", "/t/o/{token}", "/dashboard"] {
            assert_eq!(
                paths[public]["get"]["security"],
                serde_json::json!([{}]),
                "{public}: {doc}"
            );
        }
    }

    #[test]
    fn the_pixel_is_a_gif() {
        assert!(PIXEL.starts_with(b"GIF89a") && PIXEL.ends_with(b";"));
        assert_eq!(PIXEL.len(), 43);
    }
}
