//! `--tls`: the rustls client configuration built from `--cafile`, `--certfile`/`--keyfile`,
//! `--insecure`, `--sni`, `--alpn` and `--tls-resume`, with the ring provider passed
//! explicitly (the process-wide default provider is never installed or consulted, like the
//! rest of the workspace), and the count of full and resumed handshakes.
//!
//! Trust: the CA file if given, else the system bundle (`SSL_CERT_FILE` or
//! `/etc/ssl/certs/ca-certificates.crt`); `--insecure` accepts any certificate but still
//! checks the handshake signatures. The server name sent (SNI) and checked against the
//! certificate is `--sni` or the host. Without `--tls-resume` every handshake is a full one
//! (rustls's own session cache is turned off); with it each client resumes its own
//! session, see [`resume`]. It reads files only
//! in [`TlsClient::new`].

mod any_cert;
pub mod resume;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail, ensure};
use rustls::client::Resumption;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::BoxStream;
use any_cert::AnyCert;
use resume::Resumer;

/// The TLS settings of a run (the command-line flags).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// CA certificates (PEM) to trust.
    pub cafile: Option<PathBuf>,
    /// Client certificate chain (PEM), for brokers that ask for one.
    pub certfile: Option<PathBuf>,
    /// Private key of the client certificate (PEM).
    pub keyfile: Option<PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
    /// Server name to send and to check the certificate against (default: the host).
    pub sni: Option<String>,
    /// ALPN protocols offered, in order of preference (none: no ALPN extension).
    pub alpn: Vec<String>,
    /// Resume TLS sessions (tickets / session ids) from loadtest's own store.
    pub resume: bool,
}

/// Handshakes completed, by kind (shared by every clone of a [`TlsClient`]).
#[derive(Debug, Default)]
pub struct HandshakeCounts {
    full: AtomicU64,
    resumed: AtomicU64,
}

/// A snapshot of [`HandshakeCounts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Full handshakes (with or without a HelloRetryRequest).
    pub full: u64,
    /// Resumed handshakes (TLS 1.3 PSK from a ticket, TLS 1.2 session id or ticket).
    pub resumed: u64,
}

impl Handshakes {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Handshakes) -> Handshakes {
        Handshakes {
            full: self.full.saturating_sub(earlier.full),
            resumed: self.resumed.saturating_sub(earlier.resumed),
        }
    }
}

/// A ready TLS client configuration, cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    /// Per-address configurations with session stores (`--tls-resume`).
    resumer: Option<Arc<Resumer>>,
    /// `--sni`, parsed.
    sni: Option<ServerName<'static>>,
    counts: Arc<HandshakeCounts>,
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

/// Checks `--alpn` protocol names: 1 to 255 bytes each (RFC 7301).
fn alpn_protocols(names: &[String]) -> anyhow::Result<Vec<Vec<u8>>> {
    names
        .iter()
        .map(|n| {
            ensure!(
                !n.is_empty() && n.len() <= 255,
                "--alpn {n:?}: a protocol name is 1 to 255 bytes"
            );
            Ok(n.as_bytes().to_vec())
        })
        .collect()
}

impl TlsClient {
    /// Builds the configuration; fails on unreadable files, a key that does not fit, or a
    /// bad `--sni` / `--alpn`.
    pub fn new(opts: &TlsOptions) -> anyhow::Result<TlsClient> {
        let sni = opts
            .sni
            .as_ref()
            .map(|name| {
                ServerName::try_from(name.clone())
                    .with_context(|| format!("--sni {name:?} is not a DNS name or IP address"))
            })
            .transpose()?;
        let alpn = alpn_protocols(&opts.alpn)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        } else {
            let bundle = match &opts.cafile {
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
        let mut config = match (&opts.certfile, &opts.keyfile) {
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
        config.alpn_protocols = alpn;
        // Every handshake is a full one unless --tls-resume gives a store per address.
        config.resumption = Resumption::disabled();
        let config = Arc::new(config);
        Ok(TlsClient {
            connector: TlsConnector::from(config.clone()),
            resumer: opts.resume.then(|| Arc::new(Resumer::new(config))),
            sni,
            counts: Arc::default(),
        })
    }

    /// Runs the TLS handshake over `stream` (connected to `addr`) for server name `--sni`
    /// or else `host` (a DNS name or an IP), resuming `client`'s own session there with
    /// `--tls-resume`, and counts it by kind.
    pub async fn wrap(
        &self,
        stream: BoxStream,
        host: &str,
        addr: SocketAddr,
        client: &str,
    ) -> anyhow::Result<BoxStream> {
        let name = match &self.sni {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .with_context(|| format!("{host:?} is not a TLS server name"))?,
        };
        let connector = match &self.resumer {
            Some(r) => TlsConnector::from(r.config_for(addr, client)),
            None => self.connector.clone(),
        };
        let tls = connector
            .connect(name, stream)
            .await
            .context("TLS handshake")?;
        let counter = match tls.get_ref().1.handshake_kind() {
            Some(HandshakeKind::Resumed) => &self.counts.resumed,
            _ => &self.counts.full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(tls))
    }

    /// Handshakes completed so far by every clone of this client.
    pub fn handshakes(&self) -> Handshakes {
        Handshakes {
            full: self.counts.full.load(Ordering::Relaxed),
            resumed: self.counts.resumed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_needs_no_files_and_half_a_client_cert_is_refused() {
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        assert!(TlsClient::new(&insecure).is_ok());
        let half = TlsOptions {
            certfile: Some("/nonexistent.pem".into()),
            ..insecure
        };
        assert!(TlsClient::new(&half).is_err());
        let missing = TlsOptions {
            cafile: Some("/nonexistent-ca.pem".into()),
            ..TlsOptions::default()
        };
        assert!(TlsClient::new(&missing).is_err());
    }
}
