//! `GET /api/v5/stats` and `GET /api/v5/metrics` (EMQX 5's paths, query and shapes), over
//! the node-local `GET /api/v5/nodes/{node}/stats` and `/metrics`:
//!
//! - `aggregate=false` (the default, as EMQX): a list with one object per replicant,
//!   `{"node": name, "<emqx key>": value, ...}`; a replicant that did not answer is listed
//!   as `{"node": name, "node_status": "unreachable"}` (as `/api/v5/nodes` lists it);
//! - `aggregate=true`: one object, each key summed over the replicants that answered (the
//!   `.max` keys too, as EMQX sums them), except the stats of the cluster's tables
//!   ([`stats::CLUSTER_WIDE`]: topics, routes, retained), which every node reports the same
//!   and which are taken once; `failed_nodes` names the replicants that did not answer,
//!   when any did not;
//! - `node=NAME`: only that replicant (404 when it is not a running replicant, 503 when it
//!   does not answer).
//!
//! The values come from [`crate::sys::stats`] and [`crate::sys::metrics`], the figures the
//! `$SYS` topics publish; nothing is computed twice. A node-local route named with another
//! node's name forwards to that node, except in a call the fan-out made (404 then, so
//! calls never bounce). It never holds a lock across an await.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{bad, boolean, text};
use crate::ctx::Ctx;
use crate::fanout::{self, FanoutError};
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, not_found, unavailable};
use crate::sys::{metrics, stats};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(cluster_stats))
        .routes(routes!(cluster_metrics))
        .routes(routes!(node_stats))
        .routes(routes!(node_metrics))
        .with_state(ctx)
}

/// Stats (counts now and their high-water marks) or metrics (running totals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stats,
    Metrics,
}

impl Kind {
    /// The path segment and the `api` label of refused requests.
    fn name(self) -> &'static str {
        match self {
            Kind::Stats => "stats",
            Kind::Metrics => "metrics",
        }
    }

    /// This node's values, with `node`.
    fn local(self, ctx: &Ctx) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("node".into(), ctx.node().into());
        match self {
            Kind::Stats => {
                for (k, v) in stats::stats(ctx) {
                    out.insert(k.into(), v.into());
                }
            }
            Kind::Metrics => {
                let text = crate::http::prometheus_handle().render();
                for (k, v) in metrics::metrics(&text) {
                    out.insert(k, v.into());
                }
            }
        }
        out
    }

    /// Whether `key` is a figure of the cluster's tables (taken once, not summed).
    fn cluster_wide(self, key: &str) -> bool {
        self == Kind::Stats && stats::CLUSTER_WIDE.contains(&key)
    }
}

/// A query as pairs, so that an unknown parameter can be named.
type Pairs = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// The checked query: (aggregate, node).
fn parse(kind: Kind, query: Pairs) -> Result<(bool, Option<String>), ApiError> {
    let api = kind.name();
    let Ok(Query(pairs)) = query else {
        return Err(bad(api, "invalid query string"));
    };
    let (mut aggregate, mut node) = (None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "aggregate" if aggregate.is_none() => aggregate = Some(v),
            "node" if node.is_none() => node = Some(v),
            "aggregate" | "node" => return Err(bad(api, format!("{k} given twice"))),
            _ => {
                return Err(bad(
                    api,
                    "unknown query parameter (aggregate and node are known)",
                ));
            }
        }
    }
    let aggregate = boolean(api, "aggregate", aggregate.as_deref())?.unwrap_or(false);
    text(api, "node", &node)?;
    Ok((aggregate, node))
}

/// EMQX's stats of every replicant (or one), per node or summed.
#[utoipa::path(get, path = "/api/v5/stats", tag = "metrics",
    params(("aggregate" = Option<bool>, Query, description = "true: one object summed over the nodes; false (default): one object per node"),
           ("node" = Option<String>, Query, description = "only this replicant")),
    responses((status = 200, description = "a list of `{node, <key>: value}`, or one object with aggregate=true", body = Object),
              Denied,
              (status = 400, description = "bad query", body = ErrorBody),
              (status = 404, description = "no such running replicant", body = ErrorBody),
              (status = 503, description = "the replicant named by `node` did not answer", body = ErrorBody)))]
async fn cluster_stats(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    cluster(&ctx, Kind::Stats, query).await
}

/// EMQX's metrics of every replicant (or one), per node or summed.
#[utoipa::path(get, path = "/api/v5/metrics", tag = "metrics",
    params(("aggregate" = Option<bool>, Query, description = "true: one object summed over the nodes; false (default): one object per node"),
           ("node" = Option<String>, Query, description = "only this replicant")),
    responses((status = 200, description = "a list of `{node, <key>: value}`, or one object with aggregate=true", body = Object),
              Denied,
              (status = 400, description = "bad query", body = ErrorBody),
              (status = 404, description = "no such running replicant", body = ErrorBody),
              (status = 503, description = "the replicant named by `node` did not answer", body = ErrorBody)))]
async fn cluster_metrics(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    cluster(&ctx, Kind::Metrics, query).await
}

/// The cluster-wide answer: each replicant asked through its node-local route.
async fn cluster(ctx: &Arc<Ctx>, kind: Kind, query: Pairs) -> Result<Response, ApiError> {
    let (aggregate, node) = parse(kind, query)?;
    let path = format!("/api/v5/nodes/{{node}}/{}", kind.name());
    let replies = match &node {
        Some(n) => {
            if !fanout::replicants(ctx).contains(n) {
                return Err(not_found(format!("node {n:?} is not a running replicant")));
            }
            let one = path.replace("{node}", &super::nodes::encode(n));
            let reply = fanout::call_node(ctx, n, Method::GET, &one, Bytes::new());
            vec![(n.clone(), reply.await)]
        }
        None => fanout::call_all(ctx, Method::GET, &path, Bytes::new()).await,
    };
    let mut answered = Vec::new();
    let mut failed = Vec::new();
    for (n, reply) in replies {
        match values(reply) {
            Ok(v) => answered.push(v),
            Err(e) => {
                tracing::debug!(node = %n, error = %e, api = kind.name(), "a node did not answer");
                failed.push((n, e));
            }
        }
    }
    if let (Some(n), Some((_, e))) = (&node, failed.first()) {
        return Err(unavailable(format!("node {n} did not answer: {e}")));
    }
    let failed: Vec<String> = failed.into_iter().map(|(n, _)| n).collect();
    let body = if aggregate {
        Value::Object(sum(kind, &answered, &failed))
    } else {
        let mut list: Vec<Value> = answered.into_iter().map(Value::Object).collect();
        for n in failed {
            let mut row = Map::new();
            row.insert("node".into(), n.into());
            row.insert("node_status".into(), "unreachable".into());
            list.push(Value::Object(row));
        }
        list.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
        Value::Array(list)
    };
    Ok(Json(body).into_response())
}

/// A node's 200 answer as an object; why there is none otherwise.
fn values(reply: Result<fanout::NodeReply, FanoutError>) -> Result<Map<String, Value>, String> {
    let reply = reply.map_err(|e| e.to_string())?;
    if reply.status != StatusCode::OK {
        return Err(format!("answered {}", reply.status));
    }
    match reply.json() {
        Some(Value::Object(m)) => Ok(m),
        _ => Err("answered something that is not a JSON object".into()),
    }
}

/// EMQX's aggregate: every numeric key summed over `nodes`, a cluster-wide stat taken once
/// (the highest any node reports: every replica holds the same tables, one may lag).
fn sum(kind: Kind, nodes: &[Map<String, Value>], failed: &[String]) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for values in nodes {
        for (k, v) in values {
            let Some(v) = v.as_u64() else { continue };
            let was = out.get(k).and_then(Value::as_u64).unwrap_or(0);
            let now = if kind.cluster_wide(k) {
                was.max(v)
            } else {
                was.saturating_add(v)
            };
            out.insert(k.clone(), now.into());
        }
    }
    if !failed.is_empty() {
        out.insert("failed_nodes".into(), failed.to_vec().into());
    }
    out
}

/// This replicant's stats: `{node, <key>: value}`.
#[utoipa::path(get, path = "/api/v5/nodes/{node}/stats", tag = "metrics",
    params(("node" = String, Path, description = "Node name")),
    responses((status = 200, description = "`{node, <key>: value}`", body = Object), Denied,
              (status = 404, description = "no such running replicant", body = ErrorBody),
              (status = 503, description = "the replicant did not answer", body = ErrorBody)))]
async fn node_stats(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    node_local(&ctx, &headers, &node, Kind::Stats).await
}

/// This replicant's metrics: `{node, <key>: value}`.
#[utoipa::path(get, path = "/api/v5/nodes/{node}/metrics", tag = "metrics",
    params(("node" = String, Path, description = "Node name")),
    responses((status = 200, description = "`{node, <key>: value}`", body = Object), Denied,
              (status = 404, description = "no such running replicant", body = ErrorBody),
              (status = 503, description = "the replicant did not answer", body = ErrorBody)))]
async fn node_metrics(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    node_local(&ctx, &headers, &node, Kind::Metrics).await
}

/// This node's values, or another replicant's asked through the fan-out.
async fn node_local(
    ctx: &Arc<Ctx>,
    headers: &HeaderMap,
    node: &str,
    kind: Kind,
) -> Result<Response, ApiError> {
    if node == ctx.node() {
        return Ok(Json(Value::Object(kind.local(ctx))).into_response());
    }
    let unknown = || not_found(format!("node {node:?} is not a running replicant"));
    if ctx.cluster.fanout.is_internal(headers) || !fanout::replicants(ctx).iter().any(|n| n == node)
    {
        return Err(unknown());
    }
    let path = format!(
        "/api/v5/nodes/{}/{}",
        super::nodes::encode(node),
        kind.name()
    );
    match fanout::call_node(ctx, node, Method::GET, &path, Bytes::new()).await {
        Ok(reply) => Ok((
            reply.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            reply.body,
        )
            .into_response()),
        Err(FanoutError::UnknownNode(_)) => Err(unknown()),
        Err(e) => Err(unavailable(format!("node {node} did not answer: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn aggregate_sums_per_node_keys_and_takes_cluster_tables_once() {
        let a = obj(serde_json::json!({"node": "r1", "connections.count": 2,
            "connections.max": 3, "retained.count": 5, "topics.max": 7}));
        let b = obj(serde_json::json!({"node": "r2", "connections.count": 1,
            "connections.max": 4, "retained.count": 5, "topics.max": 6}));
        let s = sum(Kind::Stats, &[a.clone(), b.clone()], &[]);
        assert_eq!(s["connections.count"], 3);
        assert_eq!(s["connections.max"], 7);
        assert_eq!(s["retained.count"], 5);
        assert_eq!(s["topics.max"], 7);
        assert!(s.get("node").is_none() && s.get("failed_nodes").is_none());
        let m = sum(Kind::Metrics, &[a, b], &["r3".into()]);
        assert_eq!(m["retained.count"], 10, "metrics are all summed");
        assert_eq!(m["failed_nodes"], serde_json::json!(["r3"]));
    }
}
