//! Checks on `[[authentication]]` entries, run by `validate` when a configuration loads:
//! every bound explicit, every error naming the key.
//!
//! Owns what an entry may say (lengths, counts, ranges, known placeholders, keys that
//! parse); it never logs or echoes a secret in an error.

use base64::Engine as _;

use super::authn::AuthenticatorConfig;
use super::authn_http::{HTTP_PLACEHOLDERS, HttpAuthnConfig, JWT_PLACEHOLDERS, check_template};
use super::authn_jwt::{JwtAlgorithm, JwtConfig};

/// Longest URL (`url`, `endpoint`).
pub const MAX_URL_LEN: usize = 2048;
/// Most entries in `verify_claims`, `headers` and `body`.
pub const MAX_MAP_ENTRIES: usize = 64;
/// Longest secret, key, header value or template.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// Longest `refresh_interval` (a day) and `leeway` (an hour), in seconds.
const MAX_REFRESH_INTERVAL: u64 = 86_400;
const MAX_LEEWAY: u64 = 3_600;
/// Longest `request_timeout`, in seconds.
const MAX_REQUEST_TIMEOUT: u64 = 300;
/// Largest `pool_size`.
const MAX_POOL_SIZE: usize = 1024;

/// The key that is wrong (`authentication.<field>`) and why.
pub type CheckError = (&'static str, String);

/// Checks one entry.
pub fn check(a: &AuthenticatorConfig) -> Result<(), CheckError> {
    match a {
        AuthenticatorConfig::BuiltInDatabase(c) => {
            crate::auth::password::check_params(&c.password_hash_algorithm)
                .map_err(|e| ("authentication.password_hash_algorithm", e.to_string()))
        }
        AuthenticatorConfig::Scram(c) => crate::auth::scram::check_iterations(c.iteration_count)
            .map_err(|e| ("authentication.iteration_count", e.to_string())),
        AuthenticatorConfig::Jwt(c) => check_jwt(c),
        AuthenticatorConfig::Http(c) => check_http(c),
    }
}

fn check_jwt(c: &JwtConfig) -> Result<(), CheckError> {
    if c.leeway > MAX_LEEWAY {
        return Err(("authentication.leeway", format!("at most {MAX_LEEWAY} s")));
    }
    if c.acl_claim_name.is_empty() || c.acl_claim_name.len() > 256 {
        return Err(("authentication.acl_claim_name", "1 to 256 bytes".into()));
    }
    check_map(
        &c.verify_claims,
        "authentication.verify_claims",
        JWT_PLACEHOLDERS,
    )?;
    if c.use_jwks {
        let Some(endpoint) = &c.endpoint else {
            return Err((
                "authentication.endpoint",
                "required with use_jwks = true".into(),
            ));
        };
        check_url(endpoint).map_err(|e| ("authentication.endpoint", e))?;
        // Whoever can change the keys in transit can mint tokens: plain HTTP only on loopback.
        if endpoint.starts_with("http://") && !is_loopback_url(endpoint) {
            return Err((
                "authentication.endpoint",
                "the JWKS must be fetched over https:// (http:// only from a loopback host)".into(),
            ));
        }
        if !(1..=MAX_REFRESH_INTERVAL).contains(&c.refresh_interval) {
            return Err((
                "authentication.refresh_interval",
                format!("1 to {MAX_REFRESH_INTERVAL} s, got {}", c.refresh_interval),
            ));
        }
        return Ok(());
    }
    match c.algorithm {
        JwtAlgorithm::HmacBased => {
            let key = "authentication.secret";
            let Some(secret) = c.secret.as_deref().filter(|s| !s.is_empty()) else {
                return Err((key, "required with algorithm = \"hmac-based\"".into()));
            };
            if secret.len() > MAX_VALUE_LEN {
                return Err((key, format!("at most {MAX_VALUE_LEN} bytes")));
            }
            if c.secret_base64_encoded
                && base64::engine::general_purpose::STANDARD
                    .decode(secret)
                    .map_or(true, |k| k.is_empty())
            {
                return Err((
                    key,
                    "not valid base64 (secret_base64_encoded = true)".into(),
                ));
            }
        }
        JwtAlgorithm::PublicKey => {
            let key = "authentication.public_key";
            let Some(pem) = c.public_key.as_deref() else {
                return Err((key, "required with algorithm = \"public-key\"".into()));
            };
            if pem.len() > MAX_VALUE_LEN {
                return Err((key, format!("at most {MAX_VALUE_LEN} bytes")));
            }
            let rsa = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes());
            let ec = jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes());
            if rsa.is_err() && ec.is_err() {
                return Err((key, "not a PEM RSA or EC public key".into()));
            }
        }
    }
    Ok(())
}

fn check_http(c: &HttpAuthnConfig) -> Result<(), CheckError> {
    check_http_request(
        &HttpRequestKeys {
            url: "authentication.url",
            request_timeout: "authentication.request_timeout",
            pool_size: "authentication.pool_size",
            body: "authentication.body",
            headers: "authentication.headers",
        },
        HttpRequestParts {
            url: &c.url,
            request_timeout: c.request_timeout,
            pool_size: c.pool_size,
            body: &c.body,
            headers: &c.headers,
        },
        HTTP_PLACEHOLDERS,
    )
}

/// The keys an HTTP request's errors name (authenticator or authorization source).
pub(crate) struct HttpRequestKeys {
    pub url: &'static str,
    pub request_timeout: &'static str,
    pub pool_size: &'static str,
    pub body: &'static str,
    pub headers: &'static str,
}

/// The settings of a request to an HTTP service, as checked.
pub(crate) struct HttpRequestParts<'a> {
    pub url: &'a str,
    pub request_timeout: u64,
    pub pool_size: usize,
    pub body: &'a std::collections::BTreeMap<String, String>,
    pub headers: &'a std::collections::BTreeMap<String, String>,
}

/// Checks the settings of a request to an HTTP service: URL, bounds, body templates
/// (`allowed` placeholders), headers.
pub(crate) fn check_http_request(
    keys: &HttpRequestKeys,
    c: HttpRequestParts<'_>,
    allowed: &[&str],
) -> Result<(), CheckError> {
    check_url(c.url).map_err(|e| (keys.url, e))?;
    if !(1..=MAX_REQUEST_TIMEOUT).contains(&c.request_timeout) {
        return Err((
            keys.request_timeout,
            format!("1 to {MAX_REQUEST_TIMEOUT} s, got {}", c.request_timeout),
        ));
    }
    if !(1..=MAX_POOL_SIZE).contains(&c.pool_size) {
        return Err((
            keys.pool_size,
            format!("1 to {MAX_POOL_SIZE}, got {}", c.pool_size),
        ));
    }
    check_map(c.body, keys.body, allowed)?;
    let key = keys.headers;
    if c.headers.len() > MAX_MAP_ENTRIES {
        return Err((key, format!("at most {MAX_MAP_ENTRIES} entries")));
    }
    for (name, value) in c.headers {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err((key, format!("{name:?} is not a header name")));
        }
        // Visible ASCII and spaces only: no CR/LF (header injection). The value itself is
        // never echoed: it may be a credential.
        if value.len() > MAX_VALUE_LEN || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err((
                key,
                format!("the value of {name:?} is not a valid header value"),
            ));
        }
    }
    Ok(())
}

/// A template map (`verify_claims`, `body`): bounded, names non-empty, placeholders known.
fn check_map(
    map: &std::collections::BTreeMap<String, String>,
    key: &'static str,
    allowed: &[&str],
) -> Result<(), CheckError> {
    if map.len() > MAX_MAP_ENTRIES {
        return Err((key, format!("at most {MAX_MAP_ENTRIES} entries")));
    }
    for (name, template) in map {
        if name.is_empty() || name.len() > 256 {
            return Err((key, "names are 1 to 256 bytes".into()));
        }
        if template.len() > MAX_VALUE_LEN {
            return Err((key, format!("{name}: at most {MAX_VALUE_LEN} bytes")));
        }
        check_template(template, allowed).map_err(|e| (key, format!("{name}: {e}")))?;
    }
    Ok(())
}

/// An absolute `http://` or `https://` URL with a host, bounded.
fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("at most {MAX_URL_LEN} bytes"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| "not an http:// or https:// URL".to_owned())?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("the URL has no host".to_owned());
    }
    Ok(())
}

/// True for an `http://` URL whose host is `localhost` or a loopback address.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[path = "authn_checks_tests.rs"]
mod tests;
