//! Evacuation of this node (EMQX `load_rebalance` evacuation semantics): the availability
//! check turns 503 at once; after `wait_health_check` new CONNECTs are refused (MQTT 5:
//! CONNACK 0x9C Use another server with the Server Reference `redirect_to`; 3.1.1: return
//! code 3); live connections are closed at `conn_evict_rate`/s (DISCONNECT 0x9C); after
//! `wait_takeover` the disconnected sessions left here are handed at `sess_evict_rate`/s to
//! `migrate_to` nodes, which keep them for their clients; then the node keeps refusing
//! until the evacuation is stopped.
//!
//! The plan lives in this node's row of the `nodes` table (status EVACUATING), written by
//! whichever node's API started it: this node follows its own row ([`watch`]) and runs the
//! stages ([`run`]), so a node restarted mid-evacuation resumes it. A graceful stop of an
//! evacuating node finishes the evacuation at once first ([`run::finish_before_shutdown`]).

pub mod api;
pub mod migrate;
pub mod rebalance;
mod run;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meshmq_proto::tables::{self, NodeState, NodeStatus, Op, RejectReason, op, op_result::Outcome};
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use run::finish_before_shutdown;

/// `Evacuation.process` of a rebalance donor (empty: a full evacuation).
pub const REBALANCE: &str = "rebalance";

use crate::cluster;
use crate::ctx::Ctx;

/// The stages, in order (EMQX's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Health check 503; CONNECTs still accepted until `wait_health_check` passed.
    WaitingHealthCheck,
    /// Refusing CONNECTs; closing live connections at `conn_evict_rate`.
    EvictingConns,
    /// Waiting (at most `wait_takeover`) for evicted clients to take their sessions elsewhere.
    WaitingTakeover,
    /// Handing the remaining sessions to `migrate_to` nodes at `sess_evict_rate`.
    EvictingSessions,
    /// Done: the node refuses CONNECTs until the evacuation is stopped.
    Prohibiting,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::WaitingHealthCheck => "waiting_health_check",
            Stage::EvictingConns => "evicting_conns",
            Stage::WaitingTakeover => "waiting_takeover",
            Stage::EvictingSessions => "evicting_sessions",
            Stage::Prohibiting => "prohibiting",
        }
    }
}

/// This node's evacuation as its status API reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The evacuated node.
    pub node: String,
    /// `evacuation`, or `rebalance` on a rebalance donor.
    pub process: &'static str,
    /// Rebalance: the node whose API started it.
    pub coordinator: String,
    /// Connections this node evicts down to (0: all).
    pub connection_goal: u64,
    /// Sessions this node migrates down to (0: all).
    pub session_goal: u64,
    /// The current stage.
    pub state: Stage,
    /// Seconds from start to refusing CONNECTs.
    pub wait_health_check: u32,
    /// Connections closed per second.
    pub connection_eviction_rate: u32,
    /// Sessions migrated per second.
    pub session_eviction_rate: u32,
    /// Seconds allowed for evicted clients to take their sessions elsewhere.
    pub wait_takeover: u32,
    /// Server Reference sent to refused and evicted MQTT 5 clients (empty: none).
    pub redirect_to: String,
    /// Nodes receiving sessions (empty: every other running replicant).
    pub migrate_to: Vec<String>,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// Counts.
    pub stats: Stats,
    /// Seconds from the start of the connection eviction to the last connection told to
    /// leave: the rate actually applied (once the stage is over).
    pub connection_eviction_secs: Option<f64>,
    /// Seconds from the start of the connection eviction until no connection was left
    /// (the eviction plus the clients' closes).
    pub connections_closed_secs: Option<f64>,
}

/// Initial and current counts, plus what this evacuation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Connections when it started.
    pub initial_connected: u64,
    /// Connections now.
    pub current_connected: u64,
    /// Sessions (connected or not) when it started.
    pub initial_sessions: u64,
    /// Sessions now.
    pub current_sessions: u64,
    /// Connections this evacuation closed.
    pub evicted_connections: u64,
    /// Sessions this evacuation handed to other nodes.
    pub migrated_sessions: u64,
}

/// The evacuation state of this node (in `Ctx`).
#[derive(Default)]
pub struct Evacuation {
    /// Availability check answers 503.
    unavailable: AtomicBool,
    /// New CONNECTs are refused.
    refusing: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Server Reference sent with refusals and evictions.
    redirect: Option<Arc<str>>,
    /// The running stage task: its plan's start time and its stop token.
    running: Option<(u64, CancellationToken)>,
    /// A graceful stop is finishing the evacuation: the row is no longer followed.
    finishing: bool,
    report: Option<Report>,
}

impl Evacuation {
    /// Whether the availability check must answer 503.
    pub fn unavailable(&self) -> bool {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// `Some(server reference)` while new CONNECTs are refused.
    pub fn refusing(&self) -> Option<Option<Arc<str>>> {
        if !self.refusing.load(Ordering::Relaxed) {
            return None;
        }
        Some(self.inner.lock().redirect.clone())
    }

    /// The local status report, if an evacuation is under way.
    pub fn report(&self) -> Option<Report> {
        self.inner.lock().report.clone()
    }

    fn update(&self, f: impl FnOnce(&mut Report)) {
        if let Some(r) = self.inner.lock().report.as_mut() {
            f(r);
        }
    }
}

/// The plan in this node's row, when the row says EVACUATING.
fn own_plan(ctx: &Ctx) -> Option<tables::Evacuation> {
    ctx.tables.core.read(|t| {
        t.node(ctx.node())
            .filter(|r| r.status == NodeState::Evacuating as i32)
            .and_then(|r| r.evacuation.clone())
    })
}

/// Starts or stops the stage task to match this node's row. Called once before the
/// listeners start (a restarted node refuses from its first CONNECT), then by [`watch`].
pub fn sync(ctx: &Arc<Ctx>) {
    let plan = own_plan(ctx);
    let ev = &ctx.admission.evacuation;
    let mut inner = ev.inner.lock();
    if inner.finishing {
        return;
    }
    let running = inner.running.as_ref().map(|(started, _)| *started);
    match (plan, running) {
        (Some(plan), Some(started)) if started == plan.started_ms => {}
        (Some(plan), _) => {
            if let Some((_, stop)) = inner.running.take() {
                stop.cancel();
            }
            info!(node = %ctx.node(), ?plan, "evacuation started");
            let stop = CancellationToken::new();
            inner.running = Some((plan.started_ms, stop.clone()));
            inner.redirect = Some(plan.redirect_to.as_str())
                .filter(|r| !r.is_empty())
                .map(Arc::from);
            inner.report = Some(report_of(ctx, &plan));
            ev.unavailable.store(true, Ordering::Relaxed);
            // Resumed after a restart, past its health-check wait: refuse from now on.
            let refuse_at = plan.started_ms + u64::from(plan.wait_health_check_secs) * 1000;
            ev.refusing.store(now_ms() >= refuse_at, Ordering::Relaxed);
            metrics::gauge!(m::EVACUATING).set(1.0);
            tokio::spawn(run::run(ctx.clone(), plan, stop));
        }
        (None, Some(_)) => {
            if let Some((_, stop)) = inner.running.take() {
                stop.cancel();
            }
            inner.redirect = None;
            inner.report = None;
            ev.refusing.store(false, Ordering::Relaxed);
            ev.unavailable.store(false, Ordering::Relaxed);
            metrics::gauge!(m::EVACUATING).set(0.0);
            info!(node = %ctx.node(), "evacuation stopped");
        }
        (None, None) => {}
    }
}

fn report_of(ctx: &Ctx, plan: &tables::Evacuation) -> Report {
    let connected = ctx.admission.connections.load(Ordering::Relaxed) as u64;
    let sessions = ctx.local.sessions.len() as u64;
    Report {
        node: ctx.node().to_owned(),
        process: if plan.process == REBALANCE {
            "rebalance"
        } else {
            "evacuation"
        },
        coordinator: plan.coordinator.clone(),
        connection_goal: plan.conn_goal,
        session_goal: plan.sess_goal,
        state: Stage::WaitingHealthCheck,
        wait_health_check: plan.wait_health_check_secs,
        connection_eviction_rate: plan.conn_evict_rate,
        session_eviction_rate: plan.sess_evict_rate,
        wait_takeover: plan.wait_takeover_secs,
        redirect_to: plan.redirect_to.clone(),
        migrate_to: plan.migrate_to.clone(),
        started_ms: plan.started_ms,
        stats: Stats {
            initial_connected: plan.initial_connections.max(connected),
            current_connected: connected,
            initial_sessions: plan.initial_sessions.max(sessions),
            current_sessions: sessions,
            ..Stats::default()
        },
        connection_eviction_secs: None,
        connections_closed_secs: None,
    }
}

/// Follows this node's row until shutdown (every applied change, and once a second).
pub async fn watch(ctx: Arc<Ctx>) {
    let mut applied = ctx.tables.core.replica().subscribe_applied();
    loop {
        sync(&ctx);
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            r = applied.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Why a status change was not written.
#[derive(Debug)]
pub enum WriteError {
    /// The node's row is not in the expected state (already evacuating, not evacuating).
    Conflict(String),
    /// No such node.
    UnknownNode,
    /// The core refused or could not commit it.
    Failed(String),
}

/// Writes `status` (with `plan`) to `node`'s row if the row is `expect` now and, unless
/// `expect_started` is 0, runs the plan started at that time.
pub async fn write_status(
    ctx: &Ctx,
    node: &str,
    status: NodeState,
    expect: NodeState,
    expect_started: u64,
    plan: Option<tables::Evacuation>,
) -> Result<(), WriteError> {
    let op = Op {
        kind: Some(op::Kind::NodeStatus(NodeStatus {
            node: node.to_owned(),
            status: status as i32,
            evacuation: plan,
            expect: expect as i32,
            expect_started_ms: expect_started,
        })),
    };
    let results = match ctx.tables.core.transact(vec![op]).await {
        Ok(c) => c.results,
        Err(e) => return Err(WriteError::Failed(e.to_string())),
    };
    match results.into_iter().next().and_then(|r| r.outcome) {
        Some(Outcome::Ok(_)) => Ok(()),
        Some(Outcome::Rejected(r)) if r.reason == RejectReason::StateConflict as i32 => {
            Err(WriteError::Conflict(r.detail))
        }
        Some(Outcome::Rejected(r)) if r.reason == RejectReason::UnknownNode as i32 => {
            Err(WriteError::UnknownNode)
        }
        Some(Outcome::Rejected(r)) => Err(WriteError::Failed(r.detail)),
        _ => Err(WriteError::Failed("no result".into())),
    }
}

/// Writes this node's progress (stage and counts) into its row, so that every node's
/// `global_status` shows it. Refused (and ignored) once the evacuation was stopped.
async fn publish_progress(ctx: &Arc<Ctx>, plan: &tables::Evacuation) {
    let Some(r) = ctx.admission.evacuation.report() else {
        return;
    };
    let mut p = plan.clone();
    p.stage = r.state.name().to_owned();
    p.initial_connections = r.stats.initial_connected;
    p.initial_sessions = r.stats.initial_sessions;
    p.current_connections = r.stats.current_connected;
    p.current_sessions = r.stats.current_sessions;
    let node = ctx.node().to_owned();
    let evac = NodeState::Evacuating;
    let started = plan.started_ms;
    if let Err(e) = write_status(ctx, &node, evac, evac, started, Some(p)).await
        && !matches!(e, WriteError::Conflict(_))
    {
        warn!(error = ?e, "evacuation progress not written");
    }
}

/// Milliseconds since the epoch (table clock).
pub fn now_ms() -> u64 {
    cluster::now_ms()
}
