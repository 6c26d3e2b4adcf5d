//! The cluster CA and the node certificates, as PEM files in one directory.
//!
//! Layout of a certificate directory: `ca.pem` + `ca.key` (the cluster CA) and, per node,
//! `<node>.pem` + `<node>.key`. Key files are written with mode 0600, every file through a
//! temporary file and a rename, so a crash never leaves a half-written file behind.
//!
//! Owns generation only. A CA found in the directory is reused, so nodes can be added later;
//! it is rebuilt from `ca.key` and the fixed CA name that [`generate`] always uses (rcgen is
//! built without its certificate parser), and every certificate issued is checked against
//! `ca.pem` before it is written, so a CA made elsewhere fails loudly instead of producing
//! certificates no peer would accept. It never deletes files, never overwrites an existing
//! CA, and holds no state between calls; it is not meant for two processes generating into
//! the same directory at once.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::SERVER_NAME;
use super::tls::{self, TlsError};

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Subject common name of the cluster CA. Fixed: a reused CA is rebuilt from it.
const CA_COMMON_NAME: &str = "meshmq cluster CA";
/// Subject organisation of the cluster CA and of every node certificate.
const ORGANIZATION: &str = "meshmq";
/// Validity of the CA, in years from the start of last year.
const CA_YEARS: i32 = 25;
/// Validity of a node certificate, in years from the start of last year.
const NODE_YEARS: i32 = 10;
/// Longest node name accepted (it becomes a file name and a DNS name).
const MAX_NODE_NAME: usize = 63;

/// Errors of certificate generation. Each names the file or node concerned.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory could not be read, written, created or renamed.
    #[error("certificate files: {path}: {error}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        error: io::Error,
    },
    /// A node name is not usable as a file name and DNS name (ASCII letters, digits, `-` and
    /// `.`, at most 63 characters, not starting or ending with `.` or `-`, not `ca`).
    #[error("invalid node name {node:?}: {reason}")]
    InvalidNode {
        /// The name as given.
        node: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Only one of `ca.pem` and `ca.key` exists: the CA can neither be reused nor replaced
    /// without invalidating certificates already issued.
    #[error("incomplete CA: {present} exists but {missing} does not")]
    IncompleteCa {
        /// The CA file that exists.
        present: PathBuf,
        /// The CA file that is missing.
        missing: PathBuf,
    },
    /// An existing CA file could not be parsed.
    #[error("cannot parse CA file {path}: {detail}")]
    BadCa {
        /// The file concerned.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// A certificate issued with the existing `ca.key` does not verify against `ca.pem` (the
    /// key belongs to another certificate, or the CA was not made by [`generate`]).
    #[error("CA in {dir} cannot issue usable certificates: {error}")]
    CaMismatch {
        /// The certificate directory.
        dir: PathBuf,
        /// Why the issued certificate was refused.
        #[source]
        error: TlsError,
    },
    /// rcgen failed to generate a key or to sign a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where a node finds its CA, certificate and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The cluster CA certificate (PEM), the only trust root.
    pub ca: PathBuf,
    /// The node's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The node's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl CertPaths {
    /// The paths [`generate`] uses for `node` in `dir` (whether they exist or not).
    pub fn in_dir(dir: &Path, node: &str) -> Self {
        Self {
            ca: dir.join(CA_CERT_FILE),
            cert: dir.join(format!("{node}.pem")),
            key: dir.join(format!("{node}.key")),
        }
    }
}

/// The CA able to sign: its issuer (name + key) and its certificate, to check what it signs.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

/// Writes `ca.pem` and `ca.key` into `out` (created if needed) unless both already exist, and
/// a fresh certificate and key for every node in `nodes`, replacing any it already had.
///
/// Node certificates carry the DNS names [`SERVER_NAME`], `localhost` and the node name, and
/// the IP addresses 127.0.0.1 and ::1; they are valid for both server and client auth.
pub fn generate(out: &Path, nodes: &[String]) -> Result<(), CertError> {
    for node in nodes {
        validate_node(node)?;
    }
    fs::create_dir_all(out).map_err(io_err(out))?;
    let ca = load_or_create_ca(out)?;
    for node in nodes {
        issue_node(out, &ca, node)?;
    }
    Ok(())
}

/// Returns the CA, certificate and key paths of `node` in `dir`, generating whatever is
/// missing first: nothing when the CA certificate and the node's certificate and key exist
/// (they are not rewritten, and the CA's private key need not be there: production nodes
/// get their certificates from a secret store and never hold the CA key), a node
/// certificate when only the CA (certificate and key) exists, everything in an empty
/// directory.
pub fn ensure_dev(dir: &Path, node: &str) -> Result<CertPaths, CertError> {
    validate_node(node)?;
    let paths = CertPaths::in_dir(dir, node);
    let wanted = [&paths.ca, &paths.cert, &paths.key];
    let mut all_there = true;
    for path in wanted {
        all_there &= path.try_exists().map_err(io_err(path))?;
    }
    if !all_there {
        generate(dir, &[node.to_owned()])?;
    }
    Ok(paths)
}

/// Checks that `node` is safe as a file name and valid as a DNS label sequence.
fn validate_node(node: &str) -> Result<(), CertError> {
    let invalid = |reason| {
        Err(CertError::InvalidNode {
            node: node.to_owned(),
            reason,
        })
    };
    if node.is_empty() {
        return invalid("empty");
    }
    if node.len() > MAX_NODE_NAME {
        return invalid("longer than 63 characters");
    }
    if node.starts_with(['.', '-']) || node.ends_with(['.', '-']) {
        return invalid("starts or ends with '.' or '-'");
    }
    if node.contains("..") {
        return invalid("contains '..'");
    }
    if !node
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    {
        return invalid("only ASCII letters, digits, '-' and '.' are allowed");
    }
    if node == "ca" {
        return invalid("'ca' is the CA's file name");
    }
    Ok(())
}

/// Reuses the CA in `dir` if both files exist, creates it if neither does.
fn load_or_create_ca(dir: &Path) -> Result<Ca, CertError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    let has_cert = cert_path.try_exists().map_err(io_err(&cert_path))?;
    let has_key = key_path.try_exists().map_err(io_err(&key_path))?;
    match (has_cert, has_key) {
        (true, true) => load_ca(&cert_path, &key_path),
        (false, false) => {
            let key = KeyPair::generate()?;
            let params = ca_params();
            let cert = params.self_signed(&key)?;
            // Key first: a crash in between leaves an incomplete CA, reported, never a
            // certificate whose key is lost.
            write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
            write_file(&cert_path, cert.pem().as_bytes(), false)?;
            Ok(Ca {
                issuer: Issuer::new(params, key),
                cert: cert.der().clone(),
            })
        }
        (true, false) => Err(CertError::IncompleteCa {
            present: cert_path,
            missing: key_path,
        }),
        (false, true) => Err(CertError::IncompleteCa {
            present: key_path,
            missing: cert_path,
        }),
    }
}

/// Loads an existing CA: its certificate as is, its issuer rebuilt from the key.
fn load_ca(cert_path: &Path, key_path: &Path) -> Result<Ca, CertError> {
    let key_pem = fs::read_to_string(key_path).map_err(io_err(key_path))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::BadCa {
        path: key_path.to_owned(),
        detail: e.to_string(),
    })?;
    let cert_pem = fs::read(cert_path).map_err(io_err(cert_path))?;
    let cert = CertificateDer::from_pem_slice(&cert_pem).map_err(|e| CertError::BadCa {
        path: cert_path.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(Ca {
        issuer: Issuer::new(ca_params(), key),
        cert,
    })
}

/// Signs a new key for `node`, checks the result against the CA, writes both files.
fn issue_node(dir: &Path, ca: &Ca, node: &str) -> Result<(), CertError> {
    let key = KeyPair::generate()?;
    let cert = node_params(node)?.signed_by(&key, &ca.issuer)?;
    tls::verify_node_cert(std::slice::from_ref(&ca.cert), cert.der()).map_err(|error| {
        CertError::CaMismatch {
            dir: dir.to_owned(),
            error,
        }
    })?;
    let paths = CertPaths::in_dir(dir, node);
    write_file(&paths.key, key.serialize_pem().as_bytes(), true)?;
    write_file(&paths.cert, cert.pem().as_bytes(), false)?;
    Ok(())
}

/// The CA's parameters. Deterministic in everything an issuer uses (name, key usages, key
/// identifier method), which is what lets an existing CA be rebuilt from its key.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_YEARS);
    params
}

/// A node certificate's parameters: the cluster name, loopback names and the node's own.
fn node_params(node: &str) -> Result<CertificateParams, CertError> {
    let mut sans = vec![SERVER_NAME.to_owned()];
    for san in ["localhost", "127.0.0.1", "::1", node] {
        if !sans.iter().any(|s| s == san) {
            sans.push(san.to_owned());
        }
    }
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = name(node);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_YEARS);
    Ok(params)
}

/// A subject name: `CN=<common_name>, O=meshmq`.
fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// Sets the validity: from January 1st of last year (tolerates clock skew) to `years` later.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Average Gregorian year; an error of a day only shifts the start within last year.
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year - 1 + years, 1, 1);
}

/// Writes `contents` to `path` through a temporary file and a rename; `private` files get
/// mode 0600 (on Unix).
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let file_name = path
        .file_name()
        .map_or_else(|| "cert".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Maps an I/O error on `path` into [`CertError::Io`].
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CertError + '_ {
    move |error| CertError::Io {
        path: path.to_owned(),
        error,
    }
}
