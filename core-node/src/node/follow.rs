//! The `Follow` service: streams this core's committed log to a replicant from the index it
//! asks for, with a snapshot first when that index has been purged. Only entries at or below
//! this core's applied index are sent (they are committed: a state machine applies nothing
//! else), so any core, leader or not, can serve any follower, and because Raft indexes are
//! global a follower that switches core resumes where it was.
//!
//! A snapshot goes out as `FollowSnapshotBegin`, `FollowSnapshotChunk`s of at most
//! [`FollowLimits::chunk_bytes`] each, and `FollowSnapshotEnd`: the state machine's lock is
//! held only while the rows are captured (O(number of tables), see `SnapshotSource`), never
//! while they are sorted, encoded (on a blocking thread) or sent, and QUIC flow
//! control makes each write wait for the follower (a write stuck for [`WRITE_TIMEOUT`] ends
//! the stream). `FollowEntries` frames are bounded in bytes as well as in entries (an entry
//! over the byte bound goes alone).
//!
//! It never writes to the log or the state machine; it reads them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::raft::types::EntryPayload;
use meshmq_proto::core::{
    FollowEntries, FollowFrame, FollowHeartbeat, FollowRequest, FollowSnapshotChunk, LogEntry,
    follow_frame::Kind,
};
use meshmq_proto::tables::{Batch, EntryNotes};
use meshmq_shared::follow_snapshot::{self, DEFAULT_CHUNK_BYTES};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::frame::{self, FrameError};
use prost::Message;
use tracing::{debug, warn};

use super::CoreNode;
use super::follow_snapshot::Built;

/// Byte and count bounds of the frames a core sends on `Follow` streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowLimits {
    /// Most encoded bytes of table rows in one snapshot chunk (a row larger than this is
    /// alone in its chunk). Default 4 MiB.
    pub chunk_bytes: usize,
    /// Most encoded bytes of entries in one `FollowEntries` frame (an entry larger than this
    /// is alone in its frame). Default 4 MiB.
    pub entries_bytes: usize,
    /// Most entries in one `FollowEntries` frame. Default 1 000.
    pub entries_per_frame: usize,
}

impl Default for FollowLimits {
    fn default() -> Self {
        Self {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            entries_bytes: DEFAULT_CHUNK_BYTES,
            entries_per_frame: 1_000,
        }
    }
}

/// A heartbeat is sent when nothing was applied for this long. Frequent enough that a
/// follower can tell a dead core (no bytes for a second) from an idle one.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Largest `FollowEntries` frame with one entry a projected follower is sent: an entry whose
/// notes take it past this goes as a projected snapshot instead (the frame bound, less room
/// for the frame's other fields).
const MAX_ENTRY_FRAME: usize = frame::MAX_FRAME - 1024;
/// A frame write that takes longer than this ends the stream (the follower is stuck).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one follower until it goes away or the core shuts down.
pub async fn serve(
    core: &Arc<CoreNode>,
    req: FollowRequest,
    send: &mut quinn::SendStream,
) -> Result<(), FrameError> {
    core.followers.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(m::CORE_FOLLOWERS).increment(1.0);
    debug!(follower = %req.node, from = req.from_index, "follow started");
    let projected = req.projected.then_some(req.node.as_str());
    let result = stream(core, req.from_index.max(1), projected, send).await;
    core.followers.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!(m::CORE_FOLLOWERS).decrement(1.0);
    result
}

/// `projected`: the follower holds the registry projection of this node: its entries carry
/// the core's notes, and its snapshots are projected.
async fn stream(
    core: &Arc<CoreNode>,
    mut next: u64,
    projected: Option<&str>,
    send: &mut quinn::SendStream,
) -> Result<(), FrameError> {
    let mut applied_rx = core.sm.subscribe_applied();
    loop {
        if core.shutdown.is_cancelled() {
            return Ok(());
        }
        let applied = core.sm.applied_index();
        if next > applied {
            let changed = tokio::time::timeout(HEARTBEAT, applied_rx.changed()).await;
            if matches!(changed, Ok(Err(_))) {
                return Ok(()); // state machine gone: shutting down
            }
            if changed.is_err() {
                let hb = Kind::Heartbeat(FollowHeartbeat {
                    commit_index: applied,
                });
                write(send, hb).await?;
            }
            continue;
        }
        let limits = core.follow_limits;
        let per_frame = limits.entries_per_frame.max(1);
        let upto = applied.min(next + per_frame as u64 - 1);
        let wanted = (upto - next + 1) as usize;
        let entries = core.log.read_entries(next, wanted).unwrap_or_default();
        let noted = match projected {
            Some(node) => notes_for(core, &entries, node),
            None => Some(Vec::new()),
        };
        if entries.first().map(|e| e.log_id.index) != Some(next) || noted.is_none() {
            // Purged (or unreadable) here: send the state instead and go on after it. The
            // rows are captured under the lock in O(tables); sorting, cutting and encoding
            // them happen off the runtime while entries keep applying, one build at a time
            // per core, shared by the followers that need one meanwhile. Building takes
            // seconds at millions of rows: heartbeats meanwhile tell the follower this core
            // is alive (it gives up on a stream silent for 1 s).
            debug!(from = next, "follow: a snapshot is needed");
            let built = match projected {
                Some(node) => {
                    wait_built(
                        core,
                        send,
                        core.follow_snapshots.get_projected(core, next, node),
                    )
                    .await?
                }
                None => wait_built(core, send, core.follow_snapshots.get(core, next)).await?,
            };
            let Some(built) = built else {
                return Ok(()); // the follower reconnects and asks again
            };
            send_snapshot(send, built.index, &built.chunks).await?;
            next = built.index + 1;
            continue;
        }
        let mut noted = noted.unwrap_or_default().into_iter();
        let mut oversized = None;
        let mut out = Vec::with_capacity(entries.len());
        let mut bytes = 0;
        for e in entries.into_iter().take_while(|e| e.log_id.index <= upto) {
            let notes = noted.next().flatten();
            let batch = match &e.payload {
                // The state machine applied exactly this decode; an undecodable batch changed
                // nothing there, so sending none keeps the replica equal.
                EntryPayload::Normal(d) => Batch::decode(d.batch.as_slice()).ok(),
                _ => None,
            };
            let entry = LogEntry {
                index: e.log_id.index,
                notes: notes.filter(|_| batch.is_some()),
                batch,
            };
            let len = entry.encoded_len();
            let len = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
            if projected.is_some() && len > MAX_ENTRY_FRAME {
                // Its notes (the subscriptions of the clients it claimed) take it past a
                // frame: the follower gets a projected snapshot past it instead.
                oversized = Some(e.log_id.index);
                break;
            }
            if !out.is_empty() && bytes + len > limits.entries_bytes {
                break; // the rest goes in the next frame
            }
            bytes += len;
            out.push(entry);
        }
        let Some(last) = out.last().map(|e| e.index) else {
            if let (Some(index), Some(node)) = (oversized, projected) {
                metrics::counter!(m::CORE_FOLLOW_OVERSIZED_ENTRIES_TOTAL).increment(1);
                let follower: String = node.chars().take(64).collect();
                warn!(
                    index,
                    %follower,
                    "follow: an entry with its notes is over a frame; sending a projected snapshot past it"
                );
                let built = wait_built(
                    core,
                    send,
                    core.follow_snapshots.get_projected(core, index + 1, node),
                )
                .await?;
                let Some(built) = built else {
                    return Ok(());
                };
                send_snapshot(send, built.index, &built.chunks).await?;
                next = built.index + 1;
            }
            continue;
        };
        metrics::counter!(m::CORE_FOLLOW_ENTRIES_SENT_TOTAL).increment(out.len() as u64);
        let frame = Kind::Entries(FollowEntries {
            entries: out,
            commit_index: applied,
        });
        write(send, frame).await?;
        next = last + 1;
    }
}

/// Waits for a snapshot being obtained, sending heartbeats meanwhile: building takes seconds
/// at millions of rows, and the follower gives up on a stream silent for 1 s.
async fn wait_built(
    core: &CoreNode,
    send: &mut quinn::SendStream,
    obtain: impl std::future::Future<Output = Option<Arc<Built>>>,
) -> Result<Option<Arc<Built>>, FrameError> {
    let mut obtain = std::pin::pin!(obtain);
    loop {
        tokio::select! {
            built = &mut obtain => return Ok(built),
            () = tokio::time::sleep(HEARTBEAT) => {
                let hb = Kind::Heartbeat(FollowHeartbeat {
                    commit_index: core.sm.applied_index(),
                });
                write(send, hb).await?;
            }
        }
    }
}

/// The notes of each of `entries` for the projected follower `node` (the subscriptions of
/// its own claims only), or `None` if this core no longer holds some of them (the follower
/// then gets a projected snapshot).
fn notes_for(
    core: &CoreNode,
    entries: &[crate::raft::types::Entry],
    node: &str,
) -> Option<Vec<Option<EntryNotes>>> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Some(Vec::new());
    };
    let (first, last) = (first.log_id.index, last.log_id.index);
    let held = match core.sm.notes_range(first, last) {
        Ok(held) => held,
        Err(gone) => {
            debug!(first, from = gone.from, "follow: notes no longer held");
            metrics::counter!(m::CORE_FOLLOW_NOTES_GONE_TOTAL).increment(1);
            return None;
        }
    };
    let for_node = |n: &EntryNotes| EntryNotes {
        results: n.results.clone(),
        rows: n.rows.clone(),
        subscriptions: n
            .subscriptions
            .iter()
            .filter(|s| s.node == node)
            .cloned()
            .collect(),
        counts: n.counts.clone(),
    };
    Some(held.iter().map(|n| n.as_deref().map(for_node)).collect())
}

/// Sends the snapshot at `index`, already cut into bounded `chunks`, as Begin, chunks, End.
async fn send_snapshot(
    send: &mut quinn::SendStream,
    index: u64,
    chunks: &follow_snapshot::Chunks,
) -> Result<(), FrameError> {
    metrics::counter!(m::CORE_FOLLOW_SNAPSHOTS_SENT_TOTAL).increment(1);
    debug!(
        index,
        rows = chunks.rows,
        bytes = chunks.bytes,
        chunks = chunks.chunks.len(),
        "follow: streaming snapshot"
    );
    write(send, Kind::SnapshotBegin(chunks.begin(index))).await?;
    let end = chunks.end(index);
    for (seq, rows) in chunks.chunks.iter().enumerate() {
        let len = rows.encoded_len() as u64;
        let chunk = Kind::SnapshotChunk(FollowSnapshotChunk {
            index,
            seq: seq as u64,
            rows: Some(rows.clone()),
        });
        if let Err(e) = write(send, chunk).await {
            if let FrameError::TooLarge { len, max } = e {
                warn!(
                    index,
                    seq, len, max, "follow: a snapshot row is over the frame bound"
                );
            }
            return Err(e);
        }
        metrics::counter!(m::CORE_FOLLOW_SNAPSHOT_CHUNKS_SENT_TOTAL).increment(1);
        metrics::counter!(m::CORE_FOLLOW_SNAPSHOT_BYTES_SENT_TOTAL).increment(len);
    }
    write(send, Kind::SnapshotEnd(end)).await
}

async fn write(send: &mut quinn::SendStream, kind: Kind) -> Result<(), FrameError> {
    let frame = FollowFrame {
        kind: Some(kind),
        wire: None,
    };
    tokio::time::timeout(WRITE_TIMEOUT, frame::write_msg(send, &frame))
        .await
        .map_err(|_| FrameError::Timeout)?
}
