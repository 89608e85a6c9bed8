//! The small HTML pages customers see without logging in (unsubscribe
//! confirmation, the preference page): escaping and the page frame. No
//! scripts, no outside resources; styles inline.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A whole page: `title` as its heading, `body` (already HTML) below it,
/// in language `lang` (a BCP 47 tag).
pub fn page(status: StatusCode, lang: &str, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
             <body style=\"font-family:sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem\"><h1>{title}</h1>{body}</body></html>",
            lang = escape(lang),
            title = escape(title),
        )),
    )
        .into_response()
}
