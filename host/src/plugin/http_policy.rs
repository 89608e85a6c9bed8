//! Outbound network for plugins: HTTP only to the origins on the channel's
//! allow-list (`scheme://host[:port]`, `*.` host wildcards, `*` port), raw
//! TCP (for SMTP) only to its `tcp://host:port` entries. A denied request
//! returns `http-request-denied` to the plugin instead of trapping, and is
//! logged; a denied connection is refused. Under `herald simulate` requests
//! go to a recording sink that answers `200 {}` instead of the network.

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

/// The origins a channel's plugin may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    origins: Vec<AllowedOrigin>,
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
        Ok(AllowList { origins })
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

    /// Whether a TCP connection to `addr` may be opened: some `tcp://host:port`
    /// entry has that port and a host that is, or resolves to, that address.
    pub async fn permits_tcp(&self, addr: std::net::SocketAddr) -> bool {
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

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>
    {
        if !self.allowed.permits(request.uri()) {
            tracing::warn!(
                channel = %self.channel,
                uri = %request.uri(),
                "plugin request denied: origin is not in this channel's allowed_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        match &self.mode {
            HttpMode::Live => Box::new(async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as IoFuture,
                ))
            }),
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
}
