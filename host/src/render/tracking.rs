//! Signed tracking links: rewriting the http(s) links of a rendered message
//! to `{public_url}/t/c/{token}` (click tracking) and adding the open pixel
//! `{public_url}/t/o/{token}.gif` to HTML bodies, and checking the tokens
//! those requests carry.
//!
//! A token names the delivery by its schedule row and attempt number (both
//! known when the message is rendered, before the delivery row exists) and,
//! for a click, the link's position and URL, and is signed with a key derived
//! from the deployment's link key. A token cannot be edited to point
//! anywhere else: the redirect goes only to the URL the signature covers.

use super::links::Links;
use super::Rendered;
use crate::config::TrackingSection;
use anyhow::{bail, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The purpose the tracking key is derived for (see [`Links::derived_key`]).
const PURPOSE: &str = "herald tracking links v1";

/// Rewrites messages and checks tokens.
#[derive(Clone)]
pub struct Tracker {
    clicks: bool,
    opens: bool,
    /// `{public_url}` without a trailing slash; set whenever tracking is on.
    base: Option<String>,
    key: Vec<u8>,
    /// Origins (`scheme://authority`, lowercase) written literally in the
    /// strategy's templates. Only links to these are tracked, so a URL that
    /// came from customer data (a name, an attribute) never becomes a signed
    /// redirect on the operator's domain.
    origins: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("clicks", &self.clicks)
            .field("opens", &self.opens)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a valid click token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    /// The schedule row of the message.
    pub schedule_id: i64,
    /// The attempt that carried it.
    pub attempt: i64,
    /// The link's position in its body (0 for the first).
    pub link: i64,
    /// Where the link goes.
    pub url: String,
}

/// What a valid open token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The schedule row of the message.
    pub schedule_id: i64,
    /// The attempt that carried it.
    pub attempt: i64,
}

impl Tracker {
    /// The deployment's tracker: `[tracking]` settings, the public URL and
    /// the link key. Tracking without a public URL is refused, since the
    /// links would lead nowhere.
    pub fn new(
        settings: &TrackingSection,
        public_url: Option<&str>,
        links: &Links,
    ) -> Result<Tracker> {
        Self::with_key(settings, public_url, links.derived_key(PURPOSE))
    }

    /// Track only links to origins that appear in `template_source` (the
    /// strategy's own text), never ones that came from customer data.
    pub fn trusting_origins_in(mut self, template_source: &str) -> Tracker {
        let mut at = 0;
        while let Some(start) = next_url(template_source, at) {
            let end = url_end(template_source, start);
            self.origins.insert(origin(&template_source[start..end]));
            at = end;
        }
        self
    }

    fn with_key(
        settings: &TrackingSection,
        public_url: Option<&str>,
        key: Vec<u8>,
    ) -> Result<Tracker> {
        let base = public_url.map(|u| u.trim_end_matches('/').to_string());
        if (settings.clicks || settings.opens) && base.is_none() {
            bail!(
                "[tracking] {} needs [server] public_url: the address customers' mail clients and browsers reach `herald serve` at (e.g. public_url = \"https://herald.example.com\")",
                if settings.clicks { "clicks = true" } else { "opens = true" }
            );
        }
        Ok(Tracker {
            clicks: settings.clicks,
            opens: settings.opens,
            base,
            key,
            origins: Default::default(),
        })
    }

    fn sign(&self, parts: &[&[u8]]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part);
        }
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn click_signature(&self, schedule_id: i64, attempt: i64, link: i64, url: &str) -> String {
        self.sign(&[
            b"click",
            schedule_id.to_string().as_bytes(),
            attempt.to_string().as_bytes(),
            link.to_string().as_bytes(),
            url.as_bytes(),
        ])
    }

    fn open_signature(&self, schedule_id: i64, attempt: i64) -> String {
        self.sign(&[
            b"open",
            schedule_id.to_string().as_bytes(),
            attempt.to_string().as_bytes(),
        ])
    }

    /// The token of a tracked link: `{schedule}.{attempt}.{link}.{url, base64url}.{signature}`.
    pub fn click_token(&self, schedule_id: i64, attempt: i64, link: i64, url: &str) -> String {
        format!(
            "{schedule_id}.{attempt}.{link}.{}.{}",
            URL_SAFE_NO_PAD.encode(url),
            self.click_signature(schedule_id, attempt, link, url)
        )
    }

    /// The token of an open pixel: `{schedule}.{attempt}.{signature}`.
    pub fn open_token(&self, schedule_id: i64, attempt: i64) -> String {
        format!(
            "{schedule_id}.{attempt}.{}",
            self.open_signature(schedule_id, attempt)
        )
    }

    /// Check a click token; `None` for anything this deployment did not sign.
    /// Punctuation a mail client's linkifier may have taken along (a
    /// sentence's full stop) is ignored: a token ends in hex.
    pub fn verify_click(&self, token: &str) -> Option<Click> {
        let token = token.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
        let mut parts = token.split('.');
        let (Some(s), Some(a), Some(l), Some(u), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let schedule_id = number(s)?;
        let attempt = number(a)?;
        let link = number(l)?;
        let url = String::from_utf8(URL_SAFE_NO_PAD.decode(u).ok()?).ok()?;
        if !same(&self.click_signature(schedule_id, attempt, link, &url), sig) || !is_web_url(&url)
        {
            return None;
        }
        Some(Click {
            schedule_id,
            attempt,
            link,
            url,
        })
    }

    /// Check an open token (with or without its `.gif`); `None` for
    /// anything this deployment did not sign.
    pub fn verify_open(&self, token: &str) -> Option<Open> {
        let token = token.strip_suffix(".gif").unwrap_or(token);
        let mut parts = token.split('.');
        let (Some(s), Some(a), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let schedule_id = number(s)?;
        let attempt = number(a)?;
        if !same(&self.open_signature(schedule_id, attempt), sig) {
            return None;
        }
        Some(Open {
            schedule_id,
            attempt,
        })
    }

    /// Whether rendering changes anything.
    pub fn enabled(&self) -> bool {
        self.clicks || self.opens
    }

    /// Rewrite a message about to go out as attempt `attempt` of schedule
    /// row `schedule_id`: links in the text and HTML bodies through the
    /// click redirect, and the open pixel at the end of the HTML body. Links
    /// to this deployment itself (unsubscribe links) are left alone.
    pub fn apply(&self, rendered: &mut Rendered, schedule_id: i64, attempt: i64) {
        let Some(base) = self.base.as_deref() else {
            return;
        };
        if self.clicks {
            let track = |index: usize, url: &str| -> Option<String> {
                if url.starts_with(&format!("{base}/")) || url == base {
                    return None;
                }
                if !self.origins.contains(&origin(url)) {
                    return None;
                }
                Some(format!(
                    "{base}/t/c/{}",
                    self.click_token(schedule_id, attempt, index as i64, url)
                ))
            };
            rendered.text = rewrite_text(&rendered.text, track);
            if let Some(html) = &rendered.html {
                rendered.html = Some(rewrite_html(html, track));
            }
        }
        if self.opens {
            if let Some(html) = &mut rendered.html {
                let pixel = format!(
                    "<img src=\"{base}/t/o/{}.gif\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0\">",
                    self.open_token(schedule_id, attempt)
                );
                match html.to_ascii_lowercase().rfind("</body>") {
                    Some(at) => html.insert_str(at, &pixel),
                    None => html.push_str(&pixel),
                }
            }
        }
    }
}

/// `scheme://authority` of a URL, lowercase (userinfo included, so
/// `https://shop.example@evil.example` is not `https://shop.example`).
fn origin(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    let after_scheme = lower.find("://").map_or(0, |i| i + 3);
    let end = lower[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(lower.len(), |i| after_scheme + i);
    lower[..end].to_string()
}

fn number(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 18 {
        return None;
    }
    text.parse().ok()
}

/// Constant-time comparison of two signatures.
fn same(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// An absolute http(s) URL with no characters that could split a header.
fn is_web_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Where a URL that starts at `start` of `text` ends: at whitespace, a
/// quote or angle bracket, minus trailing punctuation that belongs to the
/// sentence (and a closing parenthesis without its opening one).
fn url_end(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    let mut end = rest
        .find(|c: char| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '`')
        })
        .unwrap_or(rest.len());
    loop {
        let url = &rest[..end];
        let Some(last) = url.chars().last() else {
            break;
        };
        let unbalanced = |open: char, close: char| {
            last == close && url.matches(open).count() < url.matches(close).count()
        };
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?')
            || unbalanced('(', ')')
            || unbalanced('[', ']')
            || unbalanced('{', '}')
        {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    start + end
}

/// Where the next `http://` or `https://` (any case, not inside a word)
/// starts at or after `from`.
fn next_url(text: &str, from: usize) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut at = from;
    while let Some(found) = lower[at..].find("http") {
        let start = at + found;
        let tail = &lower[start..];
        let boundary = text[..start]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric());
        if boundary && (tail.starts_with("http://") || tail.starts_with("https://")) {
            let end = url_end(text, start);
            // Something after the scheme.
            if end > start + tail.find("//").unwrap_or(0) + 2 {
                return Some(start);
            }
        }
        at = start + 4;
    }
    None
}

/// Replace each http(s) URL of a text body by `track(index, url)` (when it
/// returns one).
pub fn rewrite_text(text: &str, mut track: impl FnMut(usize, &str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;
    while let Some(start) = next_url(text, copied) {
        let end = url_end(text, start);
        out.push_str(&text[copied..start]);
        let url = &text[start..end];
        match track(index, url) {
            Some(tracked) => out.push_str(&tracked),
            None => out.push_str(url),
        }
        index += 1;
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Replace the http(s) `href` of every tag of an HTML body by
/// `track(index, url)` (when it returns one). Only attributes inside tags
/// are touched; text, comments and other attributes are copied as they are.
/// The URL given to `track` is the attribute value with its character
/// references decoded (`&amp;` → `&`).
pub fn rewrite_html(html: &str, mut track: impl FnMut(usize, &str) -> Option<String>) -> String {
    let bytes = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0;
    let mut index = 0;
    let mut i = 0;
    while i < bytes.len() {
        if html[i..].starts_with("<!--") {
            i = html[i + 4..]
                .find("-->")
                .map(|e| i + 4 + e + 3)
                .unwrap_or(bytes.len());
            continue;
        }
        if bytes[i] != b'<' || !bytes.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        // Inside a start tag: skip the name, then read attributes.
        i += 1;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && bytes[i] != b'>'
            && bytes[i] != b'/'
        {
            i += 1;
        }
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' {
                break;
            }
            let name_start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && !matches!(bytes[i], b'=' | b'>' | b'/')
            {
                i += 1;
            }
            let name = &html[name_start..i];
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= bytes.len() || bytes[j] != b'=' {
                continue; // an attribute without a value
            }
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let (value_start, value_end, next) = match bytes.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    let end = html[j + 1..]
                        .find(q as char)
                        .map(|e| j + 1 + e)
                        .unwrap_or(bytes.len());
                    (j + 1, end, (end + 1).min(bytes.len()))
                }
                _ => {
                    let mut end = j;
                    while end < bytes.len()
                        && !bytes[end].is_ascii_whitespace()
                        && bytes[end] != b'>'
                    {
                        end += 1;
                    }
                    (j, end, end)
                }
            };
            if name.eq_ignore_ascii_case("href") {
                let url = decode_entities(html[value_start..value_end].trim());
                if is_web_url(&url) {
                    if let Some(tracked) = track(index, &url) {
                        out.push_str(&html[copied..value_start]);
                        out.push_str(&tracked);
                        copied = value_end;
                    }
                    index += 1;
                }
            }
            i = next;
        }
    }
    out.push_str(&html[copied..]);
    out
}

/// Decode the character references an attribute value may hold.
fn decode_entities(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let name = &rest[1..semi];
            let c = match name {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => {
                    let code = if let Some(hex) =
                        name.strip_prefix("#x").or_else(|| name.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        name.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(clicks: bool, opens: bool) -> Tracker {
        Tracker {
            clicks,
            opens,
            base: Some("https://h.example".into()),
            key: b"test key".to_vec(),
            origins: Default::default(),
        }
        .trusting_origins_in("text = \"Buy: https://shop.example/{{ path }}\"")
    }

    fn mark(index: usize, url: &str) -> Option<String> {
        Some(format!("[{index}:{url}]"))
    }

    #[test]
    fn text_links_are_found_with_their_punctuation_left_out() {
        let out = rewrite_text(
            "See https://a.example/x?y=1&z=2. Or (http://b.example/p_(1)), HTTPS://C.example! \
             not xhttps://d.example, nor http:// alone; <https://e.example/>",
            mark,
        );
        assert_eq!(
            out,
            "See [0:https://a.example/x?y=1&z=2]. Or ([1:http://b.example/p_(1)]), [2:HTTPS://C.example]! \
             not xhttps://d.example, nor http:// alone; <[3:https://e.example/]>"
        );
        assert_eq!(rewrite_text("no links here", mark), "no links here");
    }

    #[test]
    fn html_hrefs_are_decoded_and_replaced_only_inside_tags() {
        let html = "<p title=\"href='http://no.example'\">Go to <a class=x HREF=\"https://a.example/?a=1&amp;b=2\">shop</a> \
                    href=http://text.example <!-- <a href=\"http://comment.example\"> --> \
                    <a href='mailto:x@y.example'>mail</a><A href = http://b.example/q>b</A></p>";
        let out = rewrite_html(html, mark);
        assert_eq!(
            out,
            "<p title=\"href='http://no.example'\">Go to <a class=x HREF=\"[0:https://a.example/?a=1&b=2]\">shop</a> \
             href=http://text.example <!-- <a href=\"http://comment.example\"> --> \
             <a href='mailto:x@y.example'>mail</a><A href = [1:http://b.example/q]>b</A></p>"
        );
    }

    #[test]
    fn tokens_verify_and_refuse_any_edit() {
        let t = tracker(true, true);
        let token = t.click_token(12, 2, 0, "https://shop.example/a?b=c");
        assert_eq!(
            t.verify_click(&token),
            Some(Click {
                schedule_id: 12,
                attempt: 2,
                link: 0,
                url: "https://shop.example/a?b=c".into()
            })
        );
        let parts: Vec<&str> = token.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode("https://evil.example/");
        for forged in [
            format!("13.{}.{}.{}.{}", parts[1], parts[2], parts[3], parts[4]),
            format!("{}.{}.{}.{evil}.{}", parts[0], parts[1], parts[2], parts[4]),
            format!("{}.{}.1.{}.{}", parts[0], parts[1], parts[3], parts[4]),
            format!(
                "{}{}",
                &token[..token.len() - 1],
                if token.ends_with('0') { '1' } else { '0' }
            ),
            token.replace('.', ".."),
            String::new(),
            "1.2.3".into(),
        ] {
            assert_eq!(t.verify_click(&forged), None, "{forged}");
        }
        assert!(t.verify_click(&format!("{token}.")).is_some());
        assert!(t.verify_click(&format!("{token}).")).is_some());
        let other = Tracker {
            key: b"other".to_vec(),
            ..t.clone()
        };
        assert_eq!(other.verify_click(&token), None);
        // A click token is not an open token and vice versa.
        let open = t.open_token(12, 2);
        assert_eq!(
            t.verify_open(&format!("{open}.gif")),
            Some(Open {
                schedule_id: 12,
                attempt: 2
            })
        );
        assert_eq!(t.verify_open(&open.replace("12.", "11.")), None);
        assert_eq!(t.verify_click(&open), None);
        assert_eq!(t.verify_open(&token), None);
        // Signed non-web URLs never redirect.
        let js = t.click_token(1, 1, 0, "javascript:alert(1)");
        assert_eq!(t.verify_click(&js), None);
    }

    #[test]
    fn apply_rewrites_links_adds_the_pixel_and_leaves_own_links() {
        let mut m = Rendered {
            subject: "https://subject.example".into(),
            text: "Buy: https://shop.example/x\nStop: https://h.example/unsubscribe?c=1&s=2".into(),
            html: Some("<html><body><a href=\"https://shop.example/x\">x</a></body></html>".into()),
            fields: vec![("url".into(), "https://field.example".into())],
        };
        tracker(true, true).apply(&mut m, 7, 1);
        let t = tracker(true, true);
        let expected = format!(
            "https://h.example/t/c/{}",
            t.click_token(7, 1, 0, "https://shop.example/x")
        );
        assert_eq!(
            m.text,
            format!("Buy: {expected}\nStop: https://h.example/unsubscribe?c=1&s=2")
        );
        assert_eq!(
            m.html.as_deref().unwrap(),
            format!(
                "<html><body><a href=\"{expected}\">x</a><img src=\"https://h.example/t/o/{}.gif\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0\"></body></html>",
                t.open_token(7, 1)
            )
        );
        assert_eq!(m.subject, "https://subject.example");
        assert_eq!(m.fields[0].1, "https://field.example");

        let mut plain = Rendered {
            subject: String::new(),
            text: "https://shop.example/x".into(),
            html: Some("<p>hi</p>".into()),
            fields: vec![],
        };
        tracker(false, true).apply(&mut plain, 7, 1);
        assert_eq!(plain.text, "https://shop.example/x");
        assert!(plain
            .html
            .unwrap()
            .starts_with("<p>hi</p><img src=\"https://h.example/t/o/7.1."));
        let mut off = Rendered {
            subject: String::new(),
            text: "https://shop.example/x".into(),
            html: Some("<p>hi</p>".into()),
            fields: vec![],
        };
        tracker(false, false).apply(&mut off, 7, 1);
        assert_eq!(off.html.as_deref(), Some("<p>hi</p>"));
    }

    #[test]
    fn links_that_came_from_customer_data_are_not_tracked() {
        // Only shop.example is written in the templates; a URL a customer
        // put in their name, or one dressed up with userinfo, stays as it is.
        let text = "Hi https://evil.example/phish, see https://shop.example/x \
                    and https://shop.example@evil.example/y";
        let mut m = Rendered {
            subject: String::new(),
            text: text.into(),
            html: Some("<a href=\"https://evil.example/p\">x</a>".into()),
            fields: vec![],
        };
        tracker(true, false).apply(&mut m, 7, 1);
        assert!(
            m.text
                .starts_with("Hi https://evil.example/phish, see https://h.example/t/c/"),
            "{}",
            m.text
        );
        assert!(
            m.text.ends_with("and https://shop.example@evil.example/y"),
            "{}",
            m.text
        );
        assert_eq!(
            m.html.as_deref(),
            Some("<a href=\"https://evil.example/p\">x</a>")
        );
        assert_eq!(
            origin("HTTPS://Shop.Example:8443/a?b#c"),
            "https://shop.example:8443"
        );
    }

    #[test]
    fn tracking_without_a_public_url_is_refused() {
        let settings = TrackingSection {
            clicks: true,
            opens: false,
        };
        let err = Tracker::with_key(&settings, None, b"k".to_vec()).unwrap_err();
        assert!(err.to_string().contains("[server] public_url"), "{err}");
        assert!(Tracker::with_key(&TrackingSection::default(), None, b"k".to_vec()).is_ok());
        let on = Tracker::with_key(&settings, Some("https://h.example/"), b"k".to_vec()).unwrap();
        assert_eq!(on.base.as_deref(), Some("https://h.example"));
    }
}
