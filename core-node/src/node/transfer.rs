//! Leadership transfer (`POST /api/v5/cluster/leader/transfer`): the leader hands its role
//! to a chosen voter, so that a rolling upgrade can stop the leader last without an
//! election timeout's worth of unavailability.
//!
//! openraft 0.9 has no transfer call (that is 0.10), so it is built from what 0.9 has:
//! 1. the leader stops taking new writes (`Transact` answers `Unavailable`, which replicants
//!    retry) and stops campaigning itself (`runtime_config().elect(false)`);
//! 2. it waits until the target's matched log index is the leader's last log index, and at
//!    least one leader lease (`election_timeout_max`) from the start: openraft's leader
//!    keeps the time of its own election as its vote's time and refuses every vote for a
//!    lease after it, so a leader elected just before the transfer would refuse the target;
//! 3. it asks the target (an `Elect` request on the core QUIC endpoint) to start an election
//!    now (`trigger().elect()`): the target's log is as long as the leader's, so the leader
//!    grants the vote (its own vote is older than the leader lease) and steps down; the
//!    other voters may refuse while their lease on the old leader runs, but the leader's
//!    vote and the target's own are a majority of three; of five, the target asks again
//!    (every [`RETRY_ELECT`]) until the leases have run out;
//! 4. once another core leads (or the deadline passes), writes and campaigning resume.
//!
//! It never changes membership. A failed transfer normally leaves the leader leading; a
//! target that campaigned and lost may have made the group elect again, as any election.

use std::sync::atomic::Ordering;
use std::time::Duration;

use meshmq_proto::core::{ElectRequest, ElectResponse, Request, Response, request, response};
use tracing::{info, warn};

use super::CoreNode;
use crate::raft::types::NodeId;

/// How often the leader asks the target again while no other core leads.
pub const RETRY_ELECT: Duration = Duration::from_millis(300);
/// Bound on one `Elect` request to the target.
const ELECT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a transfer did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Only the leader transfers its leadership.
    #[error("this core is not the leader; the leader is {leader:?}")]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<NodeId>,
    },
    /// The target is this core, not a member, or not a voter; or there is no other voter.
    #[error("{0}")]
    BadTarget(String),
    /// Another transfer is running on this core.
    #[error("a leadership transfer is already running on this core")]
    Busy,
    /// No other core led within the time allowed.
    #[error("core {to} did not take over within {timeout:?}: {why}")]
    Timeout {
        /// The chosen target.
        to: NodeId,
        /// The bound.
        timeout: Duration,
        /// The last thing that went wrong.
        why: String,
    },
}

impl CoreNode {
    /// Hands leadership to voter `to` (default: the voter with the highest matched log
    /// index); returns the new leader's id once another core leads.
    pub async fn transfer_leader(
        &self,
        to: Option<NodeId>,
        timeout: Duration,
    ) -> Result<NodeId, TransferError> {
        let to = self.transfer_target(to)?;
        if self.transferring.swap(true, Ordering::AcqRel) {
            return Err(TransferError::Busy);
        }
        self.raft.runtime_config().elect(false);
        // Restores both on every way out, a dropped request (its HTTP client hung up) too:
        // a leader left refusing writes and not campaigning would stall the cluster.
        let _restore = Restore(self);
        let result = self.hand_over(to, timeout).await;
        match &result {
            Ok(leader) => info!(to, leader, "leadership transferred"),
            Err(e) => warn!(to, error = %e, "leadership transfer failed"),
        }
        result
    }

    /// The target: `to` checked to be another voter, or the most up-to-date other voter.
    fn transfer_target(&self, to: Option<NodeId>) -> Result<NodeId, TransferError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return Err(TransferError::NotLeader {
                leader: m.current_leader,
            });
        }
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        if let Some(to) = to {
            if to == self.id {
                return Err(TransferError::BadTarget(format!(
                    "core {to} is this core, the leader already"
                )));
            }
            if !voters.contains(&to) {
                return Err(TransferError::BadTarget(format!(
                    "core {to} is not a voter of this group (voters: {voters:?})"
                )));
            }
            return Ok(to);
        }
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map_or(0, |l| l.index)
        };
        voters
            .iter()
            .filter(|id| **id != self.id)
            .max_by_key(|id| (matched(id), std::cmp::Reverse(**id)))
            .copied()
            .ok_or_else(|| TransferError::BadTarget("there is no other voter".into()))
    }

    /// Waits for `to` to hold the whole log, then asks it to run until another core leads.
    async fn hand_over(&self, to: NodeId, timeout: Duration) -> Result<NodeId, TransferError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let timed_out = |why: String| TransferError::Timeout { to, timeout, why };
        let addr = {
            let m = self.raft.metrics().borrow().clone();
            let node = m.membership_config.membership().get_node(&to).cloned();
            node.map(|n| n.addr)
                .ok_or_else(|| TransferError::BadTarget(format!("core {to} has no address")))?
        };
        let mut why = String::from("not asked yet");
        loop {
            let m = self.raft.metrics().borrow().clone();
            match m.current_leader {
                Some(leader) if leader != self.id => return Ok(leader),
                Some(_) => {}
                None => why = "no leader yet".into(),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(timed_out(why));
            }
            let last = m.last_log_index.unwrap_or(0);
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&to).cloned().flatten())
                .map_or(0, |l| l.index);
            if m.current_leader == Some(self.id) && matched < last {
                why = format!("core {to} has matched index {matched} of {last}");
            } else if started.elapsed() < lease {
                why = "waiting out this leader's own lease".into();
            } else if m.current_leader == Some(self.id) {
                why = match self.ask_elect(&addr).await {
                    Ok(()) => format!("core {to} started an election"),
                    Err(e) => e,
                };
            }
            let wait =
                RETRY_ELECT.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let _ = self
                .raft
                .wait(Some(wait))
                .metrics(
                    |m| m.current_leader.is_some_and(|l| l != self.id),
                    "another leader",
                )
                .await;
        }
    }

    /// Sends `Elect` to the core at `addr`.
    async fn ask_elect(&self, addr: &str) -> Result<(), String> {
        let req = Request {
            kind: Some(request::Kind::Elect(ElectRequest {
                from_leader: self.id,
            })),
            wire: self.wire.proto(),
        };
        let resp: Response = self
            .conns
            .request(addr, &req, ELECT_REQUEST_TIMEOUT)
            .await
            .map_err(|e| format!("elect request to {addr}: {e:?}"))?;
        self.wire.check_answer(resp.wire.as_ref(), addr)?;
        match resp.kind {
            Some(response::Kind::Elect(ElectResponse { started: true, .. })) => Ok(()),
            Some(response::Kind::Elect(r)) => Err(format!("core at {addr}: {}", r.reason)),
            Some(response::Kind::Error(e)) => Err(format!("core at {addr}: {}", e.message)),
            _ => Err(format!("core at {addr}: unexpected answer to elect")),
        }
    }

    /// Serves `Elect` from the leader `from`, sent by the holder of certificate
    /// `certified`: starts an election here unless `from` is not this core's leader, the
    /// certificate is not that leader's (`core-{from}`: a replicant, or another core,
    /// cannot make a core campaign), this core leads already or is not a voter.
    pub async fn elect_now(&self, from: NodeId, certified: Option<&str>) -> ElectResponse {
        let m = self.raft.metrics().borrow().clone();
        let refuse = |reason: String| ElectResponse {
            started: false,
            reason,
        };
        if m.current_leader != Some(from) {
            return refuse(format!(
                "core {from} is not this core's leader (the leader is {:?})",
                m.current_leader
            ));
        }
        let leader_cert = format!("core-{from}");
        if certified != Some(leader_cert.as_str()) {
            warn!(
                from,
                certified = certified.unwrap_or("none"),
                "election request refused: the caller's certificate is not the leader's"
            );
            return refuse(format!(
                "the caller's certificate does not name {leader_cert}, the leader"
            ));
        }
        if m.current_leader == Some(self.id) {
            return refuse("this core is the leader already".into());
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
        {
            return refuse(format!("core {} is not a voter", self.id));
        }
        info!(
            from,
            "election started at the leader's request (leadership transfer)"
        );
        match self.raft.trigger().elect().await {
            Ok(()) => ElectResponse {
                started: true,
                reason: String::new(),
            },
            Err(e) => refuse(format!("raft: {e}")),
        }
    }
}

/// Puts a transferring leader back to normal when dropped: campaigning again, writes taken.
struct Restore<'a>(&'a CoreNode);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().elect(true);
        self.0.transferring.store(false, Ordering::Release);
    }
}
