//! TLS settings of the NBD server: the `[nbd] tls` mode and the rustls
//! server configuration built from the certificate and key files, checked
//! at start so that a bad file stops `ferry serve` with the setting named.
//!
//! rustls runs on the `ring` provider (no aws-lc, which needs cmake), TLS
//! 1.3 and 1.2. No client certificate is asked for: the export name stays
//! the credential, TLS keeps it (and the data) off the wire. Session
//! resumption is off: NBD connections are few and long, and a resumed
//! session would only add state that outlives the connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{NbdConfig, NbdTlsMode};

const CERT: &str = "nbd.tls_cert";
const KEY: &str = "nbd.tls_key";

/// Why the TLS settings of `[nbd]` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// `tls` is on or required but a file is not named.
    #[error("{setting} is required when nbd.tls is \"on\" or \"required\"")]
    Missing {
        /// The setting (`nbd.tls_cert` or `nbd.tls_key`).
        setting: &'static str,
    },
    /// A file cannot be read.
    #[error("{setting} = {}: cannot read it: {source}", path.display())]
    Read {
        /// The setting.
        setting: &'static str,
        /// The file it names.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable certificate or key.
    #[error("{setting} = {}: {reason}", path.display())]
    Unusable {
        /// The setting.
        setting: &'static str,
        /// The file it names.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is not the key of the certificate.
    #[error("nbd.tls_key does not belong to the certificate of nbd.tls_cert: {0}")]
    Mismatch(String),
}

/// Whether and how the NBD server speaks TLS.
#[derive(Debug, Clone, Default)]
pub struct NbdTls {
    mode: NbdTlsMode,
    config: Option<Arc<rustls::ServerConfig>>,
}

impl NbdTls {
    /// Plaintext only.
    pub fn off() -> Self {
        Self::default()
    }

    /// The TLS of a configuration's `[nbd]` table, with its certificate
    /// and key loaded and checked.
    pub fn from_config(c: &NbdConfig) -> Result<Self, TlsSetupError> {
        if c.tls == NbdTlsMode::Off {
            return Ok(Self::off());
        }
        let cert_path = c
            .tls_cert
            .as_deref()
            .ok_or(TlsSetupError::Missing { setting: CERT })?;
        let key_path = c
            .tls_key
            .as_deref()
            .ok_or(TlsSetupError::Missing { setting: KEY })?;
        let config = server_config(cert_path, key_path)?;
        Ok(Self {
            mode: c.tls,
            config: Some(Arc::new(config)),
        })
    }

    /// The mode: off, on (offered) or required.
    pub fn mode(&self) -> NbdTlsMode {
        if self.config.is_some() {
            self.mode
        } else {
            NbdTlsMode::Off
        }
    }

    /// The rustls configuration, unless TLS is off.
    pub(crate) fn server_config(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.config.as_ref()
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        setting,
        path: path.to_owned(),
        source,
    })
}

fn unusable(setting: &'static str, path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::Unusable {
        setting,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Builds the server configuration; each failure names the setting whose
/// file is at fault.
fn server_config(cert_path: &Path, key_path: &Path) -> Result<rustls::ServerConfig, TlsSetupError> {
    let cert_pem = read(CERT, cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable(CERT, cert_path, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(unusable(CERT, cert_path, "holds no PEM certificate"));
    }
    let key_pem = read(KEY, key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        unusable(
            KEY,
            key_path,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Loaded once here only to tell a bad key from a bad certificate;
    // rustls loads it again below.
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| unusable(KEY, key_path, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| unusable(CERT, cert_path, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(k) => TlsSetupError::Mismatch(format!("{k:?}")),
            other => unusable(CERT, cert_path, other),
        })?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}
