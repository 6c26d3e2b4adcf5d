//! The cluster-wide alarm routes: each fans out to the node-local route of every running
//! replicant (`crate::fanout::call_all`) or of the node named, and merges the answers. A
//! replicant that does not answer is reported (`failed_nodes`), never fatal. Each node is
//! asked for its whole list (up to [`MAX_LIMIT`] alarms of the kind asked), so that pages
//! are cut from the merged list.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{MAX_LIMIT, QueryResult, deactivate_here, forward, page_of, parse_body, parse_query};
use crate::ctx::Ctx;
use crate::fanout::{self, NodeReply};
use crate::http::api::{ApiError, authorize};

/// Every replicant's alarms.
#[utoipa::path(get, path = "/api/v5/alarms", tag = "alarms", params(super::ListQuery),
    responses((status = 200, description = "A page of the cluster's alarms"),
              (status = 400, description = "Bad query"),
              (status = 401, description = "No or wrong API key")))]
pub(super) async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let (activated, page, limit) = parse_query(query)?;
    let path = format!("/api/v5/nodes/{{node}}/alarms?activated={activated}&limit={MAX_LIMIT}");
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (node, reply) in fanout::call_all(&ctx, Method::GET, &path, Bytes::new()).await {
        match reply.as_ref().ok().and_then(data) {
            Some(data) => rows.extend(data),
            None => failed.push(node),
        }
    }
    // Newest activation first (RFC 3339 UTC text sorts as time), then node and name.
    rows.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["activate_at"].as_str().map(str::to_owned),
                v["node"].as_str().map(str::to_owned),
                v["name"].as_str().map(str::to_owned),
            )
        };
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0)
            .then_with(|| (ka.1, ka.2).cmp(&(kb.1, kb.2)))
    });
    let mut answer = page_of(rows, page, limit);
    if !failed.is_empty() {
        answer["meta"]["failed_nodes"] = json!(failed);
    }
    Ok(Json(answer).into_response())
}

/// The `data` array of a node's 200 answer.
fn data(reply: &NodeReply) -> Option<Vec<Value>> {
    if reply.status != StatusCode::OK {
        return None;
    }
    reply.json()?.get("data")?.as_array().cloned()
}

/// Empties every replicant's history.
#[utoipa::path(delete, path = "/api/v5/alarms", tag = "alarms",
    responses((status = 204, description = "Every replicant's history emptied"),
              (status = 200, description = "Emptied except on `failed_nodes`"),
              (status = 401, description = "No or wrong API key")))]
pub(super) async fn clear(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let path = "/api/v5/nodes/{node}/alarms";
    let replies = fanout::call_all(&ctx, Method::DELETE, path, Bytes::new()).await;
    let failed: Vec<String> = replies
        .into_iter()
        .filter(|(_, r)| !r.as_ref().is_ok_and(|r| r.status == StatusCode::NO_CONTENT))
        .map(|(node, _)| node)
        .collect();
    if failed.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(Json(json!({ "failed_nodes": failed })).into_response())
    }
}

/// Deactivates an alarm by hand, on this node or the node named.
#[utoipa::path(post, path = "/api/v5/alarms/deactivated", tag = "alarms",
    request_body = super::DeactivateBody,
    responses((status = 200, description = "The alarm, deactivated"),
              (status = 400, description = "Bad body"),
              (status = 401, description = "No or wrong API key"),
              (status = 404, description = "No such active alarm, or no such node"),
              (status = 415, description = "Body not sent as JSON"),
              (status = 503, description = "The node did not answer")))]
pub(super) async fn deactivate(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let b = parse_body(&headers, &body)?;
    match b.node.as_deref() {
        Some(node) if node != ctx.node() => {
            let path = format!("/api/v5/nodes/{node}/alarms/deactivated");
            let body = Bytes::from(json!({ "name": b.name }).to_string());
            Ok(forward(&ctx, node, Method::POST, &path, body).await)
        }
        _ => deactivate_here(&ctx, &b.name),
    }
}
