//! `/api/v5/clients`: list (paged, filtered), get one, kick; cluster-wide, over node-local
//! routes that answer for one node:
//!
//! - `GET /api/v5/nodes/{node}/clients?offset&limit&<filters>`: this node's matching
//!   clients sorted by client id, `{"data": [...], "meta": {"count"}}` (`limit=0`: the count
//!   only);
//! - `GET|DELETE /api/v5/nodes/{node}/clients/{clientid}`.
//!
//! A node-local route named with another node's name answers 404. The cluster-wide list
//! pages exactly and boundedly: every node is asked for its count of matches (cheap), the
//! nodes are walked in name order skipping whole nodes by count, and only the node(s)
//! holding the page are asked for their `offset`/`limit` slice. `meta.count` is the sum; a
//! node that does not answer is named in `meta.failed_nodes` and counts for nothing. Get and
//! kick ask this node first, then the others; 404 `CLIENTID_NOT_FOUND` when every node said
//! so, 503 when it was not found and a node did not answer.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use bytes::Bytes;
use meshmq_shared::metrics as m;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::clients_query::{ClientFilter, client_json, select};
use super::nodes::{self, encode};
use super::{MAX_LIMIT, MAX_PAGE, Paging, bad, number};
use crate::ctx::Ctx;
use crate::http::api::{ApiError, Denied, ErrorBody, authorize, error, not_found, unavailable};
use crate::sessions::{Control, Leaving};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one, kick))
        .routes(routes!(node_list))
        .routes(routes!(node_get, node_kick))
        .with_state(ctx)
}

/// A query as pairs (repeated keys kept: `clientid=a&clientid=b`).
pub type Pairs = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// 404 `CLIENTID_NOT_FOUND`, as EMQX answers.
pub fn client_not_found() -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "CLIENTID_NOT_FOUND",
        "Client ID not found",
    )
}

/// 404 unless `node` is this node (node-local routes never answer for another node).
pub fn own_node(ctx: &Ctx, node: &str) -> Result<(), ApiError> {
    if node == ctx.node() {
        Ok(())
    } else {
        Err(not_found(format!(
            "this route answers for node {} only",
            ctx.node()
        )))
    }
}

/// This node's page: matching clients `offset..offset + limit` and the count of matches.
pub fn local_page(ctx: &Ctx, f: &ClientFilter, offset: usize, limit: usize) -> (usize, Vec<Value>) {
    let slots = select(ctx, f);
    let data = slots
        .iter()
        .skip(offset)
        .take(limit)
        .filter_map(|s| client_json(ctx, s))
        .collect();
    (slots.len(), data)
}

/// Kicks `client_id` on this node: its connection is closed with DISCONNECT 0x98 (its will
/// published) and its session discarded; a session without a connection is discarded.
/// False when this node holds no such session.
pub async fn kick_local(ctx: &Arc<Ctx>, client_id: &str) -> bool {
    let Some(slot) = ctx.local.sessions.get(client_id) else {
        return false;
    };
    let control = {
        let mut inner = slot.inner.lock();
        if inner.ended || inner.leaving != Leaving::No {
            return false;
        }
        inner.control.take()
    };
    metrics::counter!(m::API_KICKED_TOTAL).increment(1);
    if control.is_some_and(|tx| tx.send(Control::AdminKick).is_ok()) {
        return true;
    }
    crate::connection::end_session(ctx, &slot, true).await;
    true
}

/// The filters of a query, plus the query string that carries them to the other nodes;
/// `extra` takes the keys the route reads itself.
pub fn parse_filters(
    pairs: Vec<(String, String)>,
    mut extra: impl FnMut(&str, &str) -> Result<bool, ApiError>,
) -> Result<(ClientFilter, String), ApiError> {
    let mut f = ClientFilter::default();
    let mut forward = String::new();
    for (k, v) in pairs {
        if extra(&k, &v)? {
            continue;
        }
        if !f.take(&k, &v)? {
            let k: String = k.chars().take(64).collect();
            return Err(bad("clients", format!("unknown query parameter {k:?}")));
        }
        if k != "node" {
            forward.push_str(&format!("{k}={}&", encode(&v)));
        }
    }
    Ok((f, forward))
}

/// The clients of every replicant, paged.
#[utoipa::path(get, path = "/api/v5/clients", tag = "clients",
    params(("page" = Option<u32>, Query, description = "page, from 1"),
           ("limit" = Option<u32>, Query, description = "1..=10000"),
           ("node" = Option<String>, Query, description = "only this node"),
           ("clientid" = Option<String>, Query, description = "exact client id (repeatable)"),
           ("username" = Option<String>, Query, description = "exact username (repeatable)"),
           ("like_clientid" = Option<String>, Query, description = "substring of the client id"),
           ("like_username" = Option<String>, Query, description = "substring of the username"),
           ("ip_address" = Option<String>, Query, description = "client address"),
           ("conn_state" = Option<String>, Query, description = "connected | disconnected"),
           ("clean_start" = Option<bool>, Query, description = "Clean Start"),
           ("proto_ver" = Option<u8>, Query, description = "3, 4 or 5"),
           ("gte_created_at" = Option<String>, Query, description = "unix ms or RFC 3339"),
           ("lte_created_at" = Option<String>, Query, description = "unix ms or RFC 3339"),
           ("gte_connected_at" = Option<String>, Query, description = "unix ms or RFC 3339"),
           ("lte_connected_at" = Option<String>, Query, description = "unix ms or RFC 3339")),
    responses((status = 200, description = "a page of clients (`meta.failed_nodes` names the nodes that did not answer)", body = Object),
              Denied, (status = 400, description = "bad query", body = ErrorBody),
              (status = 503, description = "`node` given and that node did not answer", body = ErrorBody)))]
async fn list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    let Ok(Query(pairs)) = query else {
        return Err(bad("clients", "invalid query string"));
    };
    let (mut page, mut limit) = (None, None);
    let (f, fq) = parse_filters(pairs, |k, v| {
        match k {
            "page" => page = Some(v.to_owned()),
            "limit" => limit = Some(v.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let paging = Paging::parse("clients", page.as_deref(), limit.as_deref())?;
    let mut nodes = nodes::replicants(&ctx);
    if let Some(n) = &f.node {
        nodes.retain(|x| x == n);
    }
    let local = |offset, limit| local_page(&ctx, &f, offset, limit);
    let (data, count, failed) = nodes::page(&ctx, nodes, "clients", &fq, &local, paging).await;
    if f.node.is_some() && !failed.is_empty() {
        // A request for one node that did not answer.
        return Err(unavailable(format!(
            "node {} did not answer",
            failed.join(", ")
        )));
    }
    let mut v = paging.answer(data, count);
    v["meta"]["failed_nodes"] = json!(failed);
    Ok(Json(v).into_response())
}

/// One client, wherever it is connected.
#[utoipa::path(get, path = "/api/v5/clients/{clientid}", tag = "clients",
    params(("clientid" = String, Path, description = "client id")),
    responses((status = 200, description = "the client", body = Object), Denied,
              (status = 404, description = "unknown (`CLIENTID_NOT_FOUND`)", body = ErrorBody),
              (status = 503, description = "not found and a node did not answer", body = ErrorBody)))]
async fn get_one(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    if let Some(v) = ctx
        .local
        .sessions
        .get(&id)
        .and_then(|s| client_json(&ctx, &s))
    {
        return Ok(Json(v).into_response());
    }
    let path = format!("/api/v5/nodes/{{node}}/clients/{}", encode(&id));
    let (_, v) =
        nodes::first_found(&ctx, Method::GET, &path, Bytes::new(), client_not_found).await?;
    Ok(Json(v).into_response())
}

/// Kicks a client wherever it is connected and discards its session: 204.
#[utoipa::path(delete, path = "/api/v5/clients/{clientid}", tag = "clients",
    params(("clientid" = String, Path, description = "client id")),
    responses((status = 204, description = "kicked"), Denied,
              (status = 404, description = "unknown (`CLIENTID_NOT_FOUND`)", body = ErrorBody),
              (status = 503, description = "not found and a node did not answer", body = ErrorBody)))]
async fn kick(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    if !kick_local(&ctx, &id).await {
        let path = format!("/api/v5/nodes/{{node}}/clients/{}", encode(&id));
        nodes::first_found(&ctx, Method::DELETE, &path, Bytes::new(), client_not_found).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This node's clients: `offset` (default 0), `limit` (0..=10 000, default 100; 0: count).
#[utoipa::path(get, path = "/api/v5/nodes/{node}/clients", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("offset" = Option<u32>, Query, description = "matches to skip"),
           ("limit" = Option<u32>, Query, description = "0..=10000 (0: count only)")),
    responses((status = 200, description = "{data, meta: {count}}", body = Object), Denied,
              (status = 400, description = "bad query", body = ErrorBody),
              (status = 404, description = "another node's name", body = ErrorBody)))]
async fn node_list(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path(node): Path<String>,
    query: Pairs,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    own_node(&ctx, &node)?;
    let Ok(Query(pairs)) = query else {
        return Err(bad("clients", "invalid query string"));
    };
    let (mut offset, mut limit) = (0, super::DEFAULT_LIMIT);
    let (f, _) = parse_filters(pairs, |k, v| {
        match k {
            "offset" => offset = number("clients", k, Some(v), 0, 0, MAX_PAGE * MAX_LIMIT)?,
            "limit" => limit = number("clients", k, Some(v), 0, 0, MAX_LIMIT)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let (count, data) = local_page(&ctx, &f, offset, limit);
    Ok(Json(json!({ "data": data, "meta": { "count": count } })).into_response())
}

/// One client of this node.
#[utoipa::path(get, path = "/api/v5/nodes/{node}/clients/{clientid}", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")),
    responses((status = 200, description = "the client", body = Object), Denied,
              (status = 404, description = "unknown, or another node's name", body = ErrorBody)))]
async fn node_get(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((node, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    own_node(&ctx, &node)?;
    let v = ctx
        .local
        .sessions
        .get(&id)
        .and_then(|s| client_json(&ctx, &s));
    v.map(|v| Json(v).into_response())
        .ok_or_else(client_not_found)
}

/// Kicks a client of this node and discards its session.
#[utoipa::path(delete, path = "/api/v5/nodes/{node}/clients/{clientid}", tag = "clients",
    params(("node" = String, Path, description = "this node's name"),
           ("clientid" = String, Path, description = "client id")),
    responses((status = 204, description = "kicked"), Denied,
              (status = 404, description = "unknown, or another node's name", body = ErrorBody)))]
async fn node_kick(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Path((node, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authorize(&ctx, &headers)?;
    own_node(&ctx, &node)?;
    if kick_local(&ctx, &id).await {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(client_not_found())
    }
}
