//! Cluster load rebalance (EMQX `load_rebalance/{node}/start` semantics): from the
//! connection and session counts of the chosen replicants (their `nodes` rows, which apply
//! keeps equal to what each node holds in the registry), donors are the nodes above the average beyond both the absolute and the
//! relative threshold (for connections or for sessions). Each donor gets a partial
//! evacuation in its `nodes` row — goals = the averages, targets = the other nodes, no
//! Server Reference — and runs it like an evacuation: health check 503, CONNECTs refused
//! after `wait_health_check`, connections evicted at `conn_evict_rate` down to the goal,
//! `wait_takeover`, disconnected sessions migrated at `sess_evict_rate` down to the goal;
//! then it returns to RUNNING by itself. Recipients take the reconnects (their load
//! balancer sends them there, as the donors answer 503).
//!
//! `{node}` is the coordinator: it is recorded in the donors' rows, and `{node}/stop` stops
//! the rebalance it coordinates (every donor back to RUNNING).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use meshmq_proto::tables::{self, NodeRole, NodeState, NodeStatus, Op, op, op_result::Outcome};
use meshmq_shared::tables::Tables;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{ApiError, DEFAULT_EVICT_RATE, DEFAULT_WAIT_SECS, authorize, bad_request, error};
use super::{REBALANCE, WriteError, now_ms, write_status};
use crate::ctx::Ctx;
use crate::http::api::{Denied, ErrorBody};

/// Body of `{node}/start` (every field optional).
#[derive(Debug, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceRequest {
    /// Replicants to balance (default: every running replicant).
    pub nodes: Option<Vec<String>>,
    /// Connections closed per second on each donor (default 500).
    pub conn_evict_rate: Option<u32>,
    /// Sessions migrated per second on each donor (default 500).
    pub sess_evict_rate: Option<u32>,
    /// Seconds from start to refusing CONNECTs on the donors (default 60).
    pub wait_health_check: Option<u32>,
    /// Seconds for evicted clients to take their sessions elsewhere (default 60).
    pub wait_takeover: Option<u32>,
    /// A donor is above the average by more than this many connections (default 1000)...
    pub abs_conn_threshold: Option<u64>,
    /// ... and by more than this factor (default 1.1, must be > 1).
    pub rel_conn_threshold: Option<f64>,
    /// As `abs_conn_threshold`, for sessions (default 1000).
    pub abs_sess_threshold: Option<u64>,
    /// As `rel_conn_threshold`, for sessions (default 1.1, must be > 1).
    pub rel_sess_threshold: Option<f64>,
}

/// EMQX's default thresholds.
const DEFAULT_ABS: u64 = 1000;
const DEFAULT_REL: f64 = 1.1;

/// The donors' decision: who gives, who takes, down to what.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// (node, connections, sessions) of every node considered.
    pub counts: Vec<(String, u64, u64)>,
    /// Nodes above the average beyond both thresholds.
    pub donors: Vec<String>,
    /// The others.
    pub recipients: Vec<String>,
    /// Connections a donor keeps (the average, rounded up).
    pub conn_goal: u64,
    /// Sessions a donor keeps (the average, rounded up).
    pub sess_goal: u64,
}

/// Thresholds of one decision.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Absolute connection threshold.
    pub abs_conn: u64,
    /// Relative connection threshold (> 1).
    pub rel_conn: f64,
    /// Absolute session threshold.
    pub abs_sess: u64,
    /// Relative session threshold (> 1).
    pub rel_sess: f64,
}

/// Whether `n` is above `avg` beyond both thresholds.
pub fn above(n: u64, avg: f64, abs: u64, rel: f64) -> bool {
    let n = n as f64;
    n > avg + abs as f64 && n > avg * rel
}

/// Picks donors among `counts` (node, connections, sessions).
pub fn decide(counts: Vec<(String, u64, u64)>, t: Thresholds) -> Decision {
    let n = counts.len().max(1) as f64;
    let avg_conn = counts.iter().map(|c| c.1).sum::<u64>() as f64 / n;
    let avg_sess = counts.iter().map(|c| c.2).sum::<u64>() as f64 / n;
    let (mut donors, mut recipients) = (Vec::new(), Vec::new());
    for (node, conns, sessions) in &counts {
        if above(*conns, avg_conn, t.abs_conn, t.rel_conn)
            || above(*sessions, avg_sess, t.abs_sess, t.rel_sess)
        {
            donors.push(node.clone());
        } else {
            recipients.push(node.clone());
        }
    }
    Decision {
        counts,
        donors,
        recipients,
        conn_goal: avg_conn.ceil() as u64,
        sess_goal: avg_sess.ceil() as u64,
    }
}

fn running_replicants(ctx: &Ctx) -> Vec<tables::NodeRow> {
    ctx.tables.core.read(|t| {
        t.nodes()
            .filter(|r| r.role == NodeRole::Replicant as i32)
            .cloned()
            .collect()
    })
}

fn check(ctx: &Ctx, coordinator: &str, req: &RebalanceRequest) -> Result<Vec<String>, ApiError> {
    let rows = running_replicants(ctx);
    let running = |n: &str| {
        rows.iter()
            .any(|r| r.node == n && r.status == NodeState::Running as i32)
    };
    if !rows.iter().any(|r| r.node == coordinator) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("node {coordinator:?} not found"),
        ));
    }
    for rel in [req.rel_conn_threshold, req.rel_sess_threshold]
        .into_iter()
        .flatten()
    {
        if rel.is_nan() || rel <= 1.0 {
            return Err(bad_request(
                "rel_conn_threshold and rel_sess_threshold must be > 1",
            ));
        }
    }
    if req.conn_evict_rate == Some(0) || req.sess_evict_rate == Some(0) {
        return Err(bad_request(
            "conn_evict_rate and sess_evict_rate must be at least 1",
        ));
    }
    let nodes: Vec<String> = match &req.nodes {
        Some(list) => {
            let mut seen = std::collections::BTreeSet::new();
            list.iter()
                .filter(|n| seen.insert(n.as_str()))
                .cloned()
                .collect()
        }
        None => rows
            .iter()
            .filter(|r| r.status == NodeState::Running as i32)
            .map(|r| r.node.clone())
            .collect(),
    };
    if let Some(bad) = nodes.iter().find(|n| !running(n)) {
        return Err(bad_request(format!(
            "nodes: {bad} is not a running replicant (or is being evacuated)"
        )));
    }
    if nodes.len() < 2 {
        return Err(bad_request(
            "a rebalance needs at least two running replicants",
        ));
    }
    Ok(nodes)
}

/// `POST /api/v5/load_rebalance/{node}/start`: starts a rebalance `{node}` coordinates.
#[utoipa::path(post, path = "/api/v5/load_rebalance/{node}/start", tag = "load_rebalance",
    params(("node" = String, Path, description = "The coordinating node")),
    request_body(content = Option<RebalanceRequest>, description = "Every field optional; \
an empty body takes the defaults"),
    responses((status = 200, description = "`{coordinator, donors, recipients, connection_goal, \
session_goal, counts}`", body = Object), Denied,
              (status = 400, description = "Bad input, or nothing to balance", body = ErrorBody),
              (status = 409, description = "A donor is already being evacuated or rebalanced", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
pub(super) async fn start(
    State(ctx): State<Arc<Ctx>>,
    Path(coordinator): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = authorize(&ctx, &headers) {
        return e.into_response();
    }
    let req: RebalanceRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RebalanceRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad_request(format!("invalid request body: {e}")).into_response(),
        }
    };
    let nodes = match check(&ctx, &coordinator, &req) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let t = Thresholds {
        abs_conn: req.abs_conn_threshold.unwrap_or(DEFAULT_ABS),
        rel_conn: req.rel_conn_threshold.unwrap_or(DEFAULT_REL),
        abs_sess: req.abs_sess_threshold.unwrap_or(DEFAULT_ABS),
        rel_sess: req.rel_sess_threshold.unwrap_or(DEFAULT_REL),
    };
    let counts = ctx.tables.core.read(|tb| node_counts(tb, &nodes));
    let d = decide(counts, t);
    let counts_json: serde_json::Value = d
        .counts
        .iter()
        .map(|(n, c, s)| (n.clone(), json!({ "connections": c, "sessions": s })))
        .collect::<serde_json::Map<_, _>>()
        .into();
    if d.donors.is_empty() {
        return bad_request(format!(
            "nothing to balance: no node is above the average beyond the thresholds ({counts_json})"
        ))
        .into_response();
    }
    let plan = tables::Evacuation {
        wait_health_check_secs: req.wait_health_check.unwrap_or(DEFAULT_WAIT_SECS),
        conn_evict_rate: req.conn_evict_rate.unwrap_or(DEFAULT_EVICT_RATE),
        sess_evict_rate: req.sess_evict_rate.unwrap_or(DEFAULT_EVICT_RATE),
        wait_takeover_secs: req.wait_takeover.unwrap_or(DEFAULT_WAIT_SECS),
        migrate_to: d.recipients.clone(),
        started_ms: now_ms(),
        process: REBALANCE.into(),
        conn_goal: d.conn_goal,
        sess_goal: d.sess_goal,
        coordinator: coordinator.clone(),
        ..tables::Evacuation::default()
    };
    if let Err(e) = mark_donors(&ctx, &d.donors, &plan).await {
        return e.into_response();
    }
    let body = json!({
        "coordinator": coordinator,
        "donors": d.donors,
        "recipients": d.recipients,
        "connection_goal": d.conn_goal,
        "session_goal": d.sess_goal,
        "counts": counts_json,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// (node, connected clients, sessions held) of each of `nodes`, read from their node rows
/// (O(1) per node, no registry scan); a node without a row counts 0.
pub fn node_counts(tb: &Tables, nodes: &[String]) -> Vec<(String, u64, u64)> {
    nodes
        .iter()
        .map(|n| {
            let (c, s) = tb
                .node(n)
                .map_or((0, 0), |r| (r.connected_clients, r.sessions));
            (n.clone(), c, s)
        })
        .collect()
}

/// Writes the donors' plan in one transaction; if any donor was not RUNNING, the others
/// are put back and the answer is 409.
async fn mark_donors(
    ctx: &Ctx,
    donors: &[String],
    plan: &tables::Evacuation,
) -> Result<(), ApiError> {
    let ops = donors
        .iter()
        .map(|d| Op {
            kind: Some(op::Kind::NodeStatus(NodeStatus {
                node: d.clone(),
                status: NodeState::Evacuating as i32,
                evacuation: Some(plan.clone()),
                expect: NodeState::Running as i32,
                expect_started_ms: 0,
            })),
        })
        .collect();
    let results = ctx
        .tables
        .core
        .transact(ops)
        .await
        .map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                e.to_string(),
            )
        })?
        .results;
    let applied: Vec<&String> = donors
        .iter()
        .zip(&results)
        .filter(|(_, r)| matches!(r.outcome, Some(Outcome::Ok(_))))
        .map(|(d, _)| d)
        .collect();
    if applied.len() == donors.len() {
        return Ok(());
    }
    let started = plan.started_ms;
    for d in applied {
        let evac = NodeState::Evacuating;
        let _ = write_status(ctx, d, NodeState::Running, evac, started, None).await;
    }
    Err(error(
        StatusCode::CONFLICT,
        "CONFLICT",
        "a donor is already being evacuated or rebalanced",
    ))
}

/// `POST /api/v5/load_rebalance/{node}/stop`: every donor of the rebalance `{node}`
/// coordinates goes back to RUNNING.
#[utoipa::path(post, path = "/api/v5/load_rebalance/{node}/stop", tag = "load_rebalance",
    params(("node" = String, Path, description = "The coordinating node")),
    responses((status = 200, description = "`{coordinator, stopped: [donors]}`", body = Object), Denied,
              (status = 400, description = "No rebalance coordinated by `node` is running", body = ErrorBody),
              (status = 503, description = "The cores could not commit", body = ErrorBody)))]
pub(super) async fn stop(
    State(ctx): State<Arc<Ctx>>,
    Path(coordinator): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&ctx, &headers) {
        return e.into_response();
    }
    let donors: Vec<String> = ctx.tables.core.read(|t| {
        t.nodes()
            .filter(|r| r.status == NodeState::Evacuating as i32)
            .filter(|r| {
                r.evacuation
                    .as_ref()
                    .is_some_and(|e| e.process == REBALANCE && e.coordinator == coordinator)
            })
            .map(|r| r.node.clone())
            .collect()
    });
    if donors.is_empty() {
        return bad_request(format!(
            "no rebalance coordinated by {coordinator} is running"
        ))
        .into_response();
    }
    for d in &donors {
        match write_status(&ctx, d, NodeState::Running, NodeState::Evacuating, 0, None).await {
            Ok(()) | Err(WriteError::Conflict(_)) => {}
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    format!("{e:?}"),
                )
                .into_response();
            }
        }
    }
    (
        StatusCode::OK,
        Json(json!({ "coordinator": coordinator, "stopped": donors })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(abs: u64) -> Thresholds {
        Thresholds {
            abs_conn: abs,
            rel_conn: 1.1,
            abs_sess: abs,
            rel_sess: 1.1,
        }
    }

    fn counts(v: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
        v.iter()
            .map(|(n, c, s)| ((*n).to_owned(), *c, *s))
            .collect()
    }

    #[test]
    fn donors_are_above_the_average_beyond_both_thresholds() {
        let d = decide(
            counts(&[("r1", 3000, 3000), ("r2", 0, 0), ("r3", 0, 0)]),
            t(1000),
        );
        assert_eq!(d.donors, ["r1"]);
        assert_eq!(d.recipients, ["r2", "r3"]);
        assert_eq!((d.conn_goal, d.sess_goal), (1000, 1000));
        // 1 900 vs an average of 1 000: beyond 1.1x but not beyond +1 000.
        let d = decide(
            counts(&[("r1", 1900, 0), ("r2", 550, 0), ("r3", 550, 0)]),
            t(1000),
        );
        assert!(d.donors.is_empty(), "{d:?}");
        // Sessions alone can make a donor.
        let d = decide(
            counts(&[("r1", 10, 900), ("r2", 10, 0), ("r3", 10, 0)]),
            t(100),
        );
        assert_eq!(d.donors, ["r1"]);
        assert_eq!(d.sess_goal, 300);
    }

    fn apply(t: &mut Tables, kind: op::Kind) {
        let index = t.applied_index() + 1;
        let r = t.apply(index, &Op { kind: Some(kind) });
        assert!(meshmq_shared::tables::rejection(&r).is_none(), "{r:?}");
    }

    fn claim(t: &mut Tables, client: &str, node: &str) {
        apply(
            t,
            op::Kind::RegistryClaim(tables::RegistryClaim {
                client_id: client.into(),
                node: node.into(),
                incarnation: 1,
                session_expiry_secs: 60,
                protocol_level: 5,
                ..Default::default()
            }),
        );
    }

    #[test]
    fn counts_come_from_the_node_rows() {
        let mut tb = Tables::new();
        for n in ["r1", "r2"] {
            apply(
                &mut tb,
                op::Kind::NodeUp(tables::NodeUp {
                    node: n.into(),
                    role: NodeRole::Replicant as i32,
                    incarnation: 1,
                    ..Default::default()
                }),
            );
        }
        for c in ["a", "b", "c"] {
            claim(&mut tb, c, "r1");
        }
        claim(&mut tb, "d", "r2");
        let generation = tb.registry("d").map_or(0, |r| r.generation);
        apply(
            &mut tb,
            op::Kind::RegistryDisconnect(tables::RegistryDisconnect {
                client_id: "d".into(),
                generation,
                session_expiry_secs: 60,
                now_ms: 1,
            }),
        );
        // Takeover: c moves from r1 to r2.
        claim(&mut tb, "c", "r2");
        let nodes = ["r1", "r2", "gone"].map(String::from);
        assert_eq!(
            node_counts(&tb, &nodes),
            counts(&[("r1", 2, 2), ("r2", 1, 2), ("gone", 0, 0)])
        );
    }

    #[test]
    fn a_balanced_cluster_has_no_donor() {
        let d = decide(
            counts(&[("r1", 1000, 10), ("r2", 990, 12), ("r3", 1010, 9)]),
            t(10),
        );
        assert!(d.donors.is_empty());
        assert!(!above(1050, 1000.0, 100, 1.1));
        assert!(above(1200, 1000.0, 100, 1.1));
    }
}
