//! Known-answer tests: vectors computed with Python's hashlib (an independent
//! implementation) and the OpenBSD bcrypt test set, so a format mistake on our side cannot
//! pass by agreeing with itself.

use super::password::*;

const SALT: &str = "de1024f462fb83910fd13151bd4bd235";

fn stored(algorithm: Algorithm, hash: &str, salt: &str) -> StoredPassword {
    StoredPassword {
        algorithm,
        hash: hash.into(),
        salt: salt.into(),
    }
}

fn check(s: &StoredPassword) {
    assert_eq!(verify(s, b"public"), Ok(true), "{:?}", s.algorithm);
    assert_eq!(verify(s, b"Public"), Ok(false), "{:?}", s.algorithm);
    assert_eq!(verify(s, b""), Ok(false), "{:?}", s.algorithm);
}

#[test]
fn emqx_salted_sha_hashes_verify_in_either_hex_case() {
    let suffix = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let h = "68aa57d2163c75d08a6d60e832bbd1c08d94ceb59ed42881a1724cf34ceed22e";
    check(&stored(suffix.clone(), h, SALT));
    check(&stored(suffix, &h.to_uppercase(), SALT));
    let prefix = Algorithm::Sha256 {
        salt_position: SaltPosition::Prefix,
    };
    check(&stored(
        prefix,
        "0678f2237d6e570d7305ec197279b482addeaec41bb8eae7b6f5392688509051",
        SALT,
    ));
    let sha512 = Algorithm::Sha512 {
        salt_position: SaltPosition::Suffix,
    };
    check(&stored(
        sha512,
        "c9877e86cef50feb8561e00d0e5ad22e0731a7369da7e6509319e91b184793de4d9037bc28edd020911a89edef80258c947f03cd8e2f8c27801de621255dbcde",
        SALT,
    ));
}

#[test]
fn emqx_pbkdf2_hashes_verify_with_their_iterations_and_key_length() {
    let a = Algorithm::Pbkdf2 {
        mac_fun: MacFun::Sha256,
        iterations: 1000,
        dk_length: None,
    };
    check(&stored(
        a,
        "29c9858de52521c0b1ba6ec63f3f60b0a969b4974445c2fec46b171e132d7e4c",
        SALT,
    ));
    let b = Algorithm::Pbkdf2 {
        mac_fun: MacFun::Sha512,
        iterations: 4096,
        dk_length: Some(20),
    };
    check(&stored(b, "36f226b282845b5a87545aedaa51137c05de3464", SALT));
}

#[test]
fn mosquitto_password_file_hashes_verify() {
    let six = "$6$AAECAwQFBgcICQoL$34U5xYC4Zyw0XWKHwavnye2DRRkZq8CxdBehwr3P/oazR/8NVa10QsCYi2ZSNbeFbLdu0LexTgVERSconGiHRQ==";
    let seven = "$7$101$AAECAwQFBgcICQoL$70ySw2bqVKmZo0L14yHdiMbD2hrLqlhT6SmZS8fBjHeJeORs8B4rtbIivFLGRhixjVjF4Y9ED2ybmTUplCrFjQ==";
    assert_eq!(mosquitto_algorithm(six), Some(Algorithm::MosquittoSha512));
    assert_eq!(mosquitto_algorithm(seven), Some(Algorithm::MosquittoPbkdf2));
    assert_eq!(mosquitto_algorithm("plain"), None);
    check(&stored(Algorithm::MosquittoSha512, six, ""));
    check(&stored(Algorithm::MosquittoPbkdf2, seven, ""));
}

#[test]
fn bcrypt_known_vector_verifies() {
    // OpenBSD's test set: "U*U" with cost 5.
    let s = stored(
        Algorithm::Bcrypt { salt_rounds: 5 },
        "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "",
    );
    assert_eq!(verify(&s, b"U*U"), Ok(true));
    assert_eq!(verify(&s, b"U*V"), Ok(false));
}

#[test]
fn every_algorithm_hashes_what_it_then_verifies() {
    let algorithms = [
        Algorithm::Plain,
        Algorithm::Sha256 {
            salt_position: SaltPosition::Prefix,
        },
        Algorithm::Sha512 {
            salt_position: SaltPosition::Disable,
        },
        Algorithm::Pbkdf2 {
            mac_fun: MacFun::Sha512,
            iterations: 10,
            dk_length: None,
        },
        Algorithm::Bcrypt { salt_rounds: 4 },
        Algorithm::Argon2id,
        Algorithm::MosquittoSha512,
        Algorithm::MosquittoPbkdf2,
    ];
    for a in algorithms {
        let s = hash(&a, b"public", [7; 16]).expect("hashes");
        check(&s);
        if a != Algorithm::Plain {
            assert!(!s.hash.contains("public"), "{a:?} stores the password");
        }
    }
}

#[test]
fn corrupt_or_hostile_rows_are_errors_not_panics() {
    let bad = [
        stored(
            Algorithm::Sha256 {
                salt_position: SaltPosition::Suffix,
            },
            "zz",
            "",
        ),
        stored(
            Algorithm::Sha256 {
                salt_position: SaltPosition::Suffix,
            },
            "abc",
            "",
        ),
        stored(Algorithm::Bcrypt { salt_rounds: 10 }, "$2b$xx", ""),
        stored(
            Algorithm::Argon2id,
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
            "",
        ),
        stored(Algorithm::Argon2id, "not a phc string", ""),
        // Costs that would let one stored row take a node's memory or minutes of CPU.
        stored(
            Algorithm::Argon2id,
            "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2doYXNoaGFzaGhhc2doYXNoaGFzaA",
            "",
        ),
        stored(
            Algorithm::Bcrypt { salt_rounds: 10 },
            "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "",
        ),
        stored(Algorithm::MosquittoSha512, "$6$!!$??", ""),
        stored(Algorithm::MosquittoSha512, "$6$AAAA$AAAA", ""),
        stored(Algorithm::MosquittoPbkdf2, "$7$x$AAAA$AAAA", ""),
        stored(Algorithm::MosquittoPbkdf2, "$7$4000000000$AAAA$AAAA", ""),
        stored(
            Algorithm::Pbkdf2 {
                mac_fun: MacFun::Sha256,
                iterations: 0,
                dk_length: None,
            },
            "00",
            "",
        ),
        stored(
            Algorithm::Pbkdf2 {
                mac_fun: MacFun::Sha256,
                iterations: 1,
                dk_length: Some(1 << 20),
            },
            "00",
            "",
        ),
    ];
    for s in bad {
        assert!(verify(&s, b"public").is_err(), "{s:?}");
    }
}

#[test]
fn stored_costs_are_bounded_before_any_work() {
    let argon = stored(
        Algorithm::Argon2id,
        "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2doYXNoaGFzaGhhc2doYXNoaGFzaA",
        "",
    );
    let bcrypt = stored(
        Algorithm::Bcrypt { salt_rounds: 10 },
        "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        "",
    );
    let pbkdf2 = stored(
        Algorithm::Pbkdf2 {
            mac_fun: MacFun::Sha256,
            iterations: 100_000,
            dk_length: Some(1024),
        },
        "00",
        "",
    );
    for s in [argon, bcrypt, pbkdf2] {
        assert!(check_stored(&s).is_err(), "{s:?}");
        assert!(
            matches!(verify(&s, b"public"), Err(HashError::OutOfRange(_))),
            "{s:?}"
        );
    }
}

#[test]
fn settings_for_new_hashes_are_checked_without_hashing() {
    assert!(check_params(&Algorithm::Bcrypt { salt_rounds: 31 }).is_err());
    assert!(check_params(&Algorithm::Bcrypt { salt_rounds: 10 }).is_ok());
    let heavy = Algorithm::Pbkdf2 {
        mac_fun: MacFun::Sha512,
        iterations: 10_000_000,
        dk_length: None,
    };
    assert!(check_params(&heavy).is_err());
    assert!(hash(&heavy, b"x", [0; 16]).is_err());
    // Debug never shows the hash or the salt.
    let s = hash(&Algorithm::Argon2id, b"secret", [3; 16]).expect("hashes");
    let shown = format!("{s:?}");
    assert!(
        !shown.contains(&s.hash) && shown.contains("redacted"),
        "{shown}"
    );
}
