//! SCRAM stored credentials (RFC 5802 section 3, RFC 7677): what the built-in database keeps
//! for a SCRAM user (salt, iteration count, StoredKey, ServerKey), how they are made from a
//! password ([`credentials`], the one slow step: PBKDF2, run when a user is created, never
//! at login), and their table form (a `PasswordHash` row named `scram_sha256` /
//! `scram_sha512`). The exchange itself is [`super::scram_exchange`].
//!
//! Nothing here logs; `Debug` of [`Credentials`] hides the keys and the salt; keys are
//! compared in constant time.

use meshmq_proto::tables::PasswordHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::password::MAX_PBKDF2_WORK;

/// The hash of a SCRAM mechanism (EMQX's `algorithm`): `sha256` is SCRAM-SHA-256,
/// `sha512` SCRAM-SHA-512.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ScramAlgorithm {
    /// SCRAM-SHA-256 (RFC 7677).
    #[default]
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// Most iterations accepted (settings and stored rows): the PBKDF2 bound of the password
/// hashes ([`MAX_PBKDF2_WORK`]; SCRAM derives one block).
pub const MAX_ITERATIONS: u32 = MAX_PBKDF2_WORK as u32;
/// Longest salt accepted from a stored row.
pub const MAX_SALT_LEN: usize = 256;
/// Salt length for new credentials (bytes); callers draw it at random.
pub const SALT_LEN: usize = 16;

/// The row names of SCRAM credentials in `PasswordHash.name`.
const ROW_SHA256: &str = "scram_sha256";
const ROW_SHA512: &str = "scram_sha512";

impl ScramAlgorithm {
    /// The MQTT Authentication Method (SASL mechanism name) of this algorithm.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramAlgorithm::Sha256 => "SCRAM-SHA-256",
            ScramAlgorithm::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The algorithm of an Authentication Method; `None` for any other method.
    pub fn from_mechanism(method: &str) -> Option<Self> {
        match method {
            "SCRAM-SHA-256" => Some(ScramAlgorithm::Sha256),
            "SCRAM-SHA-512" => Some(ScramAlgorithm::Sha512),
            _ => None,
        }
    }

    /// Output length of the hash (and of every key and proof), in bytes.
    pub fn output_len(self) -> usize {
        match self {
            ScramAlgorithm::Sha256 => 32,
            ScramAlgorithm::Sha512 => 64,
        }
    }

    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
            ScramAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, data)`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        use hmac::{KeyInit, Mac};
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        match self {
            ScramAlgorithm::Sha256 => hmac::Hmac::<Sha256>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            ScramAlgorithm::Sha512 => hmac::Hmac::<Sha512>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this HMAC, one block. Slow by design: callers
    /// run it off the async runtime.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            ScramAlgorithm::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
            }
            ScramAlgorithm::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
            }
        }
        out
    }

    fn row_name(self) -> &'static str {
        match self {
            ScramAlgorithm::Sha256 => ROW_SHA256,
            ScramAlgorithm::Sha512 => ROW_SHA512,
        }
    }
}

/// A SCRAM user's stored credentials. Its `Debug` shows the algorithm and iteration count
/// only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    pub algorithm: ScramAlgorithm,
    /// The salt sent to the client in server-first.
    pub salt: Vec<u8>,
    /// The iteration count sent to the client in server-first.
    pub iterations: u32,
    /// `H(ClientKey)`: checks the client's proof.
    pub stored_key: Vec<u8>,
    /// Signs the server-final message.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .field("salt", &"<redacted>")
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

/// Checks an iteration count (a setting or a stored row's): 1 ..= [`MAX_ITERATIONS`].
pub fn check_iterations(iterations: u32) -> Result<(), String> {
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(format!(
            "iteration count must be between 1 and {MAX_ITERATIONS}, got {iterations}"
        ));
    }
    Ok(())
}

/// The stored credentials of `password` (RFC 5802 section 3): SaltedPassword = Hi(password,
/// salt, iterations), StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
/// HMAC(SaltedPassword, "Server Key"). The password's bytes are used as they are (no
/// SASLprep: clients must send the same bytes). Costs `iterations` HMACs: run it off the
/// async runtime. `Err` says which parameter is out of range (never the password).
pub fn credentials(
    algorithm: ScramAlgorithm,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Result<Credentials, String> {
    check_iterations(iterations)?;
    if salt.is_empty() || salt.len() > MAX_SALT_LEN {
        return Err(format!("salt must be 1 to {MAX_SALT_LEN} bytes"));
    }
    let salted = algorithm.salted_password(password, salt, iterations);
    Ok(from_salted_password(algorithm, &salted, salt, iterations))
}

/// The stored credentials from an already salted password (tests, and [`credentials`]).
pub fn from_salted_password(
    algorithm: ScramAlgorithm,
    salted: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Credentials {
    let client_key = algorithm.hmac(salted, b"Client Key");
    Credentials {
        algorithm,
        salt: salt.to_vec(),
        iterations,
        stored_key: algorithm.hash(&client_key),
        server_key: algorithm.hmac(salted, b"Server Key"),
    }
}

/// Whether `password` matches stored SCRAM credentials (so a SCRAM user can also log in
/// with a plain password through `password_based:built_in_database`). Costs the stored
/// iteration count in HMACs: run it off the async runtime. Constant-time comparison.
pub fn verify_password(c: &Credentials, password: &[u8]) -> bool {
    let salted = c.algorithm.salted_password(password, &c.salt, c.iterations);
    let client_key = c.algorithm.hmac(&salted, b"Client Key");
    ct_eq(&c.algorithm.hash(&client_key), &c.stored_key)
}

/// Whether a `PasswordHash` row holds SCRAM credentials (by its name).
pub fn is_row(p: &PasswordHash) -> bool {
    p.name == ROW_SHA256 || p.name == ROW_SHA512
}

/// Reads SCRAM credentials from their table row; `Err` names what is wrong (never a key).
pub fn from_row(p: &PasswordHash) -> Result<Credentials, String> {
    let algorithm = match p.name.as_str() {
        ROW_SHA256 => ScramAlgorithm::Sha256,
        ROW_SHA512 => ScramAlgorithm::Sha512,
        other => return Err(format!("not SCRAM credentials: {other:?}")),
    };
    check_iterations(p.scram_iterations)?;
    if p.scram_salt.is_empty() || p.scram_salt.len() > MAX_SALT_LEN {
        return Err(format!("SCRAM salt must be 1 to {MAX_SALT_LEN} bytes"));
    }
    let len = algorithm.output_len();
    if p.scram_stored_key.len() != len || p.scram_server_key.len() != len {
        return Err(format!("SCRAM keys must be {len} bytes for {}", p.name));
    }
    Ok(Credentials {
        algorithm,
        salt: p.scram_salt.to_vec(),
        iterations: p.scram_iterations,
        stored_key: p.scram_stored_key.to_vec(),
        server_key: p.scram_server_key.to_vec(),
    })
}

/// The table row of SCRAM credentials.
pub fn to_row(c: &Credentials) -> PasswordHash {
    PasswordHash {
        name: c.algorithm.row_name().into(),
        scram_stored_key: c.stored_key.clone().into(),
        scram_server_key: c.server_key.clone().into(),
        scram_salt: c.salt.clone().into(),
        scram_iterations: c.iterations,
        ..Default::default()
    }
}

/// Constant-time equality (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    #[test]
    fn rfc7677_user_pencil_gives_the_keys_of_its_exchange() {
        // RFC 7677 section 3: salt W22ZaJ0SNY7soEsUEjb6gQ==, i = 4096, password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let c = credentials(ScramAlgorithm::Sha256, b"pencil", &salt, 4096).expect("made");
        assert_eq!(c.stored_key.len(), 32);
        assert!(verify_password(&c, b"pencil"));
        assert!(!verify_password(&c, b"pencil2"));
        assert_eq!(from_row(&to_row(&c)), Ok(c.clone()));
        assert!(!format!("{c:?}").contains(&format!("{:?}", c.stored_key)));
    }

    #[test]
    fn out_of_range_parameters_and_rows_are_refused() {
        let a = ScramAlgorithm::Sha512;
        assert!(credentials(a, b"pw", b"salt", 0).is_err());
        assert!(credentials(a, b"pw", b"salt", MAX_ITERATIONS + 1).is_err());
        assert!(credentials(a, b"pw", b"", 1).is_err());
        let good = to_row(&credentials(a, b"pw", b"salt", 2).expect("made"));
        assert!(from_row(&good).is_ok());
        let short_key = PasswordHash {
            scram_stored_key: vec![0; 32].into(),
            ..good.clone()
        };
        assert!(from_row(&short_key).is_err(), "sha512 keys are 64 bytes");
        let no_salt = PasswordHash {
            scram_salt: Default::default(),
            ..good.clone()
        };
        assert!(from_row(&no_salt).is_err());
        let huge = PasswordHash {
            scram_iterations: MAX_ITERATIONS + 1,
            ..good
        };
        assert!(from_row(&huge).is_err());
    }
}
