//! `GET /api/v5/nodes` and `GET /api/v5/nodes/{node}` (EMQX's paths): every node of the
//! cluster, replicants with their live figures (asked through the fan-out) and cores as the
//! `nodes` table has them.
//!
//! A replicant that does not answer is listed from the table with `node_status`
//! `unreachable`; the list never fails because one node is down. `GET /nodes/{node}` for
//! another replicant forwards to it (503 if it does not answer); an internal call (one the
//! fan-out made) for another node answers 404 so that calls never bounce.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use meshmq_proto::tables::NodeRole;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{NodeInfo, from_row, this_node};
use crate::ctx::Ctx;
use crate::fanout::{self, NodeReply};
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, error, not_found};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .with_state(ctx)
}

/// Every node of the cluster.
#[utoipa::path(get, path = "/api/v5/nodes", tag = "nodes",
    responses((status = 200, description = "Every node", body = [NodeInfo]), Denied))]
async fn list(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let mut out: Vec<serde_json::Value> = Vec::new();
    let replies = fanout::call_all(&ctx, Method::GET, "/api/v5/nodes/{node}", Bytes::new()).await;
    for (node, reply) in replies {
        out.push(match reply.ok().as_ref().and_then(ok_json) {
            Some(v) => v,
            None => unreachable_row(&ctx, &node),
        });
    }
    out.extend(cores(&ctx));
    out.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
    Ok(Json(out).into_response())
}

/// One node.
#[utoipa::path(get, path = "/api/v5/nodes/{node}", tag = "nodes",
    params(("node" = String, Path, description = "Node name")),
    responses((status = 200, description = "The node", body = NodeInfo), Denied,
              (status = 404, description = "No such node", body = ErrorBody),
              (status = 503, description = "The node did not answer", body = ErrorBody)))]
async fn one(
    State(ctx): State<Arc<Ctx>>,
    Path(node): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    if node == ctx.node() {
        return Ok(Json(this_node(&ctx).await).into_response());
    }
    let row = ctx.tables.core.read(|t| t.node(&node).cloned());
    let Some(row) = row else {
        return Err(not_found(format!("node {node} is not in the cluster")));
    };
    if row.role == NodeRole::Core as i32 {
        return Ok(Json(from_row(&row)).into_response());
    }
    if ctx.cluster.fanout.is_internal(&headers) {
        return Err(not_found(format!("this node is not {node}")));
    }
    let path = format!("/api/v5/nodes/{node}");
    match fanout::call_node(&ctx, &node, Method::GET, &path, Bytes::new()).await {
        Ok(reply) => Ok((
            reply.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            reply.body,
        )
            .into_response()),
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            format!("node {node} did not answer: {e}"),
        )),
    }
}

/// The cores this node is configured with, by address (a replicant knows the cores by the
/// addresses it dials; their names and Raft state are on the cores' own `/api/v5/cluster`):
/// `node_status` is `following` for the one this node follows now, `configured` for the
/// others. A standalone node lists its embedded core as `embedded`.
fn cores(ctx: &Ctx) -> Vec<serde_json::Value> {
    let followed = ctx.tables.core.link().current_core();
    let configured = &ctx.config.cluster.cores;
    if configured.is_empty() {
        let status = "embedded";
        return vec![
            serde_json::json!({"node": ctx.node(), "role": "core", "node_status": status}),
        ];
    }
    configured
        .iter()
        .map(|addr| {
            let following = followed.is_some_and(|f| f.to_string() == *addr);
            let status = if following { "following" } else { "configured" };
            serde_json::json!({"node": addr, "role": "core", "node_status": status})
        })
        .collect()
}

/// A 200 reply's JSON.
fn ok_json(reply: &NodeReply) -> Option<serde_json::Value> {
    (reply.status == StatusCode::OK)
        .then(|| reply.json())
        .flatten()
}

/// A replicant that did not answer, as the table knows it.
fn unreachable_row(ctx: &Ctx, node: &str) -> serde_json::Value {
    let row = ctx.tables.core.read(|t| t.node(node).cloned());
    let mut info = match row {
        Some(row) => from_row(&row),
        None => return serde_json::json!({"node": node, "node_status": "unreachable"}),
    };
    info.node_status = "unreachable".into();
    serde_json::to_value(info).unwrap_or_default()
}
