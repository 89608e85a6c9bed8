//! TCP connections the host opens for the plugin and secures with TLS
//! (`herald:plugin/tls`, contract 0.2.0), as a blocking `std::io::Read +
//! Write` [`Connection`]. The host checks the server's certificate (chain
//! and name) against Mozilla's roots plus the channel's `tls_ca_file`; the
//! plugin only says when: [`Mode::Implicit`] from the first byte, or
//! [`Connection::start_tls`] after its own STARTTLS command was accepted.
//! Only `tcp://host:port` entries of the channel's `allowed_hosts` can be
//! reached. `From<TlsError> for SendError`: refused by the host or by TLS is
//! permanent, a network failure retryable.

use crate::bindings::herald::plugin::tls as host;
pub use host::{Mode, TlsError};
use std::io;

/// Most bytes the host returns from one read.
const MAX_READ: usize = 64 * 1024;
/// Most bytes the host takes in one write.
const MAX_WRITE: usize = 1024 * 1024;

/// One connection; closed when dropped.
pub struct Connection {
    inner: host::Connection,
}

impl Connection {
    /// Connect to `host`:`port` (as listed in allowed_hosts); with
    /// [`Mode::Implicit`] the TLS handshake follows at once.
    pub fn connect(host: &str, port: u16, mode: Mode) -> Result<Connection, TlsError> {
        host::Connection::connect(host, port, mode).map(|inner| Connection { inner })
    }

    /// Upgrade a [`Mode::Plain`] connection to TLS in place.
    pub fn start_tls(&mut self) -> Result<(), TlsError> {
        self.inner.start_tls()
    }

    /// Whether the connection is encrypted now.
    pub fn is_encrypted(&self) -> bool {
        self.inner.is_encrypted()
    }
}

impl TlsError {
    /// The host's text.
    pub fn message(&self) -> &str {
        match self {
            TlsError::Denied(m) | TlsError::Io(m) | TlsError::Tls(m) => m,
        }
    }
}

impl From<TlsError> for crate::SendError {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Denied(m) | TlsError::Tls(m) => crate::SendError::Permanent(m),
            TlsError::Io(m) => crate::SendError::retryable(format!("{m} (will retry)"), None),
        }
    }
}

fn io_error(e: TlsError) -> io::Error {
    let kind = match &e {
        TlsError::Denied(_) => io::ErrorKind::PermissionDenied,
        TlsError::Tls(_) => io::ErrorKind::InvalidData,
        TlsError::Io(_) => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.message().to_string())
}

impl io::Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(MAX_READ) as u32;
        let bytes = self.inner.read(max).map_err(io_error)?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }
}

impl io::Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(MAX_WRITE);
        self.inner.write(&buf[..n]).map_err(io_error)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Every write is flushed by the host before it returns.
        Ok(())
    }
}
