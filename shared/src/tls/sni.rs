//! Choosing the certificate for a handshake by the name the client sent (SNI): an exact
//! name (any case) first, then a `*.example.com` entry matching exactly one label, and the
//! listener's default certificate for every other name and for clients that send none.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificates of one listener.
#[derive(Debug)]
pub(crate) struct SniResolver {
    /// Served when no entry matches.
    pub(crate) default: Arc<CertifiedKey>,
    /// (lower-case server name or `*.suffix` pattern, certificate), in configured order.
    pub(crate) names: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    /// The certificate for `name` (the default when nothing matches).
    pub(crate) fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.');
        if let Some((_, key)) = self
            .names
            .iter()
            .find(|(pattern, _)| pattern.eq_ignore_ascii_case(name))
        {
            return key.clone();
        }
        self.names
            .iter()
            .find(|(pattern, _)| wildcard_matches(pattern, name))
            .map_or_else(|| self.default.clone(), |(_, key)| key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()))
    }
}

/// Whether `*.suffix` matches `name` with exactly one non-empty label in place of `*`.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    let Some(dot) = name.find('.') else {
        return false;
    };
    let (label, rest) = (&name[..dot], &name[dot + 1..]);
    !label.is_empty() && !suffix.is_empty() && rest.eq_ignore_ascii_case(suffix)
}

#[cfg(test)]
mod tests {
    use super::wildcard_matches;

    #[test]
    fn wildcards_match_one_label() {
        assert!(wildcard_matches("*.example.com", "a.example.com"));
        assert!(wildcard_matches("*.example.com", "A.Example.COM"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
        assert!(!wildcard_matches("*.example.com", ".example.com"));
        assert!(!wildcard_matches("a.example.com", "a.example.com"));
    }
}
