//! The table form of a stored password (`meshmq.tables.v1.PasswordHash`) and back.

use meshmq_proto::tables::PasswordHash;

use super::password::{Algorithm, MacFun, SaltPosition, StoredPassword};

/// Longest stored hash string accepted (a PHC or crypt string is well below).
pub const MAX_HASH_LEN: usize = 1024;
/// Longest stored salt accepted.
pub const MAX_SALT_LEN: usize = 1024;

/// Reads a table row's password; `Err` names what is wrong (never the hash itself).
pub fn from_row(p: &PasswordHash) -> Result<StoredPassword, String> {
    if p.hash.len() > MAX_HASH_LEN || p.salt.len() > MAX_SALT_LEN {
        return Err("password hash or salt too long".into());
    }
    let salt_position = || match p.salt_position.as_str() {
        "prefix" => Ok(SaltPosition::Prefix),
        "suffix" | "" => Ok(SaltPosition::Suffix),
        "disable" => Ok(SaltPosition::Disable),
        other => Err(format!("unknown salt_position {other:?}")),
    };
    let algorithm = match p.name.as_str() {
        "plain" => Algorithm::Plain,
        "sha256" => Algorithm::Sha256 {
            salt_position: salt_position()?,
        },
        "sha512" => Algorithm::Sha512 {
            salt_position: salt_position()?,
        },
        "pbkdf2" => Algorithm::Pbkdf2 {
            mac_fun: match p.mac_fun.as_str() {
                "sha256" => MacFun::Sha256,
                "sha512" => MacFun::Sha512,
                other => return Err(format!("unknown mac_fun {other:?}")),
            },
            iterations: p.iterations,
            dk_length: (p.dk_length != 0).then_some(p.dk_length),
        },
        "bcrypt" => Algorithm::Bcrypt {
            salt_rounds: p.salt_rounds,
        },
        "argon2id" => Algorithm::Argon2id,
        "mosquitto_sha512" => Algorithm::MosquittoSha512,
        "mosquitto_pbkdf2" => Algorithm::MosquittoPbkdf2,
        other => return Err(format!("unknown password hash algorithm {other:?}")),
    };
    Ok(StoredPassword {
        algorithm,
        hash: p.hash.clone(),
        salt: p.salt.clone(),
    })
}

/// The table row of a stored password.
pub fn to_row(s: &StoredPassword) -> PasswordHash {
    let mut p = PasswordHash {
        hash: s.hash.clone(),
        salt: s.salt.clone(),
        ..Default::default()
    };
    let position = |sp: &SaltPosition| {
        match sp {
            SaltPosition::Prefix => "prefix",
            SaltPosition::Suffix => "suffix",
            SaltPosition::Disable => "disable",
        }
        .to_owned()
    };
    match &s.algorithm {
        Algorithm::Plain => p.name = "plain".into(),
        Algorithm::Sha256 { salt_position } => {
            p.name = "sha256".into();
            p.salt_position = position(salt_position);
        }
        Algorithm::Sha512 { salt_position } => {
            p.name = "sha512".into();
            p.salt_position = position(salt_position);
        }
        Algorithm::Pbkdf2 {
            mac_fun,
            iterations,
            dk_length,
        } => {
            p.name = "pbkdf2".into();
            p.mac_fun = match mac_fun {
                MacFun::Sha256 => "sha256",
                MacFun::Sha512 => "sha512",
            }
            .into();
            p.iterations = *iterations;
            p.dk_length = dk_length.unwrap_or(0);
        }
        Algorithm::Bcrypt { salt_rounds } => {
            p.name = "bcrypt".into();
            p.salt_rounds = *salt_rounds;
        }
        Algorithm::Argon2id => p.name = "argon2id".into(),
        Algorithm::MosquittoSha512 => p.name = "mosquitto_sha512".into(),
        Algorithm::MosquittoPbkdf2 => p.name = "mosquitto_pbkdf2".into(),
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::hash;

    #[test]
    fn every_algorithm_survives_the_table_form() {
        for a in [
            Algorithm::Plain,
            Algorithm::Sha256 {
                salt_position: SaltPosition::Prefix,
            },
            Algorithm::Sha512 {
                salt_position: SaltPosition::Disable,
            },
            Algorithm::Pbkdf2 {
                mac_fun: MacFun::Sha256,
                iterations: 3,
                dk_length: Some(20),
            },
            Algorithm::Bcrypt { salt_rounds: 4 },
            Algorithm::Argon2id,
            Algorithm::MosquittoSha512,
            Algorithm::MosquittoPbkdf2,
        ] {
            let s = hash(&a, b"pw", [1; 16]).expect("hashes");
            assert_eq!(from_row(&to_row(&s)), Ok(s));
        }
    }

    #[test]
    fn unknown_names_and_oversized_rows_are_refused() {
        let row = |name: &str| PasswordHash {
            name: name.into(),
            ..Default::default()
        };
        assert!(from_row(&row("md4")).is_err());
        assert!(
            from_row(&PasswordHash {
                mac_fun: "md5".into(),
                ..row("pbkdf2")
            })
            .is_err()
        );
        assert!(
            from_row(&PasswordHash {
                salt_position: "middle".into(),
                ..row("sha256")
            })
            .is_err()
        );
        assert!(
            from_row(&PasswordHash {
                hash: "x".repeat(MAX_HASH_LEN + 1),
                ..row("plain")
            })
            .is_err()
        );
    }
}
