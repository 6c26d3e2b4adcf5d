//! [`Cluster`]: N real cores (`CoreNode`, redb in tempdirs, QUIC with mutual TLS on
//! 127.0.0.1:0) sharing one certificate directory, plus helpers to start replicants
//! (`Broker`s linked to those cores), find the leader, kill and restart a core on its data
//! dir and port, and compare every holder's tables at one applied index.
//!
//! Owns the tempdirs and the core handles; the tests own their replicants. It reaches into
//! nothing but public APIs, and never sleeps to synchronise: every wait polls a condition
//! with a deadline and fails the test when the deadline passes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use core_node::node::{CoreConfig, CoreNode, RaftTimings, batcher::GroupCommit};
use core_node::raft::types::{Node, NodeId};
use meshmq_proto::tables::{
    Op, OpResult, RetainedMessage, RetainedSet, RouteAdd, Snapshot, op, op_result,
};
use meshmq_shared::config::Config;
use meshmq_shared::quic::certs::{self, CertPaths};
use meshmq_shared::tables::Tables;
use replicant_node::{Broker, BrokerHandle};
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

use crate::common::{test_config, wait_until};

/// Deadline for an election, a catch-up, a convergence.
pub const WAIT: Duration = Duration::from_secs(15);
/// Upper end of the election timeout used by [`fast_timings`].
pub const ELECTION_MAX: Duration = Duration::from_millis(600);

/// Raft timings for tests: heartbeat 50 ms, election 300–600 ms, no compaction in practice.
pub fn fast_timings() -> RaftTimings {
    RaftTimings {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: ELECTION_MAX,
        snapshot_every: 1_000_000,
        keep_after_snapshot: 1_000_000,
    }
}

/// Serialises the cluster tests: each runs five nodes with 50 ms heartbeats, and two at
/// once on a 2-core box starve each other into elections nobody asked for.
pub async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// One core of the cluster, running or killed.
struct Slot {
    /// Raft node id (1-based).
    id: NodeId,
    /// The address it bound and advertises; a restart binds it again (the membership
    /// names it).
    bind: SocketAddr,
    /// Its redb files; survive a kill.
    data: TempDir,
    /// The running core; `None` after [`Cluster::kill`].
    node: Option<Arc<CoreNode>>,
    /// A killed core not yet released: its closed endpoint still refuses connections.
    killed: Option<Arc<CoreNode>>,
}

/// A core group in this process; see the module doc.
pub struct Cluster {
    /// `ca.pem` and one certificate per node.
    certs: TempDir,
    /// Cores by id − 1.
    slots: Vec<Slot>,
    /// Raft timings every core (and every restart) uses.
    timings: RaftTimings,
}

/// The tables of one holder (a core or a replica) and the log index they reflect.
#[derive(Debug, Clone)]
pub struct State {
    /// `core-<id>` or the replicant's name.
    pub who: String,
    /// The holder's applied index.
    pub index: u64,
    /// Every row, canonical order (what `Tables: PartialEq` compares), stamped with `index`.
    pub tables: Snapshot,
}

impl Cluster {
    /// Starts `n` cores, makes them one group, and waits for a leader.
    pub async fn start(n: u64, timings: RaftTimings) -> Cluster {
        let certs = tempfile::tempdir().expect("certs tempdir");
        let mut names: Vec<String> = (1..=n).map(core_name).collect();
        names.extend((1..=4).map(|i| format!("r{i}")));
        certs::generate(certs.path(), &names).expect("certificates");
        let mut cluster = Cluster {
            certs,
            slots: Vec::new(),
            timings,
        };
        for id in 1..=n {
            let data = tempfile::tempdir().expect("core tempdir");
            let any: SocketAddr = "127.0.0.1:0".parse().expect("loopback");
            let cfg = cluster.core_config(id, any, data.path());
            let core = CoreNode::start(cfg).await.expect("core starts");
            let bind: SocketAddr = core.addr.parse().expect("core address");
            cluster.slots.push(Slot {
                id,
                bind,
                data,
                node: Some(core),
                killed: None,
            });
        }
        let members: BTreeMap<NodeId, Node> = cluster
            .slots
            .iter()
            .map(|s| (s.id, Node::new(s.bind.to_string())))
            .collect();
        cluster
            .core(1)
            .raft
            .initialize(members)
            .await
            .expect("initialize");
        cluster.wait_leader(None).await;
        cluster
    }

    /// The configuration of core `id`; see [`join_later`] for its member list.
    fn core_config(&self, id: NodeId, bind: SocketAddr, data: &Path) -> CoreConfig {
        CoreConfig {
            node_id: id,
            core_bind: bind,
            advertise: None,
            data_dir: data.to_path_buf(),
            initial_members: join_later(),
            certs: CertPaths::in_dir(self.certs.path(), &core_name(id)),
            timings: self.timings,
            group_commit: GroupCommit::default(),
        }
    }

    /// Every core's address, killed ones included (as a replicant's config lists them).
    pub fn core_addrs(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.bind.to_string()).collect()
    }

    /// The running core `id` (panics if it was killed).
    pub fn core(&self, id: NodeId) -> Arc<CoreNode> {
        let slot = &self.slots[(id - 1) as usize];
        slot.node
            .clone()
            .unwrap_or_else(|| panic!("core {id} is not running"))
    }

    /// The running cores.
    pub fn live(&self) -> Vec<Arc<CoreNode>> {
        self.slots.iter().filter_map(|s| s.node.clone()).collect()
    }

    /// The leader every running core agrees on, if there is one now.
    pub fn leader(&self) -> Option<Arc<CoreNode>> {
        let live = self.live();
        let id = live.first()?.raft.metrics().borrow().current_leader?;
        let agreed = live
            .iter()
            .all(|c| c.raft.metrics().borrow().current_leader == Some(id));
        live.into_iter().find(|c| agreed && c.id == id)
    }

    /// Waits (at most [`WAIT`]) for a leader all running cores agree on, other than `not`.
    pub async fn wait_leader(&self, not: Option<NodeId>) -> Arc<CoreNode> {
        let ok = wait_until(WAIT, || {
            self.leader()
                .is_some_and(|l| Some(l.id) != not && l.is_leader())
        })
        .await;
        assert!(ok, "no agreed leader (other than {not:?}) within {WAIT:?}");
        self.leader().expect("leader just seen")
    }

    /// Stops core `id` (`CoreNode::shutdown`: tasks, Raft, endpoint). Its closed endpoint
    /// keeps refusing new connections until [`release`](Self::release); its data dir stays.
    pub async fn kill(&mut self, id: NodeId) {
        let slot = &mut self.slots[(id - 1) as usize];
        let core = slot.node.take().expect("killing a running core");
        core.shutdown().await;
        slot.killed = Some(core);
    }

    /// Lets go of killed core `id` and waits until every task did and its port is free, as
    /// after its process exited: a dial to it now times out instead of being refused.
    pub async fn release(&mut self, id: NodeId) {
        let slot = &mut self.slots[(id - 1) as usize];
        let Some(core) = slot.killed.take() else {
            return;
        };
        let weak = Arc::downgrade(&core);
        drop(core);
        let bind = slot.bind;
        let released = wait_until(WAIT, || {
            weak.strong_count() == 0 && std::net::UdpSocket::bind(bind).is_ok()
        })
        .await;
        assert!(
            released,
            "core {id} still holds {bind} {WAIT:?} after its shutdown"
        );
    }

    /// Starts killed core `id` again on the same data dir and port (after
    /// [`release`](Self::release)).
    pub async fn restart(&mut self, id: NodeId) -> Arc<CoreNode> {
        self.release(id).await;
        let idx = (id - 1) as usize;
        let (bind, data) = (self.slots[idx].bind, self.slots[idx].data.path().to_owned());
        let end = Instant::now() + WAIT;
        let core = loop {
            let cfg = self.core_config(id, bind, &data);
            match CoreNode::start(cfg).await {
                Ok(core) => break core,
                // The redb lock may outlive the last handle briefly.
                Err(e) if Instant::now() < end => {
                    eprintln!("restart of core {id} not yet possible: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("core {id} does not restart: {e}"),
            }
        };
        self.slots[idx].node = Some(core.clone());
        core
    }

    /// A replicant configuration: loopback listeners, the shared certificates, `cores`.
    pub fn replicant_config(&self, name: &str, cores: Vec<String>) -> Config {
        let mut config = test_config();
        config.node.name = name.to_owned();
        config.cluster.cores = cores;
        config.cluster.certs_dir = Some(self.certs.path().to_owned());
        config
    }

    /// Starts replicant `name` linked to every core.
    pub async fn start_replicant(&self, name: &str) -> BrokerHandle {
        self.start_replicant_with(name, |_| {}).await
    }

    /// Starts replicant `name` linked to every core, with `tweak` applied to its config.
    pub async fn start_replicant_with(
        &self,
        name: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> BrokerHandle {
        let mut config = self.replicant_config(name, self.core_addrs());
        tweak(&mut config);
        Broker::builder(config)
            .start()
            .await
            .unwrap_or_else(|e| panic!("replicant {name} starts: {e:#}"))
    }

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

    /// Shuts every running core down.
    pub async fn stop(self) {
        for core in self.live() {
            core.shutdown().await;
        }
    }
}

/// The certificate name of core `id`.
fn core_name(id: NodeId) -> String {
    format!("core-{id}")
}

/// A member list that does not name the starting core: `CoreNode::start` then leaves the
/// group uninitialized (its "join later" path), so [`Cluster::start`] can initialize it once
/// every core's port 0 has been read back, and a restart never re-initializes.
fn join_later() -> Vec<(NodeId, String)> {
    vec![(0, String::new())]
}

/// A core's tables and applied index, taken under one lock.
pub fn core_state(core: &CoreNode) -> State {
    let (index, tables) = core.sm.snapshot_now();
    State {
        who: core_name(core.id),
        index,
        tables,
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
    }
}

/// Asserts every state equals the first one (the leader's).
pub fn assert_same(states: &[State]) {
    let first = &states[0];
    for s in &states[1..] {
        assert_eq!(s.index, first.index, "{} vs {}", s.who, first.who);
        if s.tables != first.tables {
            panic!(
                "{} at {} differs from {}: {:?} vs {:?}",
                s.who,
                s.index,
                first.who,
                Tables::from_snapshot(&s.tables),
                Tables::from_snapshot(&first.tables)
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
