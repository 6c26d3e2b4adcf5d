//! Reading a private key file: PKCS#8, PKCS#1 or SEC1 PEM, and encrypted PKCS#8 opened with
//! the configured password. Legacy OpenSSL-encrypted keys (`Proc-Type: 4,ENCRYPTED`) are
//! refused with the command that converts them. The password and the key bytes never reach
//! an error message or a log.

use std::path::Path;

use pkcs8::EncryptedPrivateKeyInfoRef;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::TlsLoadError;
use super::cert_files::pem_error;

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The private key in the PEM `bytes` of `path`.
pub(crate) fn key_from_pem(
    bytes: &[u8],
    path: &Path,
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, TlsLoadError> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsLoadError::LegacyEncryptedKey {
            file: path.to_owned(),
        });
    }
    if let Some(start) = text.find(ENCRYPTED_BEGIN) {
        let Some(end) = text[start..].find(ENCRYPTED_END) else {
            return Err(TlsLoadError::Parse {
                file: path.to_owned(),
                reason: format!("{ENCRYPTED_BEGIN} without {ENCRYPTED_END}"),
            });
        };
        let block = &text[start..start + end + ENCRYPTED_END.len()];
        let Some(password) = password else {
            return Err(TlsLoadError::PasswordMissing {
                file: path.to_owned(),
            });
        };
        return decrypt(block, path, password);
    }
    PrivateKeyDer::from_pem_slice(bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsLoadError::Missing {
            file: path.to_owned(),
            what: "private key",
        },
        error => pem_error(path, error),
    })
}

/// Opens one `ENCRYPTED PRIVATE KEY` PEM block with `password`.
fn decrypt(
    block: &str,
    path: &Path,
    password: &str,
) -> Result<PrivateKeyDer<'static>, TlsLoadError> {
    let (_label, der) =
        pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|e| TlsLoadError::Parse {
            file: path.to_owned(),
            reason: e.to_string(),
        })?;
    let info =
        EncryptedPrivateKeyInfoRef::try_from(der.as_slice()).map_err(|e| TlsLoadError::Parse {
            file: path.to_owned(),
            reason: format!("not an encrypted PKCS#8 key: {e}"),
        })?;
    match info.decrypt(password.as_bytes()) {
        Ok(doc) => Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            doc.as_bytes().to_vec(),
        ))),
        Err(pkcs8::Error::EncryptedPrivateKey(
            e @ (pkcs8::pkcs5::Error::UnsupportedAlgorithm { .. }
            | pkcs8::pkcs5::Error::NoPbes1CryptSupport
            | pkcs8::pkcs5::Error::AlgorithmParametersInvalid { .. }),
        )) => Err(TlsLoadError::UnsupportedEncryption {
            file: path.to_owned(),
            reason: format!("{e} (PBES2 with PBKDF2 or scrypt and AES-CBC is supported)"),
        }),
        // A bad padding, or a decryption that does not give a PKCS#8 structure: both what a
        // wrong password gives.
        Err(_) => Err(TlsLoadError::WrongPassword {
            file: path.to_owned(),
        }),
    }
}
