//! The alarms REST API, with EMQX 5's path and JSON for the list:
//!
//! - `GET /api/v5/alarms?activated=true|false&page=1&limit=100`: the active alarms
//!   (`activated=true`, the default) or the deactivated ones, newest activation first:
//!   `{"data": [{"node", "name", "severity", "message", "details", "duration",
//!   "activate_at", "deactivate_at"}], "meta": {"page", "limit", "count", "hasnext"}}`
//!   (`duration` in ms; times RFC 3339 with ms; `deactivate_at` only on deactivated ones).
//! - `DELETE /api/v5/alarms`: the history (deactivated alarms) emptied, 204.
//! - `POST /api/v5/alarms/deactivated` `{"name", "node"?}`: deactivates an active alarm by
//!   hand (EMQX 4's route and body: EMQX 5 has none); `node` defaults to this node. 200
//!   with the deactivated alarm, 404 when no such alarm is active. A check whose condition
//!   still holds raises it again at its next run.
//! - Node-local, answering for this node only and never fanning out (EMQX 4's
//!   `nodes/{node}/alarms`): `GET /api/v5/nodes/{node}/alarms`, `DELETE
//!   /api/v5/nodes/{node}/alarms`, `POST /api/v5/nodes/{node}/alarms/deactivated`
//!   `{"name"}`. Another node's name: 404.
//!
//! The cluster-wide routes are meant to fan out to every replicant's node-local route
//! ([`gather`], [`on_node`]); until the cluster fan-out exists they serve this node alone
//! (another node named in a deactivation: 404 if unknown, 501 otherwise).
//!
//! Every route needs the API key when one is set ([`authorize`] first); bad input is 400
//! with a message, a body not sent as JSON 415. Bodies are bounded ([`MAX_BODY`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{notify, now_us};
use crate::ctx::Ctx;
use crate::http::api::{
    ApiError, authorize, bad_request, error, not_found, parse_json, require_json,
};

/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Largest page.
pub const MAX_LIMIT: usize = 10_000;
/// Default page size (EMQX's).
const DEFAULT_LIMIT: usize = 100;
/// Longest alarm name accepted in a request.
const MAX_NAME: usize = 512;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/api/v5/alarms", get(list).delete(clear))
        .route("/api/v5/alarms/deactivated", post(deactivate))
        .route(
            "/api/v5/nodes/{node}/alarms",
            get(node_list).delete(node_clear),
        )
        .route(
            "/api/v5/nodes/{node}/alarms/deactivated",
            post(node_deactivate),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ctx)
}

/// The list's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `true` (default): active alarms; `false`: deactivated ones.
    activated: Option<String>,
    /// Page number, from 1.
    page: Option<String>,
    /// Page size, 1 to 10 000 (default 100).
    limit: Option<String>,
}

/// The checked query: (activated, page, limit).
fn parse_query(
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(bool, usize, usize), ApiError> {
    let Ok(Query(q)) = q else {
        return Err(bad_request("invalid query string"));
    };
    let activated = match q.activated.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(bad_request("activated must be true or false")),
    };
    let number = |name: &str, v: Option<&str>, default: usize, max: usize| match v {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad_request(format!("{name} must be an integer in 1..={max}"))),
    };
    let page = number("page", q.page.as_deref(), 1, 1_000_000_000)?;
    let limit = number("limit", q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    Ok((activated, page, limit))
}

/// One page of `rows` (sorted), with EMQX's `meta`.
fn page_of(rows: Vec<Value>, page: usize, limit: usize) -> Value {
    let count = rows.len();
    let skip = (page - 1).saturating_mul(limit);
    let data: Vec<Value> = rows.into_iter().skip(skip).take(limit).collect();
    let hasnext = skip.saturating_add(data.len()) < count;
    json!({ "data": data, "meta": { "page": page, "limit": limit, "count": count, "hasnext": hasnext } })
}

/// This node's alarms of one kind, as the API shows them, newest activation first.
fn local_rows(ctx: &Ctx, activated: bool) -> Vec<Value> {
    let now = now_us();
    ctx.alarms
        .list(activated)
        .iter()
        .map(|a| a.to_api_json(ctx.node(), now))
        .collect()
}

/// Every replicant's alarms of one kind, newest activation first. This node's only until
/// the cluster fan-out exists; then each node's `GET /api/v5/nodes/{node}/alarms`.
async fn gather(ctx: &Ctx, activated: bool) -> Vec<Value> {
    let mut rows = local_rows(ctx, activated);
    rows.sort_by(|a, b| {
        let key = |v: &Value| v["activate_at"].as_str().map(str::to_owned);
        key(b).cmp(&key(a))
    });
    rows
}

/// Sends a node-local request to another node. Until the cluster fan-out exists: 404 for a
/// node the tables do not know, 501 for another replicant.
async fn on_node(ctx: &Ctx, node: &str) -> Result<Response, ApiError> {
    let known = ctx.tables.core.read(|t| t.node(node).is_some());
    if !known {
        return Err(not_found(format!("node {:?} not found", short(node))));
    }
    Err(error(
        StatusCode::NOT_IMPLEMENTED,
        "NOT_IMPLEMENTED",
        format!("alarms of node {node} are served by its own API"),
    ))
}

/// At most 64 characters of `s`, for messages.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[utoipa::path(get, path = "/api/v5/alarms", params(ListQuery), tag = "alarms",
    responses((status = 200, description = "A page of alarms"), (status = 400, description = "Bad query"),
        (status = 401, description = "API key missing or wrong")))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let (activated, page, limit) = parse_query(query)?;
    let rows = gather(&ctx, activated).await;
    Ok(Json(page_of(rows, page, limit)).into_response())
}

#[utoipa::path(get, path = "/api/v5/nodes/{node}/alarms", params(("node" = String, Path), ListQuery),
    tag = "alarms", responses((status = 200, description = "A page of this node's alarms"),
        (status = 404, description = "Another node")))]
async fn node_list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    this_node(&ctx, &node)?;
    let (activated, page, limit) = parse_query(query)?;
    Ok(Json(page_of(local_rows(&ctx, activated), page, limit)).into_response())
}

/// 404 unless `node` is this node.
fn this_node(ctx: &Ctx, node: &str) -> Result<(), ApiError> {
    if node == ctx.node() {
        Ok(())
    } else {
        Err(not_found(format!(
            "node {:?} is not this node: ask it, or use /api/v5/alarms",
            short(node)
        )))
    }
}

#[utoipa::path(delete, path = "/api/v5/alarms", tag = "alarms",
    responses((status = 204, description = "History cleared"), (status = 401, description = "API key missing or wrong")))]
async fn clear(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    // Every replicant's DELETE /api/v5/nodes/{node}/alarms once the fan-out exists.
    ctx.alarms.clear_history();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(delete, path = "/api/v5/nodes/{node}/alarms", params(("node" = String, Path)), tag = "alarms",
    responses((status = 204, description = "This node's history cleared"), (status = 404, description = "Another node")))]
async fn node_clear(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    this_node(&ctx, &node)?;
    ctx.alarms.clear_history();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../alarms/deactivated` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateBody {
    /// The active alarm's name.
    name: String,
    /// Its node (default: this node; the node-local route refuses another).
    node: Option<String>,
}

fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<DeactivateBody, ApiError> {
    require_json(headers)?;
    let b: DeactivateBody = parse_json(body)?;
    if b.name.is_empty() || b.name.len() > MAX_NAME {
        return Err(bad_request(format!("name must be 1..={MAX_NAME} bytes")));
    }
    Ok(b)
}

#[utoipa::path(post, path = "/api/v5/alarms/deactivated", request_body = DeactivateBody, tag = "alarms",
    responses((status = 200, description = "The deactivated alarm"), (status = 400, description = "Bad body"),
        (status = 404, description = "No such active alarm, or unknown node"), (status = 415, description = "Not JSON")))]
async fn deactivate(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let b = parse_body(&headers, &body)?;
    match b.node.as_deref() {
        Some(node) if node != ctx.node() => on_node(&ctx, node).await,
        _ => deactivate_here(&ctx, &b.name),
    }
}

#[utoipa::path(post, path = "/api/v5/nodes/{node}/alarms/deactivated", params(("node" = String, Path)),
    request_body = DeactivateBody, tag = "alarms",
    responses((status = 200, description = "The deactivated alarm"), (status = 404, description = "No such alarm, or another node")))]
async fn node_deactivate(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    this_node(&ctx, &node)?;
    let b = parse_body(&headers, &body)?;
    if b.node.as_deref().is_some_and(|n| n != node) {
        return Err(bad_request("node in the body differs from the path"));
    }
    deactivate_here(&ctx, &b.name)
}

/// Deactivates `name` on this node (notified as any deactivation); 404 if not active.
fn deactivate_here(ctx: &Ctx, name: &str) -> Result<Response, ApiError> {
    let Some(event) = ctx.alarms.deactivate(name) else {
        return Err(not_found(format!(
            "no active alarm named {:?}",
            short(name)
        )));
    };
    notify::changed(ctx, &event);
    let super::Event::Deactivated(alarm) = &event else {
        return Err(not_found("no such alarm"));
    };
    Ok(Json(alarm.to_api_json(ctx.node(), now_us())).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_meta() {
        let rows: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let p = page_of(rows.clone(), 2, 2);
        assert_eq!(p["data"], json!([2, 3]));
        assert_eq!(
            p["meta"],
            json!({"page": 2, "limit": 2, "count": 5, "hasnext": true})
        );
        let last = page_of(rows.clone(), 3, 2);
        assert_eq!(
            (last["data"].clone(), last["meta"]["hasnext"].clone()),
            (json!([4]), json!(false))
        );
        assert_eq!(page_of(rows, 9, 2)["data"], json!([]));
    }
}
