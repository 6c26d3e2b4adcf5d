//! The alarms REST API, with EMQX 5's path and JSON for the list:
//!
//! - `GET /api/v5/alarms?activated=true|false&page=1&limit=100`: every replicant's active
//!   alarms (`activated=true`, the default) or deactivated ones, newest activation first:
//!   `{"data": [{"node", "name", "severity", "message", "details", "duration",
//!   "activate_at", "deactivate_at"}], "meta": {"page", "limit", "count", "hasnext"}}`
//!   (`duration` in ms; times RFC 3339 with ms; `deactivate_at` only on deactivated ones;
//!   `meta.failed_nodes` lists the replicants that did not answer, when any did not).
//! - `DELETE /api/v5/alarms`: every replicant's history emptied: 204, or 200
//!   `{"failed_nodes": [...]}` when some did not answer (the others were emptied).
//! - `POST /api/v5/alarms/deactivated` `{"name", "node"?}`: deactivates an active alarm by
//!   hand (EMQX 4's route and body: EMQX 5 has none); `node` defaults to this node. 200
//!   with the deactivated alarm, 404 when no such alarm is active or no such node, 503 when
//!   the node does not answer. A check whose condition still holds raises it again.
//! - Node-local, answering for one node (EMQX 4's `nodes/{node}/alarms`): `GET` and
//!   `DELETE /api/v5/nodes/{node}/alarms`, `POST /api/v5/nodes/{node}/alarms/deactivated`
//!   `{"name"}`. Another node's name is forwarded to it (`crate::fanout::call_node`),
//!   except in a call the fan-out made: 404 then, so calls never bounce.
//!
//! The cluster-wide routes ([`cluster`]) fan out to the node-local ones. Every route needs
//! the API key when one is set ([`authorize`] first); bad input is 400 with a message, a
//! body not sent as JSON 415. Bodies are bounded ([`MAX_BODY`]).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{notify, now_us};
use crate::ctx::Ctx;
use crate::fanout::{self, FanoutError};
use crate::http::api::{
    ApiError, authorize, bad_request, error, not_found, parse_json, require_json,
};

#[path = "api_cluster.rs"]
mod cluster;

/// Largest request body.
pub const MAX_BODY: usize = 16 * 1024;
/// Largest page.
pub const MAX_LIMIT: usize = 10_000;
/// Default page size (EMQX's).
const DEFAULT_LIMIT: usize = 100;
/// Longest alarm name accepted in a request.
const MAX_NAME: usize = 512;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(cluster::list, cluster::clear))
        .routes(routes!(cluster::deactivate))
        .routes(routes!(node_list, node_clear))
        .routes(routes!(node_deactivate))
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

/// A query the extractor could not read.
type QueryResult = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

/// The checked query: (activated, page, limit).
fn parse_query(q: QueryResult) -> Result<(bool, usize, usize), ApiError> {
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

/// At most 64 characters of `s`, for messages.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `None` when `node` is this node; else the answer for another node: 404 in a call the
/// fan-out made, otherwise the same request forwarded to that node.
async fn elsewhere(
    ctx: &Arc<Ctx>,
    headers: &HeaderMap,
    node: &str,
    method: Method,
    uri: &Uri,
    body: Bytes,
) -> Option<Response> {
    if node == ctx.node() {
        return None;
    }
    if ctx.cluster.fanout.is_internal(headers) {
        let e = not_found(format!("this node is not {:?}", short(node)));
        return Some(e.into_response());
    }
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    Some(forward(ctx, node, method, path, body).await)
}

/// `method path` on `node`, its answer passed through; 404 for a node that is not a running
/// replicant, 503 when it does not answer.
async fn forward(ctx: &Arc<Ctx>, node: &str, method: Method, path: &str, body: Bytes) -> Response {
    if !fanout::replicants(ctx).iter().any(|n| n == node) {
        return not_found(format!("node {:?} is not a running replicant", short(node)))
            .into_response();
    }
    match fanout::call_node(ctx, node, method, path, body).await {
        Ok(reply) => (
            reply.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            reply.body,
        )
            .into_response(),
        Err(FanoutError::UnknownNode(_)) => {
            not_found(format!("node {:?} is not a running replicant", short(node))).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!("node {node} did not answer: {e}"),
        )
        .into_response(),
    }
}

/// One node's alarms.
#[utoipa::path(get, path = "/api/v5/nodes/{node}/alarms", tag = "alarms",
    params(("node" = String, Path, description = "Node name"), ListQuery),
    responses((status = 200, description = "A page of the node's alarms"),
              (status = 400, description = "Bad query"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such node")))]
async fn node_list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    uri: Uri,
    query: QueryResult,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let (activated, page, limit) = parse_query(query)?;
    if let Some(r) = elsewhere(&ctx, &headers, &node, Method::GET, &uri, Bytes::new()).await {
        return Ok(r);
    }
    Ok(Json(page_of(local_rows(&ctx, activated), page, limit)).into_response())
}

/// Empties one node's history.
#[utoipa::path(delete, path = "/api/v5/nodes/{node}/alarms", tag = "alarms",
    params(("node" = String, Path, description = "Node name")),
    responses((status = 204, description = "The node's history emptied"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such node")))]
async fn node_clear(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    if let Some(r) = elsewhere(&ctx, &headers, &node, Method::DELETE, &uri, Bytes::new()).await {
        return Ok(r);
    }
    ctx.alarms.clear_history();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../alarms/deactivated` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateBody {
    /// The active alarm's name.
    name: String,
    /// Its node (default: this node; on the node-local route, the path's node).
    node: Option<String>,
}

/// The checked body.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<DeactivateBody, ApiError> {
    require_json(headers)?;
    let b: DeactivateBody = parse_json(body)?;
    if b.name.is_empty() || b.name.len() > MAX_NAME {
        return Err(bad_request(format!("name must be 1..={MAX_NAME} bytes")));
    }
    Ok(b)
}

/// Deactivates one node's alarm by hand.
#[utoipa::path(post, path = "/api/v5/nodes/{node}/alarms/deactivated", tag = "alarms",
    params(("node" = String, Path, description = "Node name")), request_body = DeactivateBody,
    responses((status = 200, description = "The alarm, deactivated"),
              (status = 400, description = "Bad body"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such active alarm, or no such node"),
              (status = 415, description = "Body not sent as JSON")))]
async fn node_deactivate(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let b = parse_body(&headers, &body)?;
    if b.node.as_deref().is_some_and(|n| n != node) {
        return Err(bad_request("node in the body differs from the path"));
    }
    if let Some(r) = elsewhere(&ctx, &headers, &node, Method::POST, &uri, body).await {
        return Ok(r);
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
