//! What `GET /api/v5/nodes` reports about a replicant: EMQX's node fields (`node`, `node_status`,
//! `role`, `version`, `uptime`, `connections`, `live_connections`, `memory_total`,
//! `memory_used`, `max_fds`) plus ours (`sessions`, `core_link`, `wire_protocol`).
//!
//! Owns reading this node's figures (from the broker's counters and `/proc`) and the row of a
//! node known only from the `nodes` table (a core, or a replicant that did not answer). It
//! never blocks: every figure is a counter read, a table read or a small `/proc` file.

pub mod api;

use std::sync::atomic::Ordering;

use meshmq_proto::tables::{NodeRole, NodeRow, NodeState};
use meshmq_shared::wire_version::WireVersion;
use serde::Serialize;

use crate::core_link::LinkHealth;
use crate::ctx::Ctx;

/// One node, as `GET /api/v5/nodes` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// `running`, `evacuating`, `stopped` (left the cluster) or `unreachable` (a replicant in
    /// the table that did not answer).
    pub node_status: String,
    /// `core` or `replicant`.
    pub role: String,
    /// Broker version (replicants that answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The inter-node protocol version the node speaks, `major.minor` (docs/upgrade.md);
    /// `null` when not known (a row written without one).
    pub wire_protocol: Option<String>,
    /// Milliseconds since the node started (replicants that answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// Sessions the node holds, connected or not (from the `nodes` table).
    pub sessions: u64,
    /// Connected clients (from the `nodes` table, as the cluster counts them).
    pub connections: u64,
    /// Live MQTT connections on the node now (replicants that answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_connections: Option<u64>,
    /// Memory the node may use, bytes: the machine's, or its cgroup's limit when lower
    /// (replicants that answered, Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_total: Option<u64>,
    /// Resident memory of the node's process, bytes (replicants that answered, Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_used: Option<u64>,
    /// The process's open-file limit (replicants that answered, Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fds: Option<u64>,
    /// The node's link to the cores (replicants that answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub core_link: Option<LinkHealth>,
}

/// A node's row in the `nodes` table, as far as the table knows it.
pub fn from_row(row: &NodeRow) -> NodeInfo {
    let role = if row.role == NodeRole::Core as i32 {
        "core"
    } else {
        "replicant"
    };
    let status = match NodeState::try_from(row.status) {
        Ok(NodeState::Running) => "running",
        Ok(NodeState::Evacuating) => "evacuating",
        _ => "stopped",
    };
    NodeInfo {
        node: row.node.clone(),
        node_status: status.into(),
        role: role.into(),
        version: None,
        wire_protocol: row
            .wire
            .as_ref()
            .map(|w| WireVersion::from_proto(Some(w)).to_string()),
        uptime: None,
        sessions: row.sessions,
        connections: row.connected_clients,
        live_connections: None,
        memory_total: None,
        memory_used: None,
        max_fds: None,
        core_link: None,
    }
}

/// This node, with its live figures (the `/proc` readings are taken on a blocking thread).
pub async fn this_node(ctx: &Ctx) -> NodeInfo {
    let row = ctx.tables.core.read(|t| t.node(ctx.node()).cloned());
    let mut info = match &row {
        Some(row) => from_row(row),
        None => NodeInfo {
            node: ctx.node().to_owned(),
            node_status: "running".into(),
            role: "replicant".into(),
            version: None,
            wire_protocol: None,
            uptime: None,
            sessions: 0,
            connections: 0,
            live_connections: None,
            memory_total: None,
            memory_used: None,
            max_fds: None,
            core_link: None,
        },
    };
    info.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    info.wire_protocol = Some(ctx.tables.core.link().wire_version().to_string());
    info.uptime =
        Some(u64::try_from(ctx.admission.started.elapsed().as_millis()).unwrap_or(u64::MAX));
    info.live_connections = Some(ctx.admission.connections.load(Ordering::Relaxed) as u64);
    // The same readings as the memory and descriptor alarms (cgroup-aware).
    let r = tokio::task::spawn_blocking(crate::alarms::readings::read)
        .await
        .unwrap_or_default();
    info.memory_total = r.mem_total;
    info.memory_used = r.proc_rss;
    info.max_fds = r.fds_max;
    info.core_link = Some(ctx.tables.core.link().health());
    info
}
