//! One API key as the `settings` table keeps it (namespace [`NS`], key = the key's name):
//! its id, a salted SHA-256 of its secret, and the fields the API shows. Also the rules on
//! names, ids and secrets, and the generation of new ids and secrets.
//!
//! Owns the stored form and the secret check. It never keeps a secret: only the salt and
//! the hash are stored, and `Debug` shows neither.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Namespace of the API keys in the `settings` table.
pub const NS: &str = "api_key";
/// Most API keys the cluster holds (a create past it is refused).
pub const MAX_KEYS: usize = 1000;
/// Longest name (EMQX's bound).
pub const MAX_NAME_LEN: usize = 256;
/// Longest description.
pub const MAX_DESC_LEN: usize = 1024;
/// Longest key id (generated ones are 22 characters).
pub const MAX_ID_LEN: usize = 64;
/// Shortest secret a person may choose (bootstrap file): 16 characters of a 94-letter
/// alphabet, far out of reach of guessing at the rate an HTTP listener answers.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret accepted.
pub const MAX_SECRET_LEN: usize = 128;
/// Bytes of randomness in a generated key id (128 bits).
const ID_BYTES: usize = 16;
/// Bytes of randomness in a generated secret (256 bits).
const SECRET_BYTES: usize = 32;
/// Prefix of every hashed secret: a hash made here is of no use anywhere else.
const HASH_DOMAIN: &[u8] = b"meshmq-api-key-v1\0";

/// An API key as stored (JSON in the row's value).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The public half (`api_key`).
    pub key_id: String,
    /// Random salt of the hash, hex.
    salt: String,
    /// SHA-256 of the domain, the salt and the secret, hex.
    hash: String,
    /// Free text.
    pub desc: String,
    /// A disabled key is refused.
    pub enable: bool,
    /// Unix seconds after which the key is refused; 0: never.
    pub expired_at: u64,
    /// Unix seconds of its creation.
    pub created_at: u64,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("enable", &self.enable)
            .field("expired_at", &self.expired_at)
            .finish_non_exhaustive()
    }
}

impl KeyRecord {
    /// A record for `key_id` and `secret`, with a fresh random salt.
    pub fn new(key_id: &str, secret: &str, desc: String, enable: bool, expired_at: u64) -> Self {
        let salt: [u8; 16] = rand::random();
        KeyRecord {
            key_id: key_id.to_owned(),
            salt: hex(&salt),
            hash: hex(&hash_secret(&salt, secret)),
            desc,
            enable,
            expired_at,
            created_at: crate::banned::now_s(),
        }
    }

    /// Whether `secret` is this key's, compared in constant time. A record whose salt or
    /// hash does not decode matches nothing.
    pub fn verify(&self, secret: &str) -> bool {
        let (Some(salt), Some(stored)) = (unhex(&self.salt), unhex(&self.hash)) else {
            return false;
        };
        hash_secret(&salt, secret).ct_eq(stored.as_slice()).into()
    }

    /// Whether the key has expired at `now` (unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expired_at != 0 && self.expired_at <= now
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored value; `None` if it is not one of ours.
    pub fn decode(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }
}

/// A new random key id and secret, URL-safe base64 (128 and 256 bits).
pub fn generate() -> (String, String) {
    let id: [u8; ID_BYTES] = rand::random();
    let secret: [u8; SECRET_BYTES] = rand::random();
    (URL_SAFE_NO_PAD.encode(id), URL_SAFE_NO_PAD.encode(secret))
}

/// EMQX's rule on names: a letter, then letters, digits, `-` and `_`; at most
/// [`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name must be 1 to {MAX_NAME_LEN} characters, a letter then letters, digits, `-` \
             or `_`"
        ));
    }
    Ok(())
}

/// A key id: 1 to [`MAX_ID_LEN`] of letters, digits, `-` and `_`.
pub fn check_key_id(id: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(ok) {
        return Err(format!(
            "an api_key must be 1 to {MAX_ID_LEN} letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// A chosen secret: [`MIN_SECRET_LEN`] to [`MAX_SECRET_LEN`] printable ASCII characters,
/// no `:` (the file's separator).
pub fn check_secret(secret: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_graphic() && b != b':';
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) || !secret.bytes().all(ok) {
        return Err(format!(
            "an api_secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} printable ASCII \
             characters without `:` (shorter secrets chosen by people can be guessed)"
        ));
    }
    Ok(())
}

/// SHA-256 of the domain, `salt` and `secret`.
fn hash_secret(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_verifies_its_secret_only_and_round_trips() {
        let (id, secret) = generate();
        assert!(
            id.len() >= 22 && secret.len() >= 43,
            "{} {}",
            id.len(),
            secret.len()
        );
        check_key_id(&id).expect("a generated id is valid");
        let r = KeyRecord::new(&id, &secret, "d".into(), true, 0);
        assert!(r.verify(&secret));
        assert!(!r.verify(&format!("{secret}x")));
        assert!(!r.verify(""));
        let back = KeyRecord::decode(&r.encode()).expect("decodes");
        assert_eq!(back, r);
        assert!(back.verify(&secret));
        let stored = String::from_utf8(r.encode()).expect("utf8");
        assert!(!stored.contains(&secret), "the secret is never stored");
        assert!(!format!("{r:?}").contains(&r.hash), "Debug hides the hash");
        // Same secret, another salt: another hash.
        let r2 = KeyRecord::new(&id, &secret, String::new(), true, 0);
        assert_ne!(r.hash, r2.hash);
    }

    #[test]
    fn names_ids_and_secrets_follow_the_rules() {
        for ok in ["a", "EMQX-API-KEY-3", "k_1"] {
            check_name(ok).expect(ok);
        }
        for bad in ["", "1abc", "-a", "a b", "a:b", "é", &"a".repeat(257)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_key_id("abc-_1").is_ok());
        assert!(check_key_id("a:b").is_err() && check_key_id("").is_err());
        assert!(check_secret("0123456789abcdef").is_ok());
        assert!(check_secret("short").is_err());
        assert!(check_secret("0123456789abcde:").is_err());
        assert!(check_secret("0123456789abcde ").is_err());
    }

    #[test]
    fn expiry_is_strict_and_zero_is_never() {
        let mut r = KeyRecord::new("id", "0123456789abcdef", String::new(), true, 0);
        assert!(!r.expired(u64::MAX));
        r.expired_at = 100;
        assert!(!r.expired(99));
        assert!(r.expired(100));
    }
}
