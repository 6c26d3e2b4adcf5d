//! [`Cluster`]: N real cores (`CoreNode`, redb in tempdirs, QUIC with mutual TLS on
//! 127.0.0.1:0) sharing one certificate directory, plus helpers to start replicants
//! (`Broker`s linked to those cores), find the leader, and kill and restart a core on its
//! data dir and port. Used by the cluster tests (`tests/cluster`, which add table
//! comparisons in their harness) and by the round-robin topology of the MQTT suite.
//!
//! Owns the tempdirs and the core handles; callers own their replicants. It reaches into
//! nothing but public APIs, and never sleeps to synchronise: every wait polls a condition
//! with a deadline and fails the test when the deadline passes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_node::node::follow::FollowLimits;
use core_node::node::{CoreConfig, CoreNode, RaftTimings, batcher::GroupCommit};
use core_node::raft::types::{Node, NodeId};
use meshmq_shared::config::Config;
use meshmq_shared::quic::certs::{self, CertPaths};
use replicant_node::{Authorizer, Broker, BrokerHandle};
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

use super::{test_config, wait_until};

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
        ..RaftTimings::default()
    }
}

/// Serialises the tests that start a cluster: each runs five or six nodes with 50 ms
/// heartbeats, and two at once on a 2-core box starve each other into elections nobody
/// asked for.
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
    /// Follow frame bounds every core uses.
    follow: FollowLimits,
}

impl Cluster {
    /// Starts `n` cores, makes them one group, and waits for a leader.
    pub async fn start(n: u64, timings: RaftTimings) -> Cluster {
        Self::start_with_follow(n, timings, FollowLimits::default()).await
    }

    /// [`start`](Self::start) with these follow frame bounds on every core.
    pub async fn start_with_follow(n: u64, timings: RaftTimings, follow: FollowLimits) -> Cluster {
        let certs = tempfile::tempdir().expect("certs tempdir");
        let mut names: Vec<String> = (1..=n).map(core_name).collect();
        names.extend((1..=4).map(|i| format!("r{i}")));
        certs::generate(certs.path(), &names).expect("certificates");
        let mut cluster = Cluster {
            certs,
            slots: Vec::new(),
            timings,
            follow,
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
            follow: self.follow,
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
        self.start_replicant_config(config, None).await
    }

    /// Starts a replicant from a complete `config` (see [`replicant_config`](Self::replicant_config)),
    /// with `authz` as its authorization hook if given.
    pub async fn start_replicant_config(
        &self,
        config: Config,
        authz: Option<Arc<dyn Authorizer>>,
    ) -> BrokerHandle {
        let name = config.node.name.clone();
        let mut builder = Broker::builder(config);
        if let Some(authz) = authz {
            builder = builder.authorizer(authz);
        }
        builder
            .start()
            .await
            .unwrap_or_else(|e| panic!("replicant {name} starts: {e:#}"))
    }

    /// Shuts every running core down.
    pub async fn stop(self) {
        for core in self.live() {
            core.shutdown().await;
        }
    }
}

/// The certificate name of core `id`.
pub fn core_name(id: NodeId) -> String {
    format!("core-{id}")
}

/// A member list that does not name the starting core: `CoreNode::start` then leaves the
/// group uninitialized (its "join later" path), so [`Cluster::start`] can initialize it once
/// every core's port 0 has been read back, and a restart never re-initializes.
fn join_later() -> Vec<(NodeId, String)> {
    vec![(0, String::new())]
}
