//! The core's admin HTTP: `/metrics` (Prometheus), `/health`, and the cluster API
//! (`GET /api/v5/cluster`, `POST /api/v5/cluster/cores` to add a core, `DELETE
//! /api/v5/cluster/cores/{id}` to remove one, `POST /api/v5/cluster/snapshot[?purge=true]` to
//! build a Raft snapshot of this core now and optionally purge its log up to it, `POST
//! /api/v5/cluster/leader/transfer` to hand the leadership to another voter). Membership
//! changes are made by the leader; any other core answers 421 with the leader's core address.
//!
//! The cluster API (and `/metrics` when [`HttpConfig::metrics_auth`] is set) needs a
//! credential, checked by [`auth`] before any handler runs: an API key (`Authorization:
//! Bearer`) or, over HTTPS, a client certificate from the cluster CA. `/health`
//! is always open. A request let through has its body read within [`BODY_TIMEOUT`] and
//! [`MAX_BODY`] before its handler runs. Handlers call [`CoreNode`] methods and format answers; no cluster logic
//! here.

pub mod auth;
pub mod server;
pub mod transfer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::node::CoreNode;
use crate::node::members::MemberError;
use crate::raft::types::NodeId;
use auth::{Access, ApiKey};

/// Longest the body of a cluster API request may take to arrive once its headers have.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest body of a cluster API request (a membership change is a few dozen bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Longest `POST /api/v5/cluster/snapshot` waits for the snapshot (and the purge).
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Query of `POST /api/v5/cluster/snapshot`.
#[derive(Debug, Default, Deserialize)]
pub struct SnapshotQuery {
    /// Purge the log up to the snapshot once it is built.
    #[serde(default)]
    pub purge: bool,
}

/// Body of `POST /api/v5/cluster/cores`.
#[derive(Debug, Deserialize)]
pub struct AddCore {
    /// The new core's node id.
    pub id: NodeId,
    /// Its core QUIC address.
    pub addr: String,
}

/// How the admin HTTP listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address (port 0: any).
    pub bind: SocketAddr,
    /// The key the protected routes accept as `Authorization: Bearer <key>`.
    pub api_key: Option<ApiKey>,
    /// Whether `/metrics` needs a credential too (otherwise it is open, for scrapers).
    pub metrics_auth: bool,
    /// Serve HTTPS with this configuration (client certificate optional, verified against
    /// the cluster CA); None: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpConfig {
    /// Plain HTTP on `bind`, no key, `/metrics` open: loopback use (tests, development).
    pub fn plain(bind: SocketAddr) -> Self {
        Self {
            bind,
            api_key: None,
            metrics_auth: false,
            tls: None,
        }
    }

    /// Refuses a listener that anyone beyond this machine could reach while it has no
    /// credential to ask for (neither a key nor TLS). The message names the flags.
    pub fn check_exposure(&self) -> Result<(), String> {
        if self.bind.ip().is_loopback() || self.api_key.is_some() || self.tls.is_some() {
            return Ok(());
        }
        Err(format!(
            "the admin HTTP {} (--http-bind / MESHMQ_CORE__HTTP_BIND) is not on loopback and \
             has neither a key nor TLS: set --api-key / MESHMQ_CORE__API_KEY (or \
             --api-key-file / MESHMQ_CORE__API_KEY_FILE), or --http-tls / MESHMQ_CORE__HTTP_TLS, \
             or bind to 127.0.0.1",
            self.bind
        ))
    }
}

/// Binds `cfg.bind` and serves until the core shuts down; returns the bound address. A
/// configuration [`HttpConfig::check_exposure`] refuses is an `InvalidInput` error and
/// nothing is bound, whoever the caller is.
pub async fn serve(core: Arc<CoreNode>, cfg: HttpConfig) -> std::io::Result<SocketAddr> {
    cfg.check_exposure()
        .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?;
    let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
    let bound = listener.local_addr()?;
    let shutdown = core.shutdown.clone();
    let access = Access::new(cfg.api_key, cfg.tls.is_some());
    let app = router(core, access, cfg.metrics_auth);
    tokio::spawn(server::serve(listener, cfg.tls, app, shutdown));
    Ok(bound)
}

/// The routes: `/health` open, the cluster API behind `access`, `/metrics` behind it too when
/// `metrics_auth`. A request the guard lets through has its body read within
/// [`BODY_TIMEOUT`] and [`MAX_BODY`] before its handler runs.
pub fn router(core: Arc<CoreNode>, access: Access, metrics_auth: bool) -> Router {
    let access = Arc::new(access);
    let guard = from_fn_with_state(access, auth::require);
    // The guard is the outer layer: nothing of an unauthenticated request's body is read.
    let api = Router::new()
        .route("/api/v5/cluster", get(cluster))
        .route("/api/v5/cluster/cores", post(add_core))
        .route("/api/v5/cluster/cores/{id}", delete(remove_core))
        .route("/api/v5/cluster/snapshot", post(snapshot))
        .route("/api/v5/cluster/leader/transfer", post(transfer::transfer))
        .route_layer(from_fn(bounded_body))
        .with_state(core.clone());
    let metrics_route = Router::new().route("/metrics", get(metrics));
    let (api, metrics_route) = if metrics_auth {
        (api.merge(metrics_route).route_layer(guard), Router::new())
    } else {
        (api.route_layer(guard), metrics_route)
    };
    Router::new()
        .route("/health", get(health))
        .with_state(core)
        .merge(metrics_route)
        .merge(api)
}

/// Reads the whole body within [`BODY_TIMEOUT`] (408 otherwise) and at most [`MAX_BODY`]
/// bytes (413), so a client cannot hold a connection slot by trickling a body; the handler
/// then gets it in memory.
async fn bounded_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large", None);
    }
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => error(
            StatusCode::BAD_REQUEST,
            "the body could not be read (too large, or cut off)",
            None,
        ),
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
            None,
        ),
    }
}

async fn metrics() -> Response {
    crate::prometheus::render().into_response()
}

/// 200 when this core knows a leader (it can serve and forward writes), 503 otherwise.
async fn health(State(core): State<Arc<CoreNode>>) -> Response {
    match core.leader() {
        Some((id, _)) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "leader_id": id})),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "no_leader"})),
        )
            .into_response(),
    }
}

async fn cluster(State(core): State<Arc<CoreNode>>) -> Response {
    Json(core.group()).into_response()
}

async fn add_core(State(core): State<Arc<CoreNode>>, Json(body): Json<AddCore>) -> Response {
    if body.id == 0 || body.addr.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "id must be >= 1 and addr non-empty",
            None,
        );
    }
    member_result(core.add_core(body.id, body.addr).await)
}

async fn remove_core(State(core): State<Arc<CoreNode>>, Path(id): Path<NodeId>) -> Response {
    member_result(core.remove_core(id).await)
}

/// Builds a snapshot of this core now (and purges its log up to it with `?purge=true`):
/// 200 with what was done, 409 while another compaction of this core runs, 503 if it could
/// not be done within [`SNAPSHOT_TIMEOUT`] (the detail goes to the log, not the caller).
async fn snapshot(State(core): State<Arc<CoreNode>>, Query(q): Query<SnapshotQuery>) -> Response {
    match core.compact_now(q.purge, SNAPSHOT_TIMEOUT).await {
        Ok(done) => (StatusCode::OK, Json(done)).into_response(),
        Err(why) if why == crate::node::compact::BUSY => error(StatusCode::CONFLICT, &why, None),
        Err(why) => {
            tracing::warn!(error = %why, "compaction on demand failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the snapshot could not be built or the log purged in time; see this core's log",
                None,
            )
        }
    }
}

fn member_result(r: Result<(), MemberError>) -> Response {
    match r {
        Ok(()) => (StatusCode::OK, Json(json!({"result": "ok"}))).into_response(),
        Err(MemberError::NotLeader { leader }) => {
            error(StatusCode::MISDIRECTED_REQUEST, "not the leader", leader)
        }
        Err(MemberError::Refused(why)) => error(StatusCode::CONFLICT, &why, None),
    }
}

fn error(status: StatusCode, message: &str, leader: Option<String>) -> Response {
    (status, Json(json!({"error": message, "leader": leader}))).into_response()
}
