//! Building a Raft snapshot does not stop writes: while a build is held in progress (by the
//! state machine's build hook, after its rows were captured), a transaction commits and
//! applies; the snapshot built afterwards holds the state of the capture, not the later
//! write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

#[path = "common/admin.rs"]
mod admin;
mod common;

use admin::{WAIT, single_core, wait_until};
use common::retained;
use meshmq_proto::tables as pt;
use openraft::storage::RaftStateMachine;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_commits_while_a_snapshot_is_being_built() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = single_core(dir.path(), &["core-1"]).await;
    for i in 0..20 {
        core.transact(vec![retained(&format!("before/{i}"))])
            .await
            .expect("fill");
    }

    // The hook says the build started, then holds it until released (bounded: a build is
    // never held past the test's deadline).
    let building = Arc::new(AtomicBool::new(false));
    let held_done = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (started, done) = (Arc::clone(&building), Arc::clone(&held_done));
    core.sm.set_build_hook(Some(Arc::new(move || {
        started.store(true, Ordering::SeqCst);
        let rx = release_rx.lock().expect("hook lock");
        let _ = rx.recv_timeout(WAIT);
        done.store(true, Ordering::SeqCst);
    })));

    let captured = core.sm.applied_index();
    core.raft
        .trigger()
        .snapshot()
        .await
        .expect("trigger snapshot");
    wait_until("the snapshot build starts", || {
        building.load(Ordering::SeqCst)
    })
    .await;

    // The build is in progress: a write still commits and applies, before the hold ends
    // (were the build holding the state machine's lock, the write would wait for it).
    let committed = tokio::time::timeout(WAIT, core.transact(vec![retained("during")]))
        .await
        .expect("transact in time")
        .expect("transact");
    assert!(
        !held_done.load(Ordering::SeqCst),
        "the transaction committed only after the snapshot build was let go"
    );
    assert!(committed.index > captured);
    assert!(core.sm.read(|t| t.retained("during").is_some()));
    let snapshot_index = || {
        core.raft
            .metrics()
            .borrow()
            .snapshot
            .map_or(0, |id| id.index)
    };
    assert!(snapshot_index() < captured, "the build was still held");

    // Released, the build completes with the state of its capture.
    release_tx.send(()).expect("release the build");
    wait_until("the snapshot is built", || snapshot_index() == captured).await;
    core.sm.set_build_hook(None);
    let mut sm = core.sm.clone();
    let built = sm
        .get_current_snapshot()
        .await
        .expect("read snapshot")
        .expect("a snapshot");
    assert_eq!(built.meta.last_log_id.map(|id| id.index), Some(captured));
    let tables = pt::Snapshot::decode(built.snapshot.into_inner().as_slice()).expect("decode");
    assert_eq!(tables.applied_index, captured);
    let topics: Vec<&str> = tables.retained.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics.len(), 20, "{topics:?}");
    assert!(!topics.contains(&"during"), "{topics:?}");
    core.shutdown().await;
}
