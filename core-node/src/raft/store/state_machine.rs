//! [`StateMachineStore`]: openraft's `RaftStateMachine` and `RaftSnapshotBuilder` over the
//! cluster [`Tables`], held in memory, with the last snapshot persisted in redb.
//!
//! Owns the tables of this core, the last applied log id, the last applied membership, the
//! applied-index watch and the snapshot format: a snapshot's bytes are an encoded
//! `meshmq.tables.v1.Snapshot` whose `applied_index` is the snapshot's last log index (its
//! Raft metadata is kept separately). State after a restart = the persisted snapshot, then
//! openraft re-applies the committed entries after it. Applying is total: a normal entry
//! whose batch does not decode gets one `Rejected` (`Invalid`) result on every node alike,
//! never a panic and never a diverging state.
//!
//! A snapshot holds the lock only to capture a [`SnapshotSource`] (O(number of tables): the
//! tables' row maps are persistent and shared); its rows are sorted and encoded, one table
//! at a time, on a blocking thread after the lock is released, while later entries keep
//! applying.
//!
//! It must never hold its lock across an `.await`, never do I/O or per-row work under the
//! lock, and never implement a table rule (that is `Tables::apply`).

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use meshmq_proto::tables::{self as pt, OpResult, RejectReason, Rejected, op_result::Outcome};
use meshmq_shared::metrics as m;
use meshmq_shared::tables::{SnapshotSource, Tables};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use parking_lot::RwLock;
use prost::Message;
use redb::Database;
use tokio::sync::watch;

use super::notes_window::{NotesGone, NotesWindow};
use super::{DbError, decode, snapshot};
use crate::raft::types::{
    Entry, EntryResult, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// A test hook run on the thread that builds a snapshot, after the rows were captured and the
/// lock released, before they are encoded (see [`StateMachineStore::set_build_hook`]).
pub type BuildHook = Arc<dyn Fn() + Send + Sync>;

/// The state machine of this core; cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct StateMachineStore {
    /// Shared with every clone.
    inner: Arc<Inner>,
}

/// What every clone shares.
struct Inner {
    /// The database shared with the log store (for the `snapshot` table).
    db: Arc<Database>,
    /// Tables, last applied id and membership, changed together.
    state: RwLock<Applied>,
    /// Last applied index, published after every apply and install.
    applied: watch::Sender<u64>,
    /// Snapshots installed from a leader since open.
    installs: AtomicU64,
    /// Snapshots built since open; makes snapshot ids unique.
    builds: AtomicU64,
    /// Run by every snapshot build once its rows are captured (tests only; `None` else).
    build_hook: parking_lot::Mutex<Option<BuildHook>>,
}

/// The applied state, kept consistent under one lock.
struct Applied {
    /// The cluster tables.
    tables: Tables,
    /// Log id of the last applied entry (`None` before the first).
    last_applied: Option<LogId>,
    /// The last membership applied, with the id of its entry.
    membership: StoredMembership,
    /// The notes of the entries applied most recently, for projected followers.
    notes: NotesWindow,
}

impl Applied {
    /// Index of the last applied entry (0 before the first).
    fn index(&self) -> u64 {
        self.last_applied.map_or(0, |id| id.index)
    }

    /// The tables' rows, captured in O(number of tables) and stamped with the last applied
    /// index (blank and membership entries advance it without touching the tables).
    fn source(&self) -> SnapshotSource {
        let mut source = self.tables.snapshot_source();
        source.set_applied_index(self.index());
        source
    }

    /// Applies one entry and returns its result.
    fn apply(&mut self, entry: Entry) -> EntryResult {
        let log_id = entry.log_id;
        self.last_applied = Some(log_id);
        match entry.payload {
            EntryPayload::Blank => EntryResult::default(),
            EntryPayload::Normal(data) => {
                let (results, notes) = apply_batch(&mut self.tables, log_id.index, &data.batch);
                if let Some(notes) = notes {
                    self.notes.push(log_id.index, notes);
                }
                EntryResult {
                    results: results.iter().map(Message::encode_to_vec).collect(),
                }
            }
            EntryPayload::Membership(membership) => {
                self.membership = StoredMembership::new(Some(log_id), membership);
                EntryResult::default()
            }
        }
    }
}

/// Decodes and applies one encoded batch, with its notes for projected followers; an
/// undecodable batch changes nothing and yields a single `Invalid` rejection and no notes
/// (deterministic: every node decodes the same bytes; followers get no batch for it).
fn apply_batch(
    tables: &mut Tables,
    index: u64,
    batch: &[u8],
) -> (Vec<OpResult>, Option<pt::EntryNotes>) {
    match pt::Batch::decode(batch) {
        Ok(batch) => {
            let (results, notes) = tables.apply_batch_noted(index, &batch);
            (results, Some(notes))
        }
        Err(e) => (
            vec![OpResult {
                outcome: Some(Outcome::Rejected(Rejected {
                    reason: RejectReason::Invalid as i32,
                    detail: format!("undecodable batch at log index {index}: {e}"),
                })),
            }],
            None,
        ),
    }
}

/// Records one snapshot build or install.
fn record_snapshot(kind: &'static str, started: Instant) {
    metrics::counter!(m::RAFT_SNAPSHOTS_TOTAL, "kind" => kind).increment(1);
    metrics::histogram!(m::RAFT_SNAPSHOT_SECONDS, "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}

impl StateMachineStore {
    /// Starts from the persisted snapshot, if any, else from empty tables.
    pub(super) fn load(db: Arc<Database>) -> Result<Self, DbError> {
        let state = match snapshot::load(&db)? {
            Some(stored) => {
                let tables: pt::Snapshot = decode(|| "snapshot data".to_owned(), &stored.data)?;
                Applied {
                    tables: Tables::from_snapshot(&tables),
                    notes: NotesWindow::after(stored.meta.last_log_id.map_or(0, |id| id.index)),
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership,
                }
            }
            None => Applied {
                tables: Tables::new(),
                last_applied: None,
                membership: StoredMembership::default(),
                notes: NotesWindow::after(0),
            },
        };
        let (applied, _) = watch::channel(state.index());
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                state: RwLock::new(state),
                applied,
                installs: AtomicU64::new(0),
                builds: AtomicU64::new(0),
                build_hook: parking_lot::Mutex::new(None),
            }),
        })
    }

    /// Runs `f` on the current tables under the read lock (keep it short; it blocks apply).
    pub fn read<R>(&self, f: impl FnOnce(&Tables) -> R) -> R {
        f(&self.inner.state.read().tables)
    }

    /// Index of the last applied entry (0 before the first).
    pub fn applied_index(&self) -> u64 {
        self.inner.state.read().index()
    }

    /// A receiver of the last applied index, updated after every apply and snapshot install.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.inner.applied.subscribe()
    }

    /// The notes of the applied entry at `index` for projected followers: `Ok(None)` for an
    /// entry without a batch; `Err` when they are older than this core keeps (or were never
    /// made here: before a restart or an installed snapshot).
    pub fn notes(&self, index: u64) -> Result<Option<Arc<pt::EntryNotes>>, NotesGone> {
        self.inner.state.read().notes.get(index)
    }

    /// [`notes`](Self::notes) of the entries `first..=last`, under one look at the lock.
    pub fn notes_range(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<Option<Arc<pt::EntryNotes>>>, NotesGone> {
        self.inner.state.read().notes.range(first, last)
    }

    /// The current rows and the index they reflect, captured together under the lock in
    /// O(number of tables); the source's `applied_index` is that index. Build its snapshot
    /// off the async runtime (`crate::background::run`): that costs what the rows cost.
    pub fn capture(&self) -> SnapshotSource {
        self.inner.state.read().source()
    }

    /// The current tables and the index they reflect: [`capture`](Self::capture), then the
    /// snapshot built after the lock is released, on this thread.
    pub fn snapshot_now(&self) -> (u64, pt::Snapshot) {
        let source = self.capture();
        (source.applied_index(), source.snapshot())
    }

    /// Sets (or clears) a hook that every later snapshot build runs on its building thread
    /// once the rows are captured and the lock released, before encoding them: lets a test
    /// hold a build in progress and check that entries keep applying meanwhile.
    #[doc(hidden)]
    pub fn set_build_hook(&self, hook: Option<BuildHook>) {
        *self.inner.build_hook.lock() = hook;
    }

    /// The hook set by [`set_build_hook`](Self::set_build_hook), for the other builders of
    /// captured rows (the follow stream's snapshot).
    #[doc(hidden)]
    pub fn build_hook(&self) -> Option<BuildHook> {
        self.inner.build_hook.lock().clone()
    }

    /// Snapshots installed from a leader since this store was opened.
    pub fn snapshot_installs(&self) -> u64 {
        self.inner.installs.load(Ordering::Relaxed)
    }

    /// A new snapshot id: last log id and a per-process sequence number.
    fn next_snapshot_id(&self, last: Option<&LogId>) -> String {
        let seq = self.inner.builds.fetch_add(1, Ordering::Relaxed) + 1;
        match last {
            Some(id) => format!(
                "{}-{}-{}-{seq}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => format!("none-{seq}"),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = Instant::now();
        let (source, last_log_id, last_membership) = {
            let state = self.inner.state.read();
            (state.source(), state.last_applied, state.membership.clone())
        };
        let held = started.elapsed();
        let meta = SnapshotMeta {
            snapshot_id: self.next_snapshot_id(last_log_id.as_ref()),
            last_log_id,
            last_membership,
        };
        // Sorting and encoding every row happens here, lock released, off the runtime and
        // below its priority (`background`).
        let hook = self.build_hook();
        let encoded = crate::background::run("raft-snapshot", move || {
            if let Some(hook) = hook {
                hook();
            }
            source.encode()
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        let data = snapshot::save(&self.inner.db, &meta, encoded)
            .await
            .map_err(|e| {
                StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
            })?;
        record_snapshot("build", started);
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            lock_held_us = held.as_micros() as u64,
            "raft snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.inner.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<EntryResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let (results, index) = {
            let mut state = self.inner.state.write();
            let results: Vec<EntryResult> = entries.into_iter().map(|e| state.apply(e)).collect();
            (results, state.index())
        };
        self.inner.applied.send_replace(index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let started = Instant::now();
        let signature = || Some(meta.signature());
        let bytes = snapshot.into_inner();
        // Decoding and indexing millions of rows takes seconds: off the runtime and below its
        // priority, so this core's other tasks (heartbeats, follow streams, Transact) keep
        // running meanwhile.
        let (bytes, tables) = crate::background::run("raft-snapshot-in", move || {
            let decoded = decode(|| "received snapshot".to_owned(), &bytes)
                .map(|t: pt::Snapshot| Tables::from_snapshot(&t));
            (bytes, decoded)
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(signature(), AnyError::new(&e)))?;
        let tables =
            tables.map_err(|e| StorageIOError::read_snapshot(signature(), AnyError::new(&e)))?;
        snapshot::save(&self.inner.db, meta, bytes)
            .await
            .map_err(|e| StorageIOError::write_snapshot(signature(), AnyError::new(&e)))?;
        let index = {
            let mut state = self.inner.state.write();
            *state = Applied {
                tables,
                notes: NotesWindow::after(meta.last_log_id.map_or(0, |id| id.index)),
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
            };
            state.index()
        };
        self.inner.applied.send_replace(index);
        self.inner.installs.fetch_add(1, Ordering::Relaxed);
        record_snapshot("install", started);
        tracing::info!(snapshot = %meta.snapshot_id, index, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = snapshot::load(&self.inner.db)
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
