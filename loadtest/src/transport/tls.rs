//! `--tls`: the rustls client configuration built from `--cafile`, `--certfile`/`--keyfile`
//! and `--insecure`, with the ring provider passed explicitly (the process-wide default
//! provider is never installed or consulted, like the rest of the workspace).
//!
//! Trust: the CA file if given, else the system bundle (`SSL_CERT_FILE` or
//! `/etc/ssl/certs/ca-certificates.crt`); `--insecure` accepts any certificate but still
//! checks the handshake signatures. It reads files only in [`TlsClient::new`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use super::BoxStream;

/// Where the TLS material comes from (the command-line flags).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificates (PEM) to trust.
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (PEM), for brokers that ask for one.
    pub certfile: Option<PathBuf>,
    /// Private key of the client certificate (PEM).
    pub keyfile: Option<PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
}

/// A ready TLS client configuration, cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

impl TlsClient {
    /// Builds the configuration; fails on unreadable files or a key that does not fit.
    pub fn new(files: &TlsFiles) -> anyhow::Result<TlsClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = if files.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        } else {
            let bundle = match &files.cafile {
                Some(path) => path.clone(),
                None => std::env::var_os("SSL_CERT_FILE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(SYSTEM_BUNDLE)),
            };
            let mut roots = RootCertStore::empty();
            let certs = read_certs(&bundle).with_context(|| {
                "--tls needs trust roots: pass --cafile FILE (or --insecure)".to_owned()
            })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                bail!("no usable CA certificate in {}", bundle.display());
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&files.certfile, &files.keyfile) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("reading the private key {}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("client certificate and key do not fit")?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => bail!("--certfile and --keyfile go together"),
        };
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Runs the TLS handshake over `stream` for server name `host` (a DNS name or an IP).
    pub async fn wrap(&self, stream: BoxStream, host: &str) -> anyhow::Result<BoxStream> {
        let name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host:?} is not a TLS server name"))?;
        let tls = self
            .connector
            .connect(name, stream)
            .await
            .context("TLS handshake")?;
        Ok(Box::new(tls))
    }
}

/// `--insecure`: any certificate is accepted; handshake signatures are still verified.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_needs_no_files_and_half_a_client_cert_is_refused() {
        let insecure = TlsFiles {
            insecure: true,
            ..TlsFiles::default()
        };
        assert!(TlsClient::new(&insecure).is_ok());
        let half = TlsFiles {
            certfile: Some("/nonexistent.pem".into()),
            ..insecure
        };
        assert!(TlsClient::new(&half).is_err());
        let missing = TlsFiles {
            cafile: Some("/nonexistent-ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(TlsClient::new(&missing).is_err());
    }
}
