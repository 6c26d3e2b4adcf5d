//! The authentication chain's routes (EMQX 5's paths and shapes): `GET
//! /api/v5/authentication` (every authenticator configured, in order) and `GET
//! /api/v5/authentication/{id}` (one). Ids are EMQX's, `password_based:built_in_database`
//! (`%3A` for `:` works too).
//!
//! Owns how an authenticator is shown. It must never show a secret: a JWT key, an HTTP
//! header's value, a body template or a URL's user info.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use meshmq_shared::config::AuthenticatorConfig;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{check_key, fail};
use crate::ctx::Ctx;
use crate::http::api::{Denied, ErrorBody, not_found};

/// The routes, without their state.
pub(super) fn routes() -> OpenApiRouter<Arc<Ctx>> {
    OpenApiRouter::new()
        .routes(routes!(list_authenticators))
        .routes(routes!(get_authenticator))
}

/// An authenticator as the API shows it. Each kind says what it shows: a kind with a
/// secret in its settings (a JWT key, an HTTP header) must leave it out here.
fn describe(a: &AuthenticatorConfig) -> Value {
    match a {
        AuthenticatorConfig::BuiltInDatabase(c) => json!({
            "id": a.id(),
            "mechanism": "password_based",
            "backend": "built_in_database",
            "enable": c.enable,
            "user_id_type": c.user_id_type,
            "password_hash_algorithm": c.password_hash_algorithm,
        }),
        AuthenticatorConfig::Scram(c) => json!({
            "id": a.id(),
            "mechanism": "scram",
            "backend": "built_in_database",
            "enable": c.enable,
            "algorithm": c.algorithm,
            "iteration_count": c.iteration_count,
        }),
        // Never the secret; the public key and the claims are not secrets but stay out too.
        AuthenticatorConfig::Jwt(c) => json!({
            "id": a.id(),
            "mechanism": "jwt",
            "enable": c.enable,
            "from": c.from,
            "use_jwks": c.use_jwks,
            "algorithm": c.algorithm,
            "endpoint": c.endpoint,
            "refresh_interval": c.refresh_interval,
            "acl_claim_name": c.acl_claim_name,
            "disconnect_after_expire": c.disconnect_after_expire,
            "leeway": c.leeway,
        }),
        // Header values and the body template may hold credentials: names only; the URL
        // may carry user info: shown without it.
        AuthenticatorConfig::Http(c) => json!({
            "id": a.id(),
            "mechanism": "password_based",
            "backend": "http",
            "enable": c.enable,
            "method": c.method,
            "url": without_userinfo(&c.url),
            "headers": c.headers.keys().collect::<Vec<_>>(),
            "request_timeout": c.request_timeout,
            "pool_size": c.pool_size,
        }),
    }
}

/// `url` without a `user:password@` part.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// The configured authenticators, in order (never a secret).
#[utoipa::path(get, path = "/api/v5/authentication", tag = "authentication",
    responses((status = 200, description = "`[{id, mechanism, backend, enable, ...}]`", body = [Object]), Denied))]
async fn list_authenticators(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_key(&ctx, &headers) {
        return fail(e);
    }
    let list: Vec<Value> = ctx.config.authentication.iter().map(describe).collect();
    Json(list).into_response()
}

/// One authenticator (never a secret).
#[utoipa::path(get, path = "/api/v5/authentication/{id}", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`")),
    responses((status = 200, description = "`{id, mechanism, backend, enable, ...}`", body = Object), Denied,
              (status = 404, description = "No such authenticator", body = ErrorBody)))]
async fn get_authenticator(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers) {
        return fail(e);
    }
    match ctx.config.authentication.iter().find(|a| a.id() == id) {
        Some(a) => Json(describe(a)).into_response(),
        None => fail(not_found(format!("authenticator {id:?} not found"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_info_is_cut_from_a_url() {
        use super::without_userinfo as w;
        assert_eq!(w("http://u:p@h:80/a@b"), "http://h:80/a@b");
        assert_eq!(w("https://h/x?y=@"), "https://h/x?y=@");
        assert_eq!(w("http://a@b@h"), "http://h");
        assert_eq!(w("not a url"), "not a url");
    }
}
