//! The `load_rebalance` HTTP API (paths and fields as EMQX users know them):
//!
//! - `POST /api/v5/load_rebalance/{node}/evacuation/start` (JSON, every field optional:
//!   `wait_health_check` s = 60, `conn_evict_rate` /s = 500, `sess_evict_rate` /s = 500,
//!   `redirect_to`, `wait_takeover` s = 60, `migrate_to` = every other running replicant)
//! - `POST /api/v5/load_rebalance/{node}/evacuation/stop`
//! - `GET /api/v5/load_rebalance/status` (this node), `GET .../global_status` (every node,
//!   from the `nodes` table)
//! - `GET /api/v5/load_rebalance/availability_check`: 200, or 503 while this node is
//!   evacuated (for load balancers; no authentication)
//!
//! Errors: 400 with a message, 404 unknown node, 409 already evacuating, 503 when the core
//! could not commit. Any node's API may start or stop any node's evacuation: it writes the
//! plan to that node's row, and that node acts on it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use meshmq_proto::tables::{self, NodeRole, NodeState};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{WriteError, now_ms, write_status};
use crate::ctx::Ctx;

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route(
            "/api/v5/load_rebalance/{node}/evacuation/start",
            post(start),
        )
        .route("/api/v5/load_rebalance/{node}/evacuation/stop", post(stop))
        .route(
            "/api/v5/load_rebalance/{node}/start",
            post(super::rebalance::start),
        )
        .route(
            "/api/v5/load_rebalance/{node}/stop",
            post(super::rebalance::stop),
        )
        .route("/api/v5/load_rebalance/status", get(status))
        .route("/api/v5/load_rebalance/global_status", get(global_status))
        .route(
            "/api/v5/load_rebalance/availability_check",
            get(availability_check),
        )
        .with_state(ctx)
}

/// Body of `evacuation/start`.
#[derive(Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StartRequest {
    /// Seconds from start to refusing CONNECTs (default 60).
    pub wait_health_check: Option<u32>,
    /// Connections closed per second (default 500).
    pub conn_evict_rate: Option<u32>,
    /// Disconnected sessions migrated per second (default 500).
    pub sess_evict_rate: Option<u32>,
    /// MQTT 5 Server Reference for refused and evicted clients.
    pub redirect_to: Option<String>,
    /// Seconds for evicted clients to take their sessions elsewhere (default 60).
    pub wait_takeover: Option<u32>,
    /// Nodes receiving the remaining sessions (default: every other running replicant).
    pub migrate_to: Option<Vec<String>>,
}

/// EMQX's default waits (s).
pub const DEFAULT_WAIT_SECS: u32 = 60;
/// EMQX's default eviction rates (/s).
pub const DEFAULT_EVICT_RATE: u32 = 500;
/// Longest `redirect_to` accepted (it goes into every refusal and DISCONNECT).
const MAX_REDIRECT_LEN: usize = 1024;

pub(super) use crate::http::api::{ApiError, authorize, bad_request, error};

fn not_found(node: &str) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("node {node:?} not found"),
    )
}

fn write_error(node: &str, e: WriteError, conflict: StatusCode) -> ApiError {
    match e {
        WriteError::Conflict(m) => error(conflict, "CONFLICT", m),
        WriteError::UnknownNode => not_found(node),
        WriteError::Failed(m) => error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", m),
    }
}

/// Checks `req` against the nodes table; the plan to write, or the error answer.
pub fn plan(ctx: &Ctx, node: &str, req: StartRequest) -> Result<tables::Evacuation, ApiError> {
    let rows: Vec<tables::NodeRow> = ctx.tables.core.read(|t| t.nodes().cloned().collect());
    let Some(row) = rows.iter().find(|r| r.node == node) else {
        return Err(not_found(node));
    };
    if row.role != NodeRole::Replicant as i32 {
        return Err(bad_request(format!("{node} is not a replicant")));
    }
    if row.status == NodeState::Evacuating as i32 {
        return Err(error(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("{node} is already being evacuated"),
        ));
    }
    if row.status != NodeState::Running as i32 {
        return Err(bad_request(format!("{node} is not running")));
    }
    let conn_rate = req.conn_evict_rate.unwrap_or(DEFAULT_EVICT_RATE);
    let sess_rate = req.sess_evict_rate.unwrap_or(DEFAULT_EVICT_RATE);
    if conn_rate == 0 || sess_rate == 0 {
        return Err(bad_request(
            "conn_evict_rate and sess_evict_rate must be at least 1",
        ));
    }
    let redirect_to = req.redirect_to.unwrap_or_default();
    if redirect_to.len() > MAX_REDIRECT_LEN {
        return Err(bad_request(format!(
            "redirect_to is longer than {MAX_REDIRECT_LEN} bytes"
        )));
    }
    let usable = |r: &tables::NodeRow| {
        r.node != node
            && r.role == NodeRole::Replicant as i32
            && r.status == NodeState::Running as i32
    };
    let migrate_to = req.migrate_to.unwrap_or_default();
    for target in &migrate_to {
        match rows.iter().find(|r| &r.node == target) {
            Some(r) if usable(r) => {}
            Some(_) => {
                return Err(bad_request(format!(
                    "migrate_to: {target} is not another running replicant"
                )));
            }
            None => return Err(bad_request(format!("migrate_to: unknown node {target:?}"))),
        }
    }
    if migrate_to.is_empty() && !rows.iter().any(usable) {
        return Err(bad_request(
            "no other running replicant to migrate sessions to",
        ));
    }
    Ok(tables::Evacuation {
        wait_health_check_secs: req.wait_health_check.unwrap_or(DEFAULT_WAIT_SECS),
        conn_evict_rate: conn_rate,
        sess_evict_rate: sess_rate,
        redirect_to,
        wait_takeover_secs: req.wait_takeover.unwrap_or(DEFAULT_WAIT_SECS),
        migrate_to,
        started_ms: now_ms(),
        ..tables::Evacuation::default()
    })
}

async fn start(
    State(ctx): State<Arc<Ctx>>,
    Path(node): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorize(&ctx, &headers) {
        return e.into_response();
    }
    let req: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad_request(format!("invalid request body: {e}")).into_response(),
        }
    };
    let plan = match plan(&ctx, &node, req) {
        Ok(p) => p,
        Err(answer) => return answer.into_response(),
    };
    let body = json!({
        "node": node,
        "wait_health_check": plan.wait_health_check_secs,
        "conn_evict_rate": plan.conn_evict_rate,
        "sess_evict_rate": plan.sess_evict_rate,
        "redirect_to": plan.redirect_to,
        "wait_takeover": plan.wait_takeover_secs,
        "migrate_to": plan.migrate_to,
    });
    let running = NodeState::Running;
    match write_status(&ctx, &node, NodeState::Evacuating, running, 0, Some(plan)).await {
        Ok(()) => (StatusCode::OK, Json(body)).into_response(),
        Err(e) => write_error(&node, e, StatusCode::CONFLICT).into_response(),
    }
}

async fn stop(
    State(ctx): State<Arc<Ctx>>,
    Path(node): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&ctx, &headers) {
        return e.into_response();
    }
    let evacuating = NodeState::Evacuating;
    match write_status(&ctx, &node, NodeState::Running, evacuating, 0, None).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "node": node }))).into_response(),
        Err(WriteError::Conflict(_)) => {
            bad_request(format!("{node} is not being evacuated")).into_response()
        }
        Err(e) => write_error(&node, e, StatusCode::BAD_REQUEST).into_response(),
    }
}

async fn status(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&ctx, &headers) {
        return e.into_response();
    }
    super::run::refresh(&ctx);
    match ctx.admission.evacuation.report() {
        Some(r) => {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("status".into(), json!("enabled"));
            }
            Json(v).into_response()
        }
        None => Json(json!({ "status": "disabled", "node": ctx.node() })).into_response(),
    }
}

async fn global_status(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&ctx, &headers) {
        return e.into_response();
    }
    let rows: Vec<(String, tables::Evacuation)> = ctx.tables.core.read(|t| {
        t.nodes()
            .filter(|r| r.status == NodeState::Evacuating as i32)
            .filter_map(|r| r.evacuation.as_ref().map(|e| (r.node.clone(), e.clone())))
            .collect()
    });
    let (rebalances, evacuations): (Vec<_>, Vec<_>) = rows
        .into_iter()
        .partition(|(_, e)| e.process == super::REBALANCE);
    let evacuations: Vec<serde_json::Value> = evacuations.into_iter().map(row_json).collect();
    let rebalances: Vec<serde_json::Value> = rebalances.into_iter().map(row_json).collect();
    Json(json!({ "evacuations": evacuations, "rebalances": rebalances })).into_response()
}

/// One evacuating (or rebalance donor) node's row as `global_status` shows it.
fn row_json((node, e): (String, tables::Evacuation)) -> serde_json::Value {
    json!({
        "node": node,
        "state": if e.stage.is_empty() { "waiting_health_check".to_owned() } else { e.stage.clone() },
        "connection_eviction_rate": e.conn_evict_rate,
        "session_eviction_rate": e.sess_evict_rate,
        "wait_health_check": e.wait_health_check_secs,
        "wait_takeover": e.wait_takeover_secs,
        "redirect_to": e.redirect_to,
        "migrate_to": e.migrate_to,
        "started_ms": e.started_ms,
        "stats": {
            "initial_connected": e.initial_connections,
            "current_connected": e.current_connections,
            "initial_sessions": e.initial_sessions,
            "current_sessions": e.current_sessions,
        },
        "coordinator": e.coordinator,
        "connection_goal": e.conn_goal,
        "session_goal": e.sess_goal,
    })
}

async fn availability_check(State(ctx): State<Arc<Ctx>>) -> Response {
    if ctx.admission.evacuation.unavailable() || ctx.admission.shutdown.is_cancelled() {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "this node is being evacuated",
        )
        .into_response()
    } else {
        (StatusCode::OK, Json(json!({}))).into_response()
    }
}
