//! The `Follow` service: streams this core's committed log to a replicant from the index it
//! asks for, with a snapshot first when that index has been purged. Only entries at or below
//! this core's applied index are sent (they are committed: a state machine applies nothing
//! else), so any core, leader or not, can serve any follower, and because Raft indexes are
//! global a follower that switches core resumes where it was.
//!
//! It never writes to the log or the state machine; it reads them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::raft::types::EntryPayload;
use meshmq_proto::core::{
    FollowEntries, FollowFrame, FollowHeartbeat, FollowRequest, FollowSnapshot, LogEntry,
    follow_frame::Kind,
};
use meshmq_proto::tables::Batch;
use meshmq_shared::metrics as m;
use meshmq_shared::quic::frame::{self, FrameError};
use prost::Message;
use tracing::debug;

use super::CoreNode;

/// Most entries in one `FollowEntries` frame.
const ENTRIES_PER_FRAME: usize = 1_000;
/// A heartbeat is sent when nothing was applied for this long. Frequent enough that a
/// follower can tell a dead core (no bytes for a second) from an idle one.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// A frame write that takes longer than this ends the stream (the follower is stuck).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one follower until it goes away or the core shuts down.
pub async fn serve(
    core: &CoreNode,
    req: FollowRequest,
    send: &mut quinn::SendStream,
) -> Result<(), FrameError> {
    core.followers.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(m::CORE_FOLLOWERS).increment(1.0);
    debug!(follower = %req.node, from = req.from_index, "follow started");
    let result = stream(core, req.from_index.max(1), send).await;
    core.followers.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!(m::CORE_FOLLOWERS).decrement(1.0);
    result
}

async fn stream(
    core: &CoreNode,
    mut next: u64,
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
        let upto = applied.min(next + ENTRIES_PER_FRAME as u64 - 1);
        let wanted = (upto - next + 1) as usize;
        let entries = core.log.read_entries(next, wanted).unwrap_or_default();
        if entries.first().map(|e| e.log_id.index) != Some(next) {
            // Purged (or unreadable) here: send the state instead and go on after it.
            let (index, tables) = core.sm.snapshot_now();
            metrics::counter!(m::CORE_FOLLOW_SNAPSHOTS_SENT_TOTAL).increment(1);
            debug!(from = next, snapshot = index, "follow: sending snapshot");
            write(
                send,
                Kind::Snapshot(FollowSnapshot {
                    index,
                    tables: Some(tables),
                }),
            )
            .await?;
            next = index + 1;
            continue;
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries.into_iter().take_while(|e| e.log_id.index <= upto) {
            let batch = match &e.payload {
                // The state machine applied exactly this decode; an undecodable batch changed
                // nothing there, so sending none keeps the replica equal.
                EntryPayload::Normal(d) => Batch::decode(d.batch.as_slice()).ok(),
                _ => None,
            };
            out.push(LogEntry {
                index: e.log_id.index,
                batch,
            });
        }
        let Some(last) = out.last().map(|e| e.index) else {
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

async fn write(send: &mut quinn::SendStream, kind: Kind) -> Result<(), FrameError> {
    let frame = FollowFrame { kind: Some(kind) };
    tokio::time::timeout(WRITE_TIMEOUT, frame::write_msg(send, &frame))
        .await
        .map_err(|_| FrameError::Timeout)?
}
