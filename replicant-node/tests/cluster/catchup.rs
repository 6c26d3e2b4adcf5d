//! Invariant 4, replicas converge: a replicant started again (a fresh in-memory replica, so
//! from index 1) is served from the log while the log still holds index 1; a replicant that
//! starts after the cores purged their logs installs one snapshot and then follows the tail;
//! a replicant whose core goes away switches to another and resumes from `applied + 1`
//! without a snapshot.

use std::time::Instant;

use core_node::node::RaftTimings;
use core_node::node::follow::FollowLimits;
use replicant_node::BrokerHandle;
use tokio::task::JoinSet;

use crate::common::wait_until;
use crate::harness::{
    Cluster, WAIT, assert_applied, fast_timings, has_route, ms_since, retained_op, route_op, serial,
};

/// Commits `n` transactions of `per` ops one after another through `r` (one entry each
/// unless group commit merges them with someone else's).
async fn write_through(r: &BrokerHandle, tag: &str, n: usize, per: usize) -> u64 {
    let mut index = 0;
    for i in 0..n {
        let ops = (0..per)
            .map(|k| retained_op(&format!("{tag}/{i}/{k}"), "v"))
            .collect();
        let committed = r.core().transact(ops).await.expect("transact");
        assert_applied(&committed.results);
        index = committed.index;
    }
    index
}

/// Commits from [`WRITERS`] concurrent writers on the leader, one op per transaction, until
/// the leader applied `target` entries; returns the leader's applied index.
async fn fill_log(cluster: &Cluster, target: u64) -> u64 {
    let leader = cluster.wait_leader(None).await;
    let mut tasks = JoinSet::new();
    for w in 0..WRITERS {
        let leader = leader.clone();
        tasks.spawn(async move {
            let mut i = 0;
            while leader.sm.applied_index() < target {
                let ops = vec![retained_op(&format!("fill/{w}/{i}/0"), "v")];
                let committed = leader.transact(ops).await.expect("fill the log");
                assert_applied(&committed.results);
                i += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("fill writer");
    }
    leader.sm.applied_index()
}

/// Concurrent writers of [`fill_log`] (sequential commits are slow in a debug build).
const WRITERS: usize = 8;

fn snapshot_installs(r: &BrokerHandle) -> u64 {
    r.core().replica().snapshot_installs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_replicant_catches_up_from_the_log() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    write_through(&r2, "early", 20, 100).await;
    cluster.assert_converged(&[("r1", &r1), ("r2", &r2)]).await;

    r2.shutdown().await;
    let missed = write_through(&r1, "missed", 20, 100).await;
    for core in cluster.live() {
        // Index 0 holds the initial membership; nothing at or after 1 may be gone.
        let first = core.log.first_index().expect("read the log");
        assert!(
            first.is_some_and(|f| f <= 1),
            "core-{}: first index {first:?}",
            core.id
        );
    }

    let started = Instant::now();
    let r2 = cluster.start_replicant("r2").await;
    eprintln!(
        "catch-up from the log: {} entries in {} ms",
        r2.core().applied_index(),
        ms_since(started)
    );
    assert!(r2.core().applied_index() >= missed);
    assert_eq!(
        snapshot_installs(&r2),
        0,
        "served from the log, no snapshot"
    );
    assert!(r2.core().read(|t| t.retained("missed/19/99").is_some()));
    cluster.assert_converged(&[("r1", &r1), ("r2", &r2)]).await;
    assert_eq!(snapshot_installs(&r1), 0);
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_replicant_installs_a_snapshot_when_the_log_was_purged() {
    let _serial = serial().await;
    let timings = RaftTimings {
        snapshot_every: 500,
        keep_after_snapshot: 100,
        ..fast_timings()
    };
    let cluster = Cluster::start(3, timings).await;
    let r1 = cluster.start_replicant("r1").await;
    let started = Instant::now();
    let filled = fill_log(&cluster, 700).await;
    eprintln!(
        "snapshot test: log filled to {filled} in {} ms",
        ms_since(started)
    );
    let purged = wait_until(WAIT, || {
        cluster
            .live()
            .iter()
            .all(|c| c.log.first_index().ok().flatten().is_some_and(|f| f > 1))
    })
    .await;
    let firsts: Vec<_> = cluster
        .live()
        .iter()
        .map(|c| c.log.first_index().ok().flatten())
        .collect();
    assert!(
        purged,
        "cores did not purge their logs past index 1: {firsts:?}"
    );
    eprintln!("snapshot test: first log index per core {firsts:?}");

    let r3 = cluster.start_replicant("r3").await;
    assert_eq!(snapshot_installs(&r3), 1, "one snapshot, then the tail");
    assert!(r3.core().read(|t| t.retained("fill/0/0/0").is_some()));
    cluster.assert_converged(&[("r1", &r1), ("r3", &r3)]).await;
    // Later writes reach it through the log.
    let index = write_through(&r1, "after", 5, 2).await;
    let followed = wait_until(WAIT, || r3.core().applied_index() >= index).await;
    assert!(followed, "r3 does not follow the tail");
    cluster.assert_converged(&[("r1", &r1), ("r3", &r3)]).await;
    assert_eq!(snapshot_installs(&r3), 1);
    assert_eq!(snapshot_installs(&r1), 0, "r1 followed all along");
    r1.shutdown().await;
    r3.shutdown().await;
    cluster.stop().await;
}

/// Tables sixteen times one follow chunk (cores bound chunks and entry frames to 64 KiB;
/// ~1 MiB of retained messages): a replicant started after the purge receives the snapshot
/// in chunks, becomes ready and equals the cores; one that followed all along got the big
/// entries in byte-bounded frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_replicant_receives_a_snapshot_larger_than_a_chunk() {
    let _serial = serial().await;
    let timings = RaftTimings {
        snapshot_every: 200,
        keep_after_snapshot: 50,
        ..fast_timings()
    };
    let follow = FollowLimits {
        chunk_bytes: 64 << 10,
        entries_bytes: 64 << 10,
        ..FollowLimits::default()
    };
    let cluster = Cluster::start_with_follow(3, timings, follow).await;
    let r1 = cluster.start_replicant("r1").await;
    let payload = "p".repeat(1_000);
    for i in 0..100 {
        let ops = (0..10)
            .map(|k| retained_op(&format!("big/{i}/{k}"), &payload))
            .collect();
        let committed = r1.core().transact(ops).await.expect("transact");
        assert_applied(&committed.results);
    }
    fill_log(&cluster, 450).await;
    let purged = wait_until(WAIT, || {
        cluster
            .live()
            .iter()
            .all(|c| c.log.first_index().ok().flatten().is_some_and(|f| f > 1))
    })
    .await;
    assert!(purged, "cores did not purge their logs past index 1");

    let started = Instant::now();
    let r3 = cluster.start_replicant("r3").await;
    let stats = r3.core().link().stats();
    eprintln!(
        "chunked snapshot: r3 ready in {} ms, {} chunks",
        ms_since(started),
        stats.snapshot_chunks
    );
    assert_eq!(snapshot_installs(&r3), 1, "one snapshot, then the tail");
    assert!(stats.snapshot_chunks >= 16, "{stats:?}");
    assert_eq!(stats.snapshots_aborted, 0, "{stats:?}");
    assert!(r3.core().read(|t| t.retained("big/99/9").is_some()));
    cluster.assert_converged(&[("r1", &r1), ("r3", &r3)]).await;
    assert_eq!(snapshot_installs(&r1), 0, "r1 followed all along");
    r1.shutdown().await;
    r3.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicant_switches_core_and_resumes_where_it_was() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, fast_timings()).await;
    let leader = cluster.wait_leader(None).await;
    // Only the followers are configured, so the core r1 follows can go away without an
    // election.
    let followers: Vec<_> = cluster
        .live()
        .into_iter()
        .filter(|c| c.id != leader.id)
        .collect();
    let addrs = followers.iter().map(|c| c.addr.clone()).collect();
    let r1 = cluster
        .start_replicant_with("r1", |c| c.cluster.cores = addrs)
        .await;
    write_through(&r1, "before", 10, 10).await;
    let followed = r1.core().link().current_core().expect("following a core");
    let (gone, survivor) = if followed.to_string() == followers[0].addr {
        (&followers[0], &followers[1])
    } else {
        (&followers[1], &followers[0])
    };
    assert_eq!(followed.to_string(), gone.addr);
    let (gone_id, survivor_addr) = (gone.id, survivor.addr.clone());
    drop(followers); // `release` waits until no handle is left
    let switches = r1.core().link().stats().core_switches;

    let killed = Instant::now();
    cluster.kill(gone_id).await;
    cluster.release(gone_id).await; // nothing answers on its port any more
    let switched = wait_until(WAIT, || {
        r1.core().link().current_core().map(|a| a.to_string()) == Some(survivor_addr.clone())
    })
    .await;
    assert!(switched, "r1 did not switch to {survivor_addr}");
    eprintln!(
        "switch: r1 follows {survivor_addr} {} ms after the kill",
        ms_since(killed)
    );
    assert!(r1.core().link().stats().core_switches > switches);

    let committed = r1
        .core()
        .transact(vec![route_op("after-switch/#", "r1")])
        .await
        .expect("write after the switch");
    assert_applied(&committed.results);
    assert!(has_route(&r1, "after-switch/x", "r1"));
    cluster.assert_converged(&[("r1", &r1)]).await;
    assert_eq!(
        snapshot_installs(&r1),
        0,
        "resumed from the log, no snapshot"
    );
    r1.shutdown().await;
    cluster.stop().await;
}
