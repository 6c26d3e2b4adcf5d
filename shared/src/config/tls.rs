//! TLS options of a client listener (`listeners.ssl.<name>.ssl_options`, and the same under
//! `wss`), in EMQX's names: certificate and key files, client certificates, versions and
//! cipher suites, ALPN, session resumption, OCSP stapling, several certificates by SNI.
//!
//! Types only; turning them into a rustls server configuration is `crate::tls::server`.
//! The key password is a secret: it is left out of `Debug`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether and how clients present certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// No client certificate is asked for (EMQX's `verify_none`).
    #[default]
    #[serde(alias = "verify_none")]
    None,
    /// A client certificate is asked for and, when sent, must verify against `cacertfile`;
    /// a client without one is let in (EMQX's `verify_peer` with `fail_if_no_peer_cert =
    /// false`).
    #[serde(alias = "verify_peer")]
    Optional,
    /// Every client must send a certificate that verifies against `cacertfile`.
    Required,
}

/// Which part of a verified client certificate becomes the client's username or client id
/// (EMQX's `peer_cert_as_username` / `peer_cert_as_clientid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum PeerCertAs {
    /// Not taken from the certificate.
    #[default]
    Disabled,
    /// The subject's common name.
    Cn,
    /// The subject's distinguished name (`CN=...,O=...` as RFC 4514 writes it).
    Dn,
    /// The certificate's DER, base64.
    Crt,
    /// The certificate as PEM.
    Pem,
    /// The MD5 of the certificate's DER, lower-case hex.
    Md5,
}

/// One more certificate, sent to clients that ask for `server_name` (SNI).
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SniCertificate {
    /// The host name clients send in SNI (exact, case-insensitive; `*.example.com` matches
    /// one label).
    pub server_name: String,
    /// PEM certificate chain (leaf first).
    pub certfile: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; PKCS#8 may be encrypted with `password`).
    pub keyfile: Option<PathBuf>,
    /// Password of an encrypted PKCS#8 key.
    pub password: Option<String>,
}

impl std::fmt::Debug for SniCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniCertificate")
            .field("server_name", &self.server_name)
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// TLS settings of one `ssl` or `wss` listener.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SslOptions {
    /// PEM certificate chain (leaf first) sent to clients.
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile` (PKCS#8, PKCS#1 or SEC1; PKCS#8 may be encrypted).
    pub keyfile: Option<PathBuf>,
    /// Password of an encrypted PKCS#8 `keyfile` (`-----BEGIN ENCRYPTED PRIVATE KEY-----`).
    pub password: Option<String>,
    /// PEM CA certificates that client certificates must chain to.
    pub cacertfile: Option<PathBuf>,
    /// Client certificates: `none`, `optional` or `required` (EMQX's `verify_none` /
    /// `verify_peer` are accepted too).
    pub verify: Verify,
    /// With `verify = "optional"` (`verify_peer`): refuse clients without a certificate
    /// (EMQX's name; the same as `verify = "required"`).
    pub fail_if_no_peer_cert: bool,
    /// Most intermediate certificates a client may send after its own.
    pub depth: u32,
    /// PEM CRL files; a client certificate they revoke is refused. When set, the CRL of the
    /// CA that issued a client's certificate must be among them (a client whose issuer has
    /// none is refused, as is every client of a CA whose CRL is past its nextUpdate);
    /// intermediates are not checked. A change starts new session tickets.
    pub crlfile: Vec<PathBuf>,
    /// TLS versions offered: `tlsv1.3`, `tlsv1.2`.
    pub versions: Vec<String>,
    /// Cipher suites offered (IANA or OpenSSL names), in preference order; empty: every suite
    /// of the versions, AES-128-GCM first. A list naming no TLS 1.3 suite turns TLS 1.3 off.
    pub ciphers: Vec<String>,
    /// The server's order of `ciphers` decides, not the client's (EMQX's
    /// `honor_cipher_order`, on by default).
    pub honor_cipher_order: bool,
    /// ALPN protocols accepted; unset: `mqtt` on ssl listeners, `http/1.1` on wss. A client
    /// that offers none is accepted; one that offers only others is refused.
    pub alpn: Option<Vec<String>>,
    /// Session resumption: TLS 1.3 tickets and a TLS 1.2 session cache (EMQX's
    /// `reuse_sessions`).
    pub reuse_sessions: bool,
    /// A DER OCSP response for `certfile`, stapled to handshakes (refreshed with the
    /// certificate; produce it with `openssl ocsp ... -respout`).
    pub ocsp_response_file: Option<PathBuf>,
    /// More certificates chosen by the name clients send (SNI); `certfile` answers the rest.
    pub sni: Vec<SniCertificate>,
    /// Milliseconds from TCP accept to a finished TLS handshake (EMQX's
    /// `handshake_timeout`, 15 s).
    pub handshake_timeout_ms: u64,
    /// Milliseconds between checks of the certificate, key, CA, CRL and OCSP files: a
    /// changed file is loaded for new handshakes (0: only on SIGHUP or the API).
    pub reload_interval_ms: u64,
}

impl Default for SslOptions {
    fn default() -> Self {
        SslOptions {
            certfile: None,
            keyfile: None,
            password: None,
            cacertfile: None,
            verify: Verify::None,
            fail_if_no_peer_cert: false,
            depth: 10,
            crlfile: Vec::new(),
            versions: vec!["tlsv1.3".into(), "tlsv1.2".into()],
            ciphers: Vec::new(),
            honor_cipher_order: true,
            alpn: None,
            reuse_sessions: true,
            ocsp_response_file: None,
            sni: Vec::new(),
            handshake_timeout_ms: 15_000,
            reload_interval_ms: 5_000,
        }
    }
}

impl std::fmt::Debug for SslOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SslOptions")
            .field("certfile", &self.certfile)
            .field("keyfile", &self.keyfile)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cacertfile", &self.cacertfile)
            .field("verify", &self.verify)
            .field("fail_if_no_peer_cert", &self.fail_if_no_peer_cert)
            .field("depth", &self.depth)
            .field("crlfile", &self.crlfile)
            .field("versions", &self.versions)
            .field("ciphers", &self.ciphers)
            .field("honor_cipher_order", &self.honor_cipher_order)
            .field("alpn", &self.alpn)
            .field("reuse_sessions", &self.reuse_sessions)
            .field("ocsp_response_file", &self.ocsp_response_file)
            .field("sni", &self.sni)
            .field("handshake_timeout_ms", &self.handshake_timeout_ms)
            .field("reload_interval_ms", &self.reload_interval_ms)
            .finish()
    }
}

/// What the client-certificate check comes to once `fail_if_no_peer_cert` is folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates.
    None,
    /// Verified when sent; clients without one are let in.
    Optional,
    /// Every client needs a verified certificate.
    Required,
}

impl SslOptions {
    /// The effective client-certificate check.
    pub fn client_auth(&self) -> ClientAuth {
        match (self.verify, self.fail_if_no_peer_cert) {
            (Verify::None, _) => ClientAuth::None,
            (Verify::Optional, false) => ClientAuth::Optional,
            (Verify::Optional, true) | (Verify::Required, _) => ClientAuth::Required,
        }
    }

    /// A problem a TLS listener with these options cannot start with, as (key under
    /// `ssl_options`, reason); file contents are checked when the listener loads them.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.certfile.is_none() {
            return Err(("certfile", "a TLS listener needs a certificate".into()));
        }
        if self.keyfile.is_none() {
            return Err((
                "keyfile",
                "a TLS listener needs the certificate's key".into(),
            ));
        }
        if self.client_auth() != ClientAuth::None && self.cacertfile.is_none() {
            return Err((
                "cacertfile",
                "client certificates (verify) need the CA that issues them".into(),
            ));
        }
        if self.versions.is_empty() {
            return Err(("versions", "at least one of tlsv1.3, tlsv1.2".into()));
        }
        if let Some(v) = self
            .versions
            .iter()
            .find(|v| !matches!(v.to_ascii_lowercase().as_str(), "tlsv1.3" | "tlsv1.2"))
        {
            return Err((
                "versions",
                format!("{v:?} is not offered: tlsv1.3 and tlsv1.2 are (older ones are unsafe)"),
            ));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(("handshake_timeout_ms", "must be greater than 0".into()));
        }
        for (i, s) in self.sni.iter().enumerate() {
            if s.server_name.trim().is_empty() || s.certfile.is_none() || s.keyfile.is_none() {
                return Err((
                    "sni",
                    format!("entry {i} needs server_name, certfile and keyfile"),
                ));
            }
        }
        Ok(())
    }
}
