//! Who may use a core's admin HTTP: the API key, the client-certificate mark a TLS connection
//! puts on its requests, and the check every protected route passes first.
//!
//! A request is let through when its connection presented a client certificate that verified
//! against the cluster CA ([`PeerCert`], set by the HTTPS server), or when it carries
//! `Authorization: Bearer <key>` equal to the configured key (compared as SHA-256 digests in
//! constant time; only the digest of the key is kept in memory). Otherwise: 401
//! `BAD_API_KEY_OR_SECRET`, counted in `meshmq_core_http_denied_total{reason}`, and the handler
//! never runs, so nothing changes.
//!
//! With neither a key nor TLS configured the listener is on loopback (start-up refuses
//! otherwise, see [`super::HttpConfig::check_exposure`]) and requests pass, except what looks
//! like a browser's (an `Origin` header, or a `Host` that is a name other than `localhost`):
//! 403 `FORBIDDEN`, as the replicant's API does, so a web page the operator visits cannot
//! change the Raft group (CSRF, DNS rebinding).
//!
//! Never logs or formats a key: [`ApiKey`] and [`SecretArg`] print `<redacted>`.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use meshmq_shared::metrics as m;
use serde_json::json;
use sha2::Digest;
use subtle::ConstantTimeEq;

/// Largest API key file read (a key is a line of text; anything bigger is a wrong file).
const MAX_KEY_FILE: u64 = 4096;

/// Fewest characters of an API key: nothing limits how fast a client may guess, so a short
/// key (`admin`, a word) would be found by trying.
pub const MIN_KEY_LEN: usize = 16;

/// The admin API key, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct ApiKey {
    /// Digest of the key; requests are compared against it.
    digest: [u8; 32],
}

/// Why an API key was refused at start-up. Never contains the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key is empty (or only whitespace, from a file).
    #[error("the API key is empty")]
    Empty,
    /// The key holds a character a client cannot send in an `Authorization` header.
    #[error("the API key must be printable ASCII without spaces")]
    Unprintable,
    /// The key is shorter than [`MIN_KEY_LEN`]: guessable.
    #[error("the API key must be at least {MIN_KEY_LEN} characters (e.g. `openssl rand -hex 32`)")]
    TooShort,
    /// The key file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// What the operating system said.
        #[source]
        error: std::io::Error,
    },
    /// The key file is larger than a key can be.
    #[error("{path} is larger than {MAX_KEY_FILE} bytes; is it the right file?")]
    TooLarge {
        /// The file.
        path: String,
    },
}

impl ApiKey {
    /// A key as given (`--api-key`): printable ASCII without spaces, at least
    /// [`MIN_KEY_LEN`] characters.
    pub fn new(key: &str) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::Unprintable);
        }
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort);
        }
        Ok(Self {
            digest: digest(key),
        })
    }

    /// The key in `path` (`--api-key-file`), surrounding whitespace trimmed. A file other
    /// users may read (or anyone but its owner change) is used, with a warning.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = || path.display().to_string();
        let file = std::fs::File::open(path).map_err(|error| KeyError::Read {
            path: shown(),
            error,
        })?;
        #[cfg(unix)]
        if let Ok(meta) = file.metadata() {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if open_to_others(mode) {
                tracing::warn!(
                    file = %path.display(),
                    mode = %format_args!("{mode:03o}"),
                    "other users of this machine can read the API key file, or change it: \
                     chmod 600 it"
                );
            }
        }
        let mut raw = Vec::new();
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut raw)
            .map_err(|error| KeyError::Read {
                path: shown(),
                error,
            })?;
        if raw.len() as u64 > MAX_KEY_FILE {
            return Err(KeyError::TooLarge { path: shown() });
        }
        let text = String::from_utf8(raw).map_err(|_| KeyError::Unprintable)?;
        Self::new(text.trim())
    }

    /// Whether `given` is the key, in time independent of both.
    pub fn matches(&self, given: &str) -> bool {
        digest(given).ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A secret as a command-line or environment value: parsed without checks (so a parse error
/// never echoes it) and printed as `<redacted>`.
#[derive(Clone)]
pub struct SecretArg(pub String);

impl FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Request extension set by the HTTPS server on every request of a connection whose client
/// certificate verified against the cluster CA. Absent on plain HTTP.
#[derive(Debug, Clone, Copy)]
pub struct PeerCert;

/// What the protected routes accept.
#[derive(Debug, Clone)]
pub struct Access {
    /// The API key, if one is configured.
    key: Option<ApiKey>,
    /// Served over TLS: a client certificate is a credential, and "no key" no longer means
    /// "loopback only, open".
    tls: bool,
}

/// A refusal: the status, the EMQX-style code, the message and the metric reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// 401 or 403.
    pub status: StatusCode,
    /// `BAD_API_KEY_OR_SECRET` or `FORBIDDEN`.
    pub code: &'static str,
    /// For people; never contains the key.
    pub message: &'static str,
    /// The `reason` label of `meshmq_core_http_denied_total`.
    pub reason: &'static str,
}

impl Access {
    /// The policy for a key (or none) and whether the listener serves TLS.
    pub fn new(key: Option<ApiKey>, tls: bool) -> Self {
        Self { key, tls }
    }

    /// Decides on one request: its headers and whether its connection's client certificate
    /// verified. Pure, for tests.
    pub fn check(&self, headers: &HeaderMap, peer_cert: bool) -> Result<(), Denied> {
        if peer_cert {
            return Ok(());
        }
        let Some(key) = &self.key else {
            if self.tls {
                return Err(unauthorized(
                    "no_credentials",
                    "this route needs a client certificate from the cluster CA",
                ));
            }
            return browser_check(headers);
        };
        let Some(given) = bearer(headers) else {
            return Err(unauthorized(
                "no_credentials",
                "this route needs Authorization: Bearer <api key> or a client certificate \
                 from the cluster CA",
            ));
        };
        if key.matches(given) {
            Ok(())
        } else {
            Err(unauthorized("bad_key", "the API key is not valid"))
        }
    }
}

/// Middleware of the protected routes: runs the handler only when [`Access::check`] passes.
pub async fn require(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let peer_cert = req.extensions().get::<PeerCert>().is_some();
    match access.check(req.headers(), peer_cert) {
        Ok(()) => next.run(req).await,
        Err(denied) => {
            metrics::counter!(m::CORE_HTTP_DENIED_TOTAL, "reason" => denied.reason).increment(1);
            denied.into_response()
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let body = Json(json!({"code": self.code, "message": self.message}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn unauthorized(reason: &'static str, message: &'static str) -> Denied {
    Denied {
        status: StatusCode::UNAUTHORIZED,
        code: "BAD_API_KEY_OR_SECRET",
        message,
        reason,
    }
}

/// The token of the one `Authorization: Bearer <token>` header (scheme case-insensitive);
/// None when absent, repeated, not visible ASCII or of another scheme.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Without any credential configured (loopback only): refuses what looks like a browser's
/// request, 403.
fn browser_check(headers: &HeaderMap) -> Result<(), Denied> {
    let forbidden = |reason, message| Denied {
        status: StatusCode::FORBIDDEN,
        code: "FORBIDDEN",
        message,
        reason,
    };
    if headers.contains_key(header::ORIGIN) {
        return Err(forbidden(
            "origin",
            "a request with an Origin header (from a browser) needs --api-key to be set",
        ));
    }
    let local = headers
        .get_all(header::HOST)
        .iter()
        .all(|h| h.to_str().is_ok_and(literal_or_localhost));
    if !local {
        return Err(forbidden(
            "host",
            "without --api-key the Host header must be an IP address or localhost",
        ));
    }
    Ok(())
}

/// Whether a `Host` value is an IP address (with or without a port, IPv6 in brackets) or
/// `localhost[:port]`: names a DNS rebinding attack cannot choose.
fn literal_or_localhost(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() || host.parse::<SocketAddr>().is_ok() {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    name.eq_ignore_ascii_case("localhost") && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// Whether a key file's mode lets other users read it (`o+r`) or anyone but its owner change
/// it (`g+w`, `o+w`). Group read is allowed: a service group may share the key.
fn open_to_others(mode: u32) -> bool {
    mode & 0o026 != 0
}

fn digest(s: &str) -> [u8; 32] {
    sha2::Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn reason(access: &Access, h: &[(&str, &str)], cert: bool) -> Option<&'static str> {
        access.check(&headers(h), cert).err().map(|d| d.reason)
    }

    #[test]
    fn the_key_or_a_certificate_lets_a_request_through() {
        let keyed = Access::new(Some(ApiKey::new("s3cret-key-0123456").unwrap()), false);
        assert_eq!(reason(&keyed, &[], false), Some("no_credentials"));
        assert_eq!(
            reason(&keyed, &[("authorization", "Bearer wrong")], false),
            Some("bad_key")
        );
        assert_eq!(
            reason(
                &keyed,
                &[("authorization", "Basic s3cret-key-0123456")],
                false
            ),
            Some("no_credentials")
        );
        assert_eq!(
            reason(
                &keyed,
                &[("authorization", "Bearer s3cret-key-0123456")],
                false
            ),
            None
        );
        assert_eq!(
            reason(
                &keyed,
                &[("authorization", "bearer s3cret-key-0123456")],
                false
            ),
            None
        );
        let twice = [
            ("authorization", "Bearer s3cret-key-0123456"),
            ("authorization", "Bearer s3cret-key-0123456"),
        ];
        assert_eq!(reason(&keyed, &twice, false), Some("no_credentials"));
        assert_eq!(reason(&keyed, &[], true), None, "a verified certificate");
        // With a key, a browser's request is judged by its key alone.
        let browser = [
            ("origin", "http://evil"),
            ("authorization", "Bearer s3cret-key-0123456"),
        ];
        assert_eq!(reason(&keyed, &browser, false), None);
    }

    #[test]
    fn tls_without_a_key_needs_a_certificate() {
        let tls = Access::new(None, true);
        assert_eq!(
            reason(&tls, &[("host", "127.0.0.1")], false),
            Some("no_credentials")
        );
        assert_eq!(
            reason(&tls, &[("authorization", "Bearer anything")], false),
            Some("no_credentials")
        );
        assert_eq!(reason(&tls, &[], true), None);
    }

    #[test]
    fn without_credentials_configured_browsers_are_refused() {
        let open = Access::new(None, false);
        assert_eq!(reason(&open, &[("host", "127.0.0.1:18084")], false), None);
        assert_eq!(reason(&open, &[("host", "localhost:18084")], false), None);
        assert_eq!(reason(&open, &[("host", "[::1]:18084")], false), None);
        assert_eq!(
            reason(&open, &[("host", "127.0.0.1"), ("origin", "null")], false),
            Some("origin")
        );
        assert_eq!(
            reason(&open, &[("host", "rebind.example:18084")], false),
            Some("host")
        );
        let denied = open.check(&headers(&[("origin", "x")]), false).unwrap_err();
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn keys_are_checked_and_never_shown() {
        assert!(matches!(ApiKey::new(""), Err(KeyError::Empty)));
        assert!(matches!(ApiKey::new("a b"), Err(KeyError::Unprintable)));
        assert!(matches!(ApiKey::new("clé"), Err(KeyError::Unprintable)));
        assert!(matches!(ApiKey::new("hunter2"), Err(KeyError::TooShort)));
        assert!(matches!(
            ApiKey::new(&"k".repeat(MIN_KEY_LEN - 1)),
            Err(KeyError::TooShort)
        ));
        assert!(ApiKey::new(&"k".repeat(MIN_KEY_LEN)).is_ok());
        let key = ApiKey::new("hunter2hunter2hunter2").unwrap();
        assert!(key.matches("hunter2hunter2hunter2") && !key.matches("hunter2"));
        assert!(!format!("{key:?}").contains("hunter2"));
        assert!(!format!("{:?}", SecretArg("hunter2".into())).contains("hunter2"));
    }

    #[test]
    fn key_files_open_to_other_users_are_noticed() {
        for mode in [0o600, 0o400, 0o640, 0o440] {
            assert!(!open_to_others(mode), "{mode:o}");
        }
        for mode in [0o644, 0o604, 0o620, 0o602, 0o666] {
            assert!(open_to_others(mode), "{mode:o}");
        }
    }

    #[test]
    fn a_key_file_is_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "  k3y-from-the-file-0\n").unwrap();
        assert!(
            ApiKey::from_file(&file)
                .unwrap()
                .matches("k3y-from-the-file-0")
        );
        std::fs::write(&file, "\n\n").unwrap();
        assert!(matches!(ApiKey::from_file(&file), Err(KeyError::Empty)));
        std::fs::write(&file, vec![b'k'; 5000]).unwrap();
        assert!(matches!(
            ApiKey::from_file(&file),
            Err(KeyError::TooLarge { .. })
        ));
        let missing = dir.path().join("missing");
        let e = ApiKey::from_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
