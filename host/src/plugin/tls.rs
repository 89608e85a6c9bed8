//! The `herald:plugin/tls` capability (contract 0.2.0): TCP connections the
//! host opens for a channel plugin and, on the plugin's word, secures with
//! TLS, from the first byte (`implicit`) or upgraded in place after the
//! plugin's own STARTTLS command (`start-tls`). TLS runs here, natively,
//! not in the guest: the certificate chain and name are always checked
//! against the channel's [`TlsTrust`] and no plugin can weaken that.
//!
//! Owns the connection resource and the bounds of each operation (a read
//! returns at most [`MAX_READ`] bytes, a write takes at most [`MAX_WRITE`],
//! each waits at most [`IO_DEADLINE`]; the call's own deadline usually ends
//! a stall first) and the wording of every failure. Whom a connection may
//! reach is [`super::http_policy`]'s allow-list and [`super::address`]'s
//! rule, applied here as for the plugins' own sockets, not decided here.
//! Certificates are checked against the real wall clock (rustls reads it):
//! the peer is real even when Herald's clock is simulated.

use super::http_policy::AllowList;
use super::tls_trust::TlsTrust;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, CertificateError};
use tokio_rustls::TlsConnector;

/// Most bytes one `read` returns.
pub const MAX_READ: u32 = 64 * 1024;
/// Most bytes one `write` takes.
pub const MAX_WRITE: usize = 1024 * 1024;
/// Longest wait of one connect, handshake, read or write.
pub const IO_DEADLINE: Duration = Duration::from_secs(30);

/// How a connection starts (the WIT `mode`; [`super::state`] converts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// TLS from the first byte.
    Implicit,
    /// Clear text until [`Connection::start_tls`].
    Plain,
}

/// Why an operation failed (the WIT `tls-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The host did not allow it.
    Denied(String),
    /// The network failed; worth retrying.
    Io(String),
    /// The certificate or the handshake failed.
    Tls(String),
}

/// What the plugin of one call may reach.
pub struct Reach<'a> {
    /// The channel, for logs.
    pub channel: &'a str,
    /// Its allow-list (and TLS trust).
    pub allowed: &'a AllowList,
    /// Whether this call may use the network at all (not under the
    /// simulation's recording sink or `herald plugin test`'s fixtures).
    pub live: bool,
}

/// One connection a plugin holds; closed when dropped.
pub struct Connection {
    /// `host:port`, for messages.
    peer: String,
    /// The name certificates are checked for.
    server_name: ServerName<'static>,
    stream: Stream,
    trust: TlsTrust,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// After a failed upgrade: nothing more can be said on it.
    Broken,
}

/// `fut`, or an `io` error saying what `what` waited for.
async fn bounded<T>(
    what: impl FnOnce() -> String,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<std::io::Result<T>, TlsError> {
    tokio::time::timeout(IO_DEADLINE, fut).await.map_err(|_| {
        TlsError::Io(format!(
            "{} did not finish within {}s",
            what(),
            IO_DEADLINE.as_secs()
        ))
    })
}

/// The peer as written in messages and allowed_hosts: IPv6 in brackets.
fn peer_of(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Connection {
    /// Connect to `host`:`port` for the plugin of `reach`, and with
    /// `Mode::Implicit` secure the connection at once.
    pub async fn connect(
        reach: &Reach<'_>,
        host: &str,
        port: u16,
        mode: Mode,
    ) -> Result<Connection, TlsError> {
        let host = host.trim().trim_matches(['[', ']']).to_ascii_lowercase();
        let peer = peer_of(&host, port);
        if !reach.live {
            return Err(TlsError::Denied(format!(
                "no connection to {peer}: this run makes no network connections (herald simulate without --live, herald plugin test)"
            )));
        }
        let server_name = ServerName::try_from(host.clone())
            .ok()
            .filter(|_| !host.is_empty() && host.len() <= 253)
            .ok_or_else(|| {
                TlsError::Denied(format!("`{host}` is not a host name or IP address"))
            })?;
        let listed = format!("tcp://{peer}/")
            .parse::<http::Uri>()
            .is_ok_and(|uri| reach.allowed.permits(&uri));
        if !listed {
            let why = format!(
                "tcp://{peer} is not in channel `{}`'s allowed_hosts: add \"tcp://{peer}\" to allowed_hosts",
                reach.channel
            );
            tracing::warn!(channel = %reach.channel, %peer, "plugin connection refused: {why}");
            return Err(TlsError::Denied(why));
        }
        let tcp = open(reach, &host, port, &peer).await?;
        let mut conn = Connection {
            peer,
            server_name,
            stream: Stream::Plain(tcp),
            trust: reach.allowed.tls().clone(),
        };
        if mode == Mode::Implicit {
            conn.start_tls().await?;
        }
        Ok(conn)
    }

    /// Up to `max` bytes (at most [`MAX_READ`]); empty at the end of the stream.
    pub async fn read(&mut self, max: u32) -> Result<Vec<u8>, TlsError> {
        let mut buf = vec![0u8; max.clamp(1, MAX_READ) as usize];
        let peer = &self.peer;
        let what = || format!("reading from {peer}");
        let n = match &mut self.stream {
            Stream::Plain(s) => bounded(what, s.read(&mut buf)).await?,
            Stream::Tls(s) => bounded(what, s.read(&mut buf)).await?,
            Stream::Broken => return Err(self.broken()),
        }
        .map_err(|e| TlsError::Io(format!("reading from {peer} failed: {e}")))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Write all of `bytes` (at most [`MAX_WRITE`]).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), TlsError> {
        if bytes.len() > MAX_WRITE {
            return Err(TlsError::Denied(format!(
                "a write of {} bytes is more than the {MAX_WRITE} one call may take: write in smaller pieces",
                bytes.len()
            )));
        }
        let peer = &self.peer;
        let what = || format!("writing to {peer}");
        match &mut self.stream {
            Stream::Plain(s) => {
                bounded(what, async {
                    s.write_all(bytes).await?;
                    s.flush().await
                })
                .await?
            }
            Stream::Tls(s) => {
                bounded(what, async {
                    s.write_all(bytes).await?;
                    s.flush().await
                })
                .await?
            }
            Stream::Broken => return Err(self.broken()),
        }
        .map_err(|e| TlsError::Io(format!("writing to {peer} failed: {e}")))
    }

    /// Upgrade to TLS in place, the certificate checked for the connected name.
    pub async fn start_tls(&mut self) -> Result<(), TlsError> {
        let tcp = match std::mem::replace(&mut self.stream, Stream::Broken) {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(s) => {
                self.stream = Stream::Tls(s);
                return Err(TlsError::Tls(format!(
                    "the connection to {} is already encrypted",
                    self.peer
                )));
            }
            Stream::Broken => return Err(self.broken()),
        };
        let connector = TlsConnector::from(self.trust.client_config());
        let peer = &self.peer;
        let what = || format!("the TLS handshake with {peer}");
        let handshake = connector.connect(self.server_name.clone(), tcp);
        let tls = bounded(what, handshake)
            .await?
            .map_err(|e| self.handshake_error(e))?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Whether the connection is encrypted now.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    fn broken(&self) -> TlsError {
        TlsError::Io(format!(
            "the connection to {} is unusable after its TLS handshake failed",
            self.peer
        ))
    }

    /// What a failed handshake means, in the operator's terms.
    fn handshake_error(&self, e: std::io::Error) -> TlsError {
        let peer = &self.peer;
        let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return TlsError::Io(format!(
                "the connection to {peer} failed during the TLS handshake: {e}"
            ));
        };
        let name = self.server_name.to_str();
        TlsError::Tls(match err {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "the certificate of {peer} is not trusted: no CA this channel trusts ({}) signed it; if the relay uses a private CA, name its PEM file in the channel's tls_ca_file",
                    self.trust.describe()
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "the certificate of {peer} is not valid for the name {name} ({cert:?}): connect by a name the certificate lists (setting `host`, and the same name in allowed_hosts)"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("the certificate of {peer} has expired ({cert:?}): the relay must renew it")
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
                    "the certificate of {peer} is not valid yet ({cert:?}): check this machine's clock"
                ),
                other => format!("the certificate of {peer} was refused: {other:?}"),
            },
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
                "the TLS handshake with {peer} failed ({err}): is the server speaking TLS from the first byte on this port? (implicit TLS is usually port 465; 587 and 25 start in clear text and use STARTTLS)"
            ),
            other => format!("the TLS handshake with {peer} failed: {other}"),
        })
    }
}

/// A TCP connection to the first address of `host` that the allow-list and
/// the address rule let through and that answers.
async fn open(reach: &Reach<'_>, host: &str, port: u16, peer: &str) -> Result<TcpStream, TlsError> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => bounded(
            || format!("looking up {host}"),
            tokio::net::lookup_host((host, port)),
        )
        .await?
        .map_err(|e| TlsError::Io(format!("cannot resolve {host}: {e}")))?
        .collect(),
    };
    let mut refusal = None;
    let mut failure = None;
    for addr in addrs {
        if let Some(why) = reach.allowed.tcp_refusal(addr).await {
            tracing::warn!(channel = %reach.channel, %addr, "plugin connection refused: {why}");
            refusal = Some(why);
            continue;
        }
        match bounded(|| format!("connecting to {peer}"), TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Ok(Err(e)) => failure = Some(connect_error(peer, port, &e)),
            Err(timeout) => failure = Some(timeout),
        }
    }
    Err(match (failure, refusal) {
        (Some(failure), _) => failure,
        (None, Some(why)) => {
            TlsError::Denied(format!("the host refused the connection to {peer}: {why}"))
        }
        (None, None) => TlsError::Io(format!("{host} resolved to no address")),
    })
}

fn connect_error(peer: &str, port: u16, e: &std::io::Error) -> TlsError {
    TlsError::Io(match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!(
            "{peer} refused the connection: is the server running and listening on port {port}?"
        ),
        _ => format!("cannot connect to {peer}: {e}"),
    })
}
