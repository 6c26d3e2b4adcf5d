//! Which TLS versions and cipher suites a listener offers: the `ring` provider's suites
//! filtered by `ssl_options.versions` and `ssl_options.ciphers` (IANA or OpenSSL names).

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};

use super::TlsLoadError;

/// Every suite the `ring` provider has, as (suite, IANA name, OpenSSL name).
const NAMES: &[(CipherSuite, &str, &str)] = &[
    (
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_256_GCM_SHA384",
    ),
    (
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_128_GCM_SHA256",
    ),
    (
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];

/// The suite a configured name means: an IANA name, an OpenSSL name, or rustls's own
/// (`TLS13_AES_128_GCM_SHA256`), any case.
fn suite_named(name: &str) -> Option<CipherSuite> {
    let wanted = name.trim();
    NAMES.iter().find_map(|(suite, iana, openssl)| {
        let rustls_name = format!("{suite:?}");
        [*iana, *openssl, rustls_name.as_str()]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(wanted))
            .then_some(*suite)
    })
}

/// The protocol versions named by `versions` (already checked: `tlsv1.3`, `tlsv1.2`).
fn versions_named(versions: &[String]) -> Vec<&'static SupportedProtocolVersion> {
    let mut out = Vec::new();
    for v in versions {
        let version = match v.to_ascii_lowercase().as_str() {
            "tlsv1.3" => &rustls::version::TLS13,
            "tlsv1.2" => &rustls::version::TLS12,
            _ => continue,
        };
        if !out
            .iter()
            .any(|o: &&SupportedProtocolVersion| o.version == version.version)
        {
            out.push(version);
        }
    }
    out
}

/// Narrows `provider`'s suites to `ciphers` (all when empty) and returns the versions to
/// offer: those of `versions` that keep at least one suite (TLS 1.3 is dropped when the
/// list names only TLS 1.2 suites, as OpenSSL-based brokers do).
pub(crate) fn restrict(
    provider: &mut CryptoProvider,
    versions: &[String],
    ciphers: &[String],
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsLoadError> {
    if !ciphers.is_empty() {
        let mut wanted = Vec::with_capacity(ciphers.len());
        for name in ciphers {
            match suite_named(name) {
                Some(s) => wanted.push(s),
                None => {
                    return Err(TlsLoadError::UnknownCipher {
                        name: name.clone(),
                        known: NAMES
                            .iter()
                            .map(|(_, iana, openssl)| {
                                if iana == openssl {
                                    (*iana).to_owned()
                                } else {
                                    format!("{iana} ({openssl})")
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
        // The configured order is the server's preference order.
        let mut kept: Vec<SupportedCipherSuite> = Vec::with_capacity(wanted.len());
        for suite in wanted {
            if let Some(s) = provider.cipher_suites.iter().find(|s| s.suite() == suite)
                && !kept.iter().any(|k| k.suite() == suite)
            {
                kept.push(*s);
            }
        }
        provider.cipher_suites = kept;
    } else {
        prefer_aes_128(&mut provider.cipher_suites);
    }
    let offered: Vec<_> = versions_named(versions)
        .into_iter()
        .filter(|v| provider.cipher_suites.iter().any(|s| s.version() == *v))
        .collect();
    if offered.is_empty() {
        return Err(TlsLoadError::NoSuites {
            versions: versions.join(", "),
        });
    }
    Ok(offered)
}

/// The default order: within each version, AES-128-GCM before AES-256-GCM and ChaCha20. Both are sound; AES-128-GCM's TLS 1.3 key schedule runs on
/// SHA-256, which `ring` computes with the SHA extensions on Intel and AMD alike, while
/// SHA-384 has no hardware path on AMD: a full or resumed handshake costs ~5% less CPU.
fn prefer_aes_128(suites: &mut [SupportedCipherSuite]) {
    let rank = |s: &SupportedCipherSuite| {
        let name = format!("{:?}", s.suite());
        let version = u8::from(s.version().version != rustls::ProtocolVersion::TLSv1_3);
        let cipher = if name.contains("AES_128_GCM") {
            0
        } else if name.contains("AES_256_GCM") {
            1
        } else {
            2
        };
        (version, cipher)
    };
    suites.sort_by_key(rank); // stable: ring's order (ECDSA before RSA) within a rank
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_every_spelling() {
        let t = CipherSuite::TLS13_AES_128_GCM_SHA256;
        assert_eq!(suite_named("TLS_AES_128_GCM_SHA256"), Some(t));
        assert_eq!(suite_named("tls13_aes_128_gcm_sha256"), Some(t));
        let e = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
        assert_eq!(suite_named("ECDHE-ECDSA-AES128-GCM-SHA256"), Some(e));
        assert_eq!(
            suite_named("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            Some(e)
        );
        assert_eq!(suite_named("RC4-MD5"), None);
    }

    #[test]
    fn unknown_cipher_lists_the_known_ones() {
        let mut p = rustls::crypto::ring::default_provider();
        let err = restrict(&mut p, &["tlsv1.3".into()], &["RC4-MD5".into()])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("RC4-MD5") && err.contains("TLS_AES_128_GCM_SHA256"),
            "{err}"
        );
    }

    #[test]
    fn default_order_prefers_aes_128_in_each_version() {
        let mut p = rustls::crypto::ring::default_provider();
        restrict(&mut p, &["tlsv1.3".into(), "tlsv1.2".into()], &[]).ok();
        let order: Vec<CipherSuite> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(order.len(), NAMES.len(), "{order:?}");
        assert_eq!(order[0], CipherSuite::TLS13_AES_128_GCM_SHA256, "{order:?}");
        assert_eq!(order[1], CipherSuite::TLS13_AES_256_GCM_SHA384, "{order:?}");
        assert_eq!(
            order[2],
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            "{order:?}"
        );
        let first12 = order
            .iter()
            .position(|s| format!("{s:?}").starts_with("TLS_ECDHE"))
            .unwrap_or(0);
        assert_eq!(first12, 3, "{order:?}");
        assert!(
            format!("{:?}", order[3]).contains("AES_128_GCM"),
            "{order:?}"
        );
    }

    #[test]
    fn twelve_only_ciphers_drop_thirteen() {
        let mut p = rustls::crypto::ring::default_provider();
        let v = restrict(
            &mut p,
            &["tlsv1.3".into(), "tlsv1.2".into()],
            &["ECDHE-ECDSA-AES128-GCM-SHA256".into()],
        )
        .map(|v| v.iter().map(|v| v.version).collect::<Vec<_>>())
        .unwrap_or_default();
        assert_eq!(v, vec![rustls::ProtocolVersion::TLSv1_2]);
        assert_eq!(p.cipher_suites.len(), 1);
    }
}
