//! What every REST route shares: the JSON error answer (`{"code": ..., "message": ...}`, as
//! EMQX's API answers) and the operator check (`Authorization: Bearer <listeners.api_key>`).
//!
//! Owns no route. A route module builds its `Router` with the broker's `Ctx` as state, calls
//! [`authorize`] first in every operator handler, and answers failures with [`ApiError`].
//! Start-up refuses an HTTP listener off loopback without an API key
//! (`meshmq_shared::config::validate`), so "no key" only ever means "loopback only".

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;
use subtle::ConstantTimeEq;

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

/// Checks the `Authorization: Bearer` token when `listeners.api_key` is set (401 otherwise).
/// Without a key the HTTP listener is on loopback (start-up refuses otherwise).
pub fn authorize(ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = ctx.config.listeners.api_key.as_deref() else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared as digests: the time taken tells nothing about the key or its length.
    if digest(given).ct_eq(&digest(key)).into() {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "this route needs Authorization: Bearer <listeners.api_key>",
        ))
    }
}

fn digest(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}
