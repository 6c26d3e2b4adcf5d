//! The persisted Raft snapshot: rows `meta` (an encoded `meshmq.raft.v1.SnapshotMeta`) and
//! `data` (an encoded `meshmq.tables.v1.Snapshot`, the bytes openraft ships to followers) of
//! the redb table `snapshot`.
//!
//! Owns reading and writing those two rows, always together in one durable transaction so
//! that the meta never describes other data. It must never decode the tables (the state
//! machine does) and never keep a copy in memory.

use std::sync::Arc;

use meshmq_proto::raft;
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable};

use super::{DbError, SNAPSHOT, decode, malformed, write_txn};
use crate::raft::convert;
use crate::raft::types::SnapshotMeta;

/// Key of the meta row.
const META_KEY: &str = "meta";
/// Key of the data row.
const DATA_KEY: &str = "data";

/// The snapshot as stored: its metadata and the encoded tables.
pub(super) struct StoredSnapshot {
    /// Last log id and membership the snapshot covers, and its id.
    pub(super) meta: SnapshotMeta,
    /// An encoded `meshmq.tables.v1.Snapshot`.
    pub(super) data: Vec<u8>,
}

/// The persisted snapshot, if one was ever saved. A meta row without its data row (or the
/// reverse) is corrupt.
pub(super) fn load(db: &Database) -> Result<Option<StoredSnapshot>, DbError> {
    let txn = db.begin_read().map_err(DbError::redb)?;
    let table = txn.open_table(SNAPSHOT).map_err(DbError::redb)?;
    let meta = table.get(META_KEY).map_err(DbError::redb)?;
    let data = table.get(DATA_KEY).map_err(DbError::redb)?;
    let what = || "snapshot meta".to_owned();
    let (meta, data) = match (meta, data) {
        (None, None) => return Ok(None),
        (Some(meta), Some(data)) => (meta, data),
        _ => {
            let source = convert::ConvertError("meta and data rows do not come together".into());
            return Err(malformed(what)(source));
        }
    };
    let meta: raft::SnapshotMeta = decode(what, meta.value())?;
    let meta = convert::snapshot_meta_from_proto(Some(&meta)).map_err(malformed(what))?;
    Ok(Some(StoredSnapshot {
        meta,
        data: data.value().to_vec(),
    }))
}

/// Replaces the persisted snapshot with `meta` and `data` (one durable transaction) and
/// hands `data` back. A persisted snapshot that covers more of the log is kept: a build that
/// finishes after a newer snapshot was installed must not bring the old state back (the log
/// before the newer one may already be purged).
pub(super) async fn save(
    db: &Arc<Database>,
    meta: &SnapshotMeta,
    data: Vec<u8>,
) -> Result<Vec<u8>, DbError> {
    let last = meta.last_log_id;
    let meta = convert::snapshot_meta_to_proto(meta).encode_to_vec();
    write_txn(db, move |txn| {
        let mut table = txn.open_table(SNAPSHOT).map_err(DbError::redb)?;
        let persisted = match table.get(META_KEY).map_err(DbError::redb)? {
            // An unreadable meta row is replaced.
            Some(row) => raft::SnapshotMeta::decode(row.value()).ok(),
            None => None,
        };
        let persisted_last =
            persisted.and_then(|m| m.last_log_id.map(|id| convert::log_id_from_proto(&id)));
        if persisted_last.is_some() && persisted_last > last {
            tracing::warn!(?persisted_last, ?last, "older raft snapshot not persisted");
            return Ok(data);
        }
        table
            .insert(META_KEY, meta.as_slice())
            .map_err(DbError::redb)?;
        table
            .insert(DATA_KEY, data.as_slice())
            .map_err(DbError::redb)?;
        drop(table);
        Ok(data)
    })
    .await
}
