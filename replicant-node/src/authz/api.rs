//! The authorization REST API (EMQX's paths and JSON shapes), every route behind
//! `crate::http::api::authorize`:
//!
//! - `GET|POST /api/v5/authorization/sources/built_in_database/rules/users` (GET paged
//!   `?page=1&limit=100` → `{data: [{username, rules}], meta: {page, limit, count}}`; POST a
//!   list `[{username, rules: [..]}]`, each replacing that user's rules)
//! - `GET|PUT|DELETE .../rules/users/{username}` (`{username, rules}`)
//! - the same under `.../rules/clients` and `.../rules/clients/{clientid}` (`clientid`)
//! - `GET|POST|DELETE .../rules/all` (`{rules: [..]}`)
//! - `DELETE /api/v5/authorization/cache`: every connection of the cluster drops its cache
//!
//! A rule is `{"topic": "t/1", "permission": "allow", "action": "publish", "qos": [0, 1],
//! "retain": "all"}` (`qos` and `retain` optional). Writes go through the cores: 204 once
//! committed, 400 for a bad body (the rule and the fault named), 503 when the cores could
//! not commit. Bodies are bounded ([`MAX_BODY_BYTES`], [`MAX_POST_ENTRIES`] entries, the
//! table's 100 rules per key).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use core_node::api::split_entries;
use meshmq_proto::tables::{
    AuthzCacheClear, AuthzRules, AuthzRulesDelete, AuthzRulesKind, AuthzRulesSet, op::Kind,
    op_result::Outcome,
};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::rules_json::{Entry, RuleJson, key_name, row};
use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, Denied, ErrorBody, authorize, bad_request, not_found, unavailable,
};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most entries in one POST of users or clients.
pub const MAX_POST_ENTRIES: usize = 1000;
/// Largest `limit` of a page.
pub const MAX_PAGE_LIMIT: usize = 1000;

const USERS: AuthzRulesKind = AuthzRulesKind::Username;
const CLIENTS: AuthzRulesKind = AuthzRulesKind::Clientid;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list_users, post_users))
        .routes(routes!(get_user, put_user, delete_user))
        .routes(routes!(list_clients, post_clients))
        .routes(routes!(get_client, put_client, delete_client))
        .routes(routes!(get_all, post_all, delete_all))
        .routes(routes!(clear_cache))
        .with_state(ctx)
}

/// A page of `{username|clientid, rules}` (no `hasnext`, as EMQX's).
type PageResult = Result<Response, ApiError>;

/// The users' rules, paged.
#[utoipa::path(get, path = "/api/v5/authorization/sources/built_in_database/rules/users",
    tag = "authorization", params(PageQuery),
    responses((status = 200, description = "`{data: [{username, rules}], meta: {page, limit, count}}`",
               body = Object), Denied,
              (status = 400, description = "Bad paging", body = ErrorBody)))]
async fn list_users(s: State<Arc<Ctx>>, h: HeaderMap, q: Query<PageQuery>) -> PageResult {
    list(s, h, q, USERS).await
}

/// Sets the rules of each user listed (replacing theirs).
#[utoipa::path(post, path = "/api/v5/authorization/sources/built_in_database/rules/users",
    tag = "authorization", request_body = Vec<Entry>,
    responses((status = 204, description = "Committed"), Denied,
              (status = 400, description = "A bad entry or rule (named)", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn post_users(s: State<Arc<Ctx>>, h: HeaderMap, b: Bytes) -> PageResult {
    post_many(s, h, b, USERS).await
}

/// One user's rules.
#[utoipa::path(get, path = "/api/v5/authorization/sources/built_in_database/rules/users/{username}",
    tag = "authorization", params(("username" = String, Path, description = "The username")),
    responses((status = 200, description = "`{username, rules}`", body = Object), Denied,
              (status = 404, description = "No rules for this user", body = ErrorBody)))]
async fn get_user(s: State<Arc<Ctx>>, h: HeaderMap, k: Path<String>) -> PageResult {
    get_one(s, h, k, USERS).await
}

/// Sets one user's rules.
#[utoipa::path(put, path = "/api/v5/authorization/sources/built_in_database/rules/users/{username}",
    tag = "authorization", params(("username" = String, Path, description = "The username")),
    request_body = Entry,
    responses((status = 204, description = "Committed"), Denied,
              (status = 400, description = "A bad rule (named), or another username", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn put_user(s: State<Arc<Ctx>>, h: HeaderMap, k: Path<String>, b: Bytes) -> PageResult {
    put_one(s, h, k, b, USERS).await
}

/// Removes one user's rules.
#[utoipa::path(delete, path = "/api/v5/authorization/sources/built_in_database/rules/users/{username}",
    tag = "authorization", params(("username" = String, Path, description = "The username")),
    responses((status = 204, description = "Committed"), Denied,
              (status = 404, description = "No rules for this user", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn delete_user(s: State<Arc<Ctx>>, h: HeaderMap, k: Path<String>) -> PageResult {
    delete_one(s, h, k, USERS).await
}

/// The clients' rules, paged.
#[utoipa::path(get, path = "/api/v5/authorization/sources/built_in_database/rules/clients",
    tag = "authorization", params(PageQuery),
    responses((status = 200, description = "`{data: [{clientid, rules}], meta: {page, limit, count}}`",
               body = Object), Denied,
              (status = 400, description = "Bad paging", body = ErrorBody)))]
async fn list_clients(s: State<Arc<Ctx>>, h: HeaderMap, q: Query<PageQuery>) -> PageResult {
    list(s, h, q, CLIENTS).await
}

/// Sets the rules of each client listed (replacing theirs).
#[utoipa::path(post, path = "/api/v5/authorization/sources/built_in_database/rules/clients",
    tag = "authorization", request_body = Vec<Entry>,
    responses((status = 204, description = "Committed"), Denied,
              (status = 400, description = "A bad entry or rule (named)", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn post_clients(s: State<Arc<Ctx>>, h: HeaderMap, b: Bytes) -> PageResult {
    post_many(s, h, b, CLIENTS).await
}

/// One client's rules.
#[utoipa::path(get, path = "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}",
    tag = "authorization", params(("clientid" = String, Path, description = "The client id")),
    responses((status = 200, description = "`{clientid, rules}`", body = Object), Denied,
              (status = 404, description = "No rules for this client", body = ErrorBody)))]
async fn get_client(s: State<Arc<Ctx>>, h: HeaderMap, k: Path<String>) -> PageResult {
    get_one(s, h, k, CLIENTS).await
}

/// Sets one client's rules.
#[utoipa::path(put, path = "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}",
    tag = "authorization", params(("clientid" = String, Path, description = "The client id")),
    request_body = Entry,
    responses((status = 204, description = "Committed"), Denied,
              (status = 400, description = "A bad rule (named), or another client id", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn put_client(s: State<Arc<Ctx>>, h: HeaderMap, k: Path<String>, b: Bytes) -> PageResult {
    put_one(s, h, k, b, CLIENTS).await
}

/// Removes one client's rules.
#[utoipa::path(delete, path = "/api/v5/authorization/sources/built_in_database/rules/clients/{clientid}",
    tag = "authorization", params(("clientid" = String, Path, description = "The client id")),
    responses((status = 204, description = "Committed"), Denied,
              (status = 404, description = "No rules for this client", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn delete_client(s: State<Arc<Ctx>>, h: HeaderMap, k: Path<String>) -> PageResult {
    delete_one(s, h, k, CLIENTS).await
}

/// `?page=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page, from 1 (default 1).
    page: Option<usize>,
    /// Entries per page, 1..=1000 (default 100).
    limit: Option<usize>,
}

/// A JSON body (`Content-Type: application/json`, as every JSON-body route takes it); its
/// errors name the field, never a value sent.
fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(bad_request(format!(
            "body larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    crate::http::api::require_json(headers)?;
    crate::http::api::parse_json(body)
}

/// Commits `kinds` in entries of at most `MAX_OPS_PER_ENTRY` ops and `MAX_ENTRY_BYTES`
/// bytes; 204, 400 on a rejection, 503 when the cores could not commit.
async fn commit(ctx: &Ctx, ops: Vec<Kind>) -> Result<Response, ApiError> {
    let ops: Vec<_> = ops.into_iter().map(cluster::op).collect();
    for chunk in split_entries(ops) {
        let outcomes = cluster::try_transact(&ctx.tables, chunk)
            .await
            .map_err(|e| unavailable(format!("the cores could not commit: {e}")))?;
        for o in outcomes {
            if let Outcome::Rejected(r) = o {
                return Err(bad_request(r.detail));
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn set_op(row: AuthzRules) -> Kind {
    Kind::AuthzRulesSet(AuthzRulesSet { rules: Some(row) })
}

fn rules_json(r: &AuthzRules) -> Vec<RuleJson> {
    r.rules.iter().map(RuleJson::from_row).collect()
}

async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    kind: AuthzRulesKind,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let page = q.page.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(bad_request(format!("limit must be 1..={MAX_PAGE_LIMIT}")));
    }
    let skip = (page - 1).saturating_mul(limit);
    let name = key_name(kind);
    let (data, count) = ctx.tables.core.read(|t| {
        let data: Vec<_> = t
            .authz_rules_page(kind, skip, limit)
            .into_iter()
            .map(|r| json!({ name: r.key, "rules": rules_json(r) }))
            .collect();
        (data, t.authz_rules_count(kind))
    });
    let meta = json!({ "page": page, "limit": limit, "count": count });
    Ok(Json(json!({ "data": data, "meta": meta })).into_response())
}

async fn post_many(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
    kind: AuthzRulesKind,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let entries: Vec<Entry> = parse(&headers, &body)?;
    if entries.len() > MAX_POST_ENTRIES {
        return Err(bad_request(format!("more than {MAX_POST_ENTRIES} entries")));
    }
    let mut ops = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let key = e
            .key(kind)
            .ok_or_else(|| bad_request(format!("[{i}]: no {}", key_name(kind))))?;
        ops.push(set_op(
            row(kind, key, &e.rules).map_err(|e| bad_request(format!("[{i}]: {}", e.message)))?,
        ));
    }
    commit(&ctx, ops).await
}

async fn get_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    kind: AuthzRulesKind,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let rules = ctx
        .tables
        .core
        .read(|t| t.authz_rules(kind, &key).map(rules_json));
    let name = key_name(kind);
    match rules {
        Some(rules) => Ok(Json(json!({ name: key, "rules": rules })).into_response()),
        None => Err(not_found(format!("no rules for {name} {key:?}"))),
    }
}

async fn put_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Bytes,
    kind: AuthzRulesKind,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let e: Entry = parse(&headers, &body)?;
    if e.key(kind).is_some_and(|k| k != key) {
        return Err(bad_request(format!(
            "the body's {} differs from the path's",
            key_name(kind)
        )));
    }
    commit(&ctx, vec![set_op(row(kind, &key, &e.rules)?)]).await
}

async fn delete_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    kind: AuthzRulesKind,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    if ctx
        .tables
        .core
        .read(|t| t.authz_rules(kind, &key).is_none())
    {
        return Err(not_found(format!(
            "no rules for {} {key:?}",
            key_name(kind)
        )));
    }
    let op = Kind::AuthzRulesDelete(AuthzRulesDelete {
        kind: kind as i32,
        key,
    });
    commit(&ctx, vec![op]).await
}

/// `{rules}` of the all list.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AuthzRulesAll)]
struct AllBody {
    /// The rules for every client, in order (at most 100).
    rules: Vec<RuleJson>,
}

/// The rules for every client.
#[utoipa::path(get, path = "/api/v5/authorization/sources/built_in_database/rules/all",
    tag = "authorization",
    responses((status = 200, description = "`{rules}`", body = AllBody), Denied))]
async fn get_all(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let rules = ctx.tables.core.read(|t| {
        t.authz_rules(AuthzRulesKind::All, "")
            .map(rules_json)
            .unwrap_or_default()
    });
    Ok(Json(json!({ "rules": rules })).into_response())
}

/// Sets the rules for every client.
#[utoipa::path(post, path = "/api/v5/authorization/sources/built_in_database/rules/all",
    tag = "authorization", request_body = AllBody,
    responses((status = 204, description = "Committed"), Denied,
              (status = 400, description = "A bad rule (named)", body = ErrorBody),
              (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn post_all(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let b: AllBody = parse(&headers, &body)?;
    commit(&ctx, vec![set_op(row(AuthzRulesKind::All, "", &b.rules)?)]).await
}

/// Removes the rules for every client.
#[utoipa::path(delete, path = "/api/v5/authorization/sources/built_in_database/rules/all",
    tag = "authorization",
    responses((status = 204, description = "Committed"), Denied,
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn delete_all(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let op = Kind::AuthzRulesDelete(AuthzRulesDelete {
        kind: AuthzRulesKind::All as i32,
        key: String::new(),
    });
    commit(&ctx, vec![op]).await
}

/// Every connection of the cluster drops its authorization cache.
#[utoipa::path(delete, path = "/api/v5/authorization/cache", tag = "authorization",
    responses((status = 204, description = "Committed"), Denied,
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
async fn clear_cache(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    commit(&ctx, vec![Kind::AuthzCacheClear(AuthzCacheClear {})]).await
}
