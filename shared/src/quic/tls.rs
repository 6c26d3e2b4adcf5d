//! A node's TLS identity and the rustls configurations built from it.
//!
//! Owns the trust policy of the cluster: TLS 1.3 only, the `ring` provider passed explicitly
//! to every builder (the process-wide default provider is never installed or consulted), the
//! cluster CA as the only trust root, a client certificate required on every connection
//! between nodes (optional on a core's admin HTTPS, but verified when presented), and the
//! server verified under [`SERVER_NAME`] whatever address was dialed. It never opens a
//! socket and never reads a file except in [`Identity::load`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::SERVER_NAME;
use super::certs::CertPaths;

/// Errors loading an identity or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {file}: {error}")]
    Read {
        /// The file concerned.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        error: std::io::Error,
    },
    /// PEM text could not be parsed.
    #[error("cannot parse PEM in {file}: {error}")]
    Pem {
        /// The file (or, for [`Identity::from_pem`], the argument) concerned.
        file: String,
        /// The parser's error.
        #[source]
        error: pem::Error,
    },
    /// PEM text held no item of the kind wanted (no certificate, no private key).
    #[error("no {what} found in {file}")]
    Missing {
        /// The file (or argument) concerned.
        file: String,
        /// What was looked for: `certificate` or `private key`.
        what: &'static str,
    },
    /// A CA certificate could not be used as a trust root.
    #[error("unusable CA certificate: {0}")]
    BadCa(#[source] rustls::Error),
    /// A certificate verifier could not be built from the CA.
    #[error("cannot build a certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    /// rustls refused the configuration (e.g. the key does not match the certificate, or is
    /// of an unsupported type).
    #[error("invalid TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// A certificate does not verify against the CA for [`SERVER_NAME`] (wrong CA, expired,
    /// missing name).
    #[error("certificate not valid for {SERVER_NAME} under the cluster CA: {0}")]
    Untrusted(#[source] rustls::Error),
}

/// A node's TLS identity: the cluster CA (the only trust root), its own certificate chain and
/// its private key.
pub struct Identity {
    /// Trust roots: peers must present a chain ending at one of these.
    ca: Vec<CertificateDer<'static>>,
    /// This node's certificate, leaf first, as presented to peers.
    chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf certificate.
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads the three PEM files of `paths`. An error names the file that is missing, cannot
    /// be parsed or holds no certificate or key.
    pub fn load(paths: &CertPaths) -> Result<Self, TlsError> {
        let ca = read(&paths.ca)?;
        let cert = read(&paths.cert)?;
        let key = read(&paths.key)?;
        Ok(Self {
            ca: certs_from_pem(&ca, &paths.ca.display().to_string())?,
            chain: certs_from_pem(&cert, &paths.cert.display().to_string())?,
            key: key_from_pem(&key, &paths.key.display().to_string())?,
        })
    }

    /// Builds an identity from PEM text: the CA certificate(s), this node's chain (leaf
    /// first) and its private key.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Self, TlsError> {
        Ok(Self {
            ca: certs_from_pem(ca.as_bytes(), "the CA PEM")?,
            chain: certs_from_pem(cert.as_bytes(), "the certificate PEM")?,
            key: key_from_pem(key.as_bytes(), "the key PEM")?,
        })
    }

    /// The trust roots (the cluster CA).
    pub fn ca(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }

    /// This node's certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Checks that this node's own chain verifies against its CA for [`SERVER_NAME`] now, so a
    /// node can refuse to start with certificates its peers would reject.
    pub fn check(&self) -> Result<(), TlsError> {
        match self.chain.split_first() {
            Some((leaf, intermediates)) => verify_chain(&self.ca, leaf, intermediates),
            None => Err(TlsError::Missing {
                file: "the identity".to_owned(),
                what: "certificate",
            }),
        }
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("ca", &self.ca.len())
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The rustls server configuration of a node: TLS 1.3, `alpn` only, and a client certificate
/// required and verified against the CA.
pub fn server_crypto(id: &Identity, alpn: &[u8]) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&id.ca)?, provider.clone()).build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The rustls configuration of a core's admin HTTPS: TLS 1.3, ALPN `http/1.1`, this node's
/// certificate, and a client certificate *optional* but, when one is presented, verified
/// against the cluster CA (a certificate from another CA fails the handshake). Whether the
/// peer presented one is read from the connection after the handshake.
pub fn https_server_crypto(id: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&id.ca)?, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The rustls client configuration of a node: TLS 1.3, `alpn` only, the server verified
/// against the CA, and this node's certificate presented.
pub fn client_crypto(id: &Identity, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(roots(&id.ca)?, provider.clone()).build()?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Config)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Checks that `cert` (a leaf, no intermediates) verifies against `ca` for [`SERVER_NAME`].
pub fn verify_node_cert(
    ca: &[CertificateDer<'static>],
    cert: &CertificateDer<'_>,
) -> Result<(), TlsError> {
    verify_chain(ca, cert, &[])
}

/// The crypto provider of every configuration: `ring`, never the process default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A root store holding exactly the CA certificates.
fn roots(ca: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in ca {
        store.add(cert.clone()).map_err(TlsError::BadCa)?;
    }
    Ok(Arc::new(store))
}

/// Verifies a chain the way a client of the cluster does.
fn verify_chain(
    ca: &[CertificateDer<'static>],
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider()).build()?;
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(TlsError::Untrusted)
}

/// Reads a whole PEM file.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        file: path.to_owned(),
        error,
    })
}

/// Every certificate in `pem` (at least one).
fn certs_from_pem(pem: &[u8], file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            file: file.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            file: file.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
fn key_from_pem(pem: &[u8], file: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::Missing {
            file: file.to_owned(),
            what: "private key",
        },
        error => TlsError::Pem {
            file: file.to_owned(),
            error,
        },
    })
}
