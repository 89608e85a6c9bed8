//! The customer's preference page behind the signed `{{ preferences_url }}`
//! link: `GET /preferences?c=…&s=…` shows each topic and channel with a
//! checkbox, in the customer's language (English or Chinese; `&lang=`
//! switches), and `POST` — the page's own form, no JavaScript — saves the
//! choices through the same engine call as the API, then redirects back
//! with a confirmation. No login: the link's signature is the proof.

use super::html::{escape, page};
use super::Current;
use crate::engine::preferences::{PreferenceChange, Preferences};
use crate::engine::{Herald, WriteError};
use crate::store::preferences::source;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashSet;

/// The link's query.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Customer external id.
    c: Option<String>,
    /// Signature.
    s: Option<String>,
    /// `en` or `zh`: the page's language instead of the customer's.
    lang: Option<String>,
    /// Set by the redirect after saving.
    saved: Option<String>,
}

/// The page's words in one language.
struct Words {
    tag: &'static str,
    title: &'static str,
    topics: &'static str,
    channels: &'static str,
    always: &'static str,
    transactional: &'static str,
    save: &'static str,
    saved: &'static str,
    other_language: (&'static str, &'static str),
    bad_link: &'static str,
    gone: &'static str,
    retry: &'static str,
    stop_reply: &'static str,
    provider: &'static str,
    operator: &'static str,
}

static ENGLISH: Words = Words {
    tag: "en",
    title: "Your notification preferences",
    topics: "What we tell you about",
    channels: "How we reach you",
    always: "always sent",
    transactional: "Messages about your own transactions, such as receipts, are always sent.",
    save: "Save",
    saved: "Your preferences are saved.",
    other_language: ("zh", "中文"),
    bad_link: "This link is not valid. Please use the whole link from a message you received.",
    gone: "We have no record for this link; you will receive nothing from us.",
    retry: "We could not do this just now. Please try again in a minute.",
    stop_reply: "off: you replied STOP (reply START to turn it back on)",
    provider: "off: this address cannot receive messages",
    operator: "off: turned off by the service",
};

static CHINESE: Words = Words {
    tag: "zh-CN",
    title: "通知偏好设置",
    topics: "通知内容",
    channels: "通知方式",
    always: "始终发送",
    transactional: "与您本人交易相关的消息（如回执）始终会发送。",
    save: "保存",
    saved: "您的偏好设置已保存。",
    other_language: ("en", "English"),
    bad_link: "此链接无效，请使用您收到的消息中的完整链接。",
    gone: "没有找到此链接对应的记录，我们不会再向您发送消息。",
    retry: "暂时无法完成，请稍后再试。",
    stop_reply: "已关闭：您回复了退订（回复 START 可重新开启）",
    provider: "已关闭：该地址无法接收消息",
    operator: "已关闭：由服务方关闭",
};

/// The page's language: `lang` if given, else the customer's locale.
fn words(lang: Option<&str>) -> &'static Words {
    match lang.map(|l| l.trim().to_ascii_lowercase()) {
        Some(l) if l == "zh" || l.starts_with("zh-") || l.starts_with("zh_") => &CHINESE,
        _ => &ENGLISH,
    }
}

/// What a channel kind is called on the page.
fn kind_label(kind: &str, zh: bool) -> Option<&'static str> {
    Some(match (kind, zh) {
        ("email", false) => "Email",
        ("email", true) => "电子邮件",
        ("phone", false) => "Text messages (SMS)",
        ("phone", true) => "短信",
        ("push", false) => "App notifications",
        ("push", true) => "App 推送通知",
        ("wechat", false) => "WeChat",
        ("wechat", true) => "微信",
        ("inbox", false) => "Messages in the app",
        ("inbox", true) => "App 内消息",
        _ => return None,
    })
}

/// The checked link's customer, or the page to show instead.
fn checked(herald: &Herald, q: &PageQuery) -> Result<String, Box<Response>> {
    let w = words(q.lang.as_deref());
    match (&q.c, &q.s) {
        (Some(c), Some(s)) if herald.links.verify_preferences(c, s) => Ok(c.clone()),
        _ => Err(Box::new(page(
            StatusCode::FORBIDDEN,
            w.tag,
            w.title,
            &para(w.bad_link),
        ))),
    }
}

fn para(text: &str) -> String {
    format!("<p>{}</p>", escape(text))
}

/// The page for an engine error.
fn failed(e: WriteError, w: &Words) -> Response {
    match e {
        WriteError::NotFound(_) => page(StatusCode::NOT_FOUND, w.tag, w.title, &para(w.gone)),
        WriteError::Invalid(m) => page(StatusCode::UNPROCESSABLE_ENTITY, w.tag, w.title, &para(&m)),
        WriteError::Internal(e) => {
            tracing::error!("preference page: {e:#}");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                w.tag,
                w.title,
                &para(w.retry),
            )
        }
    }
}

/// `GET /preferences`: the form.
pub async fn show(Current(herald): Current, Query(q): Query<PageQuery>) -> Response {
    let customer = match checked(&herald, &q) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    match herald.preferences(&customer, None).await {
        Ok(prefs) => form(&herald, &prefs, &q),
        Err(e) => failed(e, words(q.lang.as_deref())),
    }
}

/// `POST /preferences`: save the form's choices, then show the page again.
pub async fn save(Current(herald): Current, Query(q): Query<PageQuery>, body: Bytes) -> Response {
    let customer = match checked(&herald, &q) {
        Ok(c) => c,
        Err(page) => return *page,
    };
    let w = words(q.lang.as_deref());
    let current = match herald.preferences(&customer, None).await {
        Ok(prefs) => prefs,
        Err(e) => return failed(e, w),
    };
    let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return page(StatusCode::BAD_REQUEST, w.tag, w.title, &para(w.bad_link));
    };
    let change = change_of(&current, &fields);
    if let Err(e) = herald
        .set_preferences(&customer, None, &change, source::PAGE)
        .await
    {
        return failed(e, w);
    }
    tracing::info!(%customer, "preferences saved on the preference page");
    let lang = q
        .lang
        .as_deref()
        .map(|l| format!("&lang={}", query_escape(l)));
    let location = format!(
        "?c={}&s={}{}&saved=1",
        query_escape(&customer),
        query_escape(q.s.as_deref().unwrap_or("")),
        lang.unwrap_or_default()
    );
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The change the form's checkboxes say: every topic and channel the page
/// offered is on when its box came back checked, off otherwise.
fn change_of(current: &Preferences, fields: &[(String, String)]) -> PreferenceChange {
    let checked = |name: &str| -> HashSet<&str> {
        fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (topics, channels) = (checked("topic"), checked("channel"));
    PreferenceChange {
        topics: current
            .topics
            .iter()
            .filter(|t| !t.always_sent)
            .map(|t| (t.topic.clone(), topics.contains(t.topic.as_str())))
            .collect(),
        channels: current
            .channels
            .iter()
            .filter(|c| c.locked.is_none())
            .map(|c| (c.channel.clone(), channels.contains(c.channel.as_str())))
            .collect(),
    }
}

/// The form for `prefs`.
fn form(herald: &Herald, prefs: &Preferences, q: &PageQuery) -> Response {
    let tag = q
        .lang
        .as_deref()
        .or(prefs.locale.as_deref())
        .unwrap_or("en")
        .to_string();
    let w = words(Some(&tag));
    let zh = w.tag.starts_with("zh");
    let mut body = String::new();
    if q.saved.is_some() {
        body.push_str(&format!(
            "<p role=\"status\" id=\"saved\" style=\"background:#e6f4ea;padding:.5rem\">{}</p>",
            escape(w.saved)
        ));
    }
    body.push_str("<form method=\"post\">");
    if !prefs.topics.is_empty() {
        body.push_str(&format!(
            "<fieldset id=\"topics\"><legend>{}</legend>",
            escape(w.topics)
        ));
        for t in &prefs.topics {
            let topic = herald.strategy.topics.get(&t.topic);
            let label = topic.map_or(t.topic.as_str(), |topic| topic.label(&tag));
            let note = if t.always_sent {
                Some(w.always.to_string())
            } else {
                None
            };
            body.push_str(&checkbox(
                "topic",
                &t.topic,
                label,
                t.subscribed,
                t.always_sent,
                note.as_deref(),
            ));
            if let Some(d) = topic.and_then(|topic| topic.description(&tag)) {
                body.push_str(&format!(
                    "<div style=\"color:#555;margin:0 0 .5rem 1.6rem\">{}</div>",
                    escape(d)
                ));
            }
        }
        body.push_str(&format!(
            "<p style=\"color:#555\">{}</p></fieldset>",
            escape(w.transactional)
        ));
    }
    if !prefs.channels.is_empty() {
        body.push_str(&format!(
            "<fieldset id=\"channels\"><legend>{}</legend>",
            escape(w.channels)
        ));
        for c in &prefs.channels {
            let label = kind_label(&c.kind, zh).unwrap_or(&c.channel);
            let note = c.locked.as_deref().map(|from| locked_note(from, w));
            body.push_str(&checkbox(
                "channel",
                &c.channel,
                label,
                c.enabled,
                c.locked.is_some(),
                note.as_deref(),
            ));
        }
        body.push_str("</fieldset>");
    }
    body.push_str(&format!(
        "<p><button type=\"submit\" id=\"save\">{}</button></p></form>",
        escape(w.save)
    ));
    let (other, other_name) = w.other_language;
    body.push_str(&format!(
        "<p><a id=\"language\" href=\"?c={}&amp;s={}&amp;lang={other}\">{other_name}</a></p>",
        escape(&query_escape(&prefs.customer)),
        escape(&query_escape(q.s.as_deref().unwrap_or(""))),
    ));
    page(StatusCode::OK, w.tag, w.title, &body)
}

/// One labelled checkbox; a fixed one is shown but cannot be changed.
fn checkbox(
    name: &str,
    value: &str,
    label: &str,
    checked: bool,
    fixed: bool,
    note: Option<&str>,
) -> String {
    let note = note.map_or(String::new(), |n| {
        format!(" <span style=\"color:#555\">({})</span>", escape(n))
    });
    format!(
        "<div><label><input type=\"checkbox\" name=\"{name}\" value=\"{value}\" id=\"{name}-{value}\"{}{}> {}</label>{note}</div>",
        if checked { " checked" } else { "" },
        if fixed { " disabled" } else { "" },
        escape(label),
        value = escape(value),
    )
}

/// Why a locked channel is off, in the page's language.
fn locked_note(from: &str, w: &Words) -> String {
    match from {
        crate::store::suppressions::source::REPLY => w.stop_reply.to_string(),
        crate::store::suppressions::source::PROVIDER => w.provider.to_string(),
        _ => w.operator.to_string(),
    }
}

/// Percent-encode a query value.
fn query_escape(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_string())
        .unwrap_or_default()
}
