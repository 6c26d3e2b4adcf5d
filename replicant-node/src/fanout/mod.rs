//! The cluster fan-out: a REST route that needs every node's answer (clients, alarms,
//! traces, node figures) calls the same API on the other replicants through the peer links
//! (mutual TLS, `peer::api_call`) and merges what they say.
//!
//! [`call_node`] runs one call on one node: in-process through this node's own router when
//! the node is this one, otherwise over a peer connection. [`call_all`] runs it on every
//! replicant that is running or evacuating ([`replicants`]), concurrently. The called node
//! runs the call as an operator: [`Fanout::is_internal`] recognises the marker header this
//! module adds, whose value is a random token of this process that never leaves it (a call
//! from a peer is re-issued locally by the receiving node with its own token), so a client
//! of the HTTP listener cannot forge it.
//!
//! Convention: a cluster-wide route fans out to a node-local route (EMQX's
//! `/api/v5/nodes/{node}/...`) that answers for its own node only. A node-local route asked
//! for another node forwards with [`call_node`], except when the request is itself internal
//! ([`Fanout::is_internal`]): then it answers 404, so that calls never bounce between nodes.
//! Whatever a route does, a call made while serving a fan-out call (from a peer or
//! in-process) is refused here, in one place: [`call_node`] and [`call_all`] answer
//! [`FanoutError::Nested`] inside such a call, so the fan-out is never deeper than one.
//!
//! Bounded: calls time out after [`CALL_TIMEOUT`]; a call is at most `peer::MAX_CALL`
//! bytes and a reply `peer::MAX_REPLY`. It never holds a lock across a call.
//!
//! Who may call: a call from a peer runs only when the certificate of the connection names
//! the node the call says it comes from (checked by `peer::api_call`), that node is a
//! replicant of the node table (not a core, not a node that left: node certificates carry no
//! role, so the table is what tells a replicant), and the call is one the fan-out makes
//! ([`allowed`]). Anything else is refused with 403 before it reaches the router.

mod allowed;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use bytes::Bytes;
use meshmq_proto::peer::{ApiCall, ApiReply};
use meshmq_proto::tables::{NodeRole, NodeState};
use subtle::ConstantTimeEq;
use tower::ServiceExt;

use meshmq_shared::metrics as m;

use crate::ctx::Ctx;
use crate::peer::{ApiCallError, ApiHandler, MAX_CALL, MAX_REPLY};

/// The header that marks an in-process call made by the fan-out.
pub const INTERNAL_HEADER: &str = "x-meshmq-internal";
/// Longest a call to one node may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest path-and-query accepted.
const MAX_PATH: usize = 8 * 1024;

tokio::task_local! {
    /// Set while this task serves a call the fan-out made (the router runs the route in
    /// the same task): a fan-out from inside it is refused.
    static SERVING_CALL: ();
}

/// [`FanoutError::Nested`] when this task is serving a fan-out call.
fn not_nested() -> Result<(), FanoutError> {
    if SERVING_CALL.try_with(|_| ()).is_ok() {
        metrics::counter!(m::PEER_API_REFUSED_TOTAL, "reason" => "nested").increment(1);
        return Err(FanoutError::Nested);
    }
    Ok(())
}

/// What the fan-out keeps on a node: the marker token and the API router calls run through.
pub struct Fanout {
    /// Random, hex; never logged, never sent to another process.
    token: String,
    /// The node's API router, installed once the broker built it, taken out at shutdown:
    /// its routes hold the `Ctx` that holds this, a cycle that would otherwise keep the node
    /// (and a standalone node's store) alive after it stopped.
    router: Mutex<Option<axum::Router>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").finish_non_exhaustive()
    }
}

impl Default for Fanout {
    fn default() -> Self {
        let bytes: [u8; 32] = rand::random();
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            token,
            router: Mutex::new(None),
        }
    }
}

impl Fanout {
    /// Installs the router calls run through (the first one stays).
    pub fn set_router(&self, router: axum::Router) {
        let mut slot = self.router.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(router);
        }
    }

    /// Drops the router (the node is stopping): calls answer [`FanoutError::NotReady`].
    pub fn clear_router(&self) {
        self.router.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The router, if installed.
    fn router(&self) -> Option<axum::Router> {
        self.router
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `headers` carry this process's marker: the request was made by the fan-out
    /// (in-process), on behalf of an operator already checked on the first node.
    pub fn is_internal(&self, headers: &HeaderMap) -> bool {
        headers
            .get(INTERNAL_HEADER)
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(self.token.as_bytes())))
    }
}

/// One node's answer.
#[derive(Debug, Clone)]
pub struct NodeReply {
    /// Its HTTP status.
    pub status: StatusCode,
    /// Its body (JSON for every API route).
    pub body: Bytes,
}

impl NodeReply {
    /// The body as JSON, if it parses.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why a node gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The node is not a running replicant in the `nodes` table.
    #[error("node {0} is not a running replicant")]
    UnknownNode(String),
    /// This node runs without peer links (standalone).
    #[error("no peer links on this node")]
    NoPeers,
    /// The node's peer address is not an address.
    #[error("node {0} has no valid peer address")]
    BadAddress(String),
    /// The API router is not installed yet (start-up).
    #[error("the API is not ready")]
    NotReady,
    /// The call is not one the fan-out makes (method, path or size).
    #[error("invalid call: {0}")]
    Invalid(&'static str),
    /// The peer could not be reached or did not answer.
    #[error("{0}")]
    Peer(#[from] ApiCallError),
    /// The reply was over the limit or could not be read.
    #[error("reply could not be read")]
    Reply,
    /// The call did not complete within [`CALL_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// Asked while serving a fan-out call: an internal call never fans out again.
    #[error("a call made by the fan-out cannot fan out again")]
    Nested,
}

/// Names of the replicants that serve clients now (running or evacuating), this node
/// included, sorted.
pub fn replicants(ctx: &Ctx) -> Vec<String> {
    let me = ctx.node();
    let mut nodes: Vec<String> = ctx.tables.core.read(|t| {
        t.nodes()
            .filter(|r| r.role == NodeRole::Replicant as i32)
            .filter(|r| {
                r.status == NodeState::Running as i32 || r.status == NodeState::Evacuating as i32
            })
            .map(|r| r.node.clone())
            .collect()
    });
    if !nodes.iter().any(|n| n == me) {
        nodes.push(me.to_owned());
    }
    nodes.sort();
    nodes
}

/// Runs `method path_and_query` with `body` (JSON when not empty) on `node`'s API.
pub async fn call_node(
    ctx: &Arc<Ctx>,
    node: &str,
    method: Method,
    path_and_query: &str,
    body: Bytes,
) -> Result<NodeReply, FanoutError> {
    not_nested()?;
    check(&method, path_and_query, &body, node)?;
    if node == ctx.node() {
        let call = tokio::time::timeout(CALL_TIMEOUT, local(ctx, method, path_and_query, body));
        return call.await.map_err(|_| FanoutError::Timeout)?;
    }
    let peers = ctx.cluster.peers.as_ref().ok_or(FanoutError::NoPeers)?;
    let addr = peer_addr(ctx, node)?;
    let call = ApiCall {
        method: method.to_string(),
        path: path_and_query.to_owned(),
        body: body.clone(),
        from: ctx.node().to_owned(),
        content_type: if body.is_empty() {
            String::new()
        } else {
            "application/json".into()
        },
    };
    let reply = peers.api_call(addr, &call, CALL_TIMEOUT).await?;
    let status = u16::try_from(reply.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or(FanoutError::Reply)?;
    Ok(NodeReply {
        status,
        body: reply.body,
    })
}

/// Runs the call on every replicant ([`replicants`]) concurrently; one result per node, in
/// node-name order. A literal `{node}` in `path_and_query` is replaced by each node's name
/// (for node-local routes such as `/api/v5/nodes/{node}/...`).
pub async fn call_all(
    ctx: &Arc<Ctx>,
    method: Method,
    path_and_query: &str,
    body: Bytes,
) -> Vec<(String, Result<NodeReply, FanoutError>)> {
    let nodes = replicants(ctx);
    let calls = nodes.iter().map(|node| {
        let (method, body) = (method.clone(), body.clone());
        let path = path_and_query.replace("{node}", node);
        async move { call_node(ctx, node, method, &path, body).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    nodes.into_iter().zip(replies).collect()
}

/// The handler the peer links run for calls from other nodes: the same checks, then this
/// node's router, as an operator.
pub fn peer_handler(ctx: Weak<Ctx>) -> ApiHandler {
    Arc::new(move |call: ApiCall| {
        let ctx = ctx.clone();
        Box::pin(async move {
            let Some(ctx) = ctx.upgrade() else {
                return error_reply(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
            };
            let Ok(method) = Method::from_bytes(call.method.as_bytes()) else {
                return error_reply(StatusCode::BAD_REQUEST, "invalid method");
            };
            if !is_replicant(&ctx, &call.from) {
                refused("not_replicant", &call.from);
                return crate::peer::forbidden(
                    "the calling node is not a replicant of this cluster",
                );
            }
            let body = call.body;
            if !allowed::allowed(&method, &call.path, ctx.node()) {
                refused("route", &call.from);
                return crate::peer::forbidden("not a route the cluster fan-out calls");
            }
            if let Err(e) = check(&method, &call.path, &body, ctx.node()) {
                return error_reply(StatusCode::BAD_REQUEST, &e.to_string());
            }
            match local(&ctx, method, &call.path, body).await {
                Ok(reply) => ApiReply {
                    status: u32::from(reply.status.as_u16()),
                    body: reply.body,
                    content_type: "application/json".into(),
                },
                Err(e) => error_reply(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
            }
        })
    })
}

/// Whether `node` is a replicant of the node table that has not left.
fn is_replicant(ctx: &Ctx, node: &str) -> bool {
    ctx.tables.core.read(|t| {
        t.node(node).is_some_and(|r| {
            r.role == NodeRole::Replicant as i32 && r.status != NodeState::Left as i32
        })
    })
}

/// Counts and logs a refused call from a peer (the stated name escaped, bounded).
fn refused(reason: &'static str, from: &str) {
    metrics::counter!(m::PEER_API_REFUSED_TOTAL, "reason" => reason).increment(1);
    let from: String = from.chars().take(64).collect();
    tracing::warn!(from = ?from, reason, "API call from a peer refused");
}

/// The calls the fan-out makes to node `node`: an API path on the allow-list
/// ([`allowed`]), a plain method, bounded sizes.
fn check(method: &Method, path: &str, body: &Bytes, node: &str) -> Result<(), FanoutError> {
    if ![Method::GET, Method::POST, Method::PUT, Method::DELETE].contains(method) {
        return Err(FanoutError::Invalid("method"));
    }
    if !path.starts_with("/api/v5/") || path.len() > MAX_PATH || path.contains("..") {
        return Err(FanoutError::Invalid("path"));
    }
    if !allowed::allowed(method, path, node) {
        return Err(FanoutError::Invalid("route"));
    }
    if body.len() > MAX_CALL - MAX_PATH {
        return Err(FanoutError::Invalid("body too large"));
    }
    Ok(())
}

/// The peer address of running replicant `node`.
fn peer_addr(ctx: &Ctx, node: &str) -> Result<std::net::SocketAddr, FanoutError> {
    let addr = ctx.tables.core.read(|t| {
        t.node(node)
            .filter(|r| r.role == NodeRole::Replicant as i32)
            .filter(|r| r.status != NodeState::Left as i32 && !r.peer_addr.is_empty())
            .map(|r| r.peer_addr.clone())
    });
    let addr = addr.ok_or_else(|| FanoutError::UnknownNode(node.to_owned()))?;
    addr.parse()
        .map_err(|_| FanoutError::BadAddress(node.to_owned()))
}

/// Runs the call through this node's router, marked internal.
async fn local(
    ctx: &Ctx,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<NodeReply, FanoutError> {
    let router = ctx.cluster.fanout.router().ok_or(FanoutError::NotReady)?;
    let token =
        HeaderValue::from_str(&ctx.cluster.fanout.token).map_err(|_| FanoutError::NotReady)?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(INTERNAL_HEADER, token)
        .header(header::HOST, "localhost");
    if !body.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Body::from(body))
        .map_err(|_| FanoutError::Invalid("path"))?;
    let resp = match SERVING_CALL.scope((), router.oneshot(req)).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), MAX_REPLY)
        .await
        .map_err(|_| FanoutError::Reply)?;
    Ok(NodeReply { status, body })
}

/// A reply in the API's error shape.
fn error_reply(status: StatusCode, message: &str) -> ApiReply {
    let code = match status {
        StatusCode::BAD_REQUEST => "BAD_REQUEST",
        _ => "SERVICE_UNAVAILABLE",
    };
    let body = serde_json::json!({"code": code, "message": message});
    ApiReply {
        status: u32::from(status.as_u16()),
        body: body.to_string().into_bytes().into(),
        content_type: "application/json".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fan_out_from_inside_a_fan_out_call_is_refused() {
        assert!(not_nested().is_ok(), "an operator's request may fan out");
        let inside = SERVING_CALL.scope((), async { not_nested() }).await;
        assert!(matches!(inside, Err(FanoutError::Nested)), "{inside:?}");
        // A task spawned from outside a call is not inside one.
        let spawned = tokio::spawn(async { not_nested().is_ok() }).await;
        assert!(spawned.is_ok_and(|ok| ok));
    }
}
