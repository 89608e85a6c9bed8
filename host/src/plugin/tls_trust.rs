//! Whose certificates a channel's TLS connections ([`super::tls`]) trust:
//! Mozilla's roots as compiled into `webpki-roots` (the same set the
//! plugins' HTTPS requests trust; not the platform's store, so a deployment
//! trusts the same roots everywhere), plus the CA certificates of the
//! channel's `tls_ca_file` (PEM), for a relay with a private CA. Owns loading
//! and checking that file and the client configuration built from it; opens
//! no connection.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Largest `tls_ca_file` read (a bundle of a few hundred certificates).
const MAX_CA_FILE: u64 = 1024 * 1024;

/// The trust of one channel's TLS connections.
#[derive(Clone, Default)]
pub struct TlsTrust {
    /// The channel's `tls_ca_file` and how many certificates it holds.
    custom: Option<(PathBuf, usize)>,
    /// Built once per channel; `None` is the shared webpki-roots-only config.
    config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for TlsTrust {
    fn eq(&self, other: &Self) -> bool {
        self.custom == other.custom
    }
}

impl Eq for TlsTrust {}

impl TlsTrust {
    /// The webpki roots plus every certificate of the PEM file `ca_file`;
    /// the error says what is wrong with the file.
    pub fn with_ca_file(ca_file: &Path) -> Result<TlsTrust> {
        let certs = read_certificates(ca_file)?;
        let mut roots = webpki_roots();
        for (i, cert) in certs.iter().enumerate() {
            roots.add(cert.clone()).with_context(|| {
                format!(
                    "tls_ca_file {}: certificate {} of {} is not a usable CA certificate",
                    ca_file.display(),
                    i + 1,
                    certs.len()
                )
            })?;
        }
        Ok(TlsTrust {
            custom: Some((ca_file.to_path_buf(), certs.len())),
            config: Some(client_config(roots)),
        })
    }

    /// The client configuration connections verify with.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        match &self.config {
            Some(config) => config.clone(),
            None => DEFAULT
                .get_or_init(|| client_config(webpki_roots()))
                .clone(),
        }
    }

    /// `webpki roots` or `webpki roots + FILE (N certificates)`, for
    /// messages and `herald check`.
    pub fn describe(&self) -> String {
        match &self.custom {
            None => "webpki roots".to_string(),
            Some((file, n)) => format!(
                "webpki roots + {} ({n} certificate{})",
                file.display(),
                if *n == 1 { "" } else { "s" }
            ),
        }
    }

    /// Whether the channel names a `tls_ca_file`.
    pub fn has_custom_ca(&self) -> bool {
        self.custom.is_some()
    }
}

fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Certificates checked against `roots` (chain, validity, name) with ring,
/// TLS 1.2 and 1.3; no client certificate.
fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Every `CERTIFICATE` block of the PEM file at `path` (other blocks are
/// ignored); at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let meta = std::fs::metadata(path).with_context(|| {
        format!("tls_ca_file {shown} cannot be read (the path is relative to herald.toml)")
    })?;
    if meta.len() > MAX_CA_FILE {
        bail!(
            "tls_ca_file {shown} is {} bytes, more than the {MAX_CA_FILE} a CA file may have: name the file with your relay's CA certificate(s) only",
            meta.len()
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("tls_ca_file {shown} cannot be read"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls_ca_file {shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        bail!(
            "tls_ca_file {shown} holds no `-----BEGIN CERTIFICATE-----` block: give the PEM file of the CA that signed your relay's certificate"
        );
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/smtp-tls")
            .join(name)
    }

    #[test]
    fn a_ca_file_is_loaded_and_bad_ones_are_explained() {
        let trust = TlsTrust::with_ca_file(&fixture("ca.pem")).unwrap();
        assert!(trust.has_custom_ca());
        assert!(
            trust.describe().ends_with("ca.pem (1 certificate)"),
            "{trust:?}"
        );
        assert_eq!(TlsTrust::default().describe(), "webpki roots");

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let missing = TlsTrust::with_ca_file(&dir.path().join("nope.pem")).unwrap_err();
        assert!(
            format!("{missing:#}").contains("cannot be read"),
            "{missing:#}"
        );
        let key_only = write(
            "key.pem",
            &std::fs::read_to_string(fixture("server.key")).unwrap(),
        );
        let err = TlsTrust::with_ca_file(&key_only).unwrap_err();
        assert!(
            format!("{err:#}").contains("no `-----BEGIN CERTIFICATE-----`"),
            "{err:#}"
        );
        let garbage = write(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        );
        let err = TlsTrust::with_ca_file(&garbage).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a usable CA certificate"),
            "{err:#}"
        );
    }
}
