//! What every REST route shares: the JSON error answer (`{"code": ..., "message": ...}`, as
//! EMQX's API answers) and the operator check (an API key, `crate::api_keys`).
//!
//! Owns no route. A route module builds its `Router` with the broker's `Ctx` as state, calls
//! [`authorize`] first in every operator handler, and answers failures with [`ApiError`].
//! Start-up refuses an HTTP listener off loopback without a key source
//! (`meshmq_shared::config::validate`), so "no key" only ever means "loopback only"; there
//! [`authorize`] refuses what looks like a browser's request (CSRF, DNS rebinding).
//! JSON-body routes also call [`require_json`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use meshmq_shared::metrics as m;
use serde_json::json;

use crate::ctx::Ctx;

/// An error answer: HTTP status, EMQX-style code and a message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// EMQX-style code (`BAD_REQUEST`, `NOT_FOUND`, ...).
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// The JSON body of every error answer: `Error` in the OpenAPI document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// EMQX-style code (`BAD_REQUEST`, `NOT_FOUND`, ...).
    pub code: String,
    /// For people.
    pub message: String,
}

/// The answers of [`authorize`], declared (`responses(..., Denied)`) by every route that
/// calls it: the OpenAPI completeness test checks that every protected route declares 401.
#[derive(utoipa::IntoResponses)]
pub enum Denied {
    /// No or wrong API key (`listeners.api_key` is set).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No API key is set and the request looks like a browser's (an `Origin` header, or a
    /// `Host` that is a name other than `localhost`); or, with keys, Basic credentials sent
    /// from another origin.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// An error answer.
pub fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

/// 400 `BAD_REQUEST`.
pub fn bad_request(message: impl Into<String>) -> ApiError {
    error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

/// 404 `NOT_FOUND`.
pub fn not_found(message: impl Into<String>) -> ApiError {
    error(StatusCode::NOT_FOUND, "NOT_FOUND", message)
}

/// 503 `SERVICE_UNAVAILABLE`: the cores could not commit (no leader, timeout).
pub fn unavailable(message: impl Into<String>) -> ApiError {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        message,
    )
}

/// The operator check. A call made by the cluster fan-out (`crate::fanout`) passes. When a
/// key is required (`listeners.api_key` or `api_key.bootstrap_file` configured on any node
/// of the cluster, or an API key in the cluster: `crate::api_keys::mode`): the request's `Authorization` must hold a valid key
/// ([`crate::api_keys::authorize`], 401 otherwise). Without any key the HTTP listener is on
/// loopback (start-up refuses otherwise), where a web page the operator visits could still
/// reach it through the browser (CSRF, or DNS rebinding: a name of the attacker's that
/// resolves to 127.0.0.1), so a request that looks like a browser's is refused, 403
/// `FORBIDDEN`: one with an `Origin` header (browsers send it on every cross-origin request
/// and on POSTs; curl and scripts do not), or whose `Host` is neither an IP address nor
/// `localhost[:port]`. With keys, a browser cannot be made to send a `Bearer` header
/// cross-origin without a CORS preflight, which this API never grants; it may attach Basic
/// credentials it cached, so those are refused from another origin ([`ambient_check`]).
pub fn authorize(ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    // A call the fan-out made in this process, for an operator another node checked.
    if ctx.cluster.fanout.is_internal(headers) {
        return Ok(());
    }
    if crate::api_keys::ApiKeys::required(ctx) {
        ambient_check(headers)?;
        return crate::api_keys::authorize(ctx, headers);
    }
    browser_check(headers)
}

/// With keys: refuses (403, `meshmq_api_forbidden_total{reason="ambient"}`) a request that
/// carries HTTP Basic credentials and an `Origin` other than its own (`Origin` is not
/// `http(s)://` + its `Host`). A browser attaches Basic credentials it has cached to a
/// cross-origin request on its own (an ambient credential a page of another site can make
/// it use, CSRF); it never sends a `Bearer` header it was not told to, and a page can only
/// set one through a CORS preflight, which this API never grants. So Bearer and a
/// same-origin Basic pass, and scripts (no `Origin`) are not concerned.
fn ambient_check(headers: &HeaderMap) -> Result<(), ApiError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    let foreign = headers
        .get_all(header::ORIGIN)
        .iter()
        .any(|o| !same_origin(o.to_str().unwrap_or(""), headers));
    if basic && foreign {
        metrics::counter!(m::API_FORBIDDEN_TOTAL, "reason" => "ambient").increment(1);
        return Err(error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "Basic credentials from another origin (a browser's cached credentials) are \
             refused: send the key as Authorization: Bearer, or call from the same origin",
        ));
    }
    Ok(())
}

/// Whether `origin` (`scheme://host[:port]`) is the request's own: its `Host`, with the
/// scheme's default port when one of the two leaves it out.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let (rest, default_port) = if let Some(r) = origin.strip_prefix("http://") {
        (r, ":80")
    } else if let Some(r) = origin.strip_prefix("https://") {
        (r, ":443")
    } else {
        return false;
    };
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let with_port = |h: &str| {
        let bare_v6 = h.ends_with(']');
        if h.rsplit_once(':')
            .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
            && !bare_v6
        {
            h.to_ascii_lowercase()
        } else {
            format!("{}{default_port}", h.to_ascii_lowercase())
        }
    };
    !rest.is_empty() && with_port(rest) == with_port(host)
}

/// Without an API key: refuses a request with an `Origin` header or a `Host` that is a name
/// other than `localhost` (counted in `meshmq_api_forbidden_total{reason}`).
fn browser_check(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = |reason: &'static str, message: &str| {
        metrics::counter!(m::API_FORBIDDEN_TOTAL, "reason" => reason).increment(1);
        Err(error(StatusCode::FORBIDDEN, "FORBIDDEN", message))
    };
    if headers.contains_key(header::ORIGIN) {
        return refuse(
            "origin",
            "a request with an Origin header (from a browser) needs an API key to be set",
        );
    }
    let local = headers
        .get_all(header::HOST)
        .iter()
        .all(|h| h.to_str().is_ok_and(literal_or_localhost));
    if !local {
        return refuse(
            "host",
            "without an API key the Host header must be an IP address or localhost",
        );
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
    name.eq_ignore_ascii_case("localhost")
        && port.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        })
}

/// 415 `UNSUPPORTED_MEDIA_TYPE` unless the body is declared `Content-Type:
/// application/json` (parameters such as `charset` allowed). A browser can send a
/// cross-origin form or `text/plain` body without asking first, never a JSON one.
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the request body must be sent with Content-Type: application/json",
        ))
    }
}

/// Longest field name an error answer repeats (a longer one is "a field").
const MAX_NAMED_FIELD: usize = 64;

/// Parses a JSON request body into `T` (400 otherwise). The error names the field at fault
/// when there is one, with a fixed text, and never repeats serde's message: that may quote
/// the value sent (`invalid type: integer `123456``), which may be a password.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| bad_request(json_error(&e)))
}

/// The fixed message for a body that did not parse.
fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    if !inner.is_data() {
        return format!(
            "invalid request body: not valid JSON (line {}, column {})",
            inner.line(),
            inner.column()
        );
    }
    // serde's text is only matched against its fixed prefixes, never sent back.
    let text = inner.to_string();
    let path = e.path().to_string();
    let at_root = path == ".";
    if let Some(rest) = text.strip_prefix("missing field `") {
        // The name is one of ours (a declared field), taken from serde's message.
        let name = rest.split('`').next().unwrap_or("");
        return match nameable(name) {
            true => format!("invalid request body: `{name}` is missing"),
            false => "invalid request body: a required field is missing".into(),
        };
    }
    if text.starts_with("unknown field") {
        // The unknown name is the sender's (it is in `path` too): only the names we expect
        // are repeated, the end of serde's text (after the last ", expected ").
        let expected = text.rsplit_once(", expected ").map(|(_, e)| e);
        let expected = expected.map(|e| e.rsplit_once(" at line ").map_or(e, |(e, _)| e));
        return match expected {
            Some(e) if e.len() <= 512 => {
                format!("invalid request body: an unknown field (expected {e})")
            }
            _ => "invalid request body: an unknown field".into(),
        };
    }
    if at_root {
        return "invalid request body: it must be a JSON object".into();
    }
    match nameable(&path) {
        true => format!("invalid request body: `{path}` has the wrong type or value"),
        false => "invalid request body: a field has the wrong type or value".into(),
    }
}

/// Whether a field name may go back in an answer: short, letters, digits, `_` and `.`.
fn nameable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAMED_FIELD
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        user_id: String,
        password: String,
        #[serde(default)]
        is_superuser: bool,
    }

    #[test]
    fn body_errors_name_the_field_and_never_echo_a_value() {
        let cases: [(&str, &str); 8] = [
            (
                r#"{"user_id":"u","password":123456}"#,
                "`password` has the wrong type",
            ),
            (
                r#"{"user_id":"u","password":"p","is_superuser":"s3cr3t-ish"}"#,
                "`is_superuser`",
            ),
            (r#"{"user_id":"u"}"#, "`password` is missing"),
            (
                r#"{"user_id":"u","password":"p","s3cr3t":1}"#,
                "unknown field (expected one of `user_id`, `password`, `is_superuser`)",
            ),
            (r#"{"user_id":"u","password":"p","#, "not valid JSON"),
            (r#""s3cr3t""#, "must be a JSON object"),
            (r#"[123456]"#, "a field has the wrong type or value"),
            (
                r#"{"user_id":"u","password":["s3cr3t"]}"#,
                "`password` has the wrong type",
            ),
        ];
        for (body, expected) in cases {
            let e = parse_json::<Body>(body.as_bytes()).expect_err(body);
            assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "BAD_REQUEST"));
            assert!(e.message.contains(expected), "{body}: {}", e.message);
            for secret in ["123456", "s3cr3t"] {
                assert!(!e.message.contains(secret), "{body}: {}", e.message);
            }
        }
        let ok: Body = parse_json(br#"{"user_id":"u","password":"p"}"#).expect("parses");
        assert_eq!(ok.password, "p");
    }

    #[test]
    fn hosts_a_rebinding_attack_cannot_choose() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:18083",
            "[::1]:18083",
            "[::1]",
            "::1",
            "10.1.2.3:80",
            "localhost",
            "LocalHost:18083",
        ] {
            assert!(literal_or_localhost(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:18083",
            "localhost.evil.example",
            "localhost.",
            "localhost:",
            "localhost:99999",
            "localhost:80:80",
            "127.0.0.1.nip.io",
            "[evil.example]",
            "",
        ] {
            assert!(!literal_or_localhost(bad), "{bad}");
        }
    }

    #[test]
    fn basic_credentials_from_another_origin_are_refused() {
        let with = |auth: &str, origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, auth.parse().expect("value"));
            h.insert(header::HOST, host.parse().expect("value"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().expect("value"));
            }
            ambient_check(&h).map_err(|e| e.status)
        };
        let basic = "Basic aWQ6c2VjcmV0";
        let bearer = "Bearer id:secret";
        assert!(with(basic, None, "b.example:8080").is_ok(), "a script");
        assert!(with(basic, Some("http://b.example:8080"), "b.example:8080").is_ok());
        assert!(with(basic, Some("http://B.example"), "b.example:80").is_ok());
        assert!(with(basic, Some("https://b.example"), "b.example").is_ok());
        assert!(with(bearer, Some("https://evil.example"), "b.example:8080").is_ok());
        for (origin, host) in [
            ("https://evil.example", "b.example:8080"),
            ("http://b.example:8081", "b.example:8080"),
            ("https://b.example:8080", "b.example"),
            ("null", "b.example"),
            ("http://", "b.example"),
        ] {
            assert_eq!(
                with(basic, Some(origin), host),
                Err(StatusCode::FORBIDDEN),
                "{origin} {host}"
            );
        }
    }

    #[test]
    fn json_content_type_is_required() {
        let with = |ct: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, ct.parse().expect("header value"));
            }
            require_json(&h).map_err(|e| (e.status, e.code))
        };
        assert!(with(Some("application/json")).is_ok());
        assert!(with(Some("Application/JSON; charset=utf-8")).is_ok());
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            assert_eq!(
                with(ct),
                Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")),
                "{ct:?}"
            );
        }
    }
}
