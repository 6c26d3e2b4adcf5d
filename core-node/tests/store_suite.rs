//! The redb Raft stores (`core_node::raft::store`): openraft's storage conformance suite
//! (`openraft::testing::Suite`) on a fresh temporary directory per case, then our own cases:
//! a reopen keeps vote, entries, committed id, purge point and snapshot; corrupt rows give
//! errors, not panics; a real batch changes the tables; an installed snapshot survives a
//! reopen; an older snapshot never overwrites a newer persisted one.

use std::collections::{BTreeMap, BTreeSet};

use core_node::raft::store::{DB_FILE, LogStore, StateMachineStore, open};
use core_node::raft::types::{
    Entry, EntryData, LogId, StorageError, StoredMembership, TypeConfig, Vote,
};
use meshmq_proto::tables::{
    Batch, NodeRole, NodeUp, Op, OpResult, RouteAdd, op::Kind, op_result::Outcome,
};
use meshmq_shared::tables::rejection;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, EntryPayload, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageIOError,
};
use prost::Message;
use tempfile::TempDir;

/// What a test returns: openraft's (large) error, boxed.
type TestResult = Result<(), Box<StorageError>>;

/// Opens a fresh store in its own temporary directory (removed when the guard drops).
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm) = open(dir.path()).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() -> TestResult {
    Suite::test_all(Builder).map_err(Box::new)
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn batch(ops: Vec<Kind>) -> Vec<u8> {
    Batch {
        ops: ops
            .into_iter()
            .map(|kind| Op { kind: Some(kind) })
            .collect(),
    }
    .encode_to_vec()
}

fn node_up(node: &str) -> Kind {
    Kind::NodeUp(NodeUp {
        node: node.to_owned(),
        addr: format!("{node}:1883"),
        role: NodeRole::Replicant as i32,
        incarnation: 1,
        peer_addr: String::new(),
        wire: None,
    })
}

fn route_add(filter: &str, node: &str) -> Kind {
    Kind::RouteAdd(RouteAdd {
        filter: filter.to_owned(),
        node: node.to_owned(),
        seq: 0,
    })
}

fn normal(term: u64, index: u64, ops: Vec<Kind>) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(EntryData { batch: batch(ops) }),
    }
}

fn membership(term: u64, index: u64) -> Entry {
    let nodes: BTreeMap<u64, BasicNode> = [(1, BasicNode::new("127.0.0.1:1"))].into();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes)),
    }
}

/// Five entries: blank, membership {1}, node n1 up + route `a/+`, route `b/#`, route `c`.
fn five_entries() -> Vec<Entry> {
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        membership(1, 2),
        normal(1, 3, vec![node_up("n1"), route_add("a/+", "n1")]),
        normal(2, 4, vec![route_add("b/#", "n1")]),
        normal(2, 5, vec![route_add("c", "n1")]),
    ]
}

fn routes_to(sm: &StateMachineStore, topic: &str) -> Vec<String> {
    let mut nodes = Vec::new();
    sm.read(|t| t.route_nodes_matching(topic, |n| nodes.push(n.to_owned())));
    nodes
}

fn decode_results(results: &[Vec<u8>]) -> Vec<OpResult> {
    results
        .iter()
        .map(|r| OpResult::decode(r.as_slice()).expect("apply returns valid OpResult bytes"))
        .collect()
}

#[tokio::test]
async fn reopen_keeps_vote_entries_committed_purge_and_snapshot() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = five_entries();
    let vote = Vote::new_committed(2, 1);
    let (built_meta, state_before) = {
        let (mut log, mut sm) = open(dir.path()).expect("open");
        log.save_vote(&vote).await?;
        log.blocking_append(entries.clone()).await?;
        log.save_committed(Some(log_id(2, 5))).await?;
        sm.apply(entries[..3].to_vec()).await?;
        let built = sm.get_snapshot_builder().await.build_snapshot().await?;
        sm.apply(entries[3..].to_vec()).await?;
        log.purge(log_id(1, 2)).await?;
        (built.meta, sm.snapshot_now())
    };

    let (mut log, mut sm) = open(dir.path()).expect("reopen");
    assert_eq!(log.read_vote().await?, Some(vote));
    assert_eq!(log.read_committed().await?, Some(log_id(2, 5)));
    let state = log.get_log_state().await?;
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    assert_eq!(log.try_get_log_entries(0..10).await?, entries[2..].to_vec());
    assert_eq!(log.first_index()?, Some(3));
    assert_eq!(log.last_purged()?, Some(log_id(1, 2)));
    assert_eq!(log.read_entries(4, 10)?, entries[3..].to_vec());
    assert_eq!(log.read_entries(3, 1)?, entries[2..3].to_vec());
    assert!(log.read_entries(1, 10)?.is_empty(), "purged index");
    assert!(log.read_entries(6, 10)?.is_empty(), "past the end");

    // The state machine restarts from the snapshot (index 3) ...
    let (applied, stored_membership) = sm.applied_state().await?;
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(stored_membership.log_id(), &Some(log_id(1, 2)));
    assert_eq!(sm.applied_index(), 3);
    let current = sm
        .get_current_snapshot()
        .await?
        .expect("persisted snapshot");
    assert_eq!(current.meta, built_meta);
    assert_eq!(routes_to(&sm, "a/x"), ["n1"]);
    assert!(routes_to(&sm, "c").is_empty());

    // ... and re-applying the committed entries after it gives the state before the restart.
    let committed = log.read_committed().await?.expect("committed").index;
    let tail = log
        .try_get_log_entries(applied.map_or(0, |id| id.index + 1)..=committed)
        .await?;
    sm.apply(tail).await?;
    assert_eq!(sm.snapshot_now(), state_before);
    assert_eq!(routes_to(&sm, "c"), ["n1"]);
    Ok(())
}

/// Writes `bytes` as the `log` row at `index` directly in the database file.
fn write_raw_log_row(dir: &TempDir, index: u64, bytes: &[u8]) {
    const LOG: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("log");
    let db = redb::Database::create(dir.path().join(DB_FILE)).expect("open db file");
    let txn = db.begin_write().expect("write txn");
    txn.open_table(LOG)
        .expect("log table")
        .insert(index, bytes)
        .expect("insert");
    txn.commit().expect("commit");
}

#[tokio::test]
async fn corrupt_log_rows_are_errors_not_panics() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _sm) = open(dir.path()).expect("open");
        log.blocking_append(five_entries()).await?;
    }
    // Row 2: not protobuf at all. Row 5: valid protobuf of another index.
    write_raw_log_row(&dir, 2, &[0xff, 0xff, 0xff]);
    let misplaced = core_node::raft::convert::entry_to_proto(&five_entries()[0]).encode_to_vec();
    write_raw_log_row(&dir, 5, &misplaced);

    let (mut log, _sm) = open(dir.path()).expect("reopen with corrupt rows");
    let err = log
        .try_get_log_entries(1..4)
        .await
        .expect_err("row 2 is corrupt");
    assert!(err.to_string().contains("log row 2"), "{err}");
    let err = log.read_entries(1, 10).expect_err("row 2 is corrupt");
    assert!(err.to_string().contains("log row 2"), "{err}");
    assert_eq!(log.read_entries(3, 2)?.len(), 2, "rows 3 and 4 are fine");
    let err = log.get_log_state().await.expect_err("last row is corrupt");
    assert!(err.to_string().contains("log row 5"), "{err}");
    Ok(())
}

#[tokio::test]
async fn corrupt_snapshot_fails_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_log, mut sm) = open(dir.path()).expect("open");
        sm.apply(five_entries()).await.expect("apply");
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
    }
    {
        const SNAPSHOT: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("snapshot");
        let db = redb::Database::create(dir.path().join(DB_FILE)).expect("open db file");
        let txn = db.begin_write().expect("write txn");
        txn.open_table(SNAPSHOT)
            .expect("snapshot table")
            .insert("data", &[0xffu8, 0xff][..])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = open(dir.path())
        .err()
        .expect("a corrupt snapshot must fail open");
    assert!(format!("{err:?}").contains("snapshot data"), "{err:?}");
}

#[tokio::test]
async fn applying_a_real_batch_changes_the_tables() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open(dir.path()).expect("open");
    let mut applied = sm.subscribe_applied();
    assert_eq!(*applied.borrow_and_update(), 0);
    assert!(routes_to(&sm, "a/b").is_empty());

    let results = sm
        .apply([normal(1, 1, vec![node_up("n1"), route_add("a/+", "n1")])])
        .await?;
    let ops = decode_results(&results[0].results);
    assert_eq!(ops.len(), 2);
    assert!(
        ops.iter()
            .all(|r| matches!(r.outcome, Some(Outcome::Ok(_)))),
        "{ops:?}"
    );
    assert_eq!(routes_to(&sm, "a/b"), ["n1"]);
    assert_eq!(sm.applied_index(), 1);
    assert!(applied.has_changed().expect("sender alive"));
    assert_eq!(*applied.borrow_and_update(), 1);

    // A route for an unknown node is rejected by the table rules, not by the store.
    let results = sm.apply([normal(1, 2, vec![route_add("z", "n9")])]).await?;
    let ops = decode_results(&results[0].results);
    assert!(rejection(&ops[0]).is_some(), "{ops:?}");

    // An undecodable batch: one rejection, tables unchanged, index advanced.
    let before = sm.snapshot_now().1;
    let garbage = Entry {
        log_id: log_id(1, 3),
        payload: EntryPayload::Normal(EntryData {
            batch: vec![0xff, 0xff],
        }),
    };
    let results = sm.apply([garbage]).await?;
    let ops = decode_results(&results[0].results);
    assert_eq!(ops.len(), 1);
    assert!(rejection(&ops[0]).is_some(), "{ops:?}");
    let (index, after) = sm.snapshot_now();
    assert_eq!(index, 3);
    assert_eq!(after.applied_index, 3);
    assert_eq!(after.routes, before.routes);
    assert_eq!(*applied.borrow_and_update(), 3);
    Ok(())
}

#[tokio::test]
async fn installed_snapshot_replaces_tables_and_survives_reopen() -> TestResult {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let (_leader_log, mut leader) = open(leader_dir.path()).expect("open");
    leader.apply(five_entries()).await?;
    let snapshot = leader.get_snapshot_builder().await.build_snapshot().await?;

    let want = leader.snapshot_now();
    {
        let (_log, mut follower) = open(follower_dir.path()).expect("open");
        follower.apply([normal(1, 1, vec![node_up("n7")])]).await?;
        let mut applied = follower.subscribe_applied();
        let mut received = follower.begin_receiving_snapshot().await?;
        *received = *snapshot.snapshot;
        follower.install_snapshot(&snapshot.meta, received).await?;
        assert_eq!(follower.snapshot_installs(), 1);
        assert_eq!(*applied.borrow_and_update(), 5);
        assert_eq!(follower.snapshot_now(), want);
        assert!(
            follower.read(|t| t.node("n7").is_none()),
            "old state replaced"
        );
    }
    let (_log, mut follower) = open(follower_dir.path()).expect("reopen");
    assert_eq!(follower.snapshot_now(), want);
    let membership: StoredMembership = follower.applied_state().await?.1;
    assert_eq!(membership.log_id(), &Some(log_id(1, 2)));
    let current = follower.get_current_snapshot().await?.expect("persisted");
    assert_eq!(current.meta, snapshot.meta);
    Ok(())
}

#[tokio::test]
async fn an_older_snapshot_never_replaces_a_newer_persisted_one() -> TestResult {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut leader) = open(leader_dir.path()).expect("open");
    let entries = five_entries();
    leader.apply(entries[..3].to_vec()).await?;
    let older = leader.get_snapshot_builder().await.build_snapshot().await?;
    leader.apply(entries[3..].to_vec()).await?;
    let newer = leader.get_snapshot_builder().await.build_snapshot().await?;
    assert_eq!(older.meta.last_log_id, Some(log_id(1, 3)));
    assert_eq!(newer.meta.last_log_id, Some(log_id(2, 5)));

    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open(dir.path()).expect("open");
    sm.install_snapshot(&newer.meta, newer.snapshot).await?;
    sm.install_snapshot(&older.meta, older.snapshot).await?;
    let current = sm.get_current_snapshot().await?.expect("persisted");
    assert_eq!(current.meta, newer.meta);
    Ok(())
}
