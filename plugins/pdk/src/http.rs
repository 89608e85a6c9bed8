//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The host decides which hosts a channel may reach (its `allowed_hosts`);
//! a request to any other host fails with [`HttpError::denied`] set.
//!
//! ```ignore
//! let response = herald_pdk::http::send(herald_pdk::http::Request::post(
//!     "https://api.example.com/v1/messages",
//!     body_bytes,
//! ).header("Content-Type", "application/json"))?;
//! ```

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, HeaderError, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;

/// The most bytes `blocking-write-and-flush` accepts in one call.
const MAX_WRITE_CHUNK: usize = 4096;

/// How many bytes to ask for per read of the response body.
const READ_CHUNK: u64 = 64 * 1024;

/// An outgoing HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... (case-insensitive for the standard methods).
    pub method: String,
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// Header names and values, in order. `Content-Length` is added when the
    /// body is not empty and it is not given here.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request with `body`.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        let mut req = Self::new("POST", url);
        req.body = body.into();
        req
    }

    /// A `POST` request whose body is `body` as JSON (`Content-Type:
    /// application/json`).
    pub fn post_json(url: impl Into<String>, body: &serde_json::Value) -> Self {
        Self::new("POST", url).json(body)
    }

    /// Sets the body to `body` as JSON and, unless one is given already, the
    /// `Content-Type` header to `application/json`.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = body.to_string().into_bytes();
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("Content-Type".to_string(), "application/json".to_string()));
        }
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends the request; see [`send`].
    pub fn send(self) -> Result<Response, HttpError> {
        send(self)
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names (lowercase, as the host gives them) and values; values
    /// that are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The `Retry-After` header given in seconds, in milliseconds (`None`
    /// when absent or an HTTP-date).
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(crate::parse_retry_after_ms)
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON into `T` (a `serde_json::Value` or your own
    /// `Deserialize` type).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// `Ok(())` for a 2xx answer; otherwise the usual mapping of
    /// [`crate::classify_http_status`] (408, 429 and 5xx retryable with the
    /// `Retry-After` hint, anything else permanent), with the start of the
    /// body in the reason so the operator sees what the provider said.
    pub fn error_for_status(&self) -> Result<(), crate::SendError> {
        crate::classify_http_status(self.status, self.header("retry-after")).map_err(|e| {
            let excerpt = self.excerpt();
            if excerpt.is_empty() {
                return e;
            }
            match e {
                crate::SendError::Retryable(mut r) => {
                    r.reason = format!("{}: {excerpt}", r.reason);
                    crate::SendError::Retryable(r)
                }
                crate::SendError::Permanent(m) => {
                    crate::SendError::Permanent(format!("{m}: {excerpt}"))
                }
                other => other,
            }
        })
    }

    /// The body as text, trimmed, with control characters (line breaks
    /// included) as spaces and cut at `max_chars` characters with `…`; empty
    /// for an empty body. Unlike [`Response::excerpt`] it keeps the body's
    /// own spacing.
    pub fn snippet(&self, max_chars: usize) -> String {
        let text = self.text();
        let text = text.trim();
        let mut out: String = text
            .chars()
            .take(max_chars)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.chars().nth(max_chars).is_some() {
            out.push('…');
        }
        out
    }

    /// The body as text, on one line, cut at 200 characters.
    pub fn excerpt(&self) -> String {
        let text = self.text();
        let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.chars().count() > 200 {
            format!("{}...", line.chars().take(200).collect::<String>())
        } else {
            line
        }
    }
}

/// The first value of header `name` (case-insensitive) among `headers`.
pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Why an HTTP request failed before a response was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The request's URL.
    pub url: String,
    /// The host part of the URL (without port), for messages.
    pub host: String,
    /// What went wrong: the wasi `error-code` rendered as text, or a
    /// description of a request that could not be built.
    pub message: String,
    /// The host refused the request (`error-code::HTTP-request-denied`):
    /// the URL's host is not on the channel's allow-list.
    pub denied: bool,
    /// The request could not be built (bad URL, method or header) and so was
    /// never sent; retrying it as it is will not help.
    pub invalid_request: bool,
}

impl HttpError {
    fn new(url: &str, host: &str, message: impl Into<String>) -> Self {
        Self {
            url: url.to_string(),
            host: host.to_string(),
            message: message.into(),
            denied: false,
            invalid_request: false,
        }
    }

    fn invalid(url: &str, host: &str, message: impl Into<String>) -> Self {
        Self {
            invalid_request: true,
            ..Self::new(url, host, message)
        }
    }

    /// Whether the host refused the address the URL's host resolves to
    /// (`error-code::destination-IP-prohibited`): a private or loopback
    /// address, which the channel must allow with `allow_private_network`.
    pub fn prohibited_address(&self) -> bool {
        self.message == render_error_code(&ErrorCode::DestinationIpProhibited)
    }

    fn from_code(url: &str, host: &str, code: &ErrorCode) -> Self {
        Self {
            denied: matches!(code, ErrorCode::HttpRequestDenied),
            ..Self::new(url, host, render_error_code(code))
        }
    }
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HTTP request to {} failed: {}", self.url, self.message)
    }
}

impl std::error::Error for HttpError {}

/// The parts of an absolute URL that `wasi:http` wants separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Lowercased scheme, e.g. `https`.
    pub scheme: String,
    /// `host[:port]`, as written.
    pub authority: String,
    /// The host without port (and without brackets for IPv6).
    pub host: String,
    /// Path and query, always starting with `/`; the fragment is dropped.
    pub path_with_query: String,
}

/// Splits an absolute URL into scheme, authority and path-with-query.
pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("invalid URL `{url}`: expected scheme://host/path"))?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("invalid URL `{url}`: bad scheme `{scheme}`"));
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("invalid URL `{url}`: missing host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "invalid URL `{url}`: credentials in the URL are not supported, use a header"
        ));
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("invalid URL `{url}`: bad host `{authority}`"));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default().to_string()
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _port)| h)
            .to_string()
    };
    let path_with_query = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok(ParsedUrl {
        scheme: scheme.to_ascii_lowercase(),
        authority: authority.to_string(),
        host: host.to_ascii_lowercase(),
        path_with_query,
    })
}

fn method_of(method: &str) -> Method {
    match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(method.to_string()),
    }
}

/// Sends `request` and waits for the whole response.
///
/// Transport failures (DNS, connect, TLS, timeouts, a host refusal, ...) are
/// an `Err`; any HTTP status, including 4xx and 5xx, is an `Ok(Response)`.
pub fn send(request: Request) -> Result<Response, HttpError> {
    let Request {
        method,
        url,
        mut headers,
        body,
    } = request;
    let parsed = parse_url(&url).map_err(|m| HttpError::invalid(&url, "", m))?;
    let host = parsed.host.as_str();

    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        headers.push(("content-length".to_string(), body.len().to_string()));
    }
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    let fields = Fields::from_list(&entries).map_err(|e| {
        let which = match e {
            HeaderError::InvalidSyntax => "a header name or value is invalid",
            HeaderError::Forbidden => "a header is forbidden by the host",
            HeaderError::Immutable => "headers are immutable",
        };
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        HttpError::invalid(
            &url,
            host,
            format!("{which} (headers: {})", names.join(", ")),
        )
    })?;

    let req = OutgoingRequest::new(fields);
    let invalid = |what: &str| HttpError::invalid(&url, host, format!("invalid {what}"));
    req.set_method(&method_of(&method))
        .map_err(|()| invalid(&format!("method `{method}`")))?;
    let scheme = match parsed.scheme.as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    req.set_scheme(Some(&scheme))
        .map_err(|()| invalid(&format!("scheme `{}`", parsed.scheme)))?;
    req.set_authority(Some(&parsed.authority))
        .map_err(|()| invalid(&format!("authority `{}`", parsed.authority)))?;
    req.set_path_with_query(Some(&parsed.path_with_query))
        .map_err(|()| invalid(&format!("path `{}`", parsed.path_with_query)))?;

    let outgoing_body = req
        .body()
        .map_err(|()| HttpError::new(&url, host, "the request body was already taken"))?;

    // Hand the request to the host first and stream the body afterwards, so
    // a body larger than the host's buffer cannot block before the request
    // is on its way.
    let future_response = outgoing_handler::handle(req, None)
        .map_err(|code| HttpError::from_code(&url, host, &code))?;

    let write_result = write_body(&outgoing_body, &body);
    let body_error = match write_result {
        Ok(()) => OutgoingBody::finish(outgoing_body, None)
            .err()
            .map(|code| render_error_code(&code)),
        Err(e) => {
            // Dropping an unfinished body aborts it; the response future then
            // usually carries the real cause.
            drop(outgoing_body);
            Some(e)
        }
    };

    let pollable = future_response.subscribe();
    let incoming = loop {
        match future_response.get() {
            Some(result) => break result,
            None => pollable.block(),
        }
    };
    drop(pollable);
    let incoming = match incoming {
        Ok(Ok(resp)) => resp,
        Ok(Err(code)) => return Err(HttpError::from_code(&url, host, &code)),
        Err(()) => return Err(HttpError::new(&url, host, "the response was already taken")),
    };
    drop(future_response);
    if let Some(e) = body_error {
        return Err(HttpError::new(
            &url,
            host,
            format!("writing the request body failed: {e}"),
        ));
    }

    let status = incoming.status();
    let response_headers = {
        let fields = incoming.headers();
        fields
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    };
    let incoming_body = incoming
        .consume()
        .map_err(|()| HttpError::new(&url, host, "the response body was already taken"))?;
    let response_body = read_body(&incoming_body).map_err(|m| HttpError::new(&url, host, m))?;
    drop(IncomingBody::finish(incoming_body));
    drop(incoming);

    Ok(Response {
        status,
        headers: response_headers,
        body: response_body,
    })
}

/// Writes `body` through the outgoing body's stream in chunks of at most
/// 4096 bytes (the `blocking-write-and-flush` limit), then drops the stream
/// so the body can be finished.
fn write_body(outgoing_body: &OutgoingBody, body: &[u8]) -> Result<(), String> {
    let stream = outgoing_body
        .write()
        .map_err(|()| "the request body stream was already taken".to_string())?;
    for chunk in body.chunks(MAX_WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| render_stream_error(&e))?;
    }
    drop(stream);
    Ok(())
}

/// Reads the incoming body to its end.
fn read_body(incoming_body: &IncomingBody) -> Result<Vec<u8>, String> {
    let stream = incoming_body
        .stream()
        .map_err(|()| "the response body stream was already taken".to_string())?;
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => {
                return Err(format!(
                    "reading the response body failed: {}",
                    render_stream_error(&e)
                ))
            }
        }
    }
    drop(stream);
    Ok(out)
}

fn render_stream_error(err: &StreamError) -> String {
    match err {
        StreamError::Closed => "stream closed".to_string(),
        StreamError::LastOperationFailed(e) => {
            match crate::bindings::wasi::http::types::http_error_code(e) {
                Some(code) => render_error_code(&code),
                None => e.to_debug_string(),
            }
        }
    }
}

/// Renders a `wasi:http` `error-code` as text, using the WIT case names.
pub fn render_error_code(code: &ErrorCode) -> String {
    fn opt<T: core::fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map_or_else(String::new, |v| format!(" ({v})"))
    }
    match code {
        ErrorCode::DnsTimeout => "DNS-timeout".into(),
        ErrorCode::DnsError(p) => {
            let mut s = "DNS-error".to_string();
            if let Some(rcode) = &p.rcode {
                s.push_str(&format!(" rcode={rcode}"));
            }
            if let Some(info) = p.info_code {
                s.push_str(&format!(" info-code={info}"));
            }
            s
        }
        ErrorCode::DestinationNotFound => "destination-not-found".into(),
        ErrorCode::DestinationUnavailable => "destination-unavailable".into(),
        ErrorCode::DestinationIpProhibited => "destination-IP-prohibited".into(),
        ErrorCode::DestinationIpUnroutable => "destination-IP-unroutable".into(),
        ErrorCode::ConnectionRefused => "connection-refused".into(),
        ErrorCode::ConnectionTerminated => "connection-terminated".into(),
        ErrorCode::ConnectionTimeout => "connection-timeout".into(),
        ErrorCode::ConnectionReadTimeout => "connection-read-timeout".into(),
        ErrorCode::ConnectionWriteTimeout => "connection-write-timeout".into(),
        ErrorCode::ConnectionLimitReached => "connection-limit-reached".into(),
        ErrorCode::TlsProtocolError => "TLS-protocol-error".into(),
        ErrorCode::TlsCertificateError => "TLS-certificate-error".into(),
        ErrorCode::TlsAlertReceived(p) => format!(
            "TLS-alert-received{}{}",
            opt(&p.alert_id),
            opt(&p.alert_message)
        ),
        ErrorCode::HttpRequestDenied => "HTTP-request-denied".into(),
        ErrorCode::HttpRequestLengthRequired => "HTTP-request-length-required".into(),
        ErrorCode::HttpRequestBodySize(n) => format!("HTTP-request-body-size{}", opt(n)),
        ErrorCode::HttpRequestMethodInvalid => "HTTP-request-method-invalid".into(),
        ErrorCode::HttpRequestUriInvalid => "HTTP-request-URI-invalid".into(),
        ErrorCode::HttpRequestUriTooLong => "HTTP-request-URI-too-long".into(),
        ErrorCode::HttpResponseIncomplete => "HTTP-response-incomplete".into(),
        ErrorCode::HttpResponseBodySize(n) => format!("HTTP-response-body-size{}", opt(n)),
        ErrorCode::HttpResponseTransferCoding(s) => {
            format!("HTTP-response-transfer-coding{}", opt(s))
        }
        ErrorCode::HttpResponseContentCoding(s) => {
            format!("HTTP-response-content-coding{}", opt(s))
        }
        ErrorCode::HttpResponseTimeout => "HTTP-response-timeout".into(),
        ErrorCode::HttpUpgradeFailed => "HTTP-upgrade-failed".into(),
        ErrorCode::HttpProtocolError => "HTTP-protocol-error".into(),
        ErrorCode::LoopDetected => "loop-detected".into(),
        ErrorCode::ConfigurationError => "configuration-error".into(),
        ErrorCode::InternalError(s) => format!("internal-error{}", opt(s)),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{permanent, response, retryable};

    #[test]
    fn json_bodies_and_answers() {
        let req = Request::post_json(
            "https://x.example/m",
            &serde_json::json!({"to": "+1", "n": 2}),
        );
        assert_eq!(req.method, "POST");
        assert_eq!(req.body, br#"{"n":2,"to":"+1"}"#.to_vec());
        assert_eq!(
            req.headers,
            vec![("Content-Type".to_string(), "application/json".to_string())]
        );
        let req = Request::new("PUT", "u")
            .header("content-type", "application/vnd.api+json")
            .json(&serde_json::json!([1]));
        assert_eq!(req.headers.len(), 1, "a given content type is kept");
        assert_eq!(req.body, b"[1]".to_vec());

        let ok = response(200).with_text(r#"{"id": "m1"}"#);
        assert!(ok.error_for_status().is_ok());
        let v: serde_json::Value = ok.json().unwrap();
        assert_eq!(v["id"], "m1");
        assert!(response(200)
            .with_text("<html>")
            .json::<serde_json::Value>()
            .is_err());
        let r = retryable(
            response(429)
                .with_header("Retry-After", "30")
                .with_text("{\n \"error\": \"slow down\"\n}")
                .error_for_status(),
        );
        assert_eq!(r.retry_after_ms, Some(30_000));
        assert_eq!(
            r.reason,
            r#"provider answered HTTP 429: { "error": "slow down" }"#
        );
        let m = permanent(response(400).with_text(&"x".repeat(300)).error_for_status());
        assert!(
            m.starts_with("provider answered HTTP 400: xxx") && m.ends_with("..."),
            "{m}"
        );
        assert_eq!(m.len(), "provider answered HTTP 400: ".len() + 203);
        assert_eq!(
            retryable(response(503).error_for_status()).reason,
            "provider answered HTTP 503"
        );
    }

    #[test]
    fn retry_after_and_snippets() {
        assert_eq!(
            response(429)
                .with_header("Retry-After", " 2 ")
                .retry_after_ms(),
            Some(2000)
        );
        assert_eq!(response(429).retry_after_ms(), None);
        let r = response(500).with_text("  line one\r\nline two\t ");
        assert_eq!(r.snippet(200), "line one  line two");
        assert_eq!(r.snippet(4), "line…");
        assert_eq!(response(500).with_text(" \n ").snippet(10), "");
        assert_eq!(response(500).with_text("éé").snippet(2), "éé");
    }

    #[test]
    fn parses_urls() {
        let p = parse_url("https://Hooks.Example.com:8443/a/b?x=1#frag").unwrap();
        assert_eq!(p.scheme, "https");
        assert_eq!(p.authority, "Hooks.Example.com:8443");
        assert_eq!(p.host, "hooks.example.com");
        assert_eq!(p.path_with_query, "/a/b?x=1");

        let p = parse_url("http://example.com").unwrap();
        assert_eq!(p.authority, "example.com");
        assert_eq!(p.host, "example.com");
        assert_eq!(p.path_with_query, "/");

        let p = parse_url("http://127.0.0.1:9000?q=2").unwrap();
        assert_eq!(p.host, "127.0.0.1");
        assert_eq!(p.path_with_query, "/?q=2");

        let p = parse_url("http://[::1]:8080/x").unwrap();
        assert_eq!(p.authority, "[::1]:8080");
        assert_eq!(p.host, "::1");

        assert!(parse_url("example.com/x").is_err());
        assert!(parse_url("http:///x").is_err());
        assert!(parse_url("http://user:pw@example.com/").is_err());
    }
}
