//! How an authenticator of the built-in database stores a password it is given in clear
//! (a user created or changed through the API, a `type=plain` import): `password_based`
//! hashes it with its `password_hash_algorithm`; `scram` derives RFC 5802 credentials with
//! its `algorithm` and `iteration_count`. Both with a fresh random 16-byte salt, always on
//! the hashing pool (the caller's job: [`NewPassword::is_cheap`] says whether it may skip it).

use meshmq_proto::tables::PasswordHash;
use meshmq_shared::auth::password::{self, Algorithm};
use meshmq_shared::auth::scram::{self, ScramAlgorithm};
use meshmq_shared::auth::stored;

/// The recipe of one authenticator.
#[derive(Debug, Clone)]
pub enum NewPassword {
    /// `password_based:built_in_database`.
    Hash(Algorithm),
    /// `scram:built_in_database`.
    Scram {
        /// SHA-256 or SHA-512.
        algorithm: ScramAlgorithm,
        /// PBKDF2 iterations.
        iterations: u32,
    },
}

impl NewPassword {
    /// The stored row of `password` (slow for bcrypt, PBKDF2, Argon2 and SCRAM).
    pub fn make(&self, password: &[u8]) -> Result<PasswordHash, String> {
        match self {
            NewPassword::Hash(a) => password::hash(a, password, rand::random())
                .map(|s| stored::to_row(&s))
                .map_err(|e| e.to_string()),
            NewPassword::Scram {
                algorithm,
                iterations,
            } => {
                let salt: [u8; 16] = rand::random();
                scram::credentials(*algorithm, password, &salt, *iterations)
                    .map(|c| scram::to_row(&c))
            }
        }
    }

    /// True when [`make`](Self::make) is cheap enough for the runtime's threads.
    pub fn is_cheap(&self) -> bool {
        match self {
            NewPassword::Hash(a) => super::builtin::is_cheap(a),
            NewPassword::Scram { .. } => false,
        }
    }

    /// The algorithm that names imported hashes (`type=hash`): only `password_based` has one.
    pub fn hash_algorithm(&self) -> Option<&Algorithm> {
        match self {
            NewPassword::Hash(a) => Some(a),
            NewPassword::Scram { .. } => None,
        }
    }
}
