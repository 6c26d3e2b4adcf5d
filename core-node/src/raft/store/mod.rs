//! The durable Raft storage of a core: one redb file `<dir>/core.redb` shared by the
//! [`LogStore`] (openraft's `RaftLogStorage`: log, vote, committed id, purge point) and the
//! [`StateMachineStore`] (openraft's `RaftStateMachine`: the cluster tables in memory, their
//! last snapshot on disk).
//!
//! This module owns the file layout (tables `log`, `meta`, `snapshot`; every row a protobuf
//! message, see [`convert`](super::convert)), opening it, and the one way writes happen:
//! a redb write transaction committed with `Durability::Immediate` (fsync; only the
//! committed-index hint uses `Durability::None`) on a blocking thread, so that a write never stalls the async runtime and is on disk when its future
//! resolves. It must never hold a lock across an `.await`, never panic on a stored row (a
//! row that does not decode is a [`DbError`], reported to openraft as a `StorageError` that
//! says what was being read), and never implement a table rule (those are
//! `meshmq_shared::tables`).

mod log_store;
pub mod notes_window;
mod snapshot;
mod state_machine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, TableDefinition};

pub use log_store::LogStore;
pub use state_machine::{BuildHook, StateMachineStore};

use super::convert::ConvertError;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "core.redb";

/// `log`: log index → encoded `meshmq.raft.v1.Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `meta`: key (`vote`, `committed`, `last_purged`) → encoded `Vote` / `LogId`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `snapshot`: `meta` → encoded `meshmq.raft.v1.SnapshotMeta`, `data` → encoded
/// `meshmq.tables.v1.Snapshot`; both written in one transaction, or neither present.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data dir {dir}: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// redb could not open or create the database file.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: redb::DatabaseError,
    },
    /// Creating the tables or loading the persisted snapshot failed.
    #[error("cannot load {path}: {source}")]
    Load {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: DbError,
    },
}

/// A failed database operation or a stored row that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// redb failed (I/O, transaction, commit, table).
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// The blocking task running the transaction panicked or was cancelled.
    #[error("storage task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A stored row is not valid protobuf.
    #[error("corrupt {what}: {source}")]
    Decode {
        /// Which row.
        what: String,
        /// prost's error.
        #[source]
        source: prost::DecodeError,
    },
    /// A stored row decodes but is not a valid openraft value.
    #[error("corrupt {what}: {source}")]
    Malformed {
        /// Which row.
        what: String,
        /// What is wrong with it.
        #[source]
        source: ConvertError,
    },
}

impl DbError {
    /// Wraps any redb error (they all convert into `redb::Error`).
    fn redb(e: impl Into<redb::Error>) -> Self {
        Self::Redb(e.into())
    }
}

/// redb page cache of a core's store.
const CACHE_BYTES: usize = 32 << 20;

/// Opens (creating it and its directory if needed) `<dir>/core.redb` and returns the two
/// stores that share it. The state machine starts from the persisted snapshot, if any;
/// openraft then re-applies the committed log entries after it.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        dir: dir.to_owned(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    // redb's page cache defaults to 1 GiB and keeps what every commit wrote: bounded here so
    // a core's memory does not grow with the number of writes (the log is read back rarely:
    // by lagging followers and replicants, which mostly read recent entries).
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(&path)
        .map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
    let db = Arc::new(db);
    let load = |source| StoreError::Load {
        path: path.clone(),
        source,
    };
    create_tables(&db).map_err(load)?;
    let log = LogStore::new(Arc::clone(&db)).map_err(load)?;
    let sm = StateMachineStore::load(db).map_err(load)?;
    Ok((log, sm))
}

/// Creates the three tables so that read transactions can always open them.
fn create_tables(db: &Database) -> Result<(), DbError> {
    let txn = db.begin_write().map_err(DbError::redb)?;
    txn.open_table(LOG).map_err(DbError::redb)?;
    txn.open_table(META).map_err(DbError::redb)?;
    txn.open_table(SNAPSHOT).map_err(DbError::redb)?;
    txn.commit().map_err(DbError::redb)
}

/// Runs `f` in one write transaction on a blocking thread and commits it durably (redb's
/// default `Durability::Immediate`: fsync before `commit` returns). Nothing is written if
/// `f` fails.
async fn write_txn<T, F>(db: &Arc<Database>, f: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&redb::WriteTransaction) -> Result<T, DbError> + Send + 'static,
{
    write_txn_with(db, redb::Durability::Immediate, f).await
}

/// [`write_txn`] with a chosen durability. `Durability::None` writes without an fsync: the
/// change is visible at once and reaches the disk with the next durable commit (the next
/// log append); only for what may be lost in a crash (the committed-index hint).
async fn write_txn_with<T, F>(
    db: &Arc<Database>,
    durability: redb::Durability,
    f: F,
) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&redb::WriteTransaction) -> Result<T, DbError> + Send + 'static,
{
    let db = Arc::clone(db);
    tokio::task::spawn_blocking(move || {
        let mut txn = db.begin_write().map_err(DbError::redb)?;
        txn.set_durability(durability).map_err(DbError::redb)?;
        let out = f(&txn)?;
        txn.commit().map_err(DbError::redb)?;
        Ok(out)
    })
    .await?
}

/// Decodes a stored protobuf row, naming it in the error.
fn decode<M: prost::Message + Default>(
    what: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<M, DbError> {
    M::decode(bytes).map_err(|source| DbError::Decode {
        what: what(),
        source,
    })
}

/// Wraps a conversion error of a stored row, naming the row.
fn malformed(what: impl FnOnce() -> String) -> impl FnOnce(ConvertError) -> DbError {
    move |source| DbError::Malformed {
        what: what(),
        source,
    }
}
