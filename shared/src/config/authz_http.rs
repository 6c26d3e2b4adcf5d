//! The HTTP authorization source's settings (`[[authorization.sources]]` with
//! `type = "http"`, EMQX's HTTP authorizer): the request sent to the operator's service
//! for each PUBLISH, SUBSCRIBE filter and will that the cache cannot answer.
//!
//! Owns the shape and defaults of the entry and its checks (shared with the HTTP
//! authenticator's, `authn_checks.rs`); the requests are `replicant-node/src/authz/http.rs`'s.
//! Its `Debug` never shows header values (they often carry a service's credentials).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::authn_http::HttpMethod;

/// `type = "http"`: an HTTP service decides each request; it answers 200 with
/// `{"result": "allow" | "deny" | "ignore"}` (ignore: the next source decides) or 204
/// (allow). Any other answer, or none within `request_timeout`, is no match (the next
/// source decides), counted as `meshmq_authorization_total{source="http",result="error"}`.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthzConfig {
    /// False: skipped, as if absent.
    #[serde(default = "super::authz::enabled")]
    pub enable: bool,
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
    /// `${peerhost}`, `${topic}` (the topic name, or the filter as sent), `${action}`
    /// (`publish` or `subscribe`), `${qos}`, `${retain}` (`true`/`false`; `false` for a
    /// subscription), `${cert_common_name}`, `${cert_subject}` (the client certificate's
    /// CN and DN on TLS listeners; empty without one). Default: `clientid`, `username`,
    /// `topic` and `action`.
    #[serde(default = "default_body")]
    pub body: BTreeMap<String, String>,
    /// Seconds a request may take, waiting for a free connection included, 1 to 300
    /// (default 5); past it the source has no match (counted as an error).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: u64,
    /// Most requests in flight at once (and idle connections kept) to the service, 1 to
    /// 1024 (default 8).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

impl std::fmt::Debug for HttpAuthzConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("HttpAuthzConfig")
            .field("enable", &self.enable)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("request_timeout", &self.request_timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// The placeholders an HTTP authorization body may use.
pub const AUTHZ_HTTP_PLACEHOLDERS: &[&str] = &[
    "clientid",
    "username",
    "peerhost",
    "topic",
    "action",
    "qos",
    "retain",
    "cert_common_name",
    "cert_subject",
];

fn default_body() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("clientid".to_owned(), "${clientid}".to_owned()),
        ("username".to_owned(), "${username}".to_owned()),
        ("topic".to_owned(), "${topic}".to_owned()),
        ("action".to_owned(), "${action}".to_owned()),
    ])
}

fn default_request_timeout() -> u64 {
    5
}

fn default_pool_size() -> usize {
    8
}
