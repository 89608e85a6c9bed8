//! The tests' one HTTP client: a blocking HTTP/1.1 request over a fresh
//! loopback connection (`Connection: close`), with the status, the headers
//! and the body of the answer (chunked bodies joined).

use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

/// A request to build and send.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    read_timeout: Option<Duration>,
}

/// An answer: status, headers (names lower-cased) and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            read_timeout: None,
        }
    }

    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Several headers at once.
    pub fn headers(self, headers: &[(&str, &str)]) -> Request {
        headers
            .iter()
            .fold(self, |r, (name, value)| r.header(name, value))
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    /// A body of this content type.
    pub fn body(mut self, content_type: &str, body: &str) -> Request {
        self.body = Some(body.as_bytes().to_vec());
        self.header("Content-Type", content_type)
    }

    /// A body sent as `application/json` (what it holds is up to the test).
    pub fn json(self, body: &str) -> Request {
        self.body("application/json", body)
    }

    /// Give up reading the answer after this long.
    pub fn read_timeout(mut self, timeout: Duration) -> Request {
        self.read_timeout = Some(timeout);
        self
    }

    /// Send it; a connection that fails or an answer cut off is a panic.
    pub fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.url);
        self.try_send().unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Send it; a server that is gone or an answer cut off before its
    /// headers end is an `Err`.
    pub fn try_send(self) -> std::io::Result<Response> {
        let rest = self.url.strip_prefix("http://").expect("an http:// url");
        let (host, path) = match rest.split_once('/') {
            Some((host, path)) => (host, format!("/{path}")),
            None => (rest, "/".to_string()),
        };
        let mut stream = std::net::TcpStream::connect(host)?;
        stream.set_read_timeout(self.read_timeout)?;
        let body = self.body.unwrap_or_default();
        let mut head = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", self.method);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> std::io::Result<Response> {
    use std::io::{Error, ErrorKind};
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| Error::new(ErrorKind::UnexpectedEof, "cut-off response"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no status line"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The data of a chunked body (as much of it as arrived).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        let data = &rest[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        rest = data[size..].strip_prefix(b"\r\n").unwrap_or(&data[size..]);
    }
    out
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header by name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The media type, lower-cased, without parameters.
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// A request with an optional JSON body; the status and the body as JSON
/// (`Null` when it is not JSON).
pub fn http(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let answer = with_body(Request::new(method, url), body).send();
    (answer.status, answer.json())
}

/// Like [`http`], with `Authorization: Bearer <token>`.
pub fn http_as(token: &str, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let answer = with_body(Request::new(method, url).bearer(token), body).send();
    (answer.status, answer.json())
}

/// Like [`http`], returning the body as text.
pub fn http_text(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let answer = with_body(Request::new(method, url), body).send();
    (answer.status, answer.text())
}

fn with_body(request: Request, body: Option<&str>) -> Request {
    match body {
        Some(body) => request.json(body),
        None => request,
    }
}

#[test]
fn answers_are_parsed_plain_chunked_and_cut_off() {
    let plain = parse(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n\r\n{\"a\":1}",
    )
    .unwrap();
    assert_eq!(plain.status, 201);
    assert_eq!(plain.content_type().as_deref(), Some("application/json"));
    assert_eq!(plain.json()["a"], 1);
    let chunked = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(chunked.text(), "abcde");
    assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Len").is_err());
}
