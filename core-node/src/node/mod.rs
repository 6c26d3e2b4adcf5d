//! A running core: the Raft group member with its redb stores, its QUIC endpoint serving
//! Raft RPCs, `Transact`, `Follow`, leases and status, and the tasks behind them.
//!
//! [`CoreNode::start`] is what `core-node` (the binary) and a standalone `replicant-node`
//! (embedded single-voter core) both run, so the two share one code path. This module wires
//! parts together; the parts own the logic (`batcher`, `follow`, `lease`, `server`,
//! `raft::*`). It never speaks MQTT.

pub mod batcher;
pub mod compact;
pub mod conns;
pub mod follow;
pub mod follow_snapshot;
pub mod lease;
pub mod members;
pub mod server;
pub mod transfer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use meshmq_proto::core::{Request, Response, TransactRequest, request, response};
use meshmq_proto::tables::{Batch, Op};
use meshmq_shared::quic::certs::CertPaths;
use meshmq_shared::quic::{self, tls::Identity};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::api::{self, Committed, TransactError};
use crate::raft::network::{
    Network, RPC_FRAME_BYTES, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_ENVELOPE_BYTES,
};
use crate::raft::store::{self, LogStore, StateMachineStore};
use crate::raft::types::{Node, NodeId, Raft, RaftConfig, SnapshotPolicy};
use batcher::{Batcher, GroupCommit};
use conns::{Conns, Delivery};
use follow::FollowLimits;
use lease::Leases;

/// How long a core dials another core before giving up (a dead leader must not eat the
/// caller's deadline: it answers `Unavailable` and the caller retries).
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a forwarded Transact may take, leader wait included; below a replicant's request timeout (5 s), so the
/// replicant hears the outcome from us rather than timing out itself.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a core without a known leader waits for one before answering `Unavailable`.
const LEADER_WAIT: Duration = Duration::from_millis(1_500);

/// Raft timing, compaction and the byte bounds of the RPCs between cores.
#[derive(Debug, Clone, Copy)]
pub struct RaftTimings {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range (a follower that hears no leader for a random time in it runs).
    pub election_min: Duration,
    /// Upper end of the election timeout range.
    pub election_max: Duration,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot, so followers a little behind need
    /// no snapshot.
    pub keep_after_snapshot: u64,
    /// Largest Raft RPC frame sent to another core (AppendEntries, one InstallSnapshot
    /// chunk); default [`RPC_FRAME_BYTES`], at most `frame::MAX_FRAME`, at least
    /// [`MIN_RPC_FRAME_BYTES`].
    pub rpc_frame_bytes: usize,
    /// Data bytes of one InstallSnapshot chunk; default [`SNAPSHOT_CHUNK_BYTES`], capped
    /// so that a chunk's frame stays within `rpc_frame_bytes`.
    pub snapshot_chunk_bytes: usize,
}

/// Smallest accepted [`RaftTimings::rpc_frame_bytes`]: a snapshot chunk's envelope and
/// some data must fit.
pub const MIN_RPC_FRAME_BYTES: usize = 2 * SNAPSHOT_ENVELOPE_BYTES;

/// How long the sender of an InstallSnapshot chunk waits for its answer. The answer to the
/// last chunk comes after the receiver installed the whole snapshot (decoded and persisted
/// it), which takes far longer than openraft's default 200 ms for tables of any size; a
/// timeout there would restart the transfer from the first chunk, forever.
const INSTALL_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(150),
            election_min: Duration::from_millis(600),
            election_max: Duration::from_millis(1_200),
            snapshot_every: 50_000,
            keep_after_snapshot: 50_000,
            rpc_frame_bytes: RPC_FRAME_BYTES,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
        }
    }
}

/// Everything a core needs to start.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Raft node id (≥ 1, unique in the group).
    pub node_id: NodeId,
    /// Where the core QUIC endpoint listens (port 0: any).
    pub core_bind: SocketAddr,
    /// The address other nodes dial; defaults to the bound address.
    pub advertise: Option<String>,
    /// redb files live here.
    pub data_dir: PathBuf,
    /// Voters of a new group (id → address). Empty: a single-voter group of this node.
    /// Ignored when the data dir already holds a group.
    pub initial_members: Vec<(NodeId, String)>,
    /// This node's certificate, key and the cluster CA.
    pub certs: CertPaths,
    /// Raft timing and compaction.
    pub timings: RaftTimings,
    /// Group commit.
    pub group_commit: GroupCommit,
    /// Byte and count bounds of `Follow` frames (snapshot chunks, entries).
    pub follow: FollowLimits,
}

/// Why a core could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The store could not be opened.
    #[error("opening the store in {dir}: {source}")]
    Store {
        /// The data dir.
        dir: PathBuf,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This core's certificate, key or the cluster CA could not be loaded.
    #[error("cannot load the core's certificates: {0}")]
    Certificates(String),
    /// The QUIC endpoint could not be bound (address in use, not local, no permission).
    #[error("cannot bind the core endpoint {addr}: {error}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        error: String,
    },
    /// The bound QUIC endpoint could not be inspected.
    #[error("core endpoint: {0}")]
    Endpoint(String),
    /// openraft refused its configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// A running core.
pub struct CoreNode {
    /// Raft node id.
    pub id: NodeId,
    /// The address other nodes dial.
    pub addr: String,
    /// The Raft handle.
    pub raft: Raft,
    /// The log store (read by `Follow`).
    pub log: LogStore,
    /// The state machine (tables).
    pub sm: StateMachineStore,
    /// The QUIC endpoint (server, and client for outgoing calls).
    pub endpoint: quinn::Endpoint,
    /// Outgoing connections to other cores.
    pub conns: Conns,
    /// Cancelled on shutdown; every task selects on it.
    pub shutdown: CancellationToken,
    /// Every task that holds this core (accept loop, streams, leases, metrics), so that
    /// shutdown can wait for them and the store is released when it returns.
    pub tasks: TaskTracker,
    batcher: Batcher,
    leases: Leases,
    followers: AtomicU32,
    follow_limits: FollowLimits,
    /// The follow snapshots, one build at a time, shared by the followers that need one.
    follow_snapshots: follow_snapshot::FollowSnapshots,
    /// A compaction on demand runs (`compact.rs`): one at a time.
    compacting: std::sync::atomic::AtomicBool,
    /// A leadership transfer runs (`transfer.rs`): new writes are refused meanwhile.
    transferring: std::sync::atomic::AtomicBool,
    /// What this core has received of a Raft snapshot being sent to it.
    snapshot_receipt: crate::raft::rpc_server::SnapshotReceipt,
    /// The inter-node protocol version this core speaks, shared with its Raft client.
    pub wire: Arc<crate::wire::Wire>,
}

impl CoreNode {
    /// Follow streams this core is serving now.
    pub fn followers(&self) -> u32 {
        self.followers.load(Ordering::Relaxed)
    }

    /// Opens the store, starts Raft and the endpoint, and initializes a new group when the
    /// store is empty. Returns without waiting for a leader.
    pub async fn start(cfg: CoreConfig) -> Result<Arc<Self>, CoreError> {
        let (log, sm) = store::open(&cfg.data_dir).map_err(|e| CoreError::Store {
            dir: cfg.data_dir.clone(),
            source: Box::new(e),
        })?;
        let id = Identity::load(&cfg.certs).map_err(|e| CoreError::Certificates(e.to_string()))?;
        let endpoint =
            quic::endpoint::bind(cfg.core_bind, &id, quic::ALPN_CORE).map_err(|e| match e {
                quic::endpoint::QuicError::Bind { addr, error } => CoreError::Bind {
                    addr,
                    error: error.to_string(),
                },
                other => CoreError::Certificates(other.to_string()),
            })?;
        let bound = endpoint
            .local_addr()
            .map_err(|e| CoreError::Endpoint(e.to_string()))?;
        let addr = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
        let raft_cfg = raft_config(&cfg.timings)?;
        let wire = crate::wire::Wire::shared();
        let rpc_bytes = cfg.timings.rpc_frame_bytes;
        let network = Network::speaking(cfg.node_id, endpoint.clone(), rpc_bytes, wire.clone());
        let raft = Raft::new(cfg.node_id, raft_cfg, network, log.clone(), sm.clone())
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        let batcher = Batcher::start(raft.clone(), cfg.group_commit);
        let core = Arc::new(Self {
            id: cfg.node_id,
            addr: addr.clone(),
            raft,
            log,
            sm,
            conns: Conns::new(endpoint.clone(), DIAL_TIMEOUT),
            endpoint,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            batcher,
            leases: Leases::default(),
            followers: AtomicU32::new(0),
            follow_limits: cfg.follow,
            follow_snapshots: follow_snapshot::FollowSnapshots::default(),
            compacting: std::sync::atomic::AtomicBool::new(false),
            transferring: std::sync::atomic::AtomicBool::new(false),
            snapshot_receipt: crate::raft::rpc_server::SnapshotReceipt::default(),
            wire,
        });
        core.tasks.spawn(server::accept_loop(Arc::clone(&core)));
        core.tasks.spawn(lease::run(Arc::clone(&core)));
        core.tasks.spawn(members::export_metrics(Arc::clone(&core)));
        core.initialize(&cfg).await?;
        info!(node_id = cfg.node_id, %addr, "core started");
        Ok(core)
    }

    async fn initialize(&self, cfg: &CoreConfig) -> Result<(), CoreError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| CoreError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<NodeId, Node> = if cfg.initial_members.is_empty() {
            BTreeMap::from([(
                self.id,
                Node {
                    addr: self.addr.clone(),
                },
            )])
        } else {
            cfg.initial_members
                .iter()
                .map(|(id, addr)| (*id, Node { addr: addr.clone() }))
                .collect()
        };
        if !members.contains_key(&self.id) {
            // A core that joins a running group later waits to be added as a learner.
            return Ok(());
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another initial member got there first: the same membership, nothing to do.
            Err(crate::raft::types::RaftError::APIError(
                crate::raft::types::InitializeError::NotAllowed(_),
            )) => Ok(()),
            Err(e) => Err(CoreError::Raft(e.to_string())),
        }
    }

    /// Whether this core is the leader now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// The leader's id and address as this core knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node.addr))
    }

    /// Commits `ops` as (part of) one entry: on the leader through group commit, elsewhere
    /// forwarded once to the leader.
    pub async fn transact(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        match self.transact_here(ops.clone()).await {
            Err(TransactError::NotLeader { .. }) => self.forward(ops).await,
            other => other,
        }
    }

    /// Commits `ops` only if this core is the leader.
    pub async fn transact_here(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        if ops.is_empty() {
            return Ok(Committed {
                index: self.sm.applied_index(),
                results: Vec::new(),
            });
        }
        if !self.is_leader() {
            return Err(TransactError::NotLeader {
                leader: self.leader().map(|(_, a)| a),
            });
        }
        if self.transferring.load(Ordering::Acquire) {
            return Err(TransactError::Unavailable(
                "leadership transfer in progress".into(),
            ));
        }
        self.batcher.submit(ops).await
    }

    async fn forward(&self, ops: Vec<Op>) -> Result<Committed, TransactError> {
        let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
        if self.leader().is_none() {
            // An election is under way (or this core just started): wait a little for it
            // rather than bounce the caller at once.
            let _ = self
                .raft
                .wait(Some(LEADER_WAIT))
                .metrics(|m| m.current_leader.is_some(), "a known leader")
                .await;
        }
        let Some((leader_id, addr)) = self.leader() else {
            return Err(TransactError::Unavailable("no leader".into()));
        };
        if leader_id == self.id {
            // Became the leader while waiting.
            return self.transact_here(ops).await;
        }
        let req = Request {
            kind: Some(request::Kind::Transact(TransactRequest {
                batch: Some(Batch { ops }),
                forwarded: true,
            })),
            wire: self.wire.proto(),
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // A leader that died with the request in hand never answers; Raft notices first
        // (the followers elect another). Stop waiting then: the outcome is unknown (it may
        // have committed before the leader died), but the caller learns it now, within an
        // election, instead of after the whole forward timeout.
        let leader_changed = async {
            let changed = self
                .raft
                .wait(Some(left))
                .metrics(|m| m.current_leader != Some(leader_id), "leader change")
                .await;
            if changed.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(leader_changed);
        // Until the request is on its way (a dial to a dead leader can take DIAL_TIMEOUT), a
        // leader change means it was never sent: the caller may send it again at once.
        let conn = tokio::select! {
            c = self.conns.get(&addr) => c.map_err(TransactError::Unavailable)?,
            () = &mut leader_changed => {
                return Err(TransactError::NotLeader {
                    leader: self.leader().map(|(_, a)| a),
                });
            }
        };
        let answer = tokio::select! {
            a = self.conns.request_on::<_, Response>(&conn, &addr, &req, left) => a,
            () = &mut leader_changed => return Err(TransactError::Timeout),
        };
        match answer {
            Ok(Response {
                kind: Some(response::Kind::Transact(t)),
                wire,
            }) if self.wire.check_answer(wire.as_ref(), &addr).is_ok() => api::from_wire(t),
            // The leader served the request but its answer is unusable: outcome unknown.
            Ok(_) => Err(TransactError::Timeout),
            Err(Delivery::NotSent(e)) => Err(TransactError::Unavailable(e)),
            Err(Delivery::MaybeSent(_)) => Err(TransactError::Timeout),
        }
    }

    /// Stops every task, Raft and the endpoint, and waits (at most 5 s) for the tasks that
    /// hold this core to end.
    pub async fn shutdown(&self) {
        // Stop taking requests, finish (bounded) the ones accepted — Raft still runs for
        // them — then stop Raft and close. Only if every accepted request was answered does
        // the close say CLOSE_SHUTDOWN ("unanswered means not processed": callers resend).
        self.shutdown.cancel();
        self.tasks.close();
        let drained = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_ok();
        let _ = self.raft.shutdown().await;
        let code = if drained { quic::CLOSE_SHUTDOWN } else { 0 };
        self.endpoint.close(code.into(), b"shutdown");
    }
}

/// Largest `snapshot_every` and `keep_after_snapshot`: 2^40 entries (far beyond any log
/// a core keeps, far below where openraft's index arithmetic wraps).
const MAX_LOG_SPAN: u64 = 1 << 40;

fn raft_config(t: &RaftTimings) -> Result<Arc<RaftConfig>, CoreError> {
    let frame = t.rpc_frame_bytes;
    if !(MIN_RPC_FRAME_BYTES..=meshmq_shared::quic::frame::MAX_FRAME).contains(&frame) {
        return Err(CoreError::Raft(format!(
            "rpc_frame_bytes must be between {MIN_RPC_FRAME_BYTES} and {}, got {frame}",
            meshmq_shared::quic::frame::MAX_FRAME
        )));
    }
    // openraft adds these to log indexes unchecked: a huge value would wrap (a snapshot on
    // every commit) or panic. No value "disables" snapshots.
    for (name, value) in [
        ("snapshot_every", t.snapshot_every),
        ("keep_after_snapshot", t.keep_after_snapshot),
    ] {
        if value > MAX_LOG_SPAN {
            return Err(CoreError::Raft(format!(
                "{name} must be at most {MAX_LOG_SPAN}, got {value}"
            )));
        }
    }
    if t.snapshot_every == 0 {
        return Err(CoreError::Raft("snapshot_every must be at least 1".into()));
    }
    let chunk = t
        .snapshot_chunk_bytes
        .clamp(1, frame - SNAPSHOT_ENVELOPE_BYTES);
    let cfg = RaftConfig {
        cluster_name: "meshmq".into(),
        heartbeat_interval: t.heartbeat.as_millis() as u64,
        election_timeout_min: t.election_min.as_millis() as u64,
        election_timeout_max: t.election_max.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every),
        max_in_snapshot_log_to_keep: t.keep_after_snapshot,
        snapshot_max_chunk_size: chunk as u64,
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT.as_millis() as u64,
        ..Default::default()
    };
    cfg.validate()
        .map(Arc::new)
        .map_err(|e| CoreError::Raft(e.to_string()))
}
