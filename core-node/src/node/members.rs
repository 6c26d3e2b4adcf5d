//! Group membership at run time (add a core as a learner, then make it a voter; remove a
//! voter) and the Raft metrics export. Membership changes go through openraft's joint
//! consensus; only the leader can make them (others answer with the leader's address).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::raft::types::ChangeMembers;
use serde::Serialize;

use super::CoreNode;
use crate::raft::types::{Node, NodeId};
use meshmq_shared::metrics as m;

/// Why a membership change failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// Only the leader changes membership.
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader {
        /// The leader's address, if known.
        leader: Option<String>,
    },
    /// openraft refused the change.
    #[error("{0}")]
    Refused(String),
}

/// A core as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// Node id.
    pub id: NodeId,
    /// Core QUIC address.
    pub addr: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// The inter-node protocol version the core speaks (`major.minor`): this core's own,
    /// or the version another core last answered this one's Raft RPCs with; `null` when
    /// not known here (ask that core, or the leader, which talks to every member).
    pub wire_protocol: Option<String>,
}

/// The group as this core sees it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// This core's id.
    pub node_id: NodeId,
    /// The leader's id, if known.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Last applied index on this core.
    pub applied_index: u64,
    /// Last log index on this core.
    pub last_log_index: u64,
    /// Members (voters and learners).
    pub members: Vec<MemberView>,
    /// The inter-node protocol version this core speaks (`major.minor`).
    pub wire_protocol: String,
}

impl CoreNode {
    fn require_leader(&self) -> Result<(), MemberError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(MemberError::NotLeader {
                leader: self.leader().map(|(_, a)| a),
            })
        }
    }

    /// Adds core `id` at `addr`: first a learner (waits until it caught up), then a voter.
    pub async fn add_core(&self, id: NodeId, addr: String) -> Result<(), MemberError> {
        self.require_leader()?;
        self.raft
            .add_learner(id, Node { addr }, true)
            .await
            .map_err(|e| MemberError::Refused(e.to_string()))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| MemberError::Refused(e.to_string()))?;
        Ok(())
    }

    /// Removes core `id` from the voters and from the group.
    pub async fn remove_core(&self, id: NodeId) -> Result<(), MemberError> {
        self.require_leader()?;
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| MemberError::Refused(e.to_string()))?;
        Ok(())
    }

    /// The group as this core sees it.
    pub fn group(&self) -> GroupView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberView {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
                wire_protocol: if *id == self.id {
                    Some(self.wire.version().to_string())
                } else {
                    self.wire.seen(&node.addr).map(|v| v.to_string())
                },
            })
            .collect();
        GroupView {
            node_id: self.id,
            leader_id: m.current_leader,
            term: m.current_term,
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            members,
            wire_protocol: self.wire.version().to_string(),
        }
    }
}

/// Publishes Raft metrics as Prometheus gauges every 500 ms until shutdown.
pub async fn export_metrics(core: Arc<CoreNode>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = core.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = core.raft.metrics().borrow().clone();
        metrics::gauge!(m::RAFT_TERM).set(r.current_term as f64);
        metrics::gauge!(m::RAFT_LEADER_ID).set(r.current_leader.unwrap_or(0) as f64);
        metrics::gauge!(m::RAFT_IS_LEADER)
            .set(f64::from(u8::from(r.current_leader == Some(core.id))));
        metrics::gauge!(m::RAFT_LAST_LOG_INDEX).set(r.last_log_index.unwrap_or(0) as f64);
        metrics::gauge!(m::RAFT_COMMIT_INDEX).set(r.last_applied.map_or(0, |l| l.index) as f64);
        metrics::gauge!(m::RAFT_APPLIED_INDEX).set(core.sm.applied_index() as f64);
    }
}
