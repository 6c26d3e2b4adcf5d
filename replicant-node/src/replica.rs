//! The replicant's read replica of the cluster tables: a [`Tables`] built from a core's
//! snapshot and then the committed log tail, applied strictly in index order, plus a watch of
//! the applied index so a writer can wait until its own commit is visible here.
//!
//! It owns the local copy and the order rule (each entry is `applied + 1`; older ones are
//! duplicates after a core switch and are skipped; a hole is an error so the follower
//! restarts from `applied + 1`). It must never do I/O, never wait for the network while
//! holding the table lock, and never move the applied index backwards (a read that saw an
//! index keeps seeing at least that state).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshmq_proto::core::{FollowEntries, FollowFrame, FollowSnapshot, follow_frame::Kind};
use meshmq_proto::tables::Snapshot;
use meshmq_shared::metrics as m;
use meshmq_shared::tables::Tables;
use parking_lot::RwLock;
use tokio::sync::{broadcast, watch};

/// Why a frame could not be applied, or a wait ended without the wanted index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// An entry skipped ahead of the next index; the follower must restart from `expected`.
    #[error("log gap: expected index {expected}, got {got}")]
    Gap {
        /// The index the replica needs next (`applied + 1`).
        expected: u64,
        /// The index the frame carried.
        got: u64,
    },
    /// The frame is well-formed protobuf but not a valid follow frame (no kind, a snapshot
    /// without tables); the follower counts it and reconnects.
    #[error("malformed follow frame: {0}")]
    Malformed(&'static str),
    /// The wanted index was not applied before the timeout.
    #[error("replica lagging: index {wanted} not applied (applied {applied})")]
    Lagging {
        /// The index that was waited for.
        wanted: u64,
        /// The index applied when the wait gave up.
        applied: u64,
    },
}

/// Claims buffered for a slow receiver before it is told it lagged.
const CLAIM_FEED: usize = 16_384;

/// The local read replica; cheap to clone (all clones share one state).
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

/// The shared state behind every [`Replica`] clone.
struct Inner {
    /// The node whose registry projection the tables hold (`None`: every row).
    projected_for: Option<String>,
    /// The tables; readers take the read lock for the duration of one closure.
    tables: RwLock<Tables>,
    /// Highest log index applied (0: empty). Written only under the `tables` write lock, so
    /// a reader that sees index `i` here finds at least state `i` in `tables`.
    applied: watch::Sender<u64>,
    /// Snapshots installed since start (also exported as a metric; kept here for tests and
    /// health reporting).
    snapshot_installs: AtomicU64,
    /// Bumped after every snapshot install: the claims folded into a snapshot are not
    /// announced one by one, so the takeover watch rescans on it.
    installed: watch::Sender<u64>,
    /// Every applied `RegistryClaim` (client id, claiming node), for the node that must close
    /// a connection whose client id was claimed elsewhere. A lagging receiver is told so and
    /// rescans.
    claims: broadcast::Sender<ClaimSeen>,
    /// Every applied `BannedAdd`, and every snapshot install (which may bring bans), for the
    /// task that closes the live connections a new ban matches.
    bans: broadcast::Sender<BanSeen>,
}

/// A change of the `banned` table the replica applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanSeen {
    /// A `BannedAdd` applied with this row.
    Added(meshmq_shared::tables::BannedRow),
    /// A snapshot replaced the tables: any ban may be new.
    Reloaded,
}

/// Ban changes buffered for a slow receiver before it is told it lagged (it rescans).
const BAN_FEED: usize = 1024;

/// A `RegistryClaim` the replica applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimSeen {
    /// The claimed client id.
    pub client_id: String,
    /// The node that claimed it.
    pub node: String,
    /// The registry generation the claim created.
    pub generation: u64,
    /// Whether the new connection asked for a clean start.
    pub clean_start: bool,
}

impl Replica {
    /// An empty replica at index 0 that will hold every row of every table.
    pub fn new() -> Self {
        Self::with(Tables::new())
    }

    /// An empty replica at index 0 that will hold the registry projection of `node`
    /// (docs/roles.md): it asks cores for their notes with each entry and for projected
    /// snapshots.
    pub fn new_projected(node: &str) -> Self {
        Self::with(Tables::new_projected(node))
    }

    fn with(tables: Tables) -> Self {
        Self {
            inner: Arc::new(Inner {
                projected_for: tables.projected_for().map(str::to_owned),
                tables: RwLock::new(tables),
                applied: watch::Sender::new(0),
                snapshot_installs: AtomicU64::new(0),
                installed: watch::Sender::new(0),
                claims: broadcast::Sender::new(CLAIM_FEED),
                bans: broadcast::Sender::new(BAN_FEED),
            }),
        }
    }

    /// Runs `f` on the tables under the read lock. Keep `f` short: applying waits for it.
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.inner.tables.read())
    }

    /// The node whose registry projection this replica holds; `None` if it holds every row.
    pub fn projected_for(&self) -> Option<&str> {
        self.inner.projected_for.as_deref()
    }

    /// Highest log index applied locally (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// Every `RegistryClaim` applied from now on.
    pub fn subscribe_claims(&self) -> broadcast::Receiver<ClaimSeen> {
        self.inner.claims.subscribe()
    }

    /// Every `BannedAdd` applied (and snapshot installed) from now on.
    pub fn subscribe_bans(&self) -> broadcast::Receiver<BanSeen> {
        self.inner.bans.subscribe()
    }

    /// A receiver that wakes whenever the applied index moves.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.inner.applied.subscribe()
    }

    /// A receiver that wakes after every snapshot install (claims folded into a snapshot
    /// are not announced on [`subscribe_claims`](Self::subscribe_claims)).
    pub fn subscribe_installs(&self) -> watch::Receiver<u64> {
        self.inner.installed.subscribe()
    }

    /// Snapshots installed since this replica was created.
    pub fn snapshot_installs(&self) -> u64 {
        self.inner.snapshot_installs.load(Ordering::Relaxed)
    }

    /// Applies one frame of a core's follow stream.
    ///
    /// A snapshot replaces the tables (unless it is older than what is applied: that would
    /// move reads back in time, and the entries after it are then skipped as duplicates).
    /// Entries must continue at `applied + 1`; entries at or below `applied` are skipped; an
    /// entry without a batch only advances the index. A heartbeat changes nothing. On
    /// [`ReplicaError::Gap`] the entries before the hole stay applied.
    pub fn apply(&self, frame: FollowFrame) -> Result<(), ReplicaError> {
        match frame.kind {
            Some(Kind::Snapshot(s)) => self.install(s),
            Some(Kind::Entries(e)) => self.apply_entries(&e),
            Some(Kind::Heartbeat(_)) => Ok(()),
            // Assembled by the follow stream, which hands the whole snapshot to
            // `install_snapshot`; alone they are out of place.
            Some(Kind::SnapshotBegin(_) | Kind::SnapshotChunk(_) | Kind::SnapshotEnd(_)) => Err(
                ReplicaError::Malformed("streamed snapshot frame outside a snapshot stream"),
            ),
            // The follow stream ends on a refusal before applying anything.
            Some(Kind::Refused(_)) => Err(ReplicaError::Malformed("refusal frame applied")),
            None => Err(ReplicaError::Malformed("frame without a kind")),
        }
    }

    /// Waits until `index` is applied locally, at most `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ReplicaError> {
        let mut rx = self.inner.applied.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|applied| *applied >= index)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            // The sender lives in `self`, so `Ok(Err(_))` cannot happen; treat it as a lag.
            Ok(Err(_)) | Err(_) => Err(ReplicaError::Lagging {
                wanted: index,
                applied: self.applied_index(),
            }),
        }
    }

    fn announce_claims(
        &self,
        batch: &meshmq_proto::tables::Batch,
        results: &[meshmq_proto::tables::OpResult],
    ) {
        use meshmq_proto::tables::{op::Kind, op_result::Outcome};
        if self.inner.claims.receiver_count() == 0 {
            return;
        }
        for (op, result) in batch.ops.iter().zip(results) {
            if let (Some(Kind::RegistryClaim(c)), Some(Outcome::Claimed(claimed))) =
                (&op.kind, &result.outcome)
            {
                let _ = self.inner.claims.send(ClaimSeen {
                    client_id: c.client_id.clone(),
                    node: c.node.clone(),
                    generation: claimed.generation,
                    clean_start: c.clean_start,
                });
            }
        }
    }

    fn announce_bans(
        &self,
        batch: &meshmq_proto::tables::Batch,
        results: &[meshmq_proto::tables::OpResult],
    ) {
        use meshmq_proto::tables::{op::Kind, op_result::Outcome};
        if self.inner.bans.receiver_count() == 0 {
            return;
        }
        for (op, result) in batch.ops.iter().zip(results) {
            if let (Some(Kind::BannedAdd(add)), Some(Outcome::Ok(_))) = (&op.kind, &result.outcome)
                && let Some(row) = &add.row
            {
                let _ = self.inner.bans.send(BanSeen::Added(row.clone()));
            }
        }
    }

    /// Replaces the tables with a one-frame snapshot at `s.index`.
    fn install(&self, s: FollowSnapshot) -> Result<(), ReplicaError> {
        let Some(snapshot) = s.tables else {
            return Err(ReplicaError::Malformed("snapshot without tables"));
        };
        self.install_snapshot(s.index, &snapshot);
        Ok(())
    }

    /// Replaces the tables with `snapshot` at `index` (a whole snapshot: the follow stream
    /// assembles a streamed one first), unless it is older than what is applied: that would
    /// move reads back in time, and the entries after it are then skipped as duplicates.
    pub fn install_snapshot(&self, index: u64, snapshot: &Snapshot) {
        // Built outside the lock: readers are not blocked while the indexes are rebuilt.
        let tables = match &self.inner.projected_for {
            Some(node) => Tables::from_projection(snapshot, node),
            None => Tables::from_snapshot(snapshot),
        };
        let mut guard = self.inner.tables.write();
        if index < self.applied_index() {
            tracing::debug!(
                snapshot = index,
                applied = self.applied_index(),
                "ignoring a snapshot older than the replica"
            );
            return;
        }
        *guard = tables;
        self.inner.applied.send_replace(index);
        drop(guard);
        let installs = self.inner.snapshot_installs.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.installed.send_replace(installs);
        let _ = self.inner.bans.send(BanSeen::Reloaded);
        metrics::counter!(m::REPLICA_SNAPSHOT_INSTALLS_TOTAL).increment(1);
        metrics::gauge!(m::REPLICA_APPLIED_INDEX).set(index as f64);
        tracing::info!(index, "replica installed a snapshot");
    }

    /// Applies a batch of entries in order; see [`apply`](Self::apply).
    fn apply_entries(&self, frame: &FollowEntries) -> Result<(), ReplicaError> {
        let mut guard = self.inner.tables.write();
        let mut applied = self.applied_index();
        let mut result = Ok(());
        for entry in &frame.entries {
            if entry.index <= applied {
                continue; // already applied (a resend after a core switch)
            }
            if entry.index != applied + 1 {
                result = Err(ReplicaError::Gap {
                    expected: applied + 1,
                    got: entry.index,
                });
                break;
            }
            if let Some(batch) = &entry.batch {
                let results = if self.inner.projected_for.is_some() {
                    // The core's verdicts: this replica lacks the rows to decide.
                    let Some(notes) = &entry.notes else {
                        result = Err(ReplicaError::Malformed("entry without notes"));
                        break;
                    };
                    match guard.apply_projected(entry.index, batch, notes) {
                        Ok(results) => results,
                        Err(e) => {
                            tracing::warn!(index = entry.index, error = %e, "notes do not fit their entry");
                            result = Err(ReplicaError::Malformed("notes do not fit their entry"));
                            break;
                        }
                    }
                } else {
                    guard.apply_batch(entry.index, batch)
                };
                self.announce_claims(batch, &results);
                self.announce_bans(batch, &results);
            }
            applied = entry.index;
        }
        if applied != self.applied_index() {
            self.inner.applied.send_replace(applied);
            metrics::gauge!(m::REPLICA_APPLIED_INDEX).set(applied as f64);
        }
        drop(guard);
        result
    }
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("applied_index", &self.applied_index())
            .field("snapshot_installs", &self.snapshot_installs())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmq_proto::core::{FollowHeartbeat, LogEntry};
    use meshmq_proto::tables::{Batch, NodeRole, NodeUp, Op, RouteAdd, op};

    fn node_up(node: &str) -> Batch {
        let up = NodeUp {
            node: node.into(),
            addr: "127.0.0.1:1883".into(),
            role: NodeRole::Replicant as i32,
            incarnation: 1,
            peer_addr: String::new(),
            wire: None,
        };
        Batch {
            ops: vec![Op {
                kind: Some(op::Kind::NodeUp(up)),
            }],
        }
    }

    fn route(filter: &str) -> Batch {
        let add = RouteAdd {
            filter: filter.into(),
            node: "r1".into(),
            seq: 0,
        };
        Batch {
            ops: vec![Op {
                kind: Some(op::Kind::RouteAdd(add)),
            }],
        }
    }

    fn entries(list: &[(u64, Option<Batch>)]) -> FollowFrame {
        let entries = list
            .iter()
            .map(|(index, batch)| LogEntry {
                index: *index,
                batch: batch.clone(),
                notes: None,
            })
            .collect();
        FollowFrame {
            wire: None,
            kind: Some(Kind::Entries(FollowEntries {
                entries,
                commit_index: 0,
            })),
        }
    }

    #[test]
    fn entries_apply_in_order_and_duplicates_are_skipped() {
        let r = Replica::new();
        r.apply(entries(&[
            (1, Some(node_up("r1"))),
            (2, None),
            (3, Some(route("a/#"))),
        ]))
        .expect("apply");
        assert_eq!(r.applied_index(), 3);
        // A resend after a switch: 2 and 3 are skipped, 4 applies.
        r.apply(entries(&[
            (2, None),
            (3, Some(route("a/#"))),
            (4, Some(route("b"))),
        ]))
        .expect("apply");
        assert_eq!(r.applied_index(), 4);
        assert_eq!(r.read(|t| t.route_count()), 2);
    }

    #[test]
    fn a_gap_keeps_what_came_before_it() {
        let r = Replica::new();
        let err = r
            .apply(entries(&[(1, Some(node_up("r1"))), (3, Some(route("x")))]))
            .expect_err("gap");
        assert_eq!(
            err,
            ReplicaError::Gap {
                expected: 2,
                got: 3
            }
        );
        assert_eq!(r.applied_index(), 1);
        assert_eq!(r.read(|t| t.route_count()), 0);
    }

    #[test]
    fn snapshots_replace_and_never_go_back() {
        let mut source = Tables::new();
        source.apply_batch(1, &node_up("r1"));
        source.apply_batch(2, &route("s/+"));
        let snap = |index| FollowFrame {
            wire: None,
            kind: Some(Kind::Snapshot(FollowSnapshot {
                index,
                tables: Some(source.snapshot()),
            })),
        };
        let r = Replica::new();
        r.apply(snap(2)).expect("install");
        assert_eq!(r.applied_index(), 2);
        assert_eq!(r.snapshot_installs(), 1);
        r.read(|t| assert_eq!(*t, source));
        r.apply(entries(&[(3, Some(route("t")))])).expect("apply");
        r.apply(snap(2)).expect("older snapshot is ignored");
        assert_eq!(r.applied_index(), 3);
        assert_eq!(r.snapshot_installs(), 1);
        assert_eq!(r.read(|t| t.route_count()), 2);
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let r = Replica::new();
        assert!(matches!(
            r.apply(FollowFrame {
                kind: None,
                wire: None,
            }),
            Err(ReplicaError::Malformed(_))
        ));
        let no_tables = FollowFrame {
            wire: None,
            kind: Some(Kind::Snapshot(FollowSnapshot {
                index: 5,
                tables: None,
            })),
        };
        assert!(matches!(
            r.apply(no_tables),
            Err(ReplicaError::Malformed(_))
        ));
        let hb = FollowFrame {
            wire: None,
            kind: Some(Kind::Heartbeat(FollowHeartbeat { commit_index: 9 })),
        };
        r.apply(hb).expect("heartbeat");
        assert_eq!(r.applied_index(), 0);
    }

    #[test]
    fn applied_bans_and_snapshots_are_announced_refused_ones_are_not() {
        use meshmq_proto::tables::{BannedAdd, BannedAs, BannedRow};
        let r = Replica::new();
        let mut bans = r.subscribe_bans();
        let row = BannedRow {
            kind: BannedAs::Clientid as i32,
            who: "c".into(),
            ..BannedRow::default()
        };
        let add = |row: &BannedRow| Batch {
            ops: vec![Op {
                kind: Some(op::Kind::BannedAdd(BannedAdd {
                    row: Some(row.clone()),
                    now_s: 1,
                })),
            }],
        };
        // The second add of the same ban is refused (already in force): not announced.
        r.apply(entries(&[(1, Some(add(&row))), (2, Some(add(&row)))]))
            .expect("apply");
        assert_eq!(bans.try_recv(), Ok(BanSeen::Added(row)));
        assert!(bans.try_recv().is_err(), "a refused add is not announced");
        let snap = FollowFrame {
            wire: None,
            kind: Some(Kind::Snapshot(FollowSnapshot {
                index: 5,
                tables: Some(Tables::new().snapshot()),
            })),
        };
        r.apply(snap).expect("install");
        assert_eq!(bans.try_recv(), Ok(BanSeen::Reloaded));
    }

    #[tokio::test]
    async fn wait_applied_wakes_on_apply_and_times_out_otherwise() {
        let r = Replica::new();
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move { r.wait_applied(2, Duration::from_secs(10)).await })
        };
        r.apply(entries(&[(1, None), (2, None)])).expect("apply");
        assert_eq!(waiter.await.expect("join"), Ok(()));
        let lag = r.wait_applied(3, Duration::from_millis(20)).await;
        assert_eq!(
            lag,
            Err(ReplicaError::Lagging {
                wanted: 3,
                applied: 2
            })
        );
    }
}
