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

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use meshmq_proto::tables::{self, NodeRole, NodeState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{WriteError, now_ms, write_status};
use crate::ctx::Ctx;
use crate::http::api::{Denied, ErrorBody};

/// The routes, with the broker as their state.
pub fn routes(ctx: Arc<Ctx>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(stop))
        .routes(routes!(super::rebalance::start))
        .routes(routes!(super::rebalance::stop))
        .routes(routes!(status))
        .routes(routes!(global_status))
        .routes(routes!(availability_check))
        .with_state(ctx)
}

/// Body of `evacuation/start`.
#[derive(Debug, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
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

/// Starts evacuating `node`: refuses new CONNECTs, evicts its connections, then migrates
/// its sessions.
#[utoipa::path(post, path = "/api/v5/load_rebalance/{node}/evacuation/start", tag = "load_rebalance",
    params(("node" = String, Path, description = "The replicant to evacuate")),
    request_body(content = Option<StartRequest>, description = "Every field optional; \
an empty body takes the defaults"),
    responses((status = 200, description = "The plan written", body = Object), Denied,
              (status = 400, description = "Bad input, a node that is not a running replicant, \
or nowhere to migrate to", body = ErrorBody),
              (status = 404, description = "Unknown node", body = ErrorBody),
              (status = 409, description = "Already being evacuated", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
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

/// Stops evacuating `node`: it takes clients again.
#[utoipa::path(post, path = "/api/v5/load_rebalance/{node}/evacuation/stop", tag = "load_rebalance",
    params(("node" = String, Path, description = "The evacuated replicant")),
    responses((status = 200, description = "`{node}`", body = Object), Denied,
              (status = 400, description = "Not being evacuated", body = ErrorBody),
              (status = 404, description = "Unknown node", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
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

/// This node's evacuation or rebalance, if any.
#[utoipa::path(get, path = "/api/v5/load_rebalance/status", tag = "load_rebalance",
    responses((status = 200, description = "`{status: enabled, ...}` with the progress, or \
`{status: disabled, node}`", body = Object), Denied))]
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

/// Every evacuation and rebalance in the cluster (from the `nodes` table).
#[utoipa::path(get, path = "/api/v5/load_rebalance/global_status", tag = "load_rebalance",
    responses((status = 200, description = "`{evacuations: [..], rebalances: [..]}`", body = Object), Denied))]
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

/// For load balancers: 503 while this node is evacuated or stopping, or while the cores
/// refuse its inter-node protocol version. Open (no API key).
#[utoipa::path(get, path = "/api/v5/load_rebalance/availability_check", tag = "load_rebalance",
    responses((status = 200, description = "This node takes clients", body = Object),
              (status = 503, description = "This node is being evacuated or is stopping, or the cores refuse its protocol version", body = ErrorBody)))]
async fn availability_check(State(ctx): State<Arc<Ctx>>) -> Response {
    if ctx.admission.evacuation.unavailable() || ctx.admission.shutdown.is_cancelled() {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "this node is being evacuated",
        )
        .into_response()
    } else if let Some(refused) = ctx.tables.core.link().wire_refused() {
        let message = format!("the cores refuse this node's inter-node protocol: {refused}");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "WIRE_PROTOCOL_REFUSED",
            &message,
        )
        .into_response()
    } else {
        (StatusCode::OK, Json(json!({}))).into_response()
    }
}
