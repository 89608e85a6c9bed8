//! Outbound network for plugins: HTTP only to the origins on the channel's
//! allow-list (`scheme://host[:port]`, `*.` host wildcards, `*` port), raw
//! TCP (for SMTP) only to its `tcp://host:port` entries, and either only to
//! public addresses unless the channel allows private ones
//! (`allow_private_network`; [`super::address`]): an allowed name is
//! resolved and every address it resolves to checked, and a plain-HTTP
//! request then goes to the checked address (an HTTPS one re-resolves, but
//! a name rebound to an internal address fails the certificate check). A
//! denied request returns `http-request-denied` (or
//! `destination-IP-prohibited`) to the plugin instead of trapping, and is
//! logged; a denied connection is refused. Under `herald simulate` requests
//! go to a recording sink that answers `200 {}` instead of the network; under
//! `herald plugin test` they are answered from a list of fixtures
//! ([`FixtureSet`]) and every exchange is recorded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::sync::{Arc, Mutex};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigin {
    scheme: String,
    host: String,
    port: Option<u16>,
    any_port: bool,
}

/// The origins a channel's plugin may reach, and whom its TLS connections
/// trust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    origins: Vec<AllowedOrigin>,
    /// Whether loopback, private and link-local addresses may be reached.
    private_network: bool,
    /// The certificates `herald:plugin/tls` connections trust
    /// ([`super::tls`]): webpki roots, plus the channel's `tls_ca_file`.
    tls: super::tls_trust::TlsTrust,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

impl AllowList {
    /// Parse `allowed_hosts` entries; each error names the bad entry.
    pub fn parse(entries: &[String]) -> Result<AllowList, String> {
        let mut origins = Vec::new();
        for entry in entries {
            let bad = |why: &str| {
                format!("allowed_hosts entry `{entry}` {why}; write `scheme://host[:port]`, e.g. `https://api.twilio.com`, `http://127.0.0.1:8025`, or `tcp://smtp.example.com:587` for a plain TCP connection")
            };
            let (scheme, rest) = entry
                .split_once("://")
                .ok_or_else(|| bad("has no scheme"))?;
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" && scheme != "tcp" {
                return Err(bad("must use http, https or tcp"));
            }
            let rest = rest.trim_end_matches('/');
            if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
                return Err(bad("must be an origin without path, query or credentials"));
            }
            let (host, port, any_port) = match rest.rsplit_once(':') {
                Some((h, "*")) => (h, None, true),
                Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                    let port: u16 = p.parse().map_err(|_| bad("has a bad port"))?;
                    (h, Some(port), false)
                }
                _ => (rest, None, false),
            };
            let wildcard_ok = match host.strip_prefix("*.") {
                Some(rest) => !rest.contains('*'),
                None => !host.contains('*'),
            };
            if host.is_empty() || !wildcard_ok {
                return Err(bad(
                    "has a bad host (a wildcard may only start it, as in `*.example.com`)",
                ));
            }
            if scheme == "tcp" && (port.is_none() || host.contains('*')) {
                return Err(bad("needs an exact host and port for tcp"));
            }
            origins.push(AllowedOrigin {
                scheme,
                host: host.to_ascii_lowercase(),
                port,
                any_port,
            });
        }
        Ok(AllowList {
            origins,
            private_network: false,
            tls: Default::default(),
        })
    }

    /// This list, reaching loopback, private and link-local addresses too
    /// when `allowed` (the channel's `allow_private_network`).
    pub fn with_private_network(mut self, allowed: bool) -> AllowList {
        self.private_network = allowed;
        self
    }

    /// This list, its TLS connections trusting `trust`.
    pub fn with_tls(mut self, trust: super::tls_trust::TlsTrust) -> AllowList {
        self.tls = trust;
        self
    }

    /// Whom the channel's TLS connections trust.
    pub fn tls(&self) -> &super::tls_trust::TlsTrust {
        &self.tls
    }

    /// Whether loopback, private and link-local addresses may be reached.
    pub fn private_network(&self) -> bool {
        self.private_network
    }

    /// Why the plugin may not reach `ip`, if it may not: it is not public
    /// and the channel does not allow private addresses.
    pub fn address_refusal(&self, ip: std::net::IpAddr) -> Option<String> {
        if self.private_network {
            return None;
        }
        super::address::non_public(ip).map(|why| {
            format!("{ip} is {why}, and private addresses are refused unless the channel sets allow_private_network = true (only for a provider on your own network)")
        })
    }

    /// Whether a request to this URI may go out.
    pub fn permits(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or_else(|| default_port(&scheme));
        self.origins.iter().any(|o| {
            let host_ok = match o.host.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
                }
                None => o.host == host,
            };
            let port_ok = o.any_port || o.port.unwrap_or_else(|| default_port(&o.scheme)) == port;
            o.scheme == scheme && host_ok && port_ok
        })
    }
}

impl AllowList {
    /// Whether any entry allows raw TCP.
    pub fn allows_tcp(&self) -> bool {
        self.origins.iter().any(|o| o.scheme == "tcp")
    }

    /// Whether a raw TCP entry names a host that needs a DNS lookup.
    pub fn tcp_needs_lookup(&self) -> bool {
        self.origins.iter().any(|o| {
            o.scheme == "tcp"
                && o.host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_err()
        })
    }

    /// Why a TCP connection to `addr` may not be opened, if it may not: no
    /// `tcp://host:port` entry has that port and a host that is, or
    /// resolves to, that address, or the address is private
    /// ([`AllowList::address_refusal`]).
    pub async fn tcp_refusal(&self, addr: std::net::SocketAddr) -> Option<String> {
        if !self.permits_tcp(addr).await {
            return Some("not in the channel's allowed_hosts (add tcp://host:port)".to_string());
        }
        self.address_refusal(addr.ip())
    }

    /// Whether some `tcp://host:port` entry has the port of `addr` and a
    /// host that is, or resolves to, its address.
    async fn permits_tcp(&self, addr: std::net::SocketAddr) -> bool {
        for o in self.origins.iter().filter(|o| o.scheme == "tcp") {
            if o.port != Some(addr.port()) {
                continue;
            }
            let host = o.host.trim_matches(['[', ']']);
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                if ip == addr.ip() {
                    return true;
                }
                continue;
            }
            if let Ok(mut resolved) = tokio::net::lookup_host((host, addr.port())).await {
                if resolved.any(|a| a.ip() == addr.ip()) {
                    return true;
                }
            }
        }
        false
    }
}

/// A request a plugin made while HTTP went to the recording sink.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedRequest {
    /// The channel whose plugin sent it.
    pub channel: String,
    /// Method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Body as text (lossy UTF-8).
    pub body: String,
}

/// Where allowed requests go.
#[derive(Debug, Clone)]
pub enum HttpMode {
    /// The network.
    Live,
    /// Nowhere: every allowed request is recorded and answered `200 {}`.
    Sink(Arc<Mutex<Vec<RecordedRequest>>>),
    /// Nowhere: every request is answered from canned fixtures (an
    /// unmatched one gets [`UNMATCHED_STATUS`]) and recorded with its answer.
    Fixtures(Arc<FixtureSet>),
}

/// The `wasi:http` hooks of one plugin call.
pub struct HttpPolicy {
    /// The channel, for logs.
    pub channel: String,
    /// Allowed origins.
    pub allowed: Arc<AllowList>,
    /// Live or recording.
    pub mode: HttpMode,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type ResponseFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
        if let HttpMode::Fixtures(set) = &self.mode {
            return set.answer(request, &self.allowed);
        }
        if !self.allowed.permits(request.uri()) {
            tracing::warn!(
                channel = %self.channel,
                uri = %request.uri(),
                "plugin request denied: origin is not in this channel's allowed_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        match &self.mode {
            HttpMode::Live => {
                let allowed = self.allowed.clone();
                let channel = self.channel.clone();
                Box::new(async move {
                    let request = to_checked_address(request, &allowed, &channel).await?;
                    let (response, io) =
                        wasmtime_wasi_http::default_send_request(request, options).await?;
                    Ok((
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as IoFuture,
                    ))
                })
            }
            HttpMode::Fixtures(_) => unreachable!("answered above"),
            HttpMode::Sink(log) => {
                let log = log.clone();
                let channel = self.channel.clone();
                Box::new(async move {
                    let method = request.method().to_string();
                    let url = request.uri().to_string();
                    let body = request.into_body().collect().await?.to_bytes();
                    log.lock().expect("sink lock").push(RecordedRequest {
                        channel,
                        method,
                        url,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let response = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(
                            Full::new(Bytes::from_static(b"{}"))
                                .map_err(|never| match never {})
                                .boxed_unsync(),
                        )
                        .expect("static response");
                    Ok((response, Box::new(async { Ok(()) }) as IoFuture))
                })
            }
        }
    }
}

/// `request` checked against the addresses its host resolves to: refused
/// (`destination-IP-prohibited`, logged) when one is not public and the
/// channel does not allow private addresses; else, for plain HTTP, sent to
/// the first address checked (the `Host` header keeps the name), so the
/// connection cannot go to an address a second lookup returns. HTTPS keeps
/// the name for its certificate check, which a rebound name fails.
async fn to_checked_address(
    mut request: http::Request<WasiBody>,
    allowed: &AllowList,
    channel: &str,
) -> Result<http::Request<WasiBody>, HttpError> {
    if allowed.private_network() {
        return Ok(request);
    }
    let uri = request.uri();
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or(HttpError::HttpRequestUriInvalid)?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| HttpError::DnsError {
            rcode: Some(e.to_string()),
            info_code: None,
        })?
        .collect();
    let first = *addrs.first().ok_or(HttpError::DestinationNotFound)?;
    if let Some(why) = addrs.iter().find_map(|a| allowed.address_refusal(a.ip())) {
        tracing::warn!(%channel, %host, "plugin request refused: {host} resolves to {why}");
        return Err(HttpError::DestinationIpProhibited);
    }
    if !https {
        let mut parts = uri.clone().into_parts();
        parts.authority = Some(
            first
                .to_string()
                .parse()
                .map_err(|_| HttpError::HttpRequestUriInvalid)?,
        );
        *request.uri_mut() =
            http::Uri::from_parts(parts).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    }
    Ok(request)
}

/// The status an unmatched request is answered with under fixtures.
pub const UNMATCHED_STATUS: u16 = 501;

/// One canned exchange for `herald plugin test --http`: a request pattern
/// and the answer to give.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFixture {
    /// Request method, e.g. `POST` (case-insensitive).
    pub method: String,
    /// The full URL, compared after normalising (`https://h` is `https://h/`).
    pub url: String,
    /// What the request body must be or contain; absent matches any body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyMatch>,
    /// The answer.
    pub response: FixtureResponse,
}

/// How a fixture matches the request body.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BodyMatch {
    /// `{"equals": "..."}`: the whole body, exactly.
    Equals(String),
    /// `{"contains": "..."}` or `{"contains": ["a", "b"]}`: every string
    /// appears somewhere in the body (plain substrings, no patterns).
    Contains(OneOrMany),
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

/// The answer of a fixture.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureResponse {
    /// HTTP status (default 200).
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body: a string is sent as it is, any other JSON value as JSON
    /// text; absent is an empty body.
    #[serde(default)]
    pub body: serde_json::Value,
}

fn ok_status() -> u16 {
    200
}

impl FixtureResponse {
    fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            serde_json::Value::Null => Vec::new(),
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        }
    }
}

/// What became of one request under fixtures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FixtureResult {
    /// Answered by the fixture at this index (0-based) with this status.
    Answered {
        /// Index in the fixture list.
        fixture: usize,
        /// The status given.
        status: u16,
    },
    /// No fixture matched; answered [`UNMATCHED_STATUS`].
    Unmatched {
        /// Why the nearest fixtures did not match.
        why: String,
    },
    /// The URL's origin is not in `allowed_hosts`; the plugin got
    /// `http-request-denied`.
    Denied,
}

/// One request a plugin made under fixtures, with what it got.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FixtureExchange {
    /// Method.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers as sent (lowercase names), unmasked.
    pub headers: Vec<(String, String)>,
    /// Body (lossy UTF-8).
    pub body: String,
    /// The answer.
    #[serde(flatten)]
    pub result: FixtureResult,
}

/// Most exchanges a [`FixtureSet`] keeps in its log (a simulation may ask
/// millions of times; the rest are only counted).
const MAX_LOGGED: usize = 10_000;

/// The fixtures of one plugin test or simulation, the log of what was
/// asked (the first [`MAX_LOGGED`] requests) and how every request went.
#[derive(Debug, Default)]
pub struct FixtureSet {
    fixtures: Vec<HttpFixture>,
    /// Whether `allowed_hosts` was given; if not, every origin may be asked.
    enforce_allowed_hosts: bool,
    log: Mutex<Vec<FixtureExchange>>,
    tally: Mutex<FixtureTally>,
}

/// How many requests fixtures answered, matched none, or were denied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FixtureTally {
    /// Answered by a fixture.
    pub answered: u64,
    /// Matched no fixture (answered [`UNMATCHED_STATUS`]).
    pub unmatched: u64,
    /// Outside the channel's `allowed_hosts`.
    pub denied: u64,
}

/// `url` in a canonical form for comparison (lowercase scheme and host,
/// `/` for an empty path); unparsable URLs are compared as written.
fn normalize_url(url: &str) -> String {
    match url.trim().parse::<http::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!(
                "{}://{}{}",
                scheme.to_ascii_lowercase(),
                authority.as_str().to_ascii_lowercase(),
                uri.path_and_query().map_or("/", |p| p.as_str())
            ),
            _ => uri.to_string(),
        },
        Err(_) => url.trim().to_string(),
    }
}

impl FixtureSet {
    /// Fixtures answered in order (the first match wins). With
    /// `enforce_allowed_hosts`, requests outside the channel's allow-list are
    /// denied as in a deployment.
    pub fn new(fixtures: Vec<HttpFixture>, enforce_allowed_hosts: bool) -> Self {
        Self {
            fixtures,
            enforce_allowed_hosts,
            log: Mutex::new(Vec::new()),
            tally: Mutex::new(FixtureTally::default()),
        }
    }

    /// How every request so far went.
    pub fn tally(&self) -> FixtureTally {
        *self.tally.lock().expect("fixture lock")
    }

    /// The requests made so far (the first [`MAX_LOGGED`]), in order.
    pub fn exchanges(&self) -> Vec<FixtureExchange> {
        self.log.lock().expect("fixture lock").clone()
    }

    /// The fixture answering this request, or why none does.
    pub fn find(&self, method: &str, url: &str, body: &str) -> Result<usize, String> {
        let url = normalize_url(url);
        let mut near = Vec::new();
        for (i, f) in self.fixtures.iter().enumerate() {
            let method_ok = f.method.trim().eq_ignore_ascii_case(method);
            let url_ok = normalize_url(&f.url) == url;
            let body_miss = match &f.body {
                None => None,
                Some(BodyMatch::Equals(want)) => {
                    (want != body).then(|| "the body differs".to_string())
                }
                Some(BodyMatch::Contains(parts)) => parts
                    .items()
                    .iter()
                    .find(|p| !body.contains(p.as_str()))
                    .map(|p| format!("the body lacks `{p}`")),
            };
            match (method_ok, url_ok, body_miss) {
                (true, true, None) => return Ok(i),
                (true, true, Some(why)) => near.push(format!("fixture {}: {why}", i + 1)),
                (false, true, _) => near.push(format!("fixture {}: method is {}", i + 1, f.method)),
                _ => {}
            }
        }
        Err(if self.fixtures.is_empty() {
            "there are no fixtures (pass --http FILE)".to_string()
        } else if near.is_empty() {
            "no fixture has this URL".to_string()
        } else {
            near.join("; ")
        })
    }

    fn count(&self, result: &FixtureResult) {
        let mut tally = self.tally.lock().expect("fixture lock");
        match result {
            FixtureResult::Answered { .. } => tally.answered += 1,
            FixtureResult::Unmatched { .. } => tally.unmatched += 1,
            FixtureResult::Denied => tally.denied += 1,
        }
    }

    fn answer(
        self: &Arc<Self>,
        request: http::Request<WasiBody>,
        allowed: &AllowList,
    ) -> ResponseFuture {
        let set = self.clone();
        let permitted = !self.enforce_allowed_hosts || allowed.permits(request.uri());
        Box::new(async move {
            let method = request.method().to_string();
            let url = request.uri().to_string();
            let headers = request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = request.into_body().collect().await?.to_bytes();
            let body = String::from_utf8_lossy(&body).into_owned();
            let (result, response) = if !permitted {
                (FixtureResult::Denied, None)
            } else {
                match set.find(&method, &url, &body) {
                    Ok(i) => {
                        let r = &set.fixtures[i].response;
                        let mut builder = http::Response::builder().status(r.status);
                        for (k, v) in &r.headers {
                            builder = builder.header(k.as_str(), v.as_str());
                        }
                        (
                            FixtureResult::Answered {
                                fixture: i,
                                status: r.status,
                            },
                            Some(builder.body(r.body_bytes())),
                        )
                    }
                    Err(why) => {
                        let text = format!("herald: no HTTP fixture matches {method} {url}: {why}");
                        (
                            FixtureResult::Unmatched { why },
                            Some(
                                http::Response::builder()
                                    .status(UNMATCHED_STATUS)
                                    .header("content-type", "text/plain")
                                    .header("x-herald-fixture", "unmatched")
                                    .body(text.into_bytes()),
                            ),
                        )
                    }
                }
            };
            set.count(&result);
            let mut log = set.log.lock().expect("fixture lock");
            if log.len() < MAX_LOGGED {
                log.push(FixtureExchange {
                    method,
                    url,
                    headers,
                    body,
                    result,
                });
            }
            drop(log);
            let response = match response {
                None => return Err(HttpError::HttpRequestDenied),
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    return Err(HttpError::InternalError(Some(format!(
                        "fixture response cannot be built: {e}"
                    ))))
                }
            };
            let response = response.map(|b| {
                Full::new(Bytes::from(b))
                    .map_err(|never| match never {})
                    .boxed_unsync()
            });
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn matches_scheme_host_and_port() {
        let l = list(&[
            "https://api.twilio.com",
            "http://127.0.0.1:8025",
            "https://*.example.com",
            "http://localhost:*",
        ]);
        let ok = |u: &str| l.permits(&u.parse().unwrap());
        assert!(ok("https://api.twilio.com/2010-04-01/x"));
        assert!(ok("https://api.twilio.com:443/x"));
        assert!(!ok("http://api.twilio.com/x"));
        assert!(!ok("https://api.twilio.com:8443/x"));
        assert!(ok("http://127.0.0.1:8025/hook"));
        assert!(!ok("http://127.0.0.1:8026/hook"));
        assert!(ok("https://mail.example.com/"));
        assert!(!ok("https://example.com/"));
        assert!(!ok("https://evil-example.com/"));
        assert!(ok("http://localhost:1234/"));
    }

    #[test]
    fn bad_entries_are_explained() {
        for bad in [
            "api.twilio.com",
            "ftp://x",
            "https://x/path",
            "https://a*b.com",
            "http://h:port",
        ] {
            let err = AllowList::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
    #[test]
    fn fixtures_match_method_url_and_body() {
        let fixtures: Vec<HttpFixture> = serde_json::from_str(
            r#"[
              {"method": "post", "url": "https://API.example.com/v1",
               "body": {"contains": ["To=%2B1", "Body="]},
               "response": {"status": 201, "body": {"id": "m1"}}},
              {"method": "POST", "url": "https://api.example.com/v1",
               "body": {"equals": "x"}, "response": {"status": 429}},
              {"method": "GET", "url": "https://api.example.com", "response": {}}
            ]"#,
        )
        .unwrap();
        assert_eq!(fixtures[0].response.body_bytes(), br#"{"id":"m1"}"#);
        assert_eq!(fixtures[2].response.status, 200);
        let set = FixtureSet::new(fixtures, false);
        assert_eq!(
            set.find("POST", "https://api.example.com/v1", "To=%2B1&Body=hi"),
            Ok(0)
        );
        assert_eq!(set.find("POST", "https://api.example.com/v1", "x"), Ok(1));
        assert_eq!(set.find("GET", "https://api.example.com/", ""), Ok(2));
        let why = set
            .find("POST", "https://api.example.com/v1", "To=%2B2")
            .unwrap_err();
        assert!(why.contains("fixture 1: the body lacks `To=%2B1`"), "{why}");
        assert!(why.contains("fixture 2: the body differs"), "{why}");
        let why = set
            .find("DELETE", "https://api.example.com/", "")
            .unwrap_err();
        assert!(why.contains("fixture 3: method is GET"), "{why}");
        assert_eq!(
            set.find("GET", "https://other.example.com/", "")
                .unwrap_err(),
            "no fixture has this URL"
        );
        let bad = serde_json::from_str::<Vec<HttpFixture>>(
            r#"[{"method":"GET","url":"u","respons":{}}]"#,
        );
        assert!(bad.unwrap_err().to_string().contains("respons"));
    }
}
