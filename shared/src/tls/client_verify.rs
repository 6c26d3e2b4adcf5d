//! The client-certificate check of a listener: webpki verification against `cacertfile`,
//! revocation by the CRL files, optional or required, and a limit on how many intermediate
//! certificates a client may present (`depth`).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};

use super::TlsLoadError;
use crate::config::tls::ClientAuth;

/// Builds the verifier: `Optional` lets clients without a certificate in, `Required` does
/// not; both refuse a certificate that does not chain to `roots`, is revoked by `crls` (when
/// there are any: then its issuer's CRL must be there and not expired), or comes with more
/// than `depth` intermediates.
pub(crate) fn build(
    roots: RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    auth: ClientAuth,
    depth: u32,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsLoadError> {
    // Revocation of the client's own certificate, as OpenSSL's crl_check and Erlang's
    // `{crl_check, peer}` do: its issuer's CRL must be among the files (a client whose
    // issuer has none is refused); intermediates are not looked up.
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .only_check_end_entity_revocation()
        // A CRL past its nextUpdate is refused, as OpenSSL does ("CRL has expired"): an
        // attacker who keeps a stale CRL in place must not keep a revoked client in.
        .enforce_revocation_expiration();
    if auth == ClientAuth::Optional {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder
        .build()
        .map_err(|e| TlsLoadError::Verifier(e.to_string()))?;
    Ok(Arc::new(DepthLimited {
        inner,
        max_intermediates: depth as usize,
    }))
}

/// Refuses chains longer than `max_intermediates` before webpki sees them, then defers.
#[derive(Debug)]
struct DepthLimited {
    /// The webpki verifier with roots and CRLs.
    inner: Arc<dyn ClientCertVerifier>,
    /// The most intermediates a client may present after its own certificate.
    max_intermediates: usize,
}

impl ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if intermediates.len() > self.max_intermediates {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(ChainTooLong {
                    presented: intermediates.len(),
                    allowed: self.max_intermediates,
                })),
            )));
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client presented more intermediates than `depth` allows.
#[derive(Debug, thiserror::Error)]
#[error(
    "client certificate chain has {presented} intermediates; ssl_options.depth allows {allowed}"
)]
struct ChainTooLong {
    presented: usize,
    allowed: usize,
}
