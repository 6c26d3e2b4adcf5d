//! A table snapshot streamed in bounded chunks on a `Follow` stream: [`split`] cuts a
//! [`Snapshot`] into chunks of at most a byte bound (a row larger than the bound goes alone in
//! its chunk), and [`Staging`] assembles the chunks on the receiving side, checking them
//! against what `FollowSnapshotBegin` announced, and hands the whole snapshot out only at a
//! matching `FollowSnapshotEnd`.
//!
//! It owns the chunk layout (rows in table order, the scalar fields in the first chunk) and
//! the receiver's checks. It never does I/O and never panics on what a peer sends: every
//! inconsistency is a [`StagingError`].

use meshmq_proto::core::{FollowSnapshotBegin, FollowSnapshotChunk, FollowSnapshotEnd};
use meshmq_proto::tables::Snapshot;
use prost::Message;

use crate::tables::{SnapshotSource, Table};

/// Default byte bound of one snapshot chunk (and of one `FollowEntries` frame): 4 MiB.
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

/// A snapshot cut into chunks, with the totals a `FollowSnapshotBegin` announces.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunks {
    /// The chunks in order; each `rows` part of a `FollowSnapshotChunk`.
    pub chunks: Vec<Snapshot>,
    /// Table rows in all chunks.
    pub rows: u64,
    /// Sum of the chunks' encoded lengths.
    pub bytes: u64,
}

impl Chunks {
    /// The `FollowSnapshotBegin` of this snapshot at `index`.
    pub fn begin(&self, index: u64) -> FollowSnapshotBegin {
        FollowSnapshotBegin {
            index,
            rows: self.rows,
            bytes: self.bytes,
            chunks: self.chunks.len() as u64,
        }
    }

    /// The `FollowSnapshotEnd` of this snapshot at `index`.
    pub fn end(&self, index: u64) -> FollowSnapshotEnd {
        FollowSnapshotEnd {
            index,
            rows: self.rows,
            bytes: self.bytes,
            chunks: self.chunks.len() as u64,
        }
    }
}

/// Encoded length of one row as a field of a `Snapshot` (every field tag is below 16: one
/// byte of key).
fn row_len<T: Message>(row: &T) -> usize {
    let len = row.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Fills chunks row by row.
struct Splitter {
    max: usize,
    done: Vec<Snapshot>,
    current: Snapshot,
    current_bytes: usize,
    rows: u64,
    bytes: u64,
}

impl Splitter {
    fn push<T: Message>(&mut self, row: T, field: fn(&mut Snapshot) -> &mut Vec<T>) {
        let len = row_len(&row);
        if self.current_bytes > 0 && self.current_bytes + len > self.max {
            self.flush();
        }
        field(&mut self.current).push(row);
        self.current_bytes += len;
        self.rows += 1;
    }

    fn flush(&mut self) {
        let chunk = std::mem::take(&mut self.current);
        self.bytes += chunk.encoded_len() as u64;
        self.done.push(chunk);
        self.current_bytes = 0;
    }
}

/// Cuts `snapshot` into chunks of at most `max_bytes` encoded bytes each (at least one row per
/// chunk: a row larger than the bound is alone in its chunk). Rows keep their table order;
/// the first chunk carries the scalar fields. An empty snapshot gives one chunk.
pub fn split(snapshot: Snapshot, max_bytes: usize) -> Chunks {
    let (index, epoch) = (snapshot.applied_index, snapshot.authz_epoch);
    split_parts(index, epoch, std::iter::once(snapshot), max_bytes)
}

/// [`split`] of `source.snapshot()`, the same chunks, built one table at a time (the rows of
/// a table are cloned from the source just before they are cut).
pub fn split_source(source: &SnapshotSource, max_bytes: usize) -> Chunks {
    let tables = [
        Table::Nodes,
        Table::Registry,
        Table::Subscriptions,
        Table::Routes,
        Table::Shared,
        Table::Retained,
        Table::AuthUsers,
        Table::Banned,
        Table::AuthzRules,
        Table::Settings,
    ];
    let parts = tables.into_iter().map(|t| source.table(t));
    split_parts(
        source.applied_index(),
        source.authz_epoch(),
        parts,
        max_bytes,
    )
}

/// Cuts the rows of `parts`, in order, into chunks; the first carries the scalars (their
/// values in `parts` are ignored).
fn split_parts(
    applied_index: u64,
    authz_epoch: u64,
    parts: impl IntoIterator<Item = Snapshot>,
    max_bytes: usize,
) -> Chunks {
    let first = Snapshot {
        applied_index,
        authz_epoch,
        ..Snapshot::default()
    };
    let mut s = Splitter {
        max: max_bytes.max(1),
        current_bytes: first.encoded_len(),
        current: first,
        done: Vec::new(),
        rows: 0,
        bytes: 0,
    };
    macro_rules! rows {
        ($snapshot:ident: $($field:ident),*) => {$(
            for row in std::mem::take(&mut $snapshot.$field) {
                s.push(row, |c| &mut c.$field);
            }
        )*};
    }
    for mut part in parts {
        rows!(part: nodes, registry, subscriptions, routes, shared, retained, auth_users, banned, authz_rules, settings);
    }
    s.flush();
    Chunks {
        chunks: s.done,
        rows: s.rows,
        bytes: s.bytes,
    }
}

/// Rows of a chunk (every repeated field).
fn count_rows(s: &Snapshot) -> u64 {
    (s.nodes.len()
        + s.registry.len()
        + s.subscriptions.len()
        + s.routes.len()
        + s.shared.len()
        + s.retained.len()
        + s.auth_users.len()
        + s.banned.len()
        + s.authz_rules.len()
        + s.settings.len()) as u64
}

/// Why a streamed snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StagingError {
    /// The Begin announced more bytes than this receiver accepts.
    #[error("snapshot of {announced} bytes is over the maximum of {max}")]
    TooLarge {
        /// Bytes announced.
        announced: u64,
        /// The receiver's maximum.
        max: u64,
    },
    /// A chunk or End does not belong to this snapshot, comes out of order, or the chunks
    /// carry more rows, bytes or chunks than announced; or the End's counts differ from what
    /// arrived.
    #[error("inconsistent snapshot stream: {0}")]
    Inconsistent(String),
}

impl StagingError {
    /// A short fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Inconsistent(_) => "inconsistent",
        }
    }
}

/// A streamed snapshot being received: the chunks so far, assembled into one [`Snapshot`]
/// apart from whatever the receiver serves from.
#[derive(Debug)]
pub struct Staging {
    begin: FollowSnapshotBegin,
    snapshot: Snapshot,
    rows: u64,
    bytes: u64,
    chunks: u64,
}

impl Staging {
    /// Starts receiving the snapshot `begin` announces; refused if it announces more than
    /// `max_bytes`.
    pub fn begin(begin: FollowSnapshotBegin, max_bytes: u64) -> Result<Self, StagingError> {
        if begin.bytes > max_bytes {
            return Err(StagingError::TooLarge {
                announced: begin.bytes,
                max: max_bytes,
            });
        }
        Ok(Self {
            begin,
            snapshot: Snapshot::default(),
            rows: 0,
            bytes: 0,
            chunks: 0,
        })
    }

    /// The snapshot's index.
    pub fn index(&self) -> u64 {
        self.begin.index
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds the next chunk; its rows and bytes are counted against the Begin's totals.
    pub fn absorb(&mut self, chunk: FollowSnapshotChunk) -> Result<(), StagingError> {
        let bad = |what: String| Err(StagingError::Inconsistent(what));
        if chunk.index != self.begin.index {
            return bad(format!(
                "chunk of snapshot {} inside snapshot {}",
                chunk.index, self.begin.index
            ));
        }
        if chunk.seq != self.chunks {
            return bad(format!("chunk {} where {} was due", chunk.seq, self.chunks));
        }
        let rows = chunk.rows.unwrap_or_default();
        let (n, len) = (count_rows(&rows), rows.encoded_len() as u64);
        self.chunks += 1;
        self.rows += n;
        self.bytes += len;
        if self.chunks > self.begin.chunks
            || self.rows > self.begin.rows
            || self.bytes > self.begin.bytes
        {
            return bad(format!(
                "{} chunks, {} rows, {} bytes received: over the announced {} chunks, {} rows, {} bytes",
                self.chunks,
                self.rows,
                self.bytes,
                self.begin.chunks,
                self.begin.rows,
                self.begin.bytes
            ));
        }
        let s = &mut self.snapshot;
        if rows.applied_index != 0 {
            s.applied_index = rows.applied_index;
        }
        if rows.authz_epoch != 0 {
            s.authz_epoch = rows.authz_epoch;
        }
        s.nodes.extend(rows.nodes);
        s.registry.extend(rows.registry);
        s.subscriptions.extend(rows.subscriptions);
        s.routes.extend(rows.routes);
        s.shared.extend(rows.shared);
        s.retained.extend(rows.retained);
        s.auth_users.extend(rows.auth_users);
        s.banned.extend(rows.banned);
        s.authz_rules.extend(rows.authz_rules);
        s.settings.extend(rows.settings);
        Ok(())
    }

    /// Completes the snapshot: the End must match the Begin and what arrived. Returns the
    /// index and the whole snapshot.
    pub fn finish(self, end: FollowSnapshotEnd) -> Result<(u64, Snapshot), StagingError> {
        let got = FollowSnapshotEnd {
            index: self.begin.index,
            rows: self.rows,
            bytes: self.bytes,
            chunks: self.chunks,
        };
        let announced = self.begin;
        let want = FollowSnapshotEnd {
            index: announced.index,
            rows: announced.rows,
            bytes: announced.bytes,
            chunks: announced.chunks,
        };
        if end != want || got != want {
            return Err(StagingError::Inconsistent(format!(
                "end {end:?}, begin {announced:?}, received {got:?}"
            )));
        }
        Ok((self.begin.index, self.snapshot))
    }
}

#[cfg(test)]
#[path = "follow_snapshot_tests.rs"]
mod tests;
