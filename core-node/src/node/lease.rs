//! Replicant liveness leases, kept by the leader. A replicant renews its lease every third of
//! its TTL; when a lease lapses, the leader commits `NodePurge` for that node's incarnation,
//! which drops its routes, shared-group members and the registry rows of its *connected*
//! clients (disconnected persistent sessions keep their rows, so their expiry still runs,
//! and every persistent session keeps its `subscriptions` rows and resumes anywhere:
//! invariant 6).
//!
//! Leases live in the leader's memory only. A new leader gives every running replicant in
//! the `nodes` table a full TTL of grace before it may purge it, so a leader change never
//! purges a live node. Never purges a core, and never a node that came back with a newer
//! incarnation (the purge op names the incarnation it saw; apply rejects a stale one).

use std::collections::HashMap;
use std::time::Duration;

use meshmq_proto::tables::{NodePurge, NodeRole, NodeState, Op, op::Kind};
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use super::CoreNode;

/// TTL given to nodes found in the table without a lease (new leader, or a node that never
/// renewed).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// How often the leader looks for lapsed leases.
const SWEEP: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Lease {
    incarnation: u64,
    deadline: Instant,
}

/// The leader's lease table.
#[derive(Default)]
pub struct Leases {
    /// node name → its lease; cleared whenever this core is not the leader.
    inner: Mutex<HashMap<String, Lease>>,
}

impl Leases {
    /// Records a renewal from `node` (called on the leader).
    pub fn renew(&self, node: &str, incarnation: u64, ttl: Duration) {
        let deadline = Instant::now() + ttl;
        self.inner.lock().insert(
            node.to_owned(),
            Lease {
                incarnation,
                deadline,
            },
        );
    }

    fn clear(&self) {
        self.inner.lock().clear();
    }
}

/// Runs the leader's sweep until shutdown.
pub async fn run(core: std::sync::Arc<CoreNode>) {
    let mut was_leader = false;
    let mut tick = tokio::time::interval(SWEEP);
    loop {
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leader = core.is_leader();
        if !leader {
            if was_leader {
                core.leases.clear();
            }
            was_leader = false;
            continue;
        }
        if !was_leader {
            // New leader: every running replicant gets a full TTL of grace.
            core.leases.clear();
            was_leader = true;
        }
        let lapsed = lapsed(&core);
        metrics::gauge!(m::CORE_LEASES).set(core.leases.inner.lock().len() as f64);
        if lapsed.is_empty() {
            continue;
        }
        let ops: Vec<Op> = lapsed
            .iter()
            .map(|(node, incarnation)| Op {
                kind: Some(Kind::NodePurge(NodePurge {
                    node: node.clone(),
                    incarnation: *incarnation,
                })),
            })
            .collect();
        match core.transact(ops).await {
            Ok(_) => {
                for (node, _) in &lapsed {
                    info!(%node, "replicant lease lapsed: node purged");
                    core.leases.inner.lock().remove(node);
                }
                metrics::counter!(m::CORE_LEASE_PURGES_TOTAL).increment(lapsed.len() as u64);
            }
            Err(e) => warn!(error = %e, "could not commit the purge of lapsed nodes"),
        }
    }
}

/// Running replicants whose lease has lapsed, with the incarnation to purge.
fn lapsed(core: &CoreNode) -> Vec<(String, u64)> {
    let now = Instant::now();
    let rows: Vec<(String, u64)> = core.sm.read(|t| {
        t.nodes()
            .filter(|n| n.role == NodeRole::Replicant as i32 && n.status != NodeState::Left as i32)
            .map(|n| (n.node.clone(), n.incarnation))
            .collect()
    });
    let mut leases = core.leases.inner.lock();
    let mut out = Vec::new();
    for (node, incarnation) in rows {
        let lease = leases.entry(node.clone()).or_insert(Lease {
            incarnation,
            deadline: now + DEFAULT_TTL,
        });
        if lease.incarnation < incarnation {
            // A restarted node whose first renewal has not arrived yet: fresh grace.
            *lease = Lease {
                incarnation,
                deadline: now + DEFAULT_TTL,
            };
        }
        if lease.deadline <= now {
            out.push((node, incarnation));
        }
    }
    out
}
