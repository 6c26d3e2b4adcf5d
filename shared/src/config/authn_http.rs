//! The HTTP authenticator's settings (`mechanism = "password_based"`, `backend = "http"`,
//! EMQX's `password_based:http`): the request sent to the operator's service for each
//! CONNECT.
//!
//! Owns the shape and defaults of the entry, never the checks (those are in `load.rs`) nor
//! the requests (`replicant-node/src/authn/http.rs`). Its `Debug` never shows header
//! values (they often carry a service's credentials).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::authn::PasswordBased;

/// Password-based, checked by an HTTP service (EMQX's `password_based:http`): the service
/// answers `{"result": "allow" | "deny" | "ignore", "is_superuser": bool}`.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthnConfig {
    /// `password_based`.
    pub mechanism: PasswordBased,
    /// `http`.
    pub backend: HttpBackend,
    /// How the fields are sent (default `post`: the body is JSON, or a form when `headers`
    /// sets `content-type = "application/x-www-form-urlencoded"`).
    #[serde(default)]
    pub method: HttpMethod,
    /// The service's URL (`http://` or `https://`).
    pub url: String,
    /// Request headers. With `post` and no `content-type`, `application/json` is sent.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The fields sent, each value a template: `${clientid}`, `${username}`,
    /// `${password}`, `${peerhost}`, `${cert_common_name}`, `${cert_subject}` (the client
    /// certificate's CN and DN on TLS listeners; empty without one). Default: `username`
    /// and `password`.
    #[serde(default = "default_body")]
    pub body: BTreeMap<String, String>,
    /// Seconds a request may take, waiting for a free connection included, 1 to 300
    /// (default 5); past it the answer is ignore (counted as an error).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
    /// Most requests in flight at once (and idle connections kept) to the service, 1 to
    /// 1024 (default 8).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// False: skipped, as if absent.
    #[serde(default = "super::authn::enabled")]
    pub enable: bool,
}

impl std::fmt::Debug for HttpAuthnConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("HttpAuthnConfig")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("request_timeout", &self.request_timeout)
            .field("pool_size", &self.pool_size)
            .field("enable", &self.enable)
            .finish()
    }
}

/// `backend = "http"`: an HTTP service decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HttpBackend {
    /// The only value.
    #[serde(rename = "http")]
    Http,
}

/// The request's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpMethod {
    /// Fields in the body (EMQX's default).
    #[default]
    Post,
    /// Fields in the query string.
    Get,
}

/// The placeholders an HTTP body may use.
pub const HTTP_PLACEHOLDERS: &[&str] = &[
    "clientid",
    "username",
    "password",
    "peerhost",
    "cert_common_name",
    "cert_subject",
];

/// The placeholders a JWT `verify_claims` value may use.
pub const JWT_PLACEHOLDERS: &[&str] = &["clientid", "username"];

/// Checks that every `${name}` in `template` is one of `allowed` and every `${` is closed.
pub fn check_template(template: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed placeholder in {template:?}"));
        };
        let name = &after[..end];
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder ${{{name}}} in {template:?}: one of {}",
                allowed
                    .iter()
                    .map(|a| format!("${{{a}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

fn default_body() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("username".to_owned(), "${username}".to_owned()),
        ("password".to_owned(), "${password}".to_owned()),
    ])
}

fn default_request_timeout() -> u64 {
    5
}

fn default_pool_size() -> usize {
    8
}
