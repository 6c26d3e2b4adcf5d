//! Byte bounds on log entries and on the Raft RPCs between cores, on real `CoreNode`s in one
//! process (QUIC on 127.0.0.1): the leader's group commit splits callers' batches at the
//! entry byte bound and refuses one over it; a core that rejoins after the log was purged
//! catches up through a snapshot sent in chunks, none over the (lowered) RPC frame bound; an
//! AppendEntries that would pass the frame bound is trimmed; an entry that cannot fit even
//! alone is reported as `payload_too_large`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use core_node::api::{MAX_ENTRY_BYTES, TransactError, batch_bytes};
use core_node::node::{CoreConfig, CoreNode, RaftTimings, batcher::GroupCommit};
use meshmq_proto::tables::{Batch, Op, RetainedMessage, RetainedSet, op};
use meshmq_shared::quic::certs;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use openraft::EntryPayload;
use prost::Message;
use tokio::sync::{Mutex, MutexGuard};

const WAIT: Duration = Duration::from_secs(30);
/// The lowered core RPC frame bound of these tests.
const FRAME: usize = 160 << 10;

/// Three cores at once per test: one test at a time on a small box.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The process-wide metrics recorder of this test binary (installed once).
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install recorder")
    })
}

/// Sum of the series of counter `name` whose labels include every `labels` pair.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder()
        .render()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn timings(snapshot_every: u64, chunk: usize) -> RaftTimings {
    RaftTimings {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        snapshot_every,
        keep_after_snapshot: 0,
        rpc_frame_bytes: FRAME,
        snapshot_chunk_bytes: chunk,
    }
}

async fn start(
    id: u64,
    port: u16,
    members: &[(u64, String)],
    dir: &Path,
    timings: RaftTimings,
    group_commit: GroupCommit,
) -> Arc<CoreNode> {
    CoreNode::start(CoreConfig {
        node_id: id,
        core_bind: SocketAddr::from(([127, 0, 0, 1], port)),
        advertise: None,
        data_dir: dir.join(format!("core-{id}")),
        initial_members: members.to_vec(),
        certs: certs::CertPaths::in_dir(&dir.join("certs"), &format!("core-{id}")),
        timings,
        group_commit,
        follow: core_node::node::follow::FollowLimits::default(),
    })
    .await
    .expect("core starts")
}

/// Free UDP ports for the initial members (their addresses must be known up front).
fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A retained message on `topic` with a payload of `bytes` bytes.
fn blob(topic: &str, bytes: usize) -> Op {
    Op {
        kind: Some(op::Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: topic.into(),
                payload: vec![b'x'; bytes].into(),
                qos: 1,
                published_at_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

/// Three cores on fresh ports, a leader all agree on that has committed in its term.
struct Group {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    members: Vec<(u64, String)>,
    cores: Vec<Option<Arc<CoreNode>>>,
    timings: RaftTimings,
}

impl Group {
    async fn start(timings: RaftTimings) -> Group {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=3).map(|i| format!("core-{i}")).collect();
        certs::generate(&dir.path().join("certs"), &names).unwrap();
        let ports = free_ports(3);
        let members: Vec<(u64, String)> = (1..=3)
            .map(|i| (i, format!("127.0.0.1:{}", ports[i as usize - 1])))
            .collect();
        let mut g = Group {
            dir,
            ports,
            members,
            cores: vec![None, None, None],
            timings,
        };
        for id in 1..=3 {
            g.restart(id).await;
        }
        wait_until("a leader all cores agree on", || {
            let ids: Vec<_> = g.live().map(|c| c.leader().map(|(id, _)| id)).collect();
            ids[0].is_some() && ids.iter().all(|i| *i == ids[0])
        })
        .await;
        g.leader().transact(vec![blob("settle", 1)]).await.unwrap();
        g
    }

    fn live(&self) -> impl Iterator<Item = &Arc<CoreNode>> {
        self.cores.iter().flatten()
    }

    fn leader(&self) -> Arc<CoreNode> {
        self.live()
            .find(|c| c.is_leader())
            .expect("a leader")
            .clone()
    }

    fn a_follower(&self) -> u64 {
        self.live().find(|c| !c.is_leader()).expect("a follower").id
    }

    /// Starts core `id` on its port and data dir (again, after [`stop_core`]).
    async fn restart(&mut self, id: u64) {
        let port = self.ports[id as usize - 1];
        let end = Instant::now() + WAIT;
        let core = loop {
            let cfg = CoreConfig {
                node_id: id,
                core_bind: SocketAddr::from(([127, 0, 0, 1], port)),
                advertise: None,
                data_dir: self.dir.path().join(format!("core-{id}")),
                initial_members: self.members.clone(),
                certs: certs::CertPaths::in_dir(
                    &self.dir.path().join("certs"),
                    &format!("core-{id}"),
                ),
                timings: self.timings,
                group_commit: GroupCommit::default(),
                follow: core_node::node::follow::FollowLimits::default(),
            };
            match CoreNode::start(cfg).await {
                Ok(core) => break core,
                // The redb lock or the socket may outlive the last handle briefly.
                Err(e) if Instant::now() < end => {
                    eprintln!("core {id} not yet startable: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("core {id} does not start: {e}"),
            }
        };
        self.cores[id as usize - 1] = Some(core);
    }

    /// Shuts core `id` down and waits until it let go of its port; returns the index it
    /// had applied.
    async fn stop_core(&mut self, id: u64) -> u64 {
        let core = self.cores[id as usize - 1].take().unwrap();
        let applied = core.sm.applied_index();
        core.shutdown().await;
        let weak = Arc::downgrade(&core);
        drop(core);
        let bind = SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize - 1]));
        wait_until("the stopped core lets go of its port", || {
            weak.strong_count() == 0 && std::net::UdpSocket::bind(bind).is_ok()
        })
        .await;
        applied
    }

    fn core(&self, id: u64) -> Arc<CoreNode> {
        self.cores[id as usize - 1].clone().unwrap()
    }

    /// Commits one entry per op on the leader (retrying if the leadership moves).
    async fn write(&self, ops: Vec<Op>) -> u64 {
        let mut last = 0;
        for op in ops {
            let end = Instant::now() + WAIT;
            last = loop {
                match self.leader().transact(vec![op.clone()]).await {
                    Ok(c) => break c.index,
                    Err(e) if e.is_retryable() && Instant::now() < end => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("write: {e:?}"),
                }
            };
        }
        last
    }

    async fn stop(self) {
        for c in self.cores.into_iter().flatten() {
            c.shutdown().await;
        }
    }
}

/// Waits until `core` applied `index`, then asserts its tables equal the leader's.
async fn assert_caught_up(leader: &CoreNode, core: &CoreNode, index: u64) {
    wait_until("the core catches up", || {
        core.sm.applied_index() >= index && leader.sm.applied_index() >= index
    })
    .await;
    let (li, lt) = leader.sm.snapshot_now();
    let (ci, ct) = core.sm.snapshot_now();
    assert_eq!(li, ci, "same applied index");
    assert!(lt == ct, "the rejoined core's tables equal the leader's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_rejoining_after_a_purge_gets_the_snapshot_in_chunks_under_the_frame_bound() {
    let _serial = serial().await;
    recorder();
    let mut g = Group::start(timings(20, 32 << 10)).await;
    let away = g.a_follower();
    let left_at = g.stop_core(away).await;
    // 60 retained messages of 8 KiB: ~480 KiB of tables, three frames' worth; a snapshot
    // every 20 entries purges the log behind it.
    let ops: Vec<Op> = (0..60)
        .map(|i| blob(&format!("big/{i}"), 8 << 10))
        .collect();
    let last = g.write(ops).await;
    let leader = g.leader();
    wait_until("the leader purged the log past the stopped core", || {
        leader
            .log
            .last_purged()
            .unwrap()
            .is_some_and(|p| p.index > left_at + 1)
    })
    .await;
    let (_, tables) = leader.sm.snapshot_now();
    assert!(
        tables.encoded_len() > 2 * FRAME,
        "tables larger than a frame"
    );

    let chunks_before = counter(
        "meshmq_raft_rpc_total",
        &[("rpc", "snapshot"), ("result", "ok")],
    );
    g.restart(away).await;
    let rejoined = g.core(away);
    assert_caught_up(&leader, &rejoined, last).await;
    assert!(
        rejoined.sm.snapshot_installs() >= 1,
        "caught up by a snapshot"
    );
    let chunks = counter(
        "meshmq_raft_rpc_total",
        &[("rpc", "snapshot"), ("result", "ok")],
    ) - chunks_before;
    assert!(chunks >= 3, "the snapshot went in chunks ({chunks})");
    assert_eq!(
        counter(
            "meshmq_raft_rpc_total",
            &[("rpc", "snapshot"), ("result", "payload_too_large")]
        ),
        0,
        "no snapshot chunk over the frame bound"
    );
    // And it follows new writes.
    let next = g.write(vec![blob("after", 10)]).await;
    assert_caught_up(&g.leader(), &rejoined, next).await;
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_entries_over_the_frame_bound_are_trimmed_and_a_lone_oversized_entry_is_reported() {
    let _serial = serial().await;
    recorder();
    let mut g = Group::start(timings(1_000_000, 32 << 10)).await;
    let away = g.a_follower();
    g.stop_core(away).await;
    // 30 entries of 20 KiB: ~600 KiB to send to the returning core, no snapshot.
    let ops: Vec<Op> = (0..30).map(|i| blob(&format!("e/{i}"), 20 << 10)).collect();
    let last = g.write(ops).await;
    let trimmed_before = counter("meshmq_raft_append_trimmed_total", &[("bound", "frame")]);
    g.restart(away).await;
    let back = g.core(away);
    let leader = g.leader();
    assert_caught_up(&leader, &back, last).await;
    assert_eq!(back.sm.snapshot_installs(), 0, "caught up from the log");
    assert!(
        counter("meshmq_raft_append_trimmed_total", &[("bound", "frame")]) > trimmed_before,
        "requests were cut at the frame bound"
    );

    // One entry larger than the frame bound (the entry bound admits it): neither follower
    // can be sent it, and the leader says so instead of retrying a network error.
    let too_large_before = counter(
        "meshmq_raft_rpc_total",
        &[("rpc", "append"), ("result", "payload_too_large")],
    );
    let leader = g.leader();
    let huge = tokio::spawn({
        let leader = leader.clone();
        async move { leader.transact(vec![blob("huge", FRAME)]).await }
    });
    wait_until("the oversized entry is reported", || {
        counter(
            "meshmq_raft_rpc_total",
            &[("rpc", "append"), ("result", "payload_too_large")],
        ) > too_large_before
    })
    .await;
    // It cannot replicate, so it does not commit; the caller hears a timeout, never a panic.
    let outcome = huge.await.unwrap();
    assert!(
        matches!(outcome, Err(TransactError::Timeout)),
        "{outcome:?}"
    );
    assert!(
        g.live()
            .all(|c| c.sm.read(|t| t.retained("huge").is_none()))
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_splits_at_the_entry_byte_bound_and_refuses_a_batch_over_it() {
    let dir = tempfile::tempdir().unwrap();
    certs::generate(&dir.path().join("certs"), &["core-1".to_owned()]).unwrap();
    // A long window: everything queued behind the first entry joins one group, unless the
    // byte bound closes it.
    let gc = GroupCommit {
        window: Duration::from_millis(500),
        ..GroupCommit::default()
    };
    let core = start(1, 0, &[], dir.path(), RaftTimings::default(), gc).await;
    wait_until("the single core leads", || core.is_leader()).await;
    let first = core.transact(vec![blob("first", 1)]).await.unwrap().index;

    // Twelve callers of 1 MiB each: 12 MiB, several entries' worth.
    let mb = 1 << 20;
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let core = core.clone();
            tokio::spawn(async move { core.transact(vec![blob(&format!("m/{i}"), mb)]).await })
        })
        .collect();
    let mut last = first;
    for c in calls {
        let committed = c.await.unwrap().expect("every caller commits");
        assert_eq!(committed.results.len(), 1);
        last = last.max(committed.index);
    }
    let entries = core.log.read_entries(first + 1, 100).unwrap();
    let mut sizes = Vec::new();
    for e in entries.iter().filter(|e| e.log_id.index <= last) {
        if let EntryPayload::Normal(d) = &e.payload {
            let batch = Batch::decode(d.batch.as_slice()).unwrap();
            assert_eq!(batch_bytes(&batch.ops), d.batch.len());
            sizes.push(d.batch.len());
        }
    }
    assert!(sizes.len() >= 2, "split into several entries: {sizes:?}");
    assert!(
        sizes.iter().all(|s| *s <= MAX_ENTRY_BYTES),
        "every entry within {MAX_ENTRY_BYTES} bytes: {sizes:?}"
    );
    assert!(
        core.sm
            .read(|t| (0..12).all(|i| t.retained(&format!("m/{i}")).is_some()))
    );

    // One caller's batch over the bound is refused whole, naming the bound.
    let over: Vec<Op> = (0..3).map(|i| blob(&format!("o/{i}"), mb)).collect();
    match core.transact(over).await {
        Err(TransactError::Rejected(why)) => assert!(why.contains("MAX_ENTRY_BYTES"), "{why}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(core.sm.read(|t| t.retained("o/0").is_none()));
    core.shutdown().await;
}
