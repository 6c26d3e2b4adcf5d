//! The authentication REST API (EMQX 5's paths and JSON shapes), on every replicant:
//!
//! - `GET /api/v5/authentication`: the configured chain, in order (ids, mechanism, backend,
//!   enable and settings; never a secret). `GET /api/v5/authentication/{id}`: one of them.
//!   Ids are EMQX's, `password_based:built_in_database` (`%3A` for `:` works too).
//! - `GET .../{id}/users?page=1&limit=100&like_user_id=..&is_superuser=..`:
//!   `{data: [{user_id, is_superuser}], meta: {page, limit, count, hasnext}}`.
//! - `POST .../{id}/users` `{user_id, password, is_superuser?}`: 201, 409 if it exists.
//! - `GET / PUT {password?, is_superuser?} / DELETE .../{id}/users/{user_id}`: 404 unknown;
//!   DELETE answers 204.
//! - POST and PUT bodies need `Content-Type: application/json` (415 otherwise).
//! - `POST .../{id}/import_users` and `GET .../{id}/export_users`: [`super::transfer`].
//!
//! Every route checks the API key first ([`crate::http::api::authorize`]). Users are written
//! through the cores (`AuthUserSet` / `AuthUserDelete`), so a change made here holds on
//! every node; 503 when the cores cannot commit. New passwords are hashed with the
//! authenticator's `password_hash_algorithm` and a fresh random 16-byte salt on the hashing
//! pool, never on the runtime's threads. Nothing here logs or answers a password or a hash.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use meshmq_proto::tables::{AuthUser, AuthUserDelete, AuthUserSet, Op, op, op_result::Outcome};
use meshmq_shared::config::AuthenticatorConfig;
use meshmq_shared::metrics as m;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::import::MAX_PASSWORD_LEN;
use super::new_password::NewPassword;
use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, Denied, ErrorBody, authorize, bad_request, error, not_found, parse_json,
    require_json, unavailable,
};

/// Largest JSON body of the user routes (a user id and a password fit well within).
const MAX_USER_BODY: usize = 256 * 1024;
/// Largest `limit` of a users page (EMQX's maximum).
pub const MAX_PAGE_LIMIT: usize = 10_000;
/// Longest `like_user_id` filter.
const MAX_LIKE_LEN: usize = 1024;
/// Users read from the replica per lock hold while a list is filtered or counted, so a long
/// scan never holds the apply of new entries for long.
const SCAN_CHUNK: usize = 1000;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    let users = OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .layer(DefaultBodyLimit::max(MAX_USER_BODY));
    let transfer = OpenApiRouter::new()
        .routes(routes!(super::transfer::import_users))
        .routes(routes!(super::transfer::export_users))
        .layer(DefaultBodyLimit::max(super::import::MAX_IMPORT_BYTES));
    super::chain_api::routes()
        .merge(users)
        .merge(transfer)
        .with_state(ctx)
}

/// Answers an error and counts it (`meshmq_authn_api_errors_total{code}`).
pub(super) fn fail(e: ApiError) -> Response {
    metrics::counter!(m::AUTHN_API_ERRORS_TOTAL, "code" => e.code).increment(1);
    e.into_response()
}

/// The API key check (the caller answers a refusal with [`fail`], which counts it).
pub(super) fn check_key(ctx: &Ctx, headers: &HeaderMap) -> Result<(), ApiError> {
    authorize(ctx, headers)
}

/// How the built-in database authenticator named `id` stores new passwords (404 unknown).
/// `password_based` and `scram` share the users table; each stores passwords its own way.
pub(super) fn built_in(ctx: &Ctx, id: &str) -> Result<NewPassword, ApiError> {
    let found = ctx.config.authentication.iter().find(|a| a.id() == id);
    match found {
        Some(AuthenticatorConfig::BuiltInDatabase(c)) => {
            Ok(NewPassword::Hash(c.password_hash_algorithm.clone()))
        }
        Some(AuthenticatorConfig::Scram(c)) => Ok(NewPassword::Scram {
            algorithm: c.algorithm,
            iterations: c.iteration_count,
        }),
        Some(AuthenticatorConfig::Jwt(_) | AuthenticatorConfig::Http(_)) => Err(bad_request(
            format!("authenticator {id:?} keeps no users (only built_in_database ones do)"),
        )),
        None => Err(not_found(format!("authenticator {id:?} not found"))),
    }
}

/// Query of the users list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Page, from 1 (default 1).
    page: Option<usize>,
    /// Users per page, 1..=10000 (default 100).
    limit: Option<usize>,
    /// Only user ids containing this text.
    like_user_id: Option<String>,
    /// Only superusers (`true`) or only the others (`false`).
    is_superuser: Option<bool>,
}

/// The authenticator's users, paged and filtered.
#[utoipa::path(get, path = "/api/v5/authentication/{id}/users", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`"), ListQuery),
    responses((status = 200, description = "`{data: [{user_id, is_superuser}], meta: {page, limit, \
count, hasnext}}`", body = Object), Denied,
              (status = 400, description = "Bad input (the field named), or an authenticator that keeps no users", body = ErrorBody), (status = 404, description = "No such authenticator", body = ErrorBody)))]
async fn list_users(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers) {
        return fail(e);
    }
    if let Err(e) = built_in(&ctx, &id) {
        return fail(e);
    }
    let Ok(Query(q)) = query else {
        return fail(bad_request(
            "query: page and limit are positive integers, is_superuser true or false",
        ));
    };
    let page = q.page.unwrap_or(1);
    let limit = q.limit.unwrap_or(100);
    if page == 0 || limit == 0 || limit > MAX_PAGE_LIMIT {
        return fail(bad_request(format!(
            "page must be at least 1 and limit 1..={MAX_PAGE_LIMIT}"
        )));
    }
    let like = q.like_user_id.unwrap_or_default();
    if like.len() > MAX_LIKE_LEN {
        return fail(bad_request(format!(
            "like_user_id is longer than {MAX_LIKE_LEN} bytes"
        )));
    }
    let keep = |u: &AuthUser| {
        u.user_id.contains(like.as_str()) && q.is_superuser.is_none_or(|s| s == u.is_superuser)
    };
    let skip = (page - 1).saturating_mul(limit);
    let mut data = Vec::new();
    let mut count = 0usize;
    let mut after: Option<String> = None;
    loop {
        let (chunk, last) = ctx.tables.core.read(|t| {
            let rows = t.auth_users_page(after.as_deref(), SCAN_CHUNK);
            let last = rows.last().map(|u| u.user_id.clone());
            let picked: Vec<(String, bool)> = rows
                .into_iter()
                .filter(|u| keep(u))
                .map(|u| (u.user_id.clone(), u.is_superuser))
                .collect();
            (picked, last)
        });
        for (user_id, is_superuser) in chunk {
            if count >= skip && data.len() < limit {
                data.push(json!({ "user_id": user_id, "is_superuser": is_superuser }));
            }
            count += 1;
        }
        match last {
            Some(l) => after = Some(l),
            None => break,
        }
    }
    let meta = json!({
        "page": page,
        "limit": limit,
        "count": count,
        "hasnext": count > skip.saturating_add(data.len()),
    });
    Json(json!({ "data": data, "meta": meta })).into_response()
}

/// Body of `POST .../users`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    /// The username or client id (the authenticator's `user_id_type`).
    user_id: String,
    /// The password, stored hashed.
    password: String,
    /// Whether the user passes every authorization check (default false).
    #[serde(default)]
    is_superuser: bool,
}

/// Body of `PUT .../users/{user_id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UserUpdate {
    /// A new password.
    password: Option<String>,
    /// A new superuser flag.
    is_superuser: Option<bool>,
}

/// A user as the API shows it (never its password or hash).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct UserJson {
    /// The username or client id.
    user_id: String,
    /// Whether the user passes every authorization check.
    is_superuser: bool,
}

/// Parses a JSON body (400 naming the problem and the field, never echoing the body).
fn body<T: serde::de::DeserializeOwned>(
    bytes: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = bytes.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request body is larger than {MAX_USER_BODY} bytes"),
            )
        } else {
            bad_request(e.body_text())
        }
    })?;
    // Names the field at fault, never its value (a mistyped password).
    parse_json(&bytes)
}

/// Stores `password` as `recipe` says, with a fresh random salt, on the hashing pool.
pub(super) async fn hash_new(
    ctx: &Ctx,
    recipe: &NewPassword,
    password: String,
) -> Result<meshmq_proto::tables::PasswordHash, Response> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(fail(bad_request(format!(
            "password must be 1..={MAX_PASSWORD_LEN} bytes"
        ))));
    }
    let recipe = recipe.clone();
    let made = ctx
        .authn
        .pool()
        .run(move || recipe.make(password.as_bytes()))
        .await;
    match made {
        Some(Ok(row)) => Ok(row),
        Some(Err(e)) => Err(fail(bad_request(format!("password: {e}")))),
        None => Err(fail(unavailable("the password-hashing queue is full"))),
    }
}

/// Commits one op; the error answer when it did not apply.
async fn write(ctx: &Ctx, op: op::Kind) -> Result<(), Response> {
    match cluster::try_transact(&ctx.tables, vec![Op { kind: Some(op) }]).await {
        Ok(outcomes) => match outcomes.first() {
            Some(Outcome::Rejected(r)) => Err(fail(bad_request(format!(
                "the tables refused the user: {}",
                r.reason
            )))),
            _ => Ok(()),
        },
        Err(e) => Err(fail(unavailable(format!(
            "the cores could not commit: {e}"
        )))),
    }
}

fn user_json(u: &AuthUser) -> UserJson {
    UserJson {
        user_id: u.user_id.clone(),
        is_superuser: u.is_superuser,
    }
}

fn check_user_id(user_id: &str) -> Result<(), ApiError> {
    use meshmq_shared::tables::auth_users::MAX_USER_ID_LEN;
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN || user_id.contains('\0') {
        return Err(bad_request(format!(
            "user_id must be 1..={MAX_USER_ID_LEN} bytes without NUL"
        )));
    }
    Ok(())
}

/// Adds a user.
#[utoipa::path(post, path = "/api/v5/authentication/{id}/users", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`")), request_body = NewUser,
    responses((status = 201, description = "Added", body = UserJson), Denied, (status = 400, description = "Bad input (the field named), or an authenticator that keeps no users", body = ErrorBody), (status = 404, description = "No such authenticator", body = ErrorBody),
              (status = 409, description = "The user exists", body = ErrorBody),
              (status = 413, description = "The body is too large", body = ErrorBody), (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody), (status = 503, description = "The cores could not commit, or the hashing queue is full", body = ErrorBody)))]
async fn create_user(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers).and_then(|()| require_json(&headers)) {
        return fail(e);
    }
    let config = match built_in(&ctx, &id) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let new: NewUser = match body(bytes) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    if let Err(e) = check_user_id(&new.user_id) {
        return fail(e);
    }
    // Checked against this node's replica: two creations of one id racing on two nodes
    // may both pass, and the later write wins (as two PUTs would).
    if ctx
        .tables
        .core
        .read(|t| t.auth_user(&new.user_id).is_some())
    {
        return fail(error(
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
            format!("user {:?} already exists", new.user_id),
        ));
    }
    let password = match hash_new(&ctx, &config, new.password).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let user = AuthUser {
        user_id: new.user_id,
        is_superuser: new.is_superuser,
        password: Some(password),
    };
    let answer = user_json(&user);
    let op = op::Kind::AuthUserSet(AuthUserSet { user: Some(user) });
    match write(&ctx, op).await {
        Ok(()) => (StatusCode::CREATED, Json(answer)).into_response(),
        Err(r) => r,
    }
}

/// One user.
#[utoipa::path(get, path = "/api/v5/authentication/{id}/users/{user_id}", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`"), ("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "The user", body = UserJson), Denied, (status = 400, description = "Bad input (the field named), or an authenticator that keeps no users", body = ErrorBody), (status = 404, description = "No such authenticator or user", body = ErrorBody)))]
async fn get_user(
    State(ctx): State<Arc<Ctx>>,
    Path((id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers) {
        return fail(e);
    }
    if let Err(e) = built_in(&ctx, &id) {
        return fail(e);
    }
    match ctx
        .tables
        .core
        .read(|t| t.auth_user(&user_id).map(user_json))
    {
        Some(u) => Json(u).into_response(),
        None => fail(not_found(format!("user {user_id:?} not found"))),
    }
}

/// Changes a user's password or superuser flag.
#[utoipa::path(put, path = "/api/v5/authentication/{id}/users/{user_id}", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`"), ("user_id" = String, Path, description = "The user")), request_body = UserUpdate,
    responses((status = 200, description = "The user", body = UserJson), Denied, (status = 400, description = "Bad input (the field named), or an authenticator that keeps no users", body = ErrorBody), (status = 404, description = "No such authenticator or user", body = ErrorBody),
              (status = 413, description = "The body is too large", body = ErrorBody), (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody), (status = 503, description = "The cores could not commit, or the hashing queue is full", body = ErrorBody)))]
async fn update_user(
    State(ctx): State<Arc<Ctx>>,
    Path((id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers).and_then(|()| require_json(&headers)) {
        return fail(e);
    }
    let config = match built_in(&ctx, &id) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let update: UserUpdate = match body(bytes) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let Some(mut user) = ctx.tables.core.read(|t| t.auth_user(&user_id).cloned()) else {
        return fail(not_found(format!("user {user_id:?} not found")));
    };
    if let Some(p) = update.password {
        match hash_new(&ctx, &config, p).await {
            Ok(p) => user.password = Some(p),
            Err(r) => return r,
        }
    }
    if let Some(s) = update.is_superuser {
        user.is_superuser = s;
    }
    let answer = user_json(&user);
    match write(
        &ctx,
        op::Kind::AuthUserSet(AuthUserSet { user: Some(user) }),
    )
    .await
    {
        Ok(()) => Json(answer).into_response(),
        Err(r) => r,
    }
}

/// Removes a user.
#[utoipa::path(delete, path = "/api/v5/authentication/{id}/users/{user_id}", tag = "authentication",
    params(("id" = String, Path, description = "Authenticator id, `password_based:built_in_database`"), ("user_id" = String, Path, description = "The user")),
    responses((status = 204, description = "Removed"), Denied, (status = 400, description = "Bad input (the field named), or an authenticator that keeps no users", body = ErrorBody), (status = 404, description = "No such authenticator or user", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn delete_user(
    State(ctx): State<Arc<Ctx>>,
    Path((id, user_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_key(&ctx, &headers) {
        return fail(e);
    }
    if let Err(e) = built_in(&ctx, &id) {
        return fail(e);
    }
    if !ctx.tables.core.read(|t| t.auth_user(&user_id).is_some()) {
        return fail(not_found(format!("user {user_id:?} not found")));
    }
    match write(&ctx, op::Kind::AuthUserDelete(AuthUserDelete { user_id })).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}
