//! A throw-away certificate authority for tests, the load generator and the development
//! cluster: ECDSA P-256 certificates for servers and clients, intermediates, CRLs, and
//! password-encrypted PKCS#8 keys. Keys are made in memory with the `ring` generator and
//! never persisted except by the `write_*` helpers. Not for production: keys are
//! unprotected on disk and the key-derivation strength of [`encrypt_key_pem`] is low.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// PBKDF2 rounds of [`encrypt_key_pem`]: low, so that debug-build tests stay fast.
const DEV_PBKDF2_ROUNDS: u32 = 2048;

/// Errors making certificates or writing them.
#[derive(Debug, thiserror::Error)]
pub enum DevCaError {
    /// rcgen refused the parameters or could not sign.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {}: {error}", file.display())]
    Write {
        /// The file concerned.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        error: std::io::Error,
    },
    /// A PEM given back to the CA (to revoke, to encrypt) could not be parsed.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// A certificate authority (root or intermediate) that issues P-256 certificates.
pub struct DevCa {
    /// Signs certificates and CRLs.
    issuer: Issuer<'static, KeyPair>,
    /// This CA's own certificate, PEM.
    cert_pem: String,
    /// The certificates between this CA and the root, this CA's first, PEM (empty for a
    /// root): appended to every leaf so that clients get the whole chain.
    chain_pem: String,
    /// Serial number of the next certificate.
    next_serial: AtomicU64,
    /// Number of the next CRL.
    next_crl: AtomicU64,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new self-signed root CA with common name `name`, valid from an hour ago for ten
    /// years.
    pub fn new(name: &str) -> Result<DevCa, DevCaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(name)?;
        let cert = params.self_signed(&key)?;
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            chain_pem: String::new(),
            next_serial: AtomicU64::new(1),
            next_crl: AtomicU64::new(1),
        })
    }

    /// An intermediate CA named `name`, issued by this one. Its leaves carry the
    /// intermediates in their PEM chain; clients trust the root's [`ca_pem`](Self::ca_pem).
    pub fn intermediate(&self, name: &str) -> Result<DevCa, DevCaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(name)?;
        params.serial_number = Some(self.serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_pem = cert.pem();
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            chain_pem: format!("{cert_pem}{}", self.chain_pem),
            cert_pem,
            next_serial: AtomicU64::new(1),
            next_crl: AtomicU64::new(1),
        })
    }

    /// This CA's certificate, PEM: the trust root to give clients (or `cacertfile`).
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses; the first is also the
    /// CN), as (chain PEM, PKCS#8 key PEM).
    pub fn server(&self, names: &[&str]) -> Result<(String, String), DevCaError> {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = dn(names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(params)
    }

    /// A server certificate for `names` over an existing key (PEM, PKCS#8: e.g. an RSA 2048
    /// key from `openssl genpkey`, which `ring` cannot generate); returns the chain PEM.
    pub fn server_for_key(&self, names: &[&str], key_pem: &str) -> Result<String, DevCaError> {
        let key = KeyPair::from_pem(key_pem)?;
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = dn(names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (chain, _) = self.sign(params, &key)?;
        Ok(chain)
    }

    /// A client certificate with common name `cn` (subject `CN=cn,O=meshmq dev`), as (chain
    /// PEM, PKCS#8 key PEM).
    pub fn client(&self, cn: &str) -> Result<(String, String), DevCaError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(params)
    }

    /// A CRL signed by this CA revoking the leaf certificates of `revoked` (PEM, as returned
    /// by [`client`](Self::client) or [`server`](Self::server)), valid for a week.
    pub fn crl(&self, revoked: &[&str]) -> Result<String, DevCaError> {
        self.crl_until(revoked, OffsetDateTime::now_utc() + Duration::days(7))
    }

    /// Like [`crl`](Self::crl), with its `nextUpdate` at `next_update` (in the past: an
    /// expired CRL).
    pub fn crl_until(
        &self,
        revoked: &[&str],
        next_update: OffsetDateTime,
    ) -> Result<String, DevCaError> {
        let now = OffsetDateTime::now_utc();
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for pem in revoked {
            revoked_certs.push(RevokedCertParams {
                serial_number: leaf_serial(pem)?,
                revocation_time: now - Duration::minutes(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            });
        }
        let params = CertificateRevocationListParams {
            this_update: (now - Duration::minutes(1)).min(next_update - Duration::days(1)),
            next_update,
            crl_number: SerialNumber::from(self.next_crl.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }

    /// Writes [`ca_pem`](Self::ca_pem) to `dir/ca.pem`.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, DevCaError> {
        write(&dir.join("ca.pem"), &self.cert_pem)
    }

    /// Writes a server certificate for `names` to `dir/{stem}.pem` and its key to
    /// `dir/{stem}.key`; returns both paths.
    pub fn write_server(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> Result<(PathBuf, PathBuf), DevCaError> {
        let (cert, key) = self.server(names)?;
        write_pair(dir, stem, &cert, &key)
    }

    /// Writes a client certificate for `cn` to `dir/{stem}.pem` and its key to
    /// `dir/{stem}.key`; returns both paths.
    pub fn write_client(
        &self,
        dir: &Path,
        stem: &str,
        cn: &str,
    ) -> Result<(PathBuf, PathBuf), DevCaError> {
        let (cert, key) = self.client(cn)?;
        write_pair(dir, stem, &cert, &key)
    }

    /// Writes [`crl`](Self::crl) of `revoked` to `dir/{stem}.crl.pem`.
    pub fn write_crl(
        &self,
        dir: &Path,
        stem: &str,
        revoked: &[&str],
    ) -> Result<PathBuf, DevCaError> {
        write(&dir.join(format!("{stem}.crl.pem")), &self.crl(revoked)?)
    }

    /// Signs a leaf with a fresh P-256 key; returns (leaf + chain PEM, key PEM).
    fn leaf(&self, params: CertificateParams) -> Result<(String, String), DevCaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        self.sign(params, &key)
    }

    /// Signs a leaf for `key`; returns (leaf + chain PEM, key PEM).
    fn sign(
        &self,
        mut params: CertificateParams,
        key: &KeyPair,
    ) -> Result<(String, String), DevCaError> {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        params.serial_number = Some(self.serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            format!("{}{}", cert.pem(), self.chain_pem),
            key.serialize_pem(),
        ))
    }

    fn serial(&self) -> SerialNumber {
        SerialNumber::from(self.next_serial.fetch_add(1, Ordering::Relaxed))
    }
}

/// The files [`write_dev_tls`] wrote.
#[derive(Debug, Clone)]
pub struct DevTlsFiles {
    /// The CA certificate (`ca.pem`): `cacertfile` of the listener, trust root of clients.
    pub ca: PathBuf,
    /// The server certificate chain (`server.pem`).
    pub server_cert: PathBuf,
    /// The server key (`server.key`, PKCS#8).
    pub server_key: PathBuf,
    /// An empty CRL of the CA (`ca.crl.pem`), to be replaced by one that revokes.
    pub crl: PathBuf,
    /// Per client: (common name, `client-<cn>.pem`, `client-<cn>.key`).
    pub clients: Vec<(String, PathBuf, PathBuf)>,
}

/// Writes a complete development set into `dir` with a new CA (whose key is not kept): the
/// CA, a server certificate for `server_names`, an empty CRL, and one client certificate per
/// common name in `clients` (names are used in file names: keep them to `[A-Za-z0-9_.-]`).
pub fn write_dev_tls(
    dir: &Path,
    server_names: &[&str],
    clients: &[&str],
) -> Result<DevTlsFiles, DevCaError> {
    let ca = DevCa::new("meshmq dev client CA")?;
    let ca_path = ca.write_ca(dir)?;
    let (server_cert, server_key) = ca.write_server(dir, "server", server_names)?;
    let crl = ca.write_crl(dir, "ca", &[])?;
    let mut written = Vec::with_capacity(clients.len());
    for cn in clients {
        if !cn
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            || cn.starts_with('.')
        {
            return Err(DevCaError::Parse {
                what: "client name",
                reason: format!("{cn:?} is not usable in a file name"),
            });
        }
        let (cert, key) = ca.write_client(dir, &format!("client-{cn}"), cn)?;
        written.push(((*cn).to_owned(), cert, key));
    }
    Ok(DevTlsFiles {
        ca: ca_path,
        server_cert,
        server_key,
        crl,
        clients: written,
    })
}

/// `key_pem` (unencrypted PKCS#8, as [`DevCa::server`] returns) encrypted with `password`
/// as `-----BEGIN ENCRYPTED PRIVATE KEY-----` (PBES2: PBKDF2-SHA256, AES-256-CBC), the
/// format `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes.
pub fn encrypt_key_pem(key_pem: &str, password: &str) -> Result<String, DevCaError> {
    let parse = |reason: String| DevCaError::Parse {
        what: "PKCS#8 key",
        reason,
    };
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| parse(e.to_string()))?;
    let info = pkcs8::PrivateKeyInfoRef::try_from(der.secret_pkcs8_der())
        .map_err(|e| parse(e.to_string()))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    let random = rustls::crypto::ring::default_provider().secure_random;
    random
        .fill(&mut salt)
        .and_then(|()| random.fill(&mut iv))
        .map_err(|e| parse(format!("no randomness: {e:?}")))?;
    let params = pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(DEV_PBKDF2_ROUNDS, &salt, iv)
        .map_err(|e| parse(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, password.as_bytes())
        .map_err(|e| parse(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| parse(e.to_string()))?;
    Ok(pem.as_str().to_owned())
}

fn ca_params(name: &str) -> Result<CertificateParams, DevCaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = dn(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    Ok(params)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "meshmq dev");
    dn.push(DnType::CommonName, cn);
    dn
}

/// The serial number of the first certificate in `pem`.
fn leaf_serial(pem: &str) -> Result<SerialNumber, DevCaError> {
    let parse = |reason: String| DevCaError::Parse {
        what: "certificate to revoke",
        reason,
    };
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| parse(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| parse(e.to_string()))?;
    let raw = cert.raw_serial();
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    Ok(SerialNumber::from_slice(&raw[start..]))
}

fn write(path: &Path, text: &str) -> Result<PathBuf, DevCaError> {
    std::fs::write(path, text).map_err(|error| DevCaError::Write {
        file: path.to_owned(),
        error,
    })?;
    Ok(path.to_owned())
}

fn write_pair(
    dir: &Path,
    stem: &str,
    cert: &str,
    key: &str,
) -> Result<(PathBuf, PathBuf), DevCaError> {
    Ok((
        write(&dir.join(format!("{stem}.pem")), cert)?,
        write(&dir.join(format!("{stem}.key")), key)?,
    ))
}
