//! The unsubscribe endpoint behind the signed links in reminders
//! (`{{ unsubscribe_url }}`, `List-Unsubscribe`): `GET /unsubscribe` shows a
//! confirmation page (so a mail scanner following links unsubscribes nobody),
//! `POST /unsubscribe` — the page's button, or a mail client's RFC 8058
//! one-click request — puts the customer on that channel's suppression list.
//! No login: the link's signature is the proof.

use super::html::escape;
use super::Current;
use crate::engine::Herald;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// The link's query.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    /// Customer external id.
    c: Option<String>,
    /// Channel.
    ch: Option<String>,
    /// Signature.
    s: Option<String>,
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    super::html::page(status, "en", title, body)
}

/// Check the link; `Err` is the page to show.
fn checked(herald: &Herald, q: &LinkQuery) -> Result<(String, String), Box<Response>> {
    let (Some(c), Some(ch), Some(s)) = (&q.c, &q.ch, &q.s) else {
        return Err(Box::new(page(
            StatusCode::BAD_REQUEST,
            "Incomplete link",
            "<p>This unsubscribe link is missing a part. Please use the whole link from the message.</p>",
        )));
    };
    if !herald.links.verify(c, ch, s) {
        return Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Link not valid",
            "<p>This unsubscribe link is not valid for this service. Please use the link from the message you received.</p>",
        )));
    }
    Ok((c.clone(), ch.clone()))
}

/// `GET /unsubscribe`: a confirmation page.
pub async fn confirm(Current(herald): Current, Query(q): Query<LinkQuery>) -> Response {
    let (customer, channel) = match checked(&herald, &q) {
        Ok(pair) => pair,
        Err(page) => return *page,
    };
    page(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Stop receiving reminders by <b>{}</b>?</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>\
             <p style=\"color:#666\">Reference: {}</p>",
            escape(&channel),
            escape(&customer)
        ),
    )
}

/// `POST /unsubscribe`: record the opt-out.
pub async fn apply(Current(herald): Current, Query(q): Query<LinkQuery>) -> Response {
    let (customer, channel) = match checked(&herald, &q) {
        Ok(pair) => pair,
        Err(page) => return *page,
    };
    match herald.unsubscribe_by_link(&customer, &channel).await {
        Ok(true) => {
            tracing::info!(%customer, %channel, "unsubscribed by link");
            page(
                StatusCode::OK,
                "Unsubscribed",
                &format!(
                    "<p>You will receive no more reminders by <b>{}</b>.</p>",
                    escape(&channel)
                ),
            )
        }
        Ok(false) => page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>We have no record to unsubscribe; you will receive nothing from us.</p>",
        ),
        Err(e) => {
            tracing::error!("unsubscribe not recorded: {e:#}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Please try again",
                "<p>We could not record this just now. Please try again in a minute.</p>",
            )
        }
    }
}
