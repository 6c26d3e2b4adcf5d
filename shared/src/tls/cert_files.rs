//! Reading a TLS listener's PEM and DER files: certificate chains, CA bundles, CRLs and the
//! OCSP response, each bounded in size, each error naming the file.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use super::TlsLoadError;

/// The largest file read (a big CA bundle is a few hundred KiB).
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What a file's modification time and size were when last looked at (`None`: could not
/// be looked at).
pub(crate) type Stamp = Option<(SystemTime, u64)>;

/// The modification time and size of `path` now.
pub(crate) fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The whole file, refused when larger than [`MAX_FILE_BYTES`].
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsLoadError> {
    let err = |error| TlsLoadError::Read {
        file: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut out = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(err)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(TlsLoadError::Parse {
            file: path.to_owned(),
            reason: format!("larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Every certificate in the PEM bytes of `file` (at least one), in file order.
pub(crate) fn certs(
    bytes: &[u8],
    file: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsLoadError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(file, e))?;
    if certs.is_empty() {
        return Err(TlsLoadError::Missing {
            file: file.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// A root store of every certificate in the PEM bytes of the CA `file`.
pub(crate) fn roots(bytes: &[u8], file: &Path) -> Result<RootCertStore, TlsLoadError> {
    let mut store = RootCertStore::empty();
    for cert in certs(bytes, file)? {
        store.add(cert).map_err(|e| TlsLoadError::BadCa {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// Every CRL in the PEM bytes of `file` (at least one).
pub(crate) fn crls(
    bytes: &[u8],
    file: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsLoadError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(file, e))?;
    if crls.is_empty() {
        return Err(TlsLoadError::Missing {
            file: file.to_owned(),
            what: "CRL (-----BEGIN X509 CRL-----)",
        });
    }
    Ok(crls)
}

/// A PEM parse error naming the file.
pub(crate) fn pem_error(file: &Path, error: pem::Error) -> TlsLoadError {
    TlsLoadError::Parse {
        file: PathBuf::from(file),
        reason: error.to_string(),
    }
}
