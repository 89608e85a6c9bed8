//! The edge's guard for uninvited requests: provider callbacks
//! (`/hooks/{channel}`) and the links customers follow (`/t/...`,
//! `/unsubscribe`) are admitted by the deployment's [`crate::inbound`]
//! limits before their handler runs, and refused with 429, `Retry-After`
//! and a JSON error otherwise (counted in `herald_inbound_refused_total`).
//! Every other route passes untouched. The client address is the
//! connection's peer.

use super::ErrorBody;
use crate::inbound::{Kind, Refusal};
use crate::live::Live;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Admit `request` under the limits of its kind, or refuse it with 429.
pub(super) async fn guard(State(live): State<Arc<Live>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let kind = if path.starts_with("/hooks/") {
        Kind::Callback
    } else if path.starts_with("/t/") || path == "/unsubscribe" {
        Kind::Link
    } else {
        return next.run(request).await;
    };
    let h = live.herald();
    let now = h.clock.now();
    let admitted = match kind {
        Kind::Callback => {
            let name = path.trim_start_matches("/hooks/");
            let channel = decoded(name)
                .and_then(|name| h.channels.get(&name))
                .map(|c| c.name.as_str());
            h.inbound.admit_callback(channel, now)
        }
        Kind::Link => h.inbound.admit_link(client(&request), now),
    };
    match admitted {
        Ok(pass) => {
            let response = next.run(request).await;
            drop(pass);
            response
        }
        Err(refusal) => {
            crate::metrics::inbound_refused(kind.as_str(), refusal.reason.as_str());
            too_many(kind, refusal)
        }
    }
}

/// The connection's peer address (unspecified when the router is not
/// served over TCP, as in tests that call it directly).
fn client(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// A path segment percent-decoded as the router decodes it; `None` when it
/// is not UTF-8 once decoded or holds a `/` (no channel has either).
fn decoded(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => return None,
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// 429 with `Retry-After` and a message that says what was exceeded.
fn too_many(kind: Kind, refusal: Refusal) -> Response {
    let what = match kind {
        Kind::Callback => "callbacks",
        Kind::Link => "link requests",
    };
    let message = format!(
        "too many {what} ({}); try again in {} s",
        refusal.reason.as_str().replace('_', " "),
        refusal.retry_after
    );
    let body: ErrorBody =
        super::ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message).body();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from(refusal.retry_after))],
        Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_as_the_router_decodes_them() {
        assert_eq!(decoded("sms").as_deref(), Some("sms"));
        assert_eq!(decoded("s%6Ds").as_deref(), Some("sms"));
        assert_eq!(decoded("%E7%9F%AD").as_deref(), Some("短"));
        assert_eq!(decoded("sms/x"), None);
        assert_eq!(decoded("bad%zz"), None);
        assert_eq!(decoded("cut%4"), None);
        assert_eq!(decoded("%FF"), None);
        assert_eq!(decoded("%+1"), None);
    }
}
