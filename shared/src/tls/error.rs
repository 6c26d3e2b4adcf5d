//! Why a TLS listener's files could not be turned into a server configuration. Every
//! variant names the file (or setting) at fault; none carries a password or key bytes.

use std::path::PathBuf;

/// An error loading or reloading a TLS listener's certificates, keys, CAs, CRLs or OCSP
/// response, or building its configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    /// A setting under `ssl_options` is missing or invalid.
    #[error("ssl_options.{key}: {reason}")]
    Option {
        /// The key under `ssl_options`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {error}", file.display())]
    Read {
        /// The file concerned.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        error: std::io::Error,
    },
    /// A file's PEM (or DER) content could not be parsed.
    #[error("cannot parse {}: {reason}", file.display())]
    Parse {
        /// The file concerned.
        file: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A file held nothing of the kind wanted.
    #[error("no {what} found in {}", file.display())]
    Missing {
        /// The file concerned.
        file: PathBuf,
        /// What was looked for (`certificate`, `private key`, `CRL`).
        what: &'static str,
    },
    /// A key encrypted the legacy OpenSSL way (`Proc-Type: 4,ENCRYPTED`), which is not
    /// supported.
    #[error(
        "{} is a legacy encrypted key (Proc-Type: 4,ENCRYPTED); convert it to encrypted \
         PKCS#8 with `openssl pkcs8 -topk8 -in old.key -out new.key` (-v2 aes-256-cbc)",
        file.display()
    )]
    LegacyEncryptedKey {
        /// The key file.
        file: PathBuf,
    },
    /// An encrypted PKCS#8 key and no password configured.
    #[error("{} is encrypted and no password is configured", file.display())]
    PasswordMissing {
        /// The key file.
        file: PathBuf,
    },
    /// An encrypted PKCS#8 key that the configured password does not open.
    #[error("cannot decrypt {}: wrong password or damaged key", file.display())]
    WrongPassword {
        /// The key file.
        file: PathBuf,
    },
    /// An encrypted PKCS#8 key with an encryption scheme this build cannot decrypt.
    #[error("cannot decrypt {}: {reason}", file.display())]
    UnsupportedEncryption {
        /// The key file.
        file: PathBuf,
        /// The scheme and why.
        reason: String,
    },
    /// A key of a type or curve the provider cannot sign with.
    #[error("unusable key in {}: {reason}", file.display())]
    BadKey {
        /// The key file.
        file: PathBuf,
        /// The provider's complaint.
        reason: String,
    },
    /// The key is not the private key of the certificate.
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A CA certificate cannot be a trust root.
    #[error("unusable CA certificate in {}: {reason}", file.display())]
    BadCa {
        /// The CA file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The client-certificate verifier could not be built (e.g. a CRL it cannot use).
    #[error("cannot build the client certificate check: {0}")]
    Verifier(String),
    /// A cipher suite name not known.
    #[error("ssl_options.ciphers: unknown cipher suite {name:?}; known: {known}")]
    UnknownCipher {
        /// The name as configured.
        name: String,
        /// The known names, comma separated.
        known: String,
    },
    /// The configured ciphers leave no suite for any configured version.
    #[error("ssl_options.ciphers: no cipher suite of the configured versions ({versions})")]
    NoSuites {
        /// The configured versions.
        versions: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}
