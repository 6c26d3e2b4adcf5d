//! Streamed snapshots: tables larger than the follower's frame bound arrive in chunks and
//! install whole; a stream that ends inside a snapshot leaves the replica as it was and the
//! next session completes; a snapshot over the follower's maximum is refused.

use meshmq_proto::tables::{RetainedMessage, RetainedSet};

use super::*;

/// Appends `n` entries each setting one retained message of `size` bytes.
fn append_retained(log: &Log, n: usize, size: usize) {
    for i in 0..n {
        let set = op::Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: format!("big/{i}"),
                payload: vec![b'r'; size].into(),
                qos: 1,
                published_at_ms: 1,
                ..RetainedMessage::default()
            }),
            ..RetainedSet::default()
        });
        log.append(Some(Batch { ops: vec![op(set)] }));
    }
}

/// The tables after applying the log up to `upto`.
fn tables_upto(log: &Log, upto: u64) -> Tables {
    let mut t = Tables::new();
    for (i, b) in log.entries.lock().iter().enumerate().take(upto as usize) {
        if let Some(b) = b {
            t.apply_batch(i as u64 + 1, b);
        }
    }
    t
}

/// A replica that already followed the log up to `upto`.
fn replica_upto(log: &Log, upto: u64) -> Replica {
    let replica = Replica::new();
    let frame = FollowFrame {
        wire: None,
        kind: Some(follow_frame::Kind::Entries(FollowEntries {
            entries: log.slice(1, upto as usize),
            commit_index: upto,
        })),
    };
    replica.apply(frame).expect("apply the prefix");
    replica
}

/// ~1 MiB of tables, 64 KiB chunks, and a follower that reads frames of at most 128 KiB: a
/// snapshot in one frame could not reach it.
#[tokio::test]
async fn a_snapshot_larger_than_a_frame_arrives_in_chunks() {
    let c = certs();
    let log = Log::with(100);
    append_retained(&log, 1_000, 1_024);
    let core = FakeCore::start(&identity(&c.core), &log);
    core.state
        .first_index
        .store(log.len() - 10, Ordering::SeqCst);
    core.state.chunk_bytes.store(64 << 10, Ordering::SeqCst);
    let mut cfg = config(&c, &[&core]);
    cfg.max_frame = 128 << 10;
    let link = start(cfg).await;
    assert_eq!(link.replica().snapshot_installs(), 1);
    assert_eq!(core.state.snapshots.load(Ordering::SeqCst), 1);
    let stats = link.stats();
    assert!(stats.snapshot_chunks >= 16, "{stats:?}");
    assert_eq!((stats.snapshots_aborted, stats.malformed_frames), (0, 0));
    assert_replica_equals(link.replica(), &log);
    assert_eq!(link.replica().read(|t| t.retained_count()), 1_000);
    link.stop();
    core.kill();
}

#[tokio::test]
async fn a_stream_cut_inside_a_snapshot_leaves_the_replica_and_the_next_completes() {
    let c = certs();
    let log = Log::with(100);
    append_retained(&log, 500, 1_024);
    let core = FakeCore::start(&identity(&c.core), &log);
    core.state
        .first_index
        .store(log.len() - 10, Ordering::SeqCst);
    core.state.chunk_bytes.store(32 << 10, Ordering::SeqCst);
    core.state.cut_after_chunks.store(3, Ordering::SeqCst);
    let replica = replica_upto(&log, 50);
    let before = tables_upto(&log, 50);
    let starting = tokio::spawn(CoreLink::start(
        config(&c, &[&core]),
        replica.clone(),
        CancellationToken::new(),
    ));
    // The first stream ended after three chunks; the follower asked again (held by the core).
    eventually("a second follow request", Duration::from_secs(10), || {
        core.state.follows.lock().len() >= 2
    })
    .await;
    assert_eq!(replica.applied_index(), 50);
    assert_eq!(replica.snapshot_installs(), 0);
    assert!(replica.read(|t| *t == before), "the replica changed");
    assert!(core.state.follows.lock().iter().all(|from| *from == 51));

    core.state.held.send_replace(false);
    let link = starting
        .await
        .expect("start task")
        .expect("the link starts once a snapshot completes");
    assert_eq!(replica.snapshot_installs(), 1);
    assert_replica_equals(&replica, &log);
    let stats = link.stats();
    assert_eq!(stats.snapshots_aborted, 1, "{stats:?}");
    assert_eq!(core.state.snapshots.load(Ordering::SeqCst), 2);
    link.stop();
    core.kill();
}

#[tokio::test]
async fn a_snapshot_over_the_followers_maximum_is_refused() {
    let c = certs();
    let log = Log::with(100);
    append_retained(&log, 100, 1_024);
    let core = FakeCore::start(&identity(&c.core), &log);
    core.state.first_index.store(log.len(), Ordering::SeqCst);
    let mut cfg = config(&c, &[&core]);
    cfg.max_snapshot_bytes = 50_000;
    cfg.transact_deadline = Duration::from_secs(2);
    let replica = Replica::new();
    let started = CoreLink::start(cfg, replica.clone(), CancellationToken::new()).await;
    assert!(
        matches!(started, Err(CoreLinkError::CatchUp(_))),
        "{:?}",
        started.err()
    );
    assert_eq!(replica.applied_index(), 0);
    assert_eq!(replica.snapshot_installs(), 0);
    assert!(core.state.snapshots.load(Ordering::SeqCst) >= 1);
    core.kill();
}
