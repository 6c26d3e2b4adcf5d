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

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get};
use core_node::api::split_entries;
use meshmq_proto::tables::{
    AuthzCacheClear, AuthzRule, AuthzRules, AuthzRulesDelete, AuthzRulesKind, AuthzRulesSet,
    op::Kind, op_result::Outcome,
};
use meshmq_shared::auth::acl::{self, Who};
use meshmq_shared::tables::authz_rules::{MAX_KEY_LEN, MAX_RULES};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{ApiError, authorize, bad_request, not_found, unavailable};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most entries in one POST of users or clients.
pub const MAX_POST_ENTRIES: usize = 1000;
/// Largest `limit` of a page.
pub const MAX_PAGE_LIMIT: usize = 1000;

const BASE: &str = "/api/v5/authorization/sources/built_in_database/rules";

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route(
            &format!("{BASE}/users"),
            get(|s, h, q| list(s, h, q, AuthzRulesKind::Username))
                .post(|s, h, b| post_many(s, h, b, AuthzRulesKind::Username)),
        )
        .route(
            &format!("{BASE}/users/{{key}}"),
            get(|s, h, k| get_one(s, h, k, AuthzRulesKind::Username))
                .put(|s, h, k, b| put_one(s, h, k, b, AuthzRulesKind::Username))
                .delete(|s, h, k| delete_one(s, h, k, AuthzRulesKind::Username)),
        )
        .route(
            &format!("{BASE}/clients"),
            get(|s, h, q| list(s, h, q, AuthzRulesKind::Clientid))
                .post(|s, h, b| post_many(s, h, b, AuthzRulesKind::Clientid)),
        )
        .route(
            &format!("{BASE}/clients/{{key}}"),
            get(|s, h, k| get_one(s, h, k, AuthzRulesKind::Clientid))
                .put(|s, h, k, b| put_one(s, h, k, b, AuthzRulesKind::Clientid))
                .delete(|s, h, k| delete_one(s, h, k, AuthzRulesKind::Clientid)),
        )
        .route(
            &format!("{BASE}/all"),
            get(get_all).post(post_all).delete(delete_all),
        )
        .route("/api/v5/authorization/cache", delete(clear_cache))
        .with_state(ctx)
}

/// A rule as the API reads and writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleJson {
    /// Topic name or filter.
    pub topic: String,
    /// `allow` / `deny`.
    pub permission: String,
    /// `publish` / `subscribe` / `all`.
    pub action: String,
    /// QoS levels (default: all).
    #[serde(default)]
    pub qos: Vec<u32>,
    /// `true` / `false` / `"all"` (default).
    #[serde(default)]
    pub retain: Option<RetainJson>,
}

/// `retain` as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RetainJson {
    /// `true` / `false`.
    Flag(bool),
    /// `"all"`.
    Word(String),
}

impl RuleJson {
    fn to_row(&self) -> AuthzRule {
        let retain = match &self.retain {
            None => "all".to_owned(),
            Some(RetainJson::Flag(b)) => b.to_string(),
            Some(RetainJson::Word(w)) => w.clone(),
        };
        AuthzRule {
            topic: self.topic.clone(),
            permission: self.permission.clone(),
            action: self.action.clone(),
            qos: self.qos.clone(),
            retain,
        }
    }

    fn from_row(r: &AuthzRule) -> Self {
        let retain = match r.retain.as_str() {
            "true" => RetainJson::Flag(true),
            "false" => RetainJson::Flag(false),
            _ => RetainJson::Word("all".into()),
        };
        RuleJson {
            topic: r.topic.clone(),
            permission: r.permission.clone(),
            action: r.action.clone(),
            qos: if r.qos.is_empty() {
                vec![0, 1, 2]
            } else {
                r.qos.clone()
            },
            retain: Some(retain),
        }
    }
}

/// `{username|clientid, rules}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    clientid: Option<String>,
    rules: Vec<RuleJson>,
}

impl Entry {
    fn key(&self, kind: AuthzRulesKind) -> Option<&str> {
        match kind {
            AuthzRulesKind::Username => self.username.as_deref(),
            AuthzRulesKind::Clientid => self.clientid.as_deref(),
            _ => None,
        }
    }
}

/// `?page=&limit=`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<usize>,
    limit: Option<usize>,
}

fn key_name(kind: AuthzRulesKind) -> &'static str {
    match kind {
        AuthzRulesKind::Clientid => "clientid",
        _ => "username",
    }
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

/// The table row for (kind, key, rules), checked as the table will check it.
fn row(kind: AuthzRulesKind, key: &str, rules: &[RuleJson]) -> Result<AuthzRules, ApiError> {
    if kind != AuthzRulesKind::All && (key.is_empty() || key.len() > MAX_KEY_LEN) {
        return Err(bad_request(format!(
            "{} must be 1..={MAX_KEY_LEN} bytes",
            key_name(kind)
        )));
    }
    if rules.len() > MAX_RULES {
        return Err(bad_request(format!("more than {MAX_RULES} rules")));
    }
    let rules: Vec<AuthzRule> = rules.iter().map(RuleJson::to_row).collect();
    for (i, r) in rules.iter().enumerate() {
        acl::from_row(r, Who::All).map_err(|e| bad_request(format!("rules[{i}]: {e}")))?;
    }
    Ok(AuthzRules {
        kind: kind as i32,
        key: key.to_owned(),
        rules,
    })
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllBody {
    rules: Vec<RuleJson>,
}

async fn get_all(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let rules = ctx.tables.core.read(|t| {
        t.authz_rules(AuthzRulesKind::All, "")
            .map(rules_json)
            .unwrap_or_default()
    });
    Ok(Json(json!({ "rules": rules })).into_response())
}

async fn post_all(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let b: AllBody = parse(&headers, &body)?;
    commit(&ctx, vec![set_op(row(AuthzRulesKind::All, "", &b.rules)?)]).await
}

async fn delete_all(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let op = Kind::AuthzRulesDelete(AuthzRulesDelete {
        kind: AuthzRulesKind::All as i32,
        key: String::new(),
    });
    commit(&ctx, vec![op]).await
}

async fn clear_cache(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    commit(&ctx, vec![Kind::AuthzCacheClear(AuthzCacheClear {})]).await
}
