//! [`LogStore`]: openraft's `RaftLogStorage` and `RaftLogReader` on the redb tables `log`
//! (index → encoded entry) and `meta` (vote, committed log id, last purged log id), plus the
//! read API of the Follow service ([`LogStore::read_entries`], [`LogStore::first_index`],
//! [`LogStore::last_purged`]).
//!
//! Owns the log rows and the meta rows. Every write is one durable transaction
//! ([`write_txn`]), except the committed log id, a hint written without fsync that reaches
//! the disk with the next one; `append` reports the flush to openraft only after the commit
//! returned.
//! Reads use their own redb read transaction, so the Follow service may read while openraft
//! writes. It must never apply an entry (that is the state machine's job), never keep an
//! entry in memory, and never panic on a stored row.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use meshmq_proto::raft;
use meshmq_shared::metrics as m;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageIOError,
};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{DbError, LOG, META, decode, malformed, write_txn, write_txn_with};
use crate::raft::convert;
use crate::raft::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// `meta` key of the saved vote.
const VOTE: &str = "vote";
/// `meta` key of the saved committed log id.
const COMMITTED: &str = "committed";
/// `meta` key of the log id of the last purged entry.
const LAST_PURGED: &str = "last_purged";

/// The Raft log of this core; cheap to clone (an `Arc` to the shared database).
#[derive(Clone)]
pub struct LogStore {
    /// The database shared with the state machine.
    db: Arc<Database>,
}

/// Builds an openraft I/O error from what was being done and the cause.
fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: DbError) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

// The Follow-service reads return openraft's `StorageError`, like every other read of this
// store; it is large, but these calls are per batch of entries, not per entry.
#[allow(clippy::result_large_err)]
impl LogStore {
    /// Wraps the shared database and publishes the current log size.
    pub(super) fn new(db: Arc<Database>) -> Result<Self, DbError> {
        let store = Self { db };
        let txn = store.db.begin_read().map_err(DbError::redb)?;
        let table = txn.open_table(LOG).map_err(DbError::redb)?;
        record_log_size(log_size(&table)?);
        Ok(store)
    }

    /// At most `max` entries with consecutive indexes starting exactly at `from`; stops at
    /// the end of the log or at a gap. Empty if `from` is not in the log (purged or not yet
    /// written): use [`first_index`](Self::first_index) to tell which.
    pub fn read_entries(&self, from: u64, max: usize) -> Result<Vec<Entry>, StorageError> {
        let mut entries = self
            .read_range(from.., max)
            .map_err(|e| io_err(ErrorSubject::LogIndex(from), ErrorVerb::Read, e))?;
        let consecutive = entries
            .iter()
            .zip(from..)
            .take_while(|(entry, want)| entry.log_id.index == *want)
            .count();
        entries.truncate(consecutive);
        Ok(entries)
    }

    /// Index of the first entry still in the log; `None` if the log is empty.
    pub fn first_index(&self) -> Result<Option<u64>, StorageError> {
        let read = || -> Result<Option<u64>, DbError> {
            let txn = self.db.begin_read().map_err(DbError::redb)?;
            let table = txn.open_table(LOG).map_err(DbError::redb)?;
            let first = table.first().map_err(DbError::redb)?;
            Ok(first.map(|(k, _)| k.value()))
        };
        read().map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    /// Log id of the last purged entry (everything up to it is gone); `None` if nothing was
    /// purged yet.
    pub fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        self.read_meta_log_id(LAST_PURGED)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    /// Decodes the entries whose index is in `range`, at most `max`, in index order.
    fn read_range(&self, range: impl RangeBounds<u64>, max: usize) -> Result<Vec<Entry>, DbError> {
        let txn = self.db.begin_read().map_err(DbError::redb)?;
        let table = txn.open_table(LOG).map_err(DbError::redb)?;
        let mut entries = Vec::new();
        for row in table.range(range).map_err(DbError::redb)?.take(max) {
            let (key, value) = row.map_err(DbError::redb)?;
            entries.push(decode_row(key.value(), value.value())?);
        }
        Ok(entries)
    }

    /// Reads a `meta` row holding a log id.
    fn read_meta_log_id(&self, key: &'static str) -> Result<Option<LogId>, DbError> {
        let txn = self.db.begin_read().map_err(DbError::redb)?;
        let table = txn.open_table(META).map_err(DbError::redb)?;
        let Some(row) = table.get(key).map_err(DbError::redb)? else {
            return Ok(None);
        };
        let id: raft::LogId = decode(|| format!("meta row {key}"), row.value())?;
        Ok(Some(convert::log_id_from_proto(&id)))
    }

    /// Log id of the last entry in the log, if any.
    fn last_log_id(&self) -> Result<Option<LogId>, DbError> {
        let txn = self.db.begin_read().map_err(DbError::redb)?;
        let table = txn.open_table(LOG).map_err(DbError::redb)?;
        let last = table.last().map_err(DbError::redb)?;
        last.map(|(key, value)| decode_row(key.value(), value.value()).map(|e| e.log_id))
            .transpose()
    }

    /// Writes (or, for `None`, deletes) a `meta` row, durably.
    async fn write_meta(&self, key: &'static str, value: Option<Vec<u8>>) -> Result<(), DbError> {
        self.write_meta_with(redb::Durability::Immediate, key, value)
            .await
    }

    /// [`write_meta`](Self::write_meta) with a chosen durability.
    async fn write_meta_with(
        &self,
        durability: redb::Durability,
        key: &'static str,
        value: Option<Vec<u8>>,
    ) -> Result<(), DbError> {
        write_txn_with(&self.db, durability, move |txn| {
            let mut table = txn.open_table(META).map_err(DbError::redb)?;
            match value {
                Some(bytes) => table.insert(key, bytes.as_slice()).map(drop),
                None => table.remove(key).map(drop),
            }
            .map_err(DbError::redb)
        })
        .await
    }

    /// Deletes the log rows in `range` in one durable transaction, also running `also` in it,
    /// and publishes the new log size.
    async fn delete_range<F>(&self, range: (Bound<u64>, Bound<u64>), also: F) -> Result<(), DbError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), DbError> + Send + 'static,
    {
        let size = write_txn(&self.db, move |txn| {
            also(txn)?;
            let mut table = txn.open_table(LOG).map_err(DbError::redb)?;
            table
                .retain_in(range, |_, _| false)
                .map_err(DbError::redb)?;
            log_size(&table)
        })
        .await?;
        record_log_size(size);
        Ok(())
    }
}

/// Decodes the `log` row at `index`; a row that does not decode, or whose log id does not
/// match its key, is an error.
fn decode_row(index: u64, bytes: &[u8]) -> Result<Entry, DbError> {
    let what = || format!("log row {index}");
    let entry: raft::Entry = decode(what, bytes)?;
    let entry = convert::entry_from_proto(entry).map_err(malformed(what))?;
    if entry.log_id.index != index {
        let source = convert::ConvertError(format!("holds index {}", entry.log_id.index));
        return Err(malformed(what)(source));
    }
    Ok(entry)
}

/// Number of entries in the log table (last index − first index + 1; 0 when empty).
fn log_size(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, DbError> {
    let first = table
        .first()
        .map_err(DbError::redb)?
        .map(|(k, _)| k.value());
    let last = table.last().map_err(DbError::redb)?.map(|(k, _)| k.value());
    Ok(match (first, last) {
        (Some(first), Some(last)) => last.saturating_sub(first).saturating_add(1),
        _ => 0,
    })
}

/// Publishes the log size gauge.
fn record_log_size(size: u64) {
    metrics::gauge!(m::RAFT_LOG_ENTRIES).set(size as f64);
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_range(range, usize::MAX)
            .map_err(|e| StorageIOError::read_logs(AnyError::new(&e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<LogState<TypeConfig>, DbError> {
            let last_purged_log_id = self.read_meta_log_id(LAST_PURGED)?;
            let last_log_id = self.last_log_id()?.or(last_purged_log_id);
            Ok(LogState {
                last_purged_log_id,
                last_log_id,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(AnyError::new(&e)).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = convert::vote_to_proto(vote).encode_to_vec();
        self.write_meta(VOTE, Some(bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let read = || -> Result<Option<Vote>, DbError> {
            let txn = self.db.begin_read().map_err(DbError::redb)?;
            let table = txn.open_table(META).map_err(DbError::redb)?;
            let Some(row) = table.get(VOTE).map_err(DbError::redb)? else {
                return Ok(None);
            };
            let what = || "meta row vote".to_owned();
            let vote: raft::Vote = decode(what, row.value())?;
            convert::vote_from_proto(Some(&vote))
                .map(Some)
                .map_err(malformed(what))
        };
        read().map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    /// Without an fsync: the committed index is a hint (openraft's "optionally persisted
    /// committed"). It reaches the disk with the next log append; after a crash that lost
    /// it, the state machine re-applies only up to the older hint and the rest once the
    /// leader commits again (the state machine is rebuilt from the snapshot and the log at
    /// start, so nothing applied is ever ahead of the log). One fsync per entry instead of two.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = committed.map(|id| convert::log_id_to_proto(&id).encode_to_vec());
        self.write_meta_with(redb::Durability::None, COMMITTED, bytes)
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta_log_id(COMMITTED)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, convert::entry_to_proto(&e).encode_to_vec()))
            .collect();
        let size = write_txn(&self.db, move |txn| {
            let mut table = txn.open_table(LOG).map_err(DbError::redb)?;
            for (index, bytes) in &rows {
                table
                    .insert(*index, bytes.as_slice())
                    .map_err(DbError::redb)?;
            }
            log_size(&table)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        record_log_size(size);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let range = (Bound::Included(log_id.index), Bound::Unbounded);
        self.delete_range(range, |_| Ok(()))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = convert::log_id_to_proto(&log_id).encode_to_vec();
        let save_purged = move |txn: &redb::WriteTransaction| {
            let mut meta = txn.open_table(META).map_err(DbError::redb)?;
            meta.insert(LAST_PURGED, bytes.as_slice())
                .map(drop)
                .map_err(DbError::redb)
        };
        let range = (Bound::Unbounded, Bound::Included(log_id.index));
        self.delete_range(range, save_purged)
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
