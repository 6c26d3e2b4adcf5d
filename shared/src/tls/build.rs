//! Turning `ssl_options` and the files it names into a rustls `ServerConfig`: read every
//! file once (bounded), check the key against its certificate, build the SNI resolver and
//! the client-certificate check, restrict versions and suites, and fingerprint what was read
//! so a reload can tell whether anything changed.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::cert_files::{certs, crls, read, roots};
use super::key_file::key_from_pem;
use super::sni::SniResolver;
use super::{TlsLoadError, client_verify, crl_select, suites};
use crate::config::tls::{ClientAuth, SslOptions};

/// A built configuration and what it was built from.
pub(crate) struct Built {
    /// The configuration for new handshakes, without resumption
    /// ([`Resumption::apply`](super::resumption::Resumption::apply)).
    pub(crate) config: ServerConfig,
    /// SHA-256 over every file read (names and contents): equal means nothing changed.
    pub(crate) fingerprint: [u8; 32],
    /// SHA-256 over the client-certificate trust files (CA, CRLs): when it changes, sessions
    /// made under the old trust must not resume (a revoked client would skip the check).
    pub(crate) trust: [u8; 32],
    /// DER of the default certificate's leaf, for the summary.
    pub(crate) leaf: Vec<u8>,
    /// The `nextUpdate`s of the CRLs in use (Unix seconds, ascending): from each on, every
    /// client of that CA is refused, and sessions resumed from before must not skip the check.
    pub(crate) crl_expiries: Vec<i64>,
}

/// Files read for one build, fingerprinted as they are read.
struct Reader {
    hash: Sha256,
    trust: Sha256,
}

impl Reader {
    fn read(&mut self, path: &Path) -> Result<Vec<u8>, TlsLoadError> {
        let bytes = read(path)?;
        self.hash.update(path.as_os_str().as_encoded_bytes());
        self.hash.update((bytes.len() as u64).to_be_bytes());
        self.hash.update(&bytes);
        Ok(bytes)
    }

    /// Reads a file that decides which client certificates are accepted.
    fn read_trust(&mut self, path: &Path) -> Result<Vec<u8>, TlsLoadError> {
        let bytes = self.read(path)?;
        self.trust.update(path.as_os_str().as_encoded_bytes());
        self.trust.update((bytes.len() as u64).to_be_bytes());
        self.trust.update(&bytes);
        Ok(bytes)
    }
}

/// Builds the server configuration `options` describe.
pub(crate) fn build(options: &SslOptions, alpn: &[Vec<u8>]) -> Result<Built, TlsLoadError> {
    options
        .check()
        .map_err(|(key, reason)| TlsLoadError::Option { key, reason })?;
    let mut provider = rustls::crypto::ring::default_provider();
    let versions = suites::restrict(&mut provider, &options.versions, &options.ciphers)?;
    let provider = Arc::new(provider);
    let mut files = Reader {
        hash: Sha256::new(),
        trust: Sha256::new(),
    };

    let (certfile, keyfile) = match (&options.certfile, &options.keyfile) {
        (Some(c), Some(k)) => (c, k),
        // check() refused these already.
        _ => {
            return Err(TlsLoadError::Option {
                key: "certfile",
                reason: "a TLS listener needs a certificate and its key".into(),
            });
        }
    };
    let mut default = certified_key(
        &mut files,
        certfile,
        keyfile,
        options.password.as_deref(),
        &provider,
    )?;
    if let Some(ocsp) = &options.ocsp_response_file {
        let bytes = files.read(ocsp)?;
        if bytes.is_empty() {
            return Err(TlsLoadError::Missing {
                file: ocsp.clone(),
                what: "OCSP response",
            });
        }
        default.ocsp = Some(bytes);
    }
    let leaf = default
        .end_entity_cert()
        .map(|c| c.to_vec())
        .map_err(|e| TlsLoadError::Config(e.to_string()))?;
    let mut names = Vec::with_capacity(options.sni.len());
    for entry in &options.sni {
        let (Some(c), Some(k)) = (&entry.certfile, &entry.keyfile) else {
            continue; // check() refused this already
        };
        let key = certified_key(&mut files, c, k, entry.password.as_deref(), &provider)?;
        names.push((entry.server_name.trim().to_ascii_lowercase(), Arc::new(key)));
    }
    let resolver = Arc::new(SniResolver {
        default: Arc::new(default),
        names,
    });

    let (verifier, crl_expiries) = client_verifier(&mut files, options, provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsLoadError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.to_vec();
    config.ignore_client_order = options.honor_cipher_order;
    Ok(Built {
        config,
        fingerprint: files.hash.finalize().into(),
        trust: files.trust.finalize().into(),
        leaf,
        crl_expiries,
    })
}

/// A certificate chain with its key, checked to belong together.
fn certified_key(
    files: &mut Reader,
    certfile: &Path,
    keyfile: &Path,
    password: Option<&str>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsLoadError> {
    let chain = certs(&files.read(certfile)?, certfile)?;
    let key_bytes = pkcs8::der::zeroize::Zeroizing::new(files.read(keyfile)?);
    let key = key_from_pem(&key_bytes, keyfile, password)?;
    let signing =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsLoadError::BadKey {
                file: keyfile.to_owned(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err(TlsLoadError::KeyMismatch {
            cert: certfile.to_owned(),
            key: keyfile.to_owned(),
        }),
    }
}

/// The client-certificate check `verify` asks for, and when its CRLs expire.
fn client_verifier(
    files: &mut Reader,
    options: &SslOptions,
    provider: Arc<CryptoProvider>,
) -> Result<(Arc<dyn ClientCertVerifier>, Vec<i64>), TlsLoadError> {
    let auth = options.client_auth();
    if auth == ClientAuth::None {
        return Ok((WebPkiClientVerifier::no_client_auth(), Vec::new()));
    }
    let Some(cafile) = &options.cacertfile else {
        return Err(TlsLoadError::Option {
            key: "cacertfile",
            reason: "client certificates (verify) need the CA that issues them".into(),
        });
    };
    let store = roots(&files.read_trust(cafile)?, cafile)?;
    let mut revoked = Vec::new();
    for file in &options.crlfile {
        let listed = crls(&files.read_trust(file)?, file)?;
        revoked.extend(listed.into_iter().map(|der| (file.clone(), der)));
    }
    let (revoked, expires) = crl_select::latest_per_issuer(revoked)?;
    let verifier = client_verify::build(store, revoked, auth, options.depth, provider)?;
    Ok((verifier, expires))
}
