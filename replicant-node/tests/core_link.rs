//! The replicant's core link against fake cores: real QUIC endpoints with mTLS on
//! 127.0.0.1:0, serving `Status`, `Follow` (from an in-memory log shared by the fake cores,
//! as a Raft log is), `Transact` and `Lease`, with knobs to purge the log, answer
//! `NotLeader`, delay the stream, send garbage, bound snapshot chunks or cut a snapshot
//! stream in the middle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use core_node::api::TransactError;
use meshmq_proto::core::{
    Committed, FollowEntries, FollowFrame, FollowHeartbeat, FollowRequest, FollowSnapshotChunk,
    LeaseResponse, LogEntry, NotLeader, Request, Response, StatusResponse, TransactResponse,
    follow_frame, lease_response, request, response, transact_response,
};
use meshmq_proto::raft::Blank;
use meshmq_proto::tables::{Batch, NodeRole, NodeUp, Op, RouteAdd, RouteRemove, op};
use meshmq_shared::follow_snapshot;
use meshmq_shared::quic::{ALPN_CORE, CertPaths, Identity, certs, endpoint, frame};
use meshmq_shared::tables::{Tables, ok_result};
use meshmq_shared::wire_version::WireVersion;
use parking_lot::Mutex;
use replicant_node::core_link::health::LAGGING_ENTRIES;
use replicant_node::core_link::{CoreLink, CoreLinkConfig, CoreLinkError, LinkHealth, LinkState};
use replicant_node::replica::Replica;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[path = "core_link/failures.rs"]
mod failures;
#[path = "core_link/snapshots.rs"]
mod snapshots;

// ---------- the log every fake core serves ----------

/// A committed log (index = position + 1), shared by the fake cores of one test.
#[derive(Clone)]
struct Log {
    entries: Arc<Mutex<Vec<Option<Batch>>>>,
    len: Arc<watch::Sender<u64>>,
}

impl Log {
    /// A log holding `n` generated entries.
    fn with(n: u64) -> Self {
        let log = Log {
            entries: Arc::default(),
            len: Arc::new(watch::Sender::new(0)),
        };
        for i in 1..=n {
            log.append(entry(i));
        }
        log
    }

    fn append(&self, batch: Option<Batch>) -> u64 {
        let mut entries = self.entries.lock();
        entries.push(batch);
        let len = entries.len() as u64;
        self.len.send_replace(len);
        len
    }

    fn len(&self) -> u64 {
        self.entries.lock().len() as u64
    }

    fn slice(&self, from: u64, max: usize) -> Vec<LogEntry> {
        let entries = self.entries.lock();
        (from..=entries.len() as u64)
            .take(max)
            .map(|index| LogEntry {
                index,
                batch: entries[index as usize - 1].clone(),
                notes: None,
            })
            .collect()
    }

    /// The tables after applying the whole log.
    fn tables(&self) -> Tables {
        let mut t = Tables::new();
        for (i, b) in self.entries.lock().iter().enumerate() {
            if let Some(b) = b {
                t.apply_batch(i as u64 + 1, b);
            }
        }
        t
    }
}

fn op(kind: op::Kind) -> Op {
    Op { kind: Some(kind) }
}

fn node_up(node: String) -> op::Kind {
    op::Kind::NodeUp(NodeUp {
        node,
        addr: "127.0.0.1:1883".into(),
        role: NodeRole::Replicant as i32,
        incarnation: 1,
        peer_addr: String::new(),
        wire: None,
    })
}

/// Entry `i` of a generated log: nodes first, then route adds and removes that depend on
/// order, and some blank entries.
fn entry(i: u64) -> Option<Batch> {
    if i <= 3 {
        return Some(Batch {
            ops: vec![op(node_up(format!("n{}", i - 1)))],
        });
    }
    if i.is_multiple_of(7) {
        return None;
    }
    let add = op::Kind::RouteAdd(RouteAdd {
        filter: format!("t/{}/#", i % 50),
        node: format!("n{}", i % 3),
        seq: 0,
    });
    let remove = op::Kind::RouteRemove(RouteRemove {
        filter: format!("t/{}/#", (i + 25) % 50),
        node: format!("n{}", (i + 1) % 3),
        seq: 0,
    });
    Some(Batch {
        ops: vec![op(add), op(remove)],
    })
}

// ---------- a fake core ----------

/// What a fake core does and what it saw.
#[derive(Default)]
struct CoreState {
    /// Entries below this index are purged: a follower asking for one gets a snapshot.
    first_index: AtomicU64,
    /// Answer `Transact` with `NotLeader{leader_addr}`.
    not_leader: Mutex<Option<String>>,
    /// Send malformed frames on follow streams.
    garbage: AtomicBool,
    /// Wait this long before streaming entries (makes "transact waits for apply" visible).
    delay_ms: AtomicU64,
    /// Bytes of rows per snapshot chunk.
    chunk_bytes: AtomicU64,
    /// If not 0: the next snapshot stream ends after this many chunks, and follow
    /// requests are then held until `held` is set back to false.
    cut_after_chunks: AtomicU64,
    /// While true, follow requests wait before streaming anything.
    held: watch::Sender<bool>,
    /// `from_index` of every `Follow` request.
    follows: Mutex<Vec<u64>>,
    snapshots: AtomicU64,
    transacts: AtomicU64,
    leases: AtomicU64,
    followers: AtomicU32,
    garbage_sent: AtomicU64,
}

struct FakeCore {
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    state: Arc<CoreState>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeCore {
    fn start(id: &Identity, log: &Log) -> Self {
        let ep = endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), id, ALPN_CORE)
            .expect("bind fake core");
        let addr = ep.local_addr().expect("local addr");
        let state = Arc::new(CoreState {
            first_index: AtomicU64::new(1),
            chunk_bytes: AtomicU64::new(follow_snapshot::DEFAULT_CHUNK_BYTES as u64),
            ..CoreState::default()
        });
        let accept = tokio::spawn(accept_loop(ep.clone(), state.clone(), log.clone()));
        FakeCore {
            addr,
            endpoint: ep,
            state,
            accept,
        }
    }

    fn kill(&self) {
        self.accept.abort();
        self.endpoint.close(0u32.into(), b"killed");
    }
}

async fn accept_loop(ep: quinn::Endpoint, state: Arc<CoreState>, log: Log) {
    while let Some(incoming) = ep.accept().await {
        let (state, log) = (state.clone(), log.clone());
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(serve(send, recv, state.clone(), log.clone()));
            }
        });
    }
}

async fn serve(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    st: Arc<CoreState>,
    log: Log,
) {
    let Ok(Some(req)) = frame::read_msg::<Request>(&mut recv, frame::MAX_FRAME).await else {
        return;
    };
    let kind = match req.kind {
        Some(request::Kind::Follow(f)) => return follow(&mut send, f, &st, &log).await,
        Some(request::Kind::Status(_)) => response::Kind::Status(StatusResponse {
            commit_index: log.len(),
            applied_index: log.len(),
            followers: st.followers.load(Ordering::SeqCst),
            ..StatusResponse::default()
        }),
        Some(request::Kind::Lease(_)) => {
            st.leases.fetch_add(1, Ordering::SeqCst);
            response::Kind::Lease(LeaseResponse {
                result: Some(lease_response::Result::Ok(Blank {})),
            })
        }
        Some(request::Kind::Transact(t)) => {
            st.transacts.fetch_add(1, Ordering::SeqCst);
            let result = match st.not_leader.lock().clone() {
                Some(leader_addr) => transact_response::Result::NotLeader(NotLeader {
                    leader_id: None,
                    leader_addr,
                }),
                None => {
                    let batch = t.batch.unwrap_or_default();
                    let results = batch.ops.iter().map(|_| ok_result()).collect();
                    let index = log.append(Some(batch));
                    transact_response::Result::Committed(Committed { index, results })
                }
            };
            response::Kind::Transact(TransactResponse {
                result: Some(result),
            })
        }
        _ => return,
    };
    let resp = Response {
        kind: Some(kind),
        wire: Some(WireVersion::CURRENT.to_proto()),
    };
    let _ = frame::write_msg(&mut send, &resp).await;
    let _ = send.finish();
}

/// Serves a follow stream: a snapshot (in chunks) when `from_index` is purged, entries in
/// frames of 100, heartbeats every 200 ms when idle.
async fn follow(send: &mut quinn::SendStream, f: FollowRequest, st: &CoreState, log: &Log) {
    st.follows.lock().push(f.from_index);
    let _ = st.held.subscribe().wait_for(|held| !*held).await;
    st.followers.fetch_add(1, Ordering::SeqCst);
    let _ = follow_stream(send, f.from_index.max(1), st, log).await;
    st.followers.fetch_sub(1, Ordering::SeqCst);
}

async fn follow_stream(
    send: &mut quinn::SendStream,
    mut next: u64,
    st: &CoreState,
    log: &Log,
) -> Result<(), frame::FrameError> {
    let mut rx = log.len.subscribe();
    if next < st.first_index.load(Ordering::SeqCst) {
        let tables = log.tables();
        let index = log.len();
        st.snapshots.fetch_add(1, Ordering::SeqCst);
        let chunk_bytes = st.chunk_bytes.load(Ordering::SeqCst) as usize;
        let chunks = follow_snapshot::split(tables.snapshot(), chunk_bytes);
        write(send, follow_frame::Kind::SnapshotBegin(chunks.begin(index))).await?;
        let cut = st.cut_after_chunks.swap(0, Ordering::SeqCst);
        let end = chunks.end(index);
        for (seq, rows) in chunks.chunks.into_iter().enumerate() {
            if cut != 0 && seq as u64 == cut {
                // Ends the stream cleanly after what was sent: the follower has the begin
                // and `cut` chunks, then the end of the stream.
                st.held.send_replace(true);
                let _ = send.finish();
                return Ok(());
            }
            let chunk = FollowSnapshotChunk {
                index,
                seq: seq as u64,
                rows: Some(rows),
            };
            write(send, follow_frame::Kind::SnapshotChunk(chunk)).await?;
        }
        write(send, follow_frame::Kind::SnapshotEnd(end)).await?;
        next = index + 1;
    }
    loop {
        if st.garbage.load(Ordering::SeqCst) {
            return failures::send_garbage(send, st).await;
        }
        let len = *rx.borrow_and_update();
        if next <= len {
            let delay = st.delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let entries = log.slice(next, 100);
            next += entries.len() as u64;
            let frame = FollowEntries {
                entries,
                commit_index: len,
            };
            write(send, follow_frame::Kind::Entries(frame)).await?;
            continue;
        }
        match tokio::time::timeout(Duration::from_millis(200), rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                let hb = FollowHeartbeat { commit_index: len };
                write(send, follow_frame::Kind::Heartbeat(hb)).await?;
            }
        }
    }
}

async fn write(
    send: &mut quinn::SendStream,
    kind: follow_frame::Kind,
) -> Result<(), frame::FrameError> {
    // Every frame says the version: the follower checks the first.
    let frame = FollowFrame {
        kind: Some(kind),
        wire: Some(WireVersion::CURRENT.to_proto()),
    };
    frame::write_msg(send, &frame).await
}

// ---------- helpers ----------

struct Certs {
    _dir: tempfile::TempDir,
    core: CertPaths,
    node: CertPaths,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().expect("tempdir");
    certs::generate(dir.path(), &["core".to_owned(), "r1".to_owned()]).expect("certs");
    Certs {
        core: CertPaths::in_dir(dir.path(), "core"),
        node: CertPaths::in_dir(dir.path(), "r1"),
        _dir: dir,
    }
}

fn identity(paths: &CertPaths) -> Identity {
    Identity::load(paths).expect("identity")
}

fn config(c: &Certs, cores: &[&FakeCore]) -> CoreLinkConfig {
    let addrs = cores.iter().map(|c| c.addr.to_string()).collect();
    let mut cfg = CoreLinkConfig::new(addrs, identity(&c.node), "r1".into(), 7);
    cfg.lease_ttl = Duration::from_millis(300);
    cfg.request_timeout = Duration::from_secs(2);
    cfg.transact_deadline = Duration::from_secs(10);
    cfg
}

async fn start(cfg: CoreLinkConfig) -> CoreLink {
    CoreLink::start(cfg, Replica::new(), CancellationToken::new())
        .await
        .expect("link starts")
}

/// Polls `cond` until it holds or `within` has passed (then fails the test).
async fn eventually(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_replica_equals(replica: &Replica, log: &Log) {
    assert_eq!(replica.applied_index(), log.len());
    let expected = log.tables().snapshot();
    let same = replica.read(|t| t.snapshot() == expected);
    assert!(same, "replica differs from the log's tables");
}

fn has_route(replica: &Replica, topic: &str) -> bool {
    replica.read(|t| {
        let mut found = false;
        t.route_nodes_matching(topic, |_| found = true);
        found
    })
}

fn route_op(filter: &str) -> Op {
    op(op::Kind::RouteAdd(RouteAdd {
        filter: filter.into(),
        node: "n0".into(),
        seq: 0,
    }))
}

// ---------- tests ----------

#[tokio::test]
async fn catches_up_at_start_and_transact_returns_after_local_apply() {
    let c = certs();
    let log = Log::with(1_000);
    let core = FakeCore::start(&identity(&c.core), &log);
    let link = start(config(&c, &[&core])).await;
    assert_replica_equals(link.replica(), &log);
    assert_eq!(*core.state.follows.lock(), vec![1]);
    assert_eq!(link.current_core(), Some(core.addr));

    // The stream now lags 300 ms behind the log: a transact that did not wait for the
    // local apply would return before the route is visible.
    core.state.delay_ms.store(300, Ordering::SeqCst);
    let committed = link.transact(vec![route_op("z/#")]).await.expect("commits");
    assert_eq!(committed.index, 1_001);
    assert_eq!(committed.results.len(), 1);
    assert!(link.replica().applied_index() >= 1_001);
    assert!(
        has_route(link.replica(), "z/1"),
        "route applied before transact returned"
    );

    let too_many = vec![route_op("y"); core_node::api::MAX_OPS_PER_ENTRY + 1];
    let refused = link.transact(too_many).await;
    assert!(
        matches!(refused, Err(TransactError::Rejected(_))),
        "{refused:?}"
    );
    assert_eq!(core.state.transacts.load(Ordering::SeqCst), 1);

    eventually("two leases", Duration::from_secs(5), || {
        core.state.leases.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert_eq!(link.stats().lease_failures, 0);
    link.stop();
    core.kill();
}

#[tokio::test]
async fn health_says_following_then_lagging_then_down() {
    let c = certs();
    let log = Log::with(100);
    let core = FakeCore::start(&identity(&c.core), &log);
    let link = start(config(&c, &[&core])).await;
    let h = link.health();
    assert_eq!(
        (h.state, h.core, h.applied_index, h.lag),
        (LinkState::Following, Some(core.addr), 100, 0)
    );
    // The core streams 100 entries per 1.5 s while the log grows by 2 000: the commit index
    // it reports runs ahead of what the replica applied.
    core.state.delay_ms.store(1_500, Ordering::SeqCst);
    for i in 101..=2_100 {
        log.append(entry(i));
    }
    eventually("lagging", Duration::from_secs(10), || {
        let h = link.health();
        h.state == LinkState::Lagging && h.lag > LAGGING_ENTRIES && h.commit_index == 2_100
    })
    .await;
    core.state.delay_ms.store(0, Ordering::SeqCst);
    eventually("following again", Duration::from_secs(10), || {
        link.health() == LinkHealth::judge(Some(core.addr), 2_100, 2_100)
    })
    .await;
    core.kill();
    eventually("down", Duration::from_secs(10), || {
        let h = link.health();
        h.state == LinkState::Down && h.core.is_none() && h.applied_index == 2_100
    })
    .await;
    link.stop();
}

#[tokio::test]
async fn switches_core_and_resumes_from_applied_plus_one() {
    let c = certs();
    let log = Log::with(1_000);
    let id = identity(&c.core);
    let (a, b) = (FakeCore::start(&id, &log), FakeCore::start(&id, &log));
    let link = start(config(&c, &[&a, &b])).await;
    assert_eq!(link.replica().applied_index(), 1_000);
    let first = link.current_core().expect("following a core");
    let (gone, survivor) = if first == a.addr { (&a, &b) } else { (&b, &a) };
    gone.kill();
    eventually(
        "switch to the surviving core",
        Duration::from_secs(10),
        || link.current_core() == Some(survivor.addr),
    )
    .await;
    for i in 1_001..=1_010 {
        log.append(entry(i));
    }
    eventually("entries after the switch", Duration::from_secs(10), || {
        link.replica().applied_index() == 1_010
    })
    .await;
    assert_replica_equals(link.replica(), &log);
    assert_eq!(*survivor.state.follows.lock(), vec![1_001]);
    assert_eq!(survivor.state.snapshots.load(Ordering::SeqCst), 0);
    assert_eq!(link.replica().snapshot_installs(), 0);
    assert!(link.stats().core_switches >= 1);
    link.stop();
    survivor.kill();
}

#[tokio::test]
async fn installs_a_snapshot_when_the_core_purged_its_log() {
    let c = certs();
    let log = Log::with(1_000);
    let core = FakeCore::start(&identity(&c.core), &log);
    core.state.first_index.store(501, Ordering::SeqCst);
    let link = start(config(&c, &[&core])).await;
    assert_eq!(link.replica().snapshot_installs(), 1);
    assert_eq!(core.state.snapshots.load(Ordering::SeqCst), 1);
    assert_replica_equals(link.replica(), &log);
    for i in 1_001..=1_005 {
        log.append(entry(i));
    }
    eventually(
        "the tail after the snapshot",
        Duration::from_secs(10),
        || link.replica().applied_index() == 1_005,
    )
    .await;
    assert_replica_equals(link.replica(), &log);
    assert_eq!(link.replica().snapshot_installs(), 1);
    link.stop();
    core.kill();
}

/// `transact_linger`: a first transaction goes at once; after a request that carried several
/// callers, callers arriving within the linger share the next request (one entry) instead of
/// the first of them leaving alone. Without the linger the test's `a` is sent by itself (the
/// yields let the flusher take it) and `b` commits in a later entry.
#[tokio::test]
async fn under_load_transactions_linger_to_share_an_entry() {
    let c = certs();
    let log = Log::with(10);
    let core = FakeCore::start(&identity(&c.core), &log);
    let mut cfg = config(&c, &[&core]);
    cfg.transact_linger = Duration::from_secs(4);
    let link = start(cfg).await;

    // Alone: no linger (it would take at least 4 s).
    let lone = tokio::time::timeout(
        Duration::from_millis(3_000),
        link.transact(vec![route_op("lone")]),
    )
    .await;
    assert!(matches!(lone, Ok(Ok(_))), "{lone:?}");
    assert_eq!(core.state.transacts.load(Ordering::SeqCst), 1);

    // Two at once share one request.
    let (x, y) = tokio::join!(
        link.transact(vec![route_op("x")]),
        link.transact(vec![route_op("y")])
    );
    let (x, y) = (x.expect("x commits"), y.expect("y commits"));
    assert_eq!(x.index, y.index);
    assert_eq!(core.state.transacts.load(Ordering::SeqCst), 2);

    // Right after that request, `a` arrives, then (once the flusher had every chance to
    // take `a` alone) `b`: both ride the same entry.
    let a = tokio::spawn({
        let link = link.clone();
        async move { link.transact(vec![route_op("a")]).await }
    });
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    let b = link.transact(vec![route_op("b")]).await.expect("b commits");
    let a = a.await.expect("task").expect("a commits");
    assert_eq!(a.index, b.index, "a and b in one entry");
    assert_eq!(core.state.transacts.load(Ordering::SeqCst), 3);
    link.stop();
    core.kill();
}
