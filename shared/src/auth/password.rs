//! Password hashes as the built-in user database stores them, in the formats EMQX and
//! mosquitto write, so that their exports import as they are.
//!
//! A stored credential is a [`StoredPassword`]: the algorithm with its parameters, the hash
//! and the salt, exactly as EMQX's user export has them (`password_hash`, `salt`), or a
//! mosquitto `password_file` line's hash (`$6$` salted SHA-512, `$7$` PBKDF2-SHA512).
//! [`verify`] answers whether a password matches; [`hash`] makes a new credential.
//!
//! Every comparison of secret-derived bytes is constant-time. Nothing here logs, and no
//! error carries the password or the hash. The slow algorithms (bcrypt, PBKDF2, Argon2)
//! must be run off the async runtime by the caller (a bounded blocking pool).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Where a simple hash puts the salt (EMQX's `salt_position`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SaltPosition {
    /// `hash(salt ++ password)`.
    Prefix,
    /// `hash(password ++ salt)` (EMQX's default).
    #[default]
    Suffix,
    /// No salt: `hash(password)`.
    Disable,
}

/// The pseudo-random function of PBKDF2 (EMQX's `mac_fun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MacFun {
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

/// A hash algorithm with its parameters (EMQX's `password_hash_algorithm`, plus the two
/// mosquitto formats, which carry their parameters inside the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Algorithm {
    /// The password itself (only for migrations; never the default).
    Plain,
    /// SHA-256 of the password and salt, lowercase hex.
    Sha256 {
        /// Where the salt goes.
        #[serde(default)]
        salt_position: SaltPosition,
    },
    /// SHA-512 of the password and salt, lowercase hex.
    Sha512 {
        /// Where the salt goes.
        #[serde(default)]
        salt_position: SaltPosition,
    },
    /// PBKDF2, lowercase hex of the derived key.
    Pbkdf2 {
        /// The HMAC.
        mac_fun: MacFun,
        /// Iterations (EMQX's default 4096).
        #[serde(default = "default_iterations")]
        iterations: u32,
        /// Derived key length in bytes; the MAC's output length when absent.
        #[serde(default)]
        dk_length: Option<u32>,
    },
    /// bcrypt (`$2a$`/`$2b$`/`$2y$`); the hash string carries cost and salt.
    Bcrypt {
        /// Cost (log2 rounds) for new hashes (EMQX's `salt_rounds`, default 10).
        #[serde(default = "default_bcrypt_rounds")]
        salt_rounds: u32,
    },
    /// Argon2id in PHC string form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    Argon2id,
    /// mosquitto `$6$`: base64 salt, base64 SHA-512(password ++ salt).
    MosquittoSha512,
    /// mosquitto `$7$`: iterations, base64 salt, base64 PBKDF2-HMAC-SHA512 (64 bytes).
    MosquittoPbkdf2,
}

fn default_iterations() -> u32 {
    4096
}

fn default_bcrypt_rounds() -> u32 {
    10
}

/// Most PBKDF2 work accepted from stored data or settings: iterations × output blocks (one
/// HMAC per iteration per block of the MAC's size), about a second of one core. A hash
/// from a file or the API must not be able to make one CONNECT cost minutes of CPU.
pub const MAX_PBKDF2_WORK: u64 = 1_000_000;
/// Longest PBKDF2 derived key accepted.
pub const MAX_DK_LENGTH: u32 = 1024;
/// Highest bcrypt cost accepted (2^16 rounds: about 5 s of one core).
pub const MAX_BCRYPT_COST: u32 = 16;
/// Lowest bcrypt cost the bcrypt format allows.
pub const MIN_BCRYPT_COST: u32 = 4;
/// Highest Argon2 memory cost accepted from stored data, in KiB (64 MiB per check).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 65_536;
/// Highest Argon2 time cost accepted from stored data.
pub const MAX_ARGON2_TIME: u32 = 8;
/// Highest Argon2 parallelism accepted from stored data.
pub const MAX_ARGON2_LANES: u32 = 16;

/// A user's stored credential. Its `Debug` shows the algorithm only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPassword {
    /// How `hash` was made.
    pub algorithm: Algorithm,
    /// The hash as stored (hex for the simple hashes and PBKDF2; the whole crypt / PHC /
    /// mosquitto string for the others).
    pub hash: String,
    /// The salt as stored (its bytes are used as they are, as EMQX does); empty when the
    /// algorithm keeps the salt in `hash`.
    pub salt: String,
}

impl std::fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPassword")
            .field("algorithm", &self.algorithm)
            .field("hash", &"<redacted>")
            .field("salt", &"<redacted>")
            .finish()
    }
}

/// Why a stored credential cannot be checked (a corrupt or unsupported row, not a wrong
/// password). Never carries the hash or the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The stored hash is not in the algorithm's format.
    #[error("stored hash is not a valid {0} hash")]
    Malformed(&'static str),
    /// A parameter is out of the accepted range.
    #[error("{0}")]
    OutOfRange(&'static str),
}

/// Whether `password` matches `stored`. Constant-time in the compared bytes.
pub fn verify(stored: &StoredPassword, password: &[u8]) -> Result<bool, HashError> {
    let salt = stored.salt.as_bytes();
    match &stored.algorithm {
        // Digests of both sides: equal lengths, so not even the length is compared early.
        Algorithm::Plain => Ok(ct_eq(
            &Sha256::digest(stored.hash.as_bytes()),
            &Sha256::digest(password),
        )),
        Algorithm::Sha256 { salt_position } => {
            let got = simple::<Sha256>(password, salt, *salt_position);
            hex_eq(&stored.hash, &got, "sha256")
        }
        Algorithm::Sha512 { salt_position } => {
            let got = simple::<Sha512>(password, salt, *salt_position);
            hex_eq(&stored.hash, &got, "sha512")
        }
        Algorithm::Pbkdf2 {
            mac_fun,
            iterations,
            dk_length,
        } => {
            let got = pbkdf2_key(*mac_fun, password, salt, *iterations, *dk_length)?;
            hex_eq(&stored.hash, &got, "pbkdf2")
        }
        Algorithm::Bcrypt { .. } => {
            let cost = bcrypt_cost(&stored.hash)?;
            if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
                return Err(HashError::OutOfRange("bcrypt cost must be 4..=16"));
            }
            bcrypt::verify(password, &stored.hash).map_err(|_| HashError::Malformed("bcrypt"))
        }
        Algorithm::Argon2id => argon2_verify(&stored.hash, password),
        Algorithm::MosquittoSha512 => {
            let (salt, want) = mosquitto6(&stored.hash)?;
            let got = simple::<Sha512>(password, &salt, SaltPosition::Suffix);
            Ok(ct_eq(&want, &got))
        }
        Algorithm::MosquittoPbkdf2 => {
            let (iterations, salt, want) = mosquitto7(&stored.hash)?;
            let len = u32::try_from(want.len()).map_err(|_| HashError::Malformed("$7$"))?;
            let got = pbkdf2_key(MacFun::Sha512, password, &salt, iterations, Some(len))?;
            Ok(ct_eq(&want, &got))
        }
    }
}

/// A new credential for `password` with `algorithm`; `salt` is fresh random bytes from the
/// caller (hex-encoded into the stored salt for the simple hashes and PBKDF2, as EMQX does).
pub fn hash(
    algorithm: &Algorithm,
    password: &[u8],
    salt: [u8; 16],
) -> Result<StoredPassword, HashError> {
    let hex_salt = to_hex(&salt);
    let (hash, salt) = match algorithm {
        Algorithm::Plain => (
            String::from_utf8(password.to_vec())
                .map_err(|_| HashError::OutOfRange("a plain password must be UTF-8"))?,
            String::new(),
        ),
        Algorithm::Sha256 { salt_position } | Algorithm::Sha512 { salt_position } => {
            let salt = if *salt_position == SaltPosition::Disable {
                String::new()
            } else {
                hex_salt
            };
            let bytes = if matches!(algorithm, Algorithm::Sha256 { .. }) {
                simple::<Sha256>(password, salt.as_bytes(), *salt_position)
            } else {
                simple::<Sha512>(password, salt.as_bytes(), *salt_position)
            };
            (to_hex(&bytes), salt)
        }
        Algorithm::Pbkdf2 {
            mac_fun,
            iterations,
            dk_length,
        } => {
            let key = pbkdf2_key(
                *mac_fun,
                password,
                hex_salt.as_bytes(),
                *iterations,
                *dk_length,
            )?;
            (to_hex(&key), hex_salt)
        }
        Algorithm::Bcrypt { salt_rounds } => {
            check_params(algorithm)?;
            let parts = bcrypt::hash_with_salt(password, *salt_rounds, salt)
                .map_err(|_| HashError::OutOfRange("bcrypt could not hash this password"))?;
            (
                parts.format_for_version(bcrypt::Version::TwoB),
                String::new(),
            )
        }
        Algorithm::Argon2id => (argon2_hash(password, &salt)?, String::new()),
        Algorithm::MosquittoSha512 => {
            let digest = simple::<Sha512>(password, &salt, SaltPosition::Suffix);
            (
                format!("$6${}${}", B64.encode(salt), B64.encode(digest)),
                String::new(),
            )
        }
        Algorithm::MosquittoPbkdf2 => {
            let iterations = 101;
            let key = pbkdf2_key(MacFun::Sha512, password, &salt, iterations, Some(64))?;
            (
                format!("$7${iterations}${}${}", B64.encode(salt), B64.encode(key)),
                String::new(),
            )
        }
    };
    Ok(StoredPassword {
        algorithm: algorithm.clone(),
        hash,
        salt,
    })
}

/// The algorithm of a mosquitto `password_file` hash (`$6$` or `$7$`), if it is one.
pub fn mosquitto_algorithm(hash: &str) -> Option<Algorithm> {
    if hash.starts_with("$6$") {
        Some(Algorithm::MosquittoSha512)
    } else if hash.starts_with("$7$") {
        Some(Algorithm::MosquittoPbkdf2)
    } else {
        None
    }
}

fn simple<D: Digest>(password: &[u8], salt: &[u8], position: SaltPosition) -> Vec<u8> {
    let mut d = D::new();
    match position {
        SaltPosition::Prefix => {
            d.update(salt);
            d.update(password);
        }
        SaltPosition::Suffix => {
            d.update(password);
            d.update(salt);
        }
        SaltPosition::Disable => d.update(password),
    }
    d.finalize().to_vec()
}

fn pbkdf2_key(
    mac: MacFun,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    dk_length: Option<u32>,
) -> Result<Vec<u8>, HashError> {
    let len = pbkdf2_len(mac, iterations, dk_length)?;
    let mut out = vec![0u8; len];
    match mac {
        MacFun::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        MacFun::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
    }
    Ok(out)
}

/// The derived key length of PBKDF2 with these parameters, if they are within bounds.
fn pbkdf2_len(mac: MacFun, iterations: u32, dk_length: Option<u32>) -> Result<usize, HashError> {
    let block = match mac {
        MacFun::Sha256 => 32,
        MacFun::Sha512 => 64,
    };
    let len = dk_length.unwrap_or(block);
    if len == 0 || len > MAX_DK_LENGTH {
        return Err(HashError::OutOfRange("pbkdf2 dk_length must be 1..=1024"));
    }
    let work = u64::from(iterations) * u64::from(len.div_ceil(block));
    if iterations == 0 || work > MAX_PBKDF2_WORK {
        return Err(HashError::OutOfRange(
            "pbkdf2 iterations x key blocks must be 1..=1000000",
        ));
    }
    Ok(len as usize)
}

/// Checks an algorithm's settings without hashing anything (cheap; for the configuration
/// and for rows written to the table).
pub fn check_params(algorithm: &Algorithm) -> Result<(), HashError> {
    match algorithm {
        Algorithm::Pbkdf2 {
            mac_fun,
            iterations,
            dk_length,
        } => pbkdf2_len(*mac_fun, *iterations, *dk_length).map(|_| ()),
        Algorithm::Bcrypt { salt_rounds } => {
            if (MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(salt_rounds) {
                Ok(())
            } else {
                Err(HashError::OutOfRange("bcrypt salt_rounds must be 4..=16"))
            }
        }
        _ => Ok(()),
    }
}

/// Checks a stored credential's format and costs without hashing anything: what
/// [`verify`] would refuse as unusable is refused here.
pub fn check_stored(stored: &StoredPassword) -> Result<(), HashError> {
    let hex = || {
        from_hex(&stored.hash)
            .map(|_| ())
            .ok_or(HashError::Malformed("hex"))
    };
    match &stored.algorithm {
        Algorithm::Plain => Ok(()),
        Algorithm::Sha256 { .. } | Algorithm::Sha512 { .. } => hex(),
        Algorithm::Pbkdf2 {
            mac_fun,
            iterations,
            dk_length,
        } => {
            pbkdf2_len(*mac_fun, *iterations, *dk_length)?;
            hex()
        }
        // The stored string carries its cost; `salt_rounds` is for new hashes only.
        Algorithm::Bcrypt { .. } => {
            let cost = bcrypt_cost(&stored.hash)?;
            if (MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
                Ok(())
            } else {
                Err(HashError::OutOfRange("bcrypt cost must be 4..=16"))
            }
        }
        Algorithm::Argon2id => argon2_params(&stored.hash).map(|_| ()),
        Algorithm::MosquittoSha512 => mosquitto6(&stored.hash).map(|_| ()),
        Algorithm::MosquittoPbkdf2 => {
            let (iterations, _, key) = mosquitto7(&stored.hash)?;
            let len = u32::try_from(key.len()).map_err(|_| HashError::Malformed("$7$"))?;
            pbkdf2_len(MacFun::Sha512, iterations, Some(len)).map(|_| ())
        }
    }
}

/// Parses an Argon2id PHC string and checks its costs.
fn argon2_params(phc: &str) -> Result<argon2::PasswordHash, HashError> {
    let parsed = argon2::PasswordHash::new(phc).map_err(|_| HashError::Malformed("argon2id"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(HashError::Malformed("argon2id"));
    }
    let params = argon2::Params::try_from(&parsed).map_err(|_| HashError::Malformed("argon2id"))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_TIME
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return Err(HashError::OutOfRange(
            "argon2id parameters above m=65536, t=8, p=16",
        ));
    }
    Ok(parsed)
}

fn argon2_verify(phc: &str, password: &[u8]) -> Result<bool, HashError> {
    use argon2::PasswordVerifier as _;
    let parsed = argon2_params(phc)?;
    Ok(argon2::Argon2::default()
        .verify_password(password, &parsed)
        .is_ok())
}

fn argon2_hash(password: &[u8], salt: &[u8; 16]) -> Result<String, HashError> {
    use argon2::PasswordHasher as _;
    argon2::Argon2::default()
        .hash_password_with_salt(password, salt)
        .map(|h| h.to_string())
        .map_err(|_| HashError::OutOfRange("argon2 could not hash this password"))
}

/// The cost of a `$2?$NN$...` bcrypt string.
fn bcrypt_cost(hash: &str) -> Result<u32, HashError> {
    let bad = || HashError::Malformed("bcrypt");
    let mut parts = hash.split('$');
    let (Some(""), Some(_version), Some(cost)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    cost.parse().map_err(|_| bad())
}

/// `$6$<b64 salt>$<b64 sha512>` → (salt, digest).
fn mosquitto6(s: &str) -> Result<(Vec<u8>, Vec<u8>), HashError> {
    let bad = || HashError::Malformed("$6$");
    let rest = s.strip_prefix("$6$").ok_or_else(bad)?;
    let (salt, digest) = rest.split_once('$').ok_or_else(bad)?;
    let salt = B64.decode(salt).map_err(|_| bad())?;
    let digest = B64.decode(digest).map_err(|_| bad())?;
    if digest.len() != 64 {
        return Err(bad());
    }
    Ok((salt, digest))
}

/// `$7$<iterations>$<b64 salt>$<b64 key>` → (iterations, salt, key).
fn mosquitto7(s: &str) -> Result<(u32, Vec<u8>, Vec<u8>), HashError> {
    let bad = || HashError::Malformed("$7$");
    let rest = s.strip_prefix("$7$").ok_or_else(bad)?;
    let mut parts = rest.splitn(3, '$');
    let iterations: u32 = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
    let salt = B64
        .decode(parts.next().ok_or_else(bad)?)
        .map_err(|_| bad())?;
    let key = B64
        .decode(parts.next().ok_or_else(bad)?)
        .map_err(|_| bad())?;
    if key.is_empty() || key.len() > MAX_DK_LENGTH as usize {
        return Err(bad());
    }
    Ok((iterations, salt, key))
}

/// Compares a stored hex hash (either case, as EMQX does) with computed bytes.
fn hex_eq(stored_hex: &str, got: &[u8], what: &'static str) -> Result<bool, HashError> {
    let want = from_hex(stored_hex).ok_or(HashError::Malformed(what))?;
    Ok(ct_eq(&want, got))
}

/// Constant-time equality (lengths are not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}
