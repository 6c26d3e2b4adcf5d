//! How the cluster-wide routes of this module reach the other replicants: the names of the
//! replicants to ask, and one call to a node-local route of another node, answered as
//! `(status, JSON)`. The answers of this node never go through here: the routes call its
//! node-local functions directly.
//!
//! Calls go through the cluster fan-out (`crate::fanout`: peer links, mutual TLS, 10 s,
//! bounded bodies); a node that does not answer is reported, never fatal. It never holds a
//! lock across a call.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use serde_json::Value;

use super::Paging;
use crate::ctx::Ctx;
use crate::http::api::{ApiError, unavailable};

/// Names of the replicants that serve clients now (running or evacuating), this node
/// included, sorted.
pub fn replicants(ctx: &Ctx) -> Vec<String> {
    crate::fanout::replicants(ctx)
}

/// Calls `method path_and_query` on `node` (another replicant) through the cluster
/// fan-out; its status and JSON body (`null` when empty), or why it could not be asked.
pub async fn call(
    ctx: &Arc<Ctx>,
    node: &str,
    method: Method,
    path_and_query: &str,
    body: Bytes,
) -> Result<(StatusCode, Value), String> {
    let reply = crate::fanout::call_node(ctx, node, method, path_and_query, body)
        .await
        .map_err(|e| format!("{node}: {e}"))?;
    Ok((reply.status, reply.json().unwrap_or(Value::Null)))
}

/// This node's answer for a page: (count of matches, items `offset..offset + limit`).
pub type LocalPage<'a> = dyn Fn(usize, usize) -> (usize, Vec<Value>) + Sync + 'a;

/// One node's page of node-local route `route` (`clients`, `subscriptions`): (count,
/// items), from `local` for this node, through the route for another.
async fn node_page(
    ctx: &Arc<Ctx>,
    node: &str,
    (route, fq): (&str, &str),
    local: &LocalPage<'_>,
    offset: usize,
    limit: usize,
) -> Result<(usize, Vec<Value>), String> {
    if node == ctx.node() {
        return Ok(local(offset, limit));
    }
    let path = format!(
        "/api/v5/nodes/{}/{route}?{fq}offset={offset}&limit={limit}",
        encode(node)
    );
    let (status, v) = call(ctx, node, Method::GET, &path, Bytes::new()).await?;
    let count = v["meta"]["count"].as_u64();
    match (status, count, v["data"].as_array()) {
        (StatusCode::OK, Some(c), Some(d)) => Ok((c as usize, d.clone())),
        _ => Err(format!("{node}: answered {status}")),
    }
}

/// One page of a cluster-wide list, exact and bounded: every node of `nodes` (sorted) is
/// asked for its count of matches (`limit=0`), the nodes are walked in order skipping
/// whole nodes by count, and only the node(s) holding the page are asked for their slice.
/// `fq` is the filters' query string (each pair followed by `&`). Returns the items, the
/// total count (the sum of the counts) and the nodes that did not answer.
pub async fn page(
    ctx: &Arc<Ctx>,
    nodes: Vec<String>,
    route: &str,
    fq: &str,
    local: &LocalPage<'_>,
    paging: Paging,
) -> (Vec<Value>, usize, Vec<String>) {
    let q = (route, fq);
    let counts = nodes.iter().map(|n| node_page(ctx, n, q, local, 0, 0));
    let counts = futures_util::future::join_all(counts).await;
    let mut failed = Vec::new();
    let mut alive = Vec::new();
    for (node, c) in nodes.into_iter().zip(counts) {
        match c {
            Ok((count, _)) => alive.push((node, count)),
            Err(e) => {
                tracing::debug!(error = %e, route, "a node did not answer");
                failed.push(node);
            }
        }
    }
    let total = alive.iter().map(|(_, c)| c).sum();
    let (mut skip, mut need) = (paging.skip(), paging.limit);
    let mut data = Vec::new();
    for (node, count) in alive {
        if need == 0 {
            break;
        }
        if skip >= count {
            skip -= count;
            continue;
        }
        let take = need.min(count - skip);
        match node_page(ctx, &node, q, local, skip, take).await {
            Ok((_, items)) => {
                need = need.saturating_sub(items.len());
                data.extend(items);
            }
            Err(_) => failed.push(node),
        }
        skip = 0;
    }
    (data, total, failed)
}

/// Asks every other replicant for `path` (its `{node}` replaced by each node's name): the
/// first 2xx answer; `missing()` when every node answered 404, 503 naming the nodes that
/// did not answer otherwise (the item may be on one of them).
pub async fn first_found(
    ctx: &Arc<Ctx>,
    method: Method,
    path: &str,
    body: Bytes,
    missing: fn() -> ApiError,
) -> Result<(StatusCode, Value), ApiError> {
    let others: Vec<String> = replicants(ctx)
        .into_iter()
        .filter(|n| n != ctx.node())
        .collect();
    let calls = others.iter().map(|n| {
        let path = path.replace("{node}", &encode(n));
        let (method, body) = (method.clone(), body.clone());
        async move { call(ctx, n, method, &path, body).await }
    });
    let mut failed = Vec::new();
    for (node, r) in others
        .iter()
        .zip(futures_util::future::join_all(calls).await)
    {
        match r {
            Ok((s, v)) if s.is_success() => return Ok((s, v)),
            Ok((StatusCode::NOT_FOUND, _)) => {}
            Ok((s, v)) if s.is_client_error() => {
                // The node has the client and refused the request: its answer stands.
                let message = v["message"].as_str().unwrap_or("refused").to_owned();
                return Err(crate::http::api::error(s, "BAD_REQUEST", message));
            }
            _ => failed.push(node.clone()),
        }
    }
    if failed.is_empty() {
        Err(missing())
    } else {
        Err(unavailable(format!(
            "not found on the nodes that answered; no answer from {}",
            failed.join(", ")
        )))
    }
}

/// Percent-encodes a query value (RFC 3986: unreserved characters kept).
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::encode("a b/+#&=é"), "a%20b%2F%2B%23%26%3D%C3%A9");
    }
}
