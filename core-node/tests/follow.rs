//! `Follow` frames are bounded in bytes: a real core whose log was purged streams its
//! snapshot in chunks and its entries in byte-bounded frames, so a follower that reads
//! frames of at most a little over the bound (far below the tables' size) rebuilds the
//! core's tables exactly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_node::node::follow::FollowLimits;
use core_node::node::{CoreConfig, CoreNode, RaftTimings, batcher::GroupCommit};
use meshmq_proto::core::{FollowFrame, FollowRequest, Request, follow_frame, request};
use meshmq_proto::tables::{
    Op, RegistryClaim, RetainedMessage, RetainedSet, SubOptions, SubscriptionSet, op,
};
use meshmq_shared::follow_snapshot::Staging;
use meshmq_shared::quic::{self, certs, frame, tls::Identity};
use meshmq_shared::tables::Tables;

const WAIT: Duration = Duration::from_secs(20);
/// The core's chunk and entries-frame bound in this test.
const BOUND: usize = 64 << 10;
/// The follower's frame maximum: the bound plus room for the frame's own fields.
const READ_MAX: usize = BOUND + (32 << 10);

fn retained(topic: &str, size: usize) -> Op {
    Op {
        kind: Some(op::Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: topic.into(),
                payload: vec![b'p'; size].into(),
                qos: 1,
                published_at_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

async fn start_core(dir: &std::path::Path) -> Arc<CoreNode> {
    certs::generate(&dir.join("certs"), &["core-1".into(), "client".into()]).expect("certs");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let core = CoreNode::start(CoreConfig {
        node_id: 1,
        core_bind: SocketAddr::from(([127, 0, 0, 1], port)),
        advertise: None,
        data_dir: dir.join("core-1"),
        initial_members: vec![(1, format!("127.0.0.1:{port}"))],
        certs: certs::CertPaths::in_dir(&dir.join("certs"), "core-1"),
        timings: RaftTimings {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            snapshot_every: 50,
            keep_after_snapshot: 10,
            ..RaftTimings::default()
        },
        group_commit: GroupCommit::default(),
        follow: FollowLimits {
            chunk_bytes: BOUND,
            entries_bytes: BOUND,
            entries_per_frame: 1_000,
        },
    })
    .await
    .expect("core starts");
    wait_until("core 1 leads", || core.is_leader()).await;
    core
}

/// Commits `n` retained messages of `size` bytes, one entry each, until the core has purged
/// its log past index 1 (a follower from index 1 then needs a snapshot).
async fn fill_until_purged(core: &CoreNode, n: usize, size: usize) {
    for i in 0..n {
        core.transact(vec![retained(&format!("fill/{i}"), size)])
            .await
            .expect("fill");
    }
    wait_until("the log purged past index 1", || {
        core.log.first_index().ok().flatten().is_some_and(|f| f > 1)
    })
    .await;
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client connection to `core` with the test's client certificate (the endpoint must
/// outlive the connection).
async fn connect(dir: &std::path::Path, core: &CoreNode) -> (quinn::Endpoint, quinn::Connection) {
    let id = Identity::load(&certs::CertPaths::in_dir(&dir.join("certs"), "client"))
        .expect("client identity");
    let addr: SocketAddr = core.addr.parse().expect("core address");
    let ep = quic::endpoint::client(&id, quic::ALPN_CORE, addr).expect("client endpoint");
    let conn = quic::endpoint::connect(&ep, addr, Duration::from_secs(2))
        .await
        .expect("connect");
    (ep, conn)
}

/// What one follow stream delivered.
#[derive(Default)]
struct Followed {
    tables: Tables,
    applied: u64,
    snapshots: u32,
    chunks: u32,
    entry_frames: u32,
}

/// Follows from `from` until the replica reaches `until`, reading frames of at most
/// [`READ_MAX`] bytes; `base` is the replica's state at `from - 1`. A `base` that holds a
/// projection (`Tables::new_projected`) asks for it and applies entries by their notes.
async fn follow(conn: &quinn::Connection, from: u64, until: u64, base: Tables) -> Followed {
    let (mut send, mut recv) = conn.open_bi().await.expect("open a stream");
    let projected = base.projected_for().map(str::to_owned);
    let req = Request {
        kind: Some(request::Kind::Follow(FollowRequest {
            from_index: from,
            node: projected.clone().unwrap_or_else(|| "follow-test".into()),
            projected: projected.is_some(),
        })),
        wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
    };
    frame::write_msg(&mut send, &req).await.expect("send");
    let mut f = Followed {
        tables: base,
        applied: from - 1,
        ..Followed::default()
    };
    let mut staging = None;
    let end = Instant::now() + WAIT;
    while f.applied < until {
        assert!(Instant::now() < end, "stuck at {}", f.applied);
        let frame: FollowFrame =
            tokio::time::timeout(Duration::from_secs(3), frame::read_msg(&mut recv, READ_MAX))
                .await
                .expect("a frame within 3 s")
                .expect("a frame within the byte bound")
                .expect("the stream stays open");
        match frame.kind.expect("a kind") {
            follow_frame::Kind::SnapshotBegin(b) => {
                staging = Some(Staging::begin(b, u64::MAX).expect("begin"));
            }
            follow_frame::Kind::SnapshotChunk(c) => {
                f.chunks += 1;
                let st = staging.as_mut().expect("a chunk after a begin");
                st.absorb(c).expect("a consistent chunk");
            }
            follow_frame::Kind::SnapshotEnd(e) => {
                let st = staging.take().expect("an end after a begin");
                let (index, snapshot) = st.finish(e).expect("a complete snapshot");
                f.tables = match &projected {
                    Some(node) => Tables::from_projection(&snapshot, node),
                    None => Tables::from_snapshot(&snapshot),
                };
                f.applied = index;
                f.snapshots += 1;
            }
            follow_frame::Kind::Entries(e) => {
                f.entry_frames += 1;
                for entry in e.entries {
                    assert_eq!(entry.index, f.applied + 1, "in order, no gap");
                    match (entry.batch, &projected) {
                        (Some(b), Some(_)) => {
                            let notes = entry.notes.expect("a projected follower gets notes");
                            f.tables
                                .apply_projected(entry.index, &b, &notes)
                                .expect("the notes fit their entry");
                        }
                        (Some(b), None) => {
                            f.tables.apply_batch(entry.index, &b);
                        }
                        (None, _) => {}
                    }
                    f.applied = entry.index;
                }
            }
            follow_frame::Kind::Snapshot(_) => panic!("a snapshot in one frame"),
            follow_frame::Kind::Refused(e) => panic!("follow refused: {}", e.message),
            follow_frame::Kind::Heartbeat(_) => {}
        }
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_core_streams_snapshot_and_entries_in_bounded_frames() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = start_core(dir.path()).await;
    // ~1 MiB of retained messages (16 times the bound), one entry per transaction.
    for i in 0..200 {
        let ops = (0..5)
            .map(|k| retained(&format!("fill/{i}/{k}"), 1_000))
            .collect();
        core.transact(ops).await.expect("fill");
    }
    wait_until("the log purged past index 1", || {
        core.log.first_index().ok().flatten().is_some_and(|f| f > 1)
    })
    .await;

    let (_ep, conn) = connect(dir.path(), &core).await;

    let applied = core.sm.applied_index();
    let fresh = follow(&conn, 1, applied, Tables::new()).await;
    assert_eq!(fresh.snapshots, 1);
    assert!(fresh.chunks >= 16, "{} chunks", fresh.chunks);
    assert!(fresh.tables == Tables::from_snapshot(&core.sm.snapshot_now().1));
    assert_eq!(fresh.tables.retained_count(), 1_000);

    // Twenty entries of ~40 KiB: together far over the bound, so several frames.
    let (before, base) = core.sm.snapshot_now();
    let base = Tables::from_snapshot(&base);
    for i in 0..20 {
        core.transact(vec![retained(&format!("big/{i}"), 40_000)])
            .await
            .expect("big entry");
    }
    let applied = core.sm.applied_index();
    let tail = follow(&conn, before + 1, applied, base).await;
    assert_eq!(tail.snapshots, 0, "served from the log");
    assert!(tail.entry_frames >= 10, "{} frames", tail.entry_frames);
    assert!(tail.tables == Tables::from_snapshot(&core.sm.snapshot_now().1));
    conn.close(0u32.into(), b"done");
    core.shutdown().await;
}

fn claim(client: &str, node: &str) -> Op {
    Op {
        kind: Some(op::Kind::RegistryClaim(RegistryClaim {
            client_id: client.into(),
            node: node.into(),
            incarnation: 1,
            session_expiry_secs: 3600,
            protocol_level: 5,
            now_ms: 1,
            ..Default::default()
        })),
    }
}

fn subscribe(client: &str, filter: &str) -> Op {
    Op {
        kind: Some(op::Kind::SubscriptionSet(SubscriptionSet {
            client_id: client.into(),
            filter: filter.into(),
            options: Some(SubOptions::default()),
        })),
    }
}

/// A replicant that holds the registry projection (docs/roles.md) asks for it: after a log
/// purge it gets a projected snapshot with its own clients only (and every node's counts),
/// then entries with the core's notes, and stays equal to the core's projection for it
/// while its clients move in and out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projected_follower_gets_its_projection_and_the_cores_notes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = start_core(dir.path()).await;
    let mut ops = Vec::new();
    for i in 0..40 {
        ops.push(claim(&format!("far{i}"), "r2"));
        ops.push(subscribe(&format!("far{i}"), &format!("far/{i}/#")));
    }
    ops.extend([claim("near", "r1"), subscribe("near", "near/#")]);
    core.transact(ops).await.expect("clients");
    fill_until_purged(&core, 60, 100).await;
    let (_ep, conn) = connect(dir.path(), &core).await;
    let projection = |core: &CoreNode| core.sm.read(|t| t.projection("r1"));

    let applied = core.sm.applied_index();
    let fresh = follow(&conn, 1, applied, Tables::new_projected("r1")).await;
    assert_eq!(fresh.snapshots, 1);
    assert_eq!(fresh.tables.snapshot(), projection(&core));
    assert_eq!(fresh.tables.registry_count(), 1, "only r1's client");
    assert_eq!(fresh.tables.retained_count(), 60, "whole tables whole");

    // far0 moves to r1 with its session (its subscription comes with the notes); near
    // moves to r2 (its rows leave r1's projection).
    let before = core.sm.applied_index();
    core.transact(vec![claim("far0", "r1")])
        .await
        .expect("far0 moves");
    core.transact(vec![claim("near", "r2")])
        .await
        .expect("near moves");
    let applied = core.sm.applied_index();
    let tail = follow(&conn, before + 1, applied, fresh.tables).await;
    assert_eq!(tail.snapshots, 0, "served from the log with notes");
    assert_eq!(tail.tables.snapshot(), projection(&core));
    assert_eq!(tail.tables.subscriptions("far0").count(), 1);
    assert!(tail.tables.registry("near").is_none());
    conn.close(0u32.into(), b"done");
    core.shutdown().await;
}

/// Building a follow snapshot takes seconds at millions of rows, and a follower gives up on
/// a stream silent for a second: while the build is held (by the state machine's build
/// hook), the core keeps sending heartbeats, and the snapshot follows once it is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_hears_heartbeats_while_its_snapshot_is_built() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, mpsc};

    let dir = tempfile::tempdir().expect("tempdir");
    let core = start_core(dir.path()).await;
    fill_until_purged(&core, 100, 100).await;

    let building = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let started = Arc::clone(&building);
    core.sm.set_build_hook(Some(Arc::new(move || {
        started.store(true, Ordering::SeqCst);
        let rx = release_rx.lock().expect("hook lock");
        let _ = rx.recv_timeout(WAIT); // bounded: never held past the test's deadline
    })));

    let (_ep, conn) = connect(dir.path(), &core).await;
    let (_send, mut recv) = open_follow(&conn, 1).await;

    // Four heartbeats (a second of them) while the build is held, each within the
    // follower's one-second silence limit.
    let mut heartbeats = 0;
    while heartbeats < 4 {
        let frame: FollowFrame =
            tokio::time::timeout(Duration::from_secs(1), frame::read_msg(&mut recv, READ_MAX))
                .await
                .expect("a frame within 1 s while the snapshot is built")
                .expect("a frame within the byte bound")
                .expect("the stream stays open");
        match frame.kind.expect("a kind") {
            follow_frame::Kind::Heartbeat(_) => heartbeats += 1,
            other => panic!("only heartbeats while the build is held, got {other:?}"),
        }
    }
    assert!(building.load(Ordering::SeqCst), "the build was held");
    release_tx.send(()).expect("release the build");
    core.sm.set_build_hook(None);

    let tables = read_snapshot(&mut recv).await;
    assert_eq!(tables.retained_count(), 100);
    conn.close(0u32.into(), b"done");
    core.shutdown().await;
}

/// Opens a `Follow` stream from `from`.
async fn open_follow(
    conn: &quinn::Connection,
    from: u64,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = conn.open_bi().await.expect("open a stream");
    let req = Request {
        kind: Some(request::Kind::Follow(FollowRequest {
            from_index: from,
            node: "follow-test".into(),
            projected: false,
        })),
        wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
    };
    frame::write_msg(&mut send, &req).await.expect("send");
    (send, recv)
}

/// Reads frames until a heartbeat (true) or a snapshot begins (false).
async fn heartbeat_or_begin(recv: &mut quinn::RecvStream) -> bool {
    let frame: FollowFrame =
        tokio::time::timeout(Duration::from_secs(3), frame::read_msg(recv, READ_MAX))
            .await
            .expect("a frame within 3 s")
            .expect("a frame within the byte bound")
            .expect("the stream stays open");
    matches!(frame.kind, Some(follow_frame::Kind::Heartbeat(_)))
}

/// Reads a whole snapshot (heartbeats before it skipped) and returns its tables.
async fn read_snapshot(recv: &mut quinn::RecvStream) -> Tables {
    let mut staging = None;
    let end = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < end, "no whole snapshot in time");
        let frame: FollowFrame =
            tokio::time::timeout(Duration::from_secs(3), frame::read_msg(recv, READ_MAX))
                .await
                .expect("a frame within 3 s")
                .expect("a frame within the byte bound")
                .expect("the stream stays open");
        match frame.kind.expect("a kind") {
            follow_frame::Kind::SnapshotBegin(b) => {
                staging = Some(Staging::begin(b, u64::MAX).expect("begin"));
            }
            follow_frame::Kind::SnapshotChunk(c) => {
                let st = staging.as_mut().expect("a chunk after a begin");
                st.absorb(c).expect("a consistent chunk");
            }
            follow_frame::Kind::SnapshotEnd(e) => {
                let st = staging.take().expect("an end after a begin");
                return Tables::from_snapshot(&st.finish(e).expect("a complete snapshot").1);
            }
            follow_frame::Kind::Heartbeat(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Replicants joining at once get one build between them: a follower that needs a snapshot
/// while one is built waits for it (hearing heartbeats) and is sent the same one, instead of
/// the core building the whole tables again side by side; and a follower that goes away
/// while its build runs neither stops the build nor makes room for a second one (a peer
/// opening and resetting Follow streams cannot multiply builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_joining_together_share_one_snapshot_build() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Mutex, mpsc};

    let dir = tempfile::tempdir().expect("tempdir");
    let core = start_core(dir.path()).await;
    fill_until_purged(&core, 60, 1_000).await;

    let builds = Arc::new(AtomicU32::new(0));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let counted = Arc::clone(&builds);
    core.sm.set_build_hook(Some(Arc::new(move || {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            let rx = release_rx.lock().expect("hook lock");
            let _ = rx.recv_timeout(WAIT); // bounded: never held past the test's deadline
        }
    })));

    let (_ep, conn) = connect(dir.path(), &core).await;

    // A asks first: its build starts and is held.
    let (mut send_a, mut recv_a) = open_follow(&conn, 1).await;
    wait_until("the first follower's build starts", || {
        builds.load(Ordering::SeqCst) == 1
    })
    .await;
    // B asks while it is built: it waits, hearing heartbeats.
    let (_send_b, mut recv_b) = open_follow(&conn, 1).await;
    assert!(
        heartbeat_or_begin(&mut recv_b).await,
        "the second follower hears heartbeats while the first build is held"
    );
    // A goes away; its stream ends on the core (its next heartbeat fails).
    let _ = send_a.reset(0u32.into());
    let _ = recv_a.stop(0u32.into());
    wait_until("the core drops the first follower", || {
        core.followers() == 1
    })
    .await;
    // C asks now: the build A started still runs, and C waits for it too.
    let (_send_c, mut recv_c) = open_follow(&conn, 1).await;
    assert!(
        heartbeat_or_begin(&mut recv_c).await,
        "the third follower waits for the build still in progress"
    );
    release_tx.send(()).expect("release the build");

    let b = read_snapshot(&mut recv_b).await;
    let c = read_snapshot(&mut recv_c).await;
    assert_eq!(
        builds.load(Ordering::SeqCst),
        1,
        "one build for every follower"
    );
    assert_eq!(b.retained_count(), 60);
    assert!(b == c, "both followers got the same tables");
    core.sm.set_build_hook(None);
    conn.close(0u32.into(), b"done");
    core.shutdown().await;
}
