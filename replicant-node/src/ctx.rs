//! The context every connection task and housekeeping task shares, grouped by concern so
//! that code takes (and can be read for) the part it uses:
//!
//! - [`TableState`]: the cluster tables, i.e. the local replica and the link to the cores,
//!   plus what writes them on this node's behalf (its name and incarnation, the route
//!   writer, the watch on claims of unknown outcome);
//! - [`ClusterState`]: the other replicants, i.e. the peer links, session hand-overs in
//!   progress and the cluster-wide shared-subscription picks;
//! - [`LocalState`]: what this node holds for its own clients, i.e. the router, the
//!   sessions, the session limits and the node's queue budget;
//! - [`Admission`]: who may come in, i.e. the listeners, the connection cap and count,
//!   the evacuation state and the shutdown signal.
//!
//! It holds state and no behaviour beyond trivial accessors: the modules named by its
//! fields own their logic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshmq_shared::config::Config;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::core_handle::CoreHandle;
use crate::evacuation::Evacuation;
use crate::handover::Handovers;
use crate::node_budget::NodeBudget;
use crate::peer::Peers;
use crate::route_writer::RouteWriter;
use crate::router::Router;
use crate::sessions::Sessions;
use crate::shared_pick::SharedPicker;
use crate::unknown_claims::UnknownClaims;

/// Everything a connection task needs, shared by all of them.
pub struct Ctx {
    /// The node's base configuration (file, environment, flags). The keys that may change
    /// at run time are read from [`Ctx::runtime`] instead.
    pub config: Config,
    /// The effective configuration (base with the cluster's run-time overrides) and the
    /// limits derived from it, swapped when an override changes (`crate::configs`).
    pub runtime: crate::configs::Runtime,
    /// The cluster tables and what writes them for this node.
    pub tables: TableState,
    /// The other replicants (cluster mode).
    pub cluster: ClusterState,
    /// This node's clients: router, sessions, limits.
    pub local: LocalState,
    /// Connection admission: cap, count, evacuation, shutdown.
    pub admission: Admission,
    /// Authorization: the embedder's hook, the configured sources, the settings.
    pub authz: crate::authz::Authz,
    /// The authentication chain every CONNECT goes through.
    pub authn: crate::authn::Chain,
    /// Bans on this node: live connections a new ban closes, flapping counters.
    pub banned: crate::banned::BanState,
    /// The HTTP API's keys, indexed by key id (`crate::api_keys`).
    pub api_keys: crate::api_keys::ApiKeys,
    /// This node's alarms and the webhook their changes go to.
    pub alarms: crate::alarms::Alarms,
    /// Online traces: the running recorders of this node and the definitions.
    pub trace: crate::trace::Traces,
    /// High-water marks of the stats (`$SYS` and `GET /api/v5/stats`).
    pub stats_max: crate::sys::stats::Maxima,
}

/// The cluster tables: local replica and the link to the cores, and this node's writers.
pub struct TableState {
    /// The local replica and the link to the cores (or the embedded core).
    pub core: CoreHandle,
    /// This node's name (the `node` column of the tables).
    pub node: Arc<str>,
    /// This start of the node (`nodes.incarnation`): rows of older incarnations are stale.
    pub incarnation: u64,
    /// Commits this node's `routes` rows in decision order.
    pub route_writer: RouteWriter,
    /// Registry claims whose outcome is unknown, watched until their row is closed.
    pub unknown_claims: UnknownClaims,
}

/// The other replicants.
pub struct ClusterState {
    /// Links to the other replicants (`None` standalone).
    pub peers: Option<Peers>,
    /// Cross-node session hand-overs in progress.
    pub handovers: Handovers,
    /// Cluster-wide shared-subscription picks (strategy state).
    pub shared_picker: SharedPicker,
    /// REST calls to every node (`crate::fanout`).
    pub fanout: crate::fanout::Fanout,
}

/// What this node holds for its own clients.
pub struct LocalState {
    /// Local subscription index.
    pub router: Router,
    /// Local sessions.
    pub sessions: Sessions,
    /// Bytes every session of this node may hold together (`mqtt.max_node_mqueue_bytes`).
    pub queue_budget: Arc<NodeBudget>,
    /// Source of session and connection ids.
    pub(crate) next_id: AtomicU64,
}

/// Who may come in.
pub struct Admission {
    /// The named listeners (their settings, TLS, live counts).
    pub listeners: Arc<crate::listeners::Listeners>,
    /// Caps concurrent connections.
    pub conn_limit: Arc<Semaphore>,
    /// Live MQTT connections (TCP + WebSocket).
    pub connections: AtomicUsize,
    /// This node's evacuation, if one is under way.
    pub evacuation: Evacuation,
    /// Cancelled when the broker stops.
    pub shutdown: CancellationToken,
    /// When the broker started (uptime, `$SYS`).
    pub started: Instant,
}

impl Ctx {
    /// A fresh id for a session or a connection.
    pub fn next_id(&self) -> u64 {
        self.local.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// This node's name (the `node` column of the tables).
    pub fn node(&self) -> &str {
        &self.tables.node
    }

    /// How long one write to a client may take (`listeners.send_timeout_ms`).
    pub fn send_timeout(&self) -> Duration {
        Duration::from_millis(self.config.listeners.send_timeout_ms)
    }

    /// How long a connection the broker closes keeps draining the client's input
    /// (`mqtt.close_linger_ms`; see `connection::linger`).
    pub fn close_linger(&self) -> Duration {
        Duration::from_millis(self.config.mqtt.close_linger_ms)
    }
}
