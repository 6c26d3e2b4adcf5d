//! The core's admin HTTP: `/metrics` (Prometheus), `/health`, and the cluster API
//! (`GET /api/v5/cluster`, `POST /api/v5/cluster/cores` to add a core, `DELETE
//! /api/v5/cluster/cores/{id}` to remove one). Membership changes are made by the leader; any
//! other core answers 421 with the leader's core address.
//!
//! Handlers call [`CoreNode`] methods and format answers; no cluster logic here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::node::CoreNode;
use crate::node::members::MemberError;
use crate::raft::types::NodeId;

/// Body of `POST /api/v5/cluster/cores`.
#[derive(Debug, Deserialize)]
pub struct AddCore {
    /// The new core's node id.
    pub id: NodeId,
    /// Its core QUIC address.
    pub addr: String,
}

/// Binds `addr` and serves until the core shuts down; returns the bound address.
pub async fn serve(core: Arc<CoreNode>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let shutdown = core.shutdown.clone();
    let app = router(core);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(bound)
}

/// The routes, for tests.
pub fn router(core: Arc<CoreNode>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/api/v5/cluster", get(cluster))
        .route("/api/v5/cluster/cores", axum::routing::post(add_core))
        .route("/api/v5/cluster/cores/{id}", delete(remove_core))
        .with_state(core)
}

async fn metrics() -> Response {
    crate::prometheus::prometheus_handle()
        .render()
        .into_response()
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
