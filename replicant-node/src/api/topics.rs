//! `GET /api/v5/topics` and `GET /api/v5/topics/{topic}`: the `routes` table (which nodes
//! have subscribers to which filters), as EMQX lists its routes: one `{topic, node}` item
//! per (filter, node) row, sorted by filter then node.
//!
//! Every replica holds the whole `routes` table, so the answer is cluster-wide without
//! asking another node. The rows are read from an O(1) view of the table and sorted after
//! the replica's lock is released (cost: the number of route rows, in memory 32 bytes a
//! row for the sort).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Paging, bad, text};
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, error};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(one))
        .with_state(ctx)
}

/// `GET /api/v5/topics` query.
#[derive(Debug, Deserialize)]
struct ListQuery {
    page: Option<String>,
    limit: Option<String>,
    /// Exact filter.
    topic: Option<String>,
    /// Exact node name.
    node: Option<String>,
}

fn item(topic: &str, node: &str) -> Value {
    json!({ "topic": topic, "node": node })
}

/// Lists the route rows, filtered by exact `topic` and `node`.
#[utoipa::path(get, path = "/api/v5/topics", tag = "topics",
    params(("page" = Option<u32>, Query, description = "page, from 1"),
           ("limit" = Option<u32>, Query, description = "1..=10000"),
           ("topic" = Option<String>, Query, description = "exact topic filter"),
           ("node" = Option<String>, Query, description = "node name")),
    responses((status = 200, description = "a page of {topic, node}", body = Object), Denied,
              (status = 400, description = "bad query", body = ErrorBody)))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let Ok(Query(q)) = query else {
        return Err(bad("topics", "invalid query string"));
    };
    let paging = Paging::parse("topics", q.page.as_deref(), q.limit.as_deref())?;
    let topic = text("topics", "topic", &q.topic)?;
    let node = text("topics", "node", &q.node)?;
    let view = ctx.tables.core.read(|t| t.routes_view());
    let mut rows: Vec<(&str, &str)> = match node {
        Some(n) => view.filters_of(n).map(|f| (f, n)).collect(),
        None => view.iter().collect(),
    };
    if let Some(t) = topic {
        rows.retain(|(f, _)| *f == t);
    }
    rows.sort_unstable();
    let count = rows.len();
    let data = rows
        .into_iter()
        .skip(paging.skip())
        .take(paging.limit)
        .map(|(f, n)| item(f, n))
        .collect();
    Ok(Json(paging.answer(data, count)).into_response())
}

/// The nodes routing exactly `topic` (percent-encoded in the path): `[{topic, node}]`, or
/// 404 `TOPIC_NOT_FOUND`.
#[utoipa::path(get, path = "/api/v5/topics/{topic}", tag = "topics",
    params(("topic" = String, Path, description = "topic filter, percent-encoded")),
    responses((status = 200, description = "[{topic, node}]", body = Object), Denied,
              (status = 404, description = "no route (`TOPIC_NOT_FOUND`)", body = ErrorBody)))]
async fn one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let view = ctx.tables.core.read(|t| t.routes_view());
    let nodes = view.nodes_of(&topic);
    if nodes.is_empty() {
        return Err(error(
            axum::http::StatusCode::NOT_FOUND,
            "TOPIC_NOT_FOUND",
            "no node routes this topic",
        ));
    }
    let data: Vec<Value> = nodes.into_iter().map(|n| item(&topic, n)).collect();
    Ok(Json(Value::Array(data)).into_response())
}
