//! The cluster tests' harness: [`Cluster`] and its start-up helpers come from
//! `tests/common/cluster.rs` (shared with the MQTT suite's round-robin topology); this module
//! adds what only these tests need: the tables of every holder at one applied index
//! ([`Cluster::settled`], [`Cluster::assert_converged`]), direct table ops, route checks.
//!
//! Owns nothing beyond those helpers; it reaches into nothing but public APIs, and never
//! sleeps to synchronise: every wait polls a condition with a deadline and fails the test
//! when the deadline passes.

use std::time::Instant;

use bytes::Bytes;
use core_node::node::CoreNode;
use meshmq_proto::tables::{
    Op, OpResult, RetainedMessage, RetainedSet, RouteAdd, Snapshot, op, op_result,
};
use meshmq_shared::tables::Tables;
use replicant_node::BrokerHandle;

use crate::common::cluster::core_name;
pub use crate::common::cluster::{Cluster, ELECTION_MAX, WAIT, fast_timings, serial};
use crate::common::wait_until;

/// The tables of one holder (a core or a replica) and the log index they reflect.
#[derive(Debug, Clone)]
pub struct State {
    /// `core-<id>` or the replicant's name.
    pub who: String,
    /// The holder's applied index.
    pub index: u64,
    /// Every row, canonical order (what `Tables: PartialEq` compares), stamped with `index`.
    pub tables: Snapshot,
    /// The node whose registry projection a replica holds (docs/roles.md); `None` for a
    /// core or a replica of every row.
    pub projected_for: Option<String>,
}

impl Cluster {
    /// The states of the leader (first), every other running core and `replicas`, all at
    /// the same applied index: waits until each is at the leader's index, takes the states,
    /// and starts over when something (e.g. a `$SYS` refresh) committed in between.
    pub async fn settled(&self, replicas: &[(&str, &BrokerHandle)]) -> Vec<State> {
        let end = Instant::now() + WAIT;
        loop {
            let leader = self.wait_leader(None).await;
            let target = leader.sm.applied_index();
            let live = self.live();
            // Cheap polls first: everyone at the leader's index now (at least `target`).
            let reached = wait_until(end.saturating_duration_since(Instant::now()), || {
                let now = leader.sm.applied_index();
                now >= target
                    && live.iter().all(|c| c.sm.applied_index() == now)
                    && replicas
                        .iter()
                        .all(|(_, r)| r.core().applied_index() == now)
            })
            .await;
            if !reached {
                let cores: Vec<u64> = live.iter().map(|c| c.sm.applied_index()).collect();
                let replicas: Vec<u64> = replicas
                    .iter()
                    .map(|(_, r)| r.core().applied_index())
                    .collect();
                panic!("not all at {target}: cores {cores:?}, replicas {replicas:?}");
            }
            let mut states = vec![core_state(&leader)];
            states.extend(
                live.iter()
                    .filter(|c| c.id != leader.id)
                    .map(|c| core_state(c)),
            );
            states.extend(replicas.iter().map(|(who, r)| replica_state(who, r)));
            if states.iter().all(|s| s.index == states[0].index) {
                return states;
            }
            assert!(Instant::now() < end, "never quiet: {:?}", summary(&states));
        }
    }

    /// Asserts that every running core and every replica in `replicas` holds the leader's
    /// tables at the leader's applied index; returns that index.
    pub async fn assert_converged(&self, replicas: &[(&str, &BrokerHandle)]) -> u64 {
        let states = self.settled(replicas).await;
        assert_same(&states);
        states[0].index
    }
}

/// A core's tables and applied index, taken under one lock.
pub fn core_state(core: &CoreNode) -> State {
    let (index, tables) = core.sm.snapshot_now();
    State {
        who: core_name(core.id),
        index,
        tables,
        projected_for: None,
    }
}

/// A replica's tables and applied index, taken under one lock; the snapshot is stamped with
/// the replica's applied index, as a core stamps its own (blank and membership entries move
/// the index without touching the tables).
pub fn replica_state(who: &str, replicant: &BrokerHandle) -> State {
    let replica = replicant.core().replica();
    let (index, mut tables) = replica.read(|t| (replica.applied_index(), t.snapshot()));
    tables.applied_index = index;
    State {
        who: who.to_owned(),
        index,
        tables,
        projected_for: replica.projected_for().map(str::to_owned),
    }
}

/// Asserts every state equals the first one (the leader's): a replica that holds a
/// projection of the registry equals the leader's projection for its node (invariant 4).
pub fn assert_same(states: &[State]) {
    let first = &states[0];
    for s in &states[1..] {
        assert_eq!(s.index, first.index, "{} vs {}", s.who, first.who);
        let want = match &s.projected_for {
            Some(node) => {
                let mut p = Tables::from_snapshot(&first.tables).projection(node);
                p.applied_index = first.index;
                p
            }
            None => first.tables.clone(),
        };
        if s.tables != want {
            panic!(
                "{} at {} differs from {}: {:?} vs {:?}",
                s.who,
                s.index,
                first.who,
                Tables::from_snapshot(&s.tables),
                Tables::from_snapshot(&want)
            );
        }
    }
}

fn summary(states: &[State]) -> Vec<(String, u64)> {
    states.iter().map(|s| (s.who.clone(), s.index)).collect()
}

/// `node` has a subscriber to `filter`.
pub fn route_op(filter: &str, node: &str) -> Op {
    Op {
        kind: Some(op::Kind::RouteAdd(RouteAdd {
            filter: filter.to_owned(),
            node: node.to_owned(),
            seq: 0,
        })),
    }
}

/// Retains `payload` on `topic`.
pub fn retained_op(topic: &str, payload: &str) -> Op {
    let message = RetainedMessage {
        topic: topic.to_owned(),
        payload: Bytes::from(payload.to_owned()),
        qos: 1,
        published_at_ms: 1,
        ..RetainedMessage::default()
    };
    Op {
        kind: Some(op::Kind::RetainedSet(RetainedSet {
            message: Some(message),
            ..RetainedSet::default()
        })),
    }
}

/// Asserts no op of a committed transaction was rejected.
pub fn assert_applied(results: &[OpResult]) {
    for r in results {
        assert!(
            !matches!(r.outcome, Some(op_result::Outcome::Rejected(_)) | None),
            "op rejected: {r:?}"
        );
    }
}

/// Whether `replicant`'s replica has a route of `node` matching `topic`.
pub fn has_route(replicant: &BrokerHandle, topic: &str, node: &str) -> bool {
    replicant.core().read(|t| {
        let mut found = false;
        t.route_nodes_matching(topic, |n| found |= n == node);
        found
    })
}

/// Time since `start`, in milliseconds, for the printed measurements.
pub fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

/// Messages `stats` counts as dropped for `node`, all reasons.
pub fn peer_drops(stats: &replicant_node::peer::PeerStats, node: &str) -> u64 {
    stats.links.get(node).map_or(0, |l| l.dropped())
}
