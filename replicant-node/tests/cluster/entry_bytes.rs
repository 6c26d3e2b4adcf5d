//! Log entries are bounded in bytes on the replicant's side too: concurrent transactions
//! that together pass `MAX_ENTRY_BYTES` are coalesced into several requests (each a log entry
//! within the bound) and all commit; one caller's batch over the bound is refused, naming it.

use std::time::Duration;

use core_node::api::{MAX_ENTRY_BYTES, TransactError};
use core_node::node::RaftTimings;
use core_node::raft::convert::entry_to_proto;
use futures_util::future::join_all;
use meshmq_proto::raft::entry::Payload;
use meshmq_proto::tables::Batch;
use prost::Message;

use crate::harness::{Cluster, assert_applied, fast_timings, retained_op, serial};

/// A retained message on `topic` with a payload of `kib` KiB.
fn blob(topic: &str, kib: usize) -> meshmq_proto::tables::Op {
    retained_op(topic, &"x".repeat(kib << 10))
}

/// Raft timings whose AppendEntries deadline (the heartbeat) lets entries of a few hundred
/// KiB cross in a debug build.
fn roomy_timings() -> RaftTimings {
    RaftTimings {
        heartbeat: Duration::from_millis(300),
        election_min: Duration::from_millis(1_500),
        election_max: Duration::from_millis(3_000),
        ..fast_timings()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_larger_than_one_entry_together_are_split_and_commit() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, roomy_timings()).await;
    let r1 = cluster.start_replicant("r1").await;

    // Six callers of 768 KiB at once: 4.5 MiB, more than two entries take.
    let calls = (0..6).map(|i| r1.core().transact(vec![blob(&format!("big/{i}"), 768)]));
    let mut indexes = Vec::new();
    for outcome in join_all(calls).await {
        let committed = outcome.expect("every caller commits");
        assert_applied(&committed.results);
        indexes.push(committed.index);
    }
    indexes.sort_unstable();
    indexes.dedup();
    assert!(indexes.len() >= 2, "several entries: {indexes:?}");
    assert!(
        r1.core()
            .read(|t| (0..6).all(|i| t.retained(&format!("big/{i}")).is_some()))
    );

    let leader = cluster.leader().expect("a leader");
    for index in indexes {
        let entry = leader
            .log
            .read_entries(index, 1)
            .expect("read the log")
            .pop()
            .expect("entry");
        let Some(Payload::Normal(batch)) = entry_to_proto(&entry).payload else {
            panic!("entry {index} is not a batch")
        };
        assert!(
            batch.len() <= MAX_ENTRY_BYTES,
            "entry {index}: {} bytes",
            batch.len()
        );
        assert!(Batch::decode(batch).is_ok());
    }

    // One caller's batch over the bound is refused whole, before it leaves the replicant.
    let over: Vec<_> = (0..3).map(|i| blob(&format!("over/{i}"), 1024)).collect();
    match r1.core().transact(over).await {
        Err(TransactError::Rejected(why)) => assert!(why.contains("MAX_ENTRY_BYTES"), "{why}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(r1.core().read(|t| t.retained("over/0").is_none()));

    r1.shutdown().await;
    cluster.stop().await;
}
