//! The `nodes` table: node id → address, role, incarnation, state.
//!
//! Owns the node rows and the incarnation rules (a lower incarnation never overwrites a
//! higher one). A row's `connected_clients` and `sessions` are copies of what the registry
//! counts for the node: `apply` writes them ([`Nodes::set_held`]) after every op that
//! changes a registry row, and this table never computes them. It must never touch the rows
//! other tables hold for a node: dropping those is decided in `apply` (`NodeUp` with a new
//! incarnation, `NodePurge`).

use imbl::HashMap;
use meshmq_proto::tables::{
    NodeRole, NodeRow, NodeState, NodeStatus, NodeUp, RejectReason, Rejected,
};

use super::node_counts::Held;
use super::{invalid, reject};

/// What `NodeUp` did, so that apply can drop an older incarnation's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UpOutcome {
    /// First announce of this node, or the same incarnation again.
    Unchanged,
    /// The node restarted: rows of incarnations below `new` belong to a dead process.
    NewIncarnation {
        /// The incarnation now stored.
        new: u64,
    },
}

/// Node rows by node id (a persistent map: a snapshot clones it in O(1)).
#[derive(Default, Clone)]
pub(super) struct Nodes {
    /// Node id → row (the row repeats the id so that snapshots are plain rows).
    rows: HashMap<String, NodeRow>,
}

impl Nodes {
    /// The row of `node`.
    pub(super) fn get(&self, node: &str) -> Option<&NodeRow> {
        self.rows.get(node)
    }

    /// Whether `node` has a row.
    pub(super) fn contains(&self, node: &str) -> bool {
        self.rows.contains_key(node)
    }

    /// All rows, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &NodeRow> {
        self.rows.values()
    }

    /// Number of rows.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Applies `NodeUp`: inserts or refreshes the row, state `Running`.
    pub(super) fn up(&mut self, op: &NodeUp) -> Result<UpOutcome, Rejected> {
        if op.node.is_empty() {
            return Err(invalid("NodeUp: empty node id"));
        }
        match NodeRole::try_from(op.role) {
            Ok(NodeRole::Core | NodeRole::Replicant) => {}
            _ => return Err(invalid(format!("NodeUp: invalid role {}", op.role))),
        }
        let outcome = match self.rows.get(&op.node) {
            Some(row) if row.incarnation > op.incarnation => {
                return Err(reject(
                    RejectReason::StaleIncarnation,
                    format!(
                        "NodeUp: node {} is at incarnation {}, not {}",
                        op.node, row.incarnation, op.incarnation
                    ),
                ));
            }
            Some(row) if row.incarnation < op.incarnation => UpOutcome::NewIncarnation {
                new: op.incarnation,
            },
            _ => UpOutcome::Unchanged,
        };
        // An evacuating node that restarts comes back evacuating (its plan resumes).
        let evacuation = self
            .rows
            .get(&op.node)
            .filter(|r| r.status == NodeState::Evacuating as i32)
            .and_then(|r| r.evacuation.clone());
        let status = if evacuation.is_some() {
            NodeState::Evacuating
        } else {
            NodeState::Running
        };
        self.rows.insert(
            op.node.clone(),
            NodeRow {
                node: op.node.clone(),
                addr: op.addr.clone(),
                peer_addr: op.peer_addr.clone(),
                role: op.role,
                incarnation: op.incarnation,
                status: status as i32,
                evacuation,
                // Set by apply right after (what the registry counts for this node).
                connected_clients: 0,
                sessions: 0,
                wire: op.wire,
            },
        );
        Ok(outcome)
    }

    /// Applies `NodeStatus` to a known node.
    pub(super) fn set_status(&mut self, op: &NodeStatus) -> Result<(), Rejected> {
        match NodeState::try_from(op.status) {
            Ok(NodeState::Running | NodeState::Evacuating | NodeState::Left) => {}
            _ => return Err(invalid(format!("NodeStatus: invalid status {}", op.status))),
        }
        let Some(row) = self.rows.get_mut(&op.node) else {
            return Err(reject(
                RejectReason::UnknownNode,
                format!("NodeStatus: unknown node {:?}", op.node),
            ));
        };
        if op.expect != NodeState::Unspecified as i32 && op.expect != row.status {
            return Err(reject(
                RejectReason::StateConflict,
                format!(
                    "NodeStatus: node {} is {}, not {}",
                    op.node,
                    state_name(row.status),
                    state_name(op.expect)
                ),
            ));
        }
        let started = row.evacuation.as_ref().map_or(0, |e| e.started_ms);
        if op.expect_started_ms != 0 && op.expect_started_ms != started {
            return Err(reject(
                RejectReason::StateConflict,
                format!(
                    "NodeStatus: node {} runs the plan of {started}, not {}",
                    op.node, op.expect_started_ms
                ),
            ));
        }
        row.status = op.status;
        row.evacuation = if op.status == NodeState::Evacuating as i32 {
            op.evacuation.clone()
        } else {
            None
        };
        Ok(())
    }

    /// Writes what `node` holds in the registry into its row, if it has one.
    pub(super) fn set_held(&mut self, node: &str, held: Held) {
        if let Some(row) = self.rows.get_mut(node) {
            row.connected_clients = held.connected;
            row.sessions = held.sessions;
        }
    }

    /// Writes `held(node)` into every row (after a restore: a peer's figures are not
    /// trusted).
    pub(super) fn set_all_held(&mut self, held: impl Fn(&str) -> Held) {
        for (_, row) in self.rows.iter_mut() {
            let h = held(&row.node);
            row.connected_clients = h.connected;
            row.sessions = h.sessions;
        }
    }

    /// Checks that a purge of `node` up to `incarnation` is not stale.
    pub(super) fn check_purge(&self, node: &str, incarnation: u64) -> Result<(), Rejected> {
        match self.rows.get(node) {
            Some(row) if row.incarnation > incarnation => Err(reject(
                RejectReason::StaleIncarnation,
                format!(
                    "NodePurge: node {node} is back at incarnation {}, purge names {incarnation}",
                    row.incarnation
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Removes the row of `node`.
    pub(super) fn remove(&mut self, node: &str) {
        self.rows.remove(node);
    }

    /// All rows sorted by node id.
    pub(super) fn snapshot_rows(&self) -> Vec<NodeRow> {
        let mut rows: Vec<NodeRow> = self.rows.values().cloned().collect();
        rows.sort_unstable_by(|a, b| a.node.cmp(&b.node));
        rows
    }

    /// Loads snapshot rows, skipping those with an empty id.
    pub(super) fn restore(&mut self, rows: &[NodeRow]) {
        for row in rows.iter().filter(|r| !r.node.is_empty()) {
            self.rows.insert(row.node.clone(), row.clone());
        }
    }
}

/// `running`, `evacuating`, `left` (or the number).
pub fn state_name(status: i32) -> String {
    match NodeState::try_from(status) {
        Ok(NodeState::Running) => "running".into(),
        Ok(NodeState::Evacuating) => "evacuating".into(),
        Ok(NodeState::Left) => "left".into(),
        _ => format!("state {status}"),
    }
}
