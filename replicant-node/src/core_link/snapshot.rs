//! Receiving a streamed snapshot on the follow stream: `FollowSnapshotBegin` starts a
//! [`Staging`] copy apart from the replica, each `FollowSnapshotChunk` is added to it, and
//! only a `FollowSnapshotEnd` whose counts match what arrived replaces the replica's tables.
//!
//! It owns the staging of one follow session: a session that ends mid-snapshot drops it
//! ([`Receiver::abandon`]), the replica is left as it was and the next session starts over
//! from `applied + 1`. It never touches the replica before the end, and never panics on what
//! a core sends: a frame out of place or inconsistent counts abort the snapshot (counted)
//! and end the session.

use std::sync::atomic::Ordering;

use meshmq_proto::core::{FollowFrame, follow_frame::Kind};
use meshmq_shared::follow_snapshot::Staging;
use meshmq_shared::metrics as m;
use tracing::{info, warn};

use super::Shared;

/// What the follow stream does with a frame after the receiver saw it.
pub(super) enum Step {
    /// Not part of a streamed snapshot: apply it to the replica (boxed: a frame is large
    /// next to the other variants).
    Apply(Box<FollowFrame>),
    /// Taken into the staging copy.
    Staged,
    /// The snapshot was complete and replaced the replica's tables.
    Installed,
    /// The snapshot was refused; the session ends (`reason` is a metric label).
    Abort {
        /// Short label.
        reason: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// The streamed snapshot of one follow session, if one is being received.
#[derive(Default)]
pub(super) struct Receiver {
    staging: Option<Staging>,
}

impl Receiver {
    /// Looks at a frame: snapshot frames go to the staging copy (the last one installs it),
    /// any other frame goes to the replica, unless it arrives inside a snapshot.
    pub(super) fn on_frame(&mut self, shared: &Shared, frame: FollowFrame) -> Step {
        let kind = match frame.kind {
            Some(Kind::SnapshotBegin(b)) if self.staging.is_none() => {
                let (index, bytes, chunks) = (b.index, b.bytes, b.chunks);
                return match Staging::begin(b, shared.max_snapshot_bytes) {
                    Ok(staging) => {
                        info!(index, bytes, chunks, "receiving a streamed snapshot");
                        self.staging = Some(staging);
                        Step::Staged
                    }
                    Err(e) => abort(shared, e.label(), e.to_string()),
                };
            }
            Some(Kind::SnapshotChunk(c)) => {
                let Some(staging) = self.staging.as_mut() else {
                    return out_of_place(shared, "a snapshot chunk without a begin");
                };
                let before = staging.bytes();
                if let Err(e) = staging.absorb(c) {
                    self.staging = None;
                    return abort(shared, e.label(), e.to_string());
                }
                shared.snapshot_chunks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(m::REPLICA_SNAPSHOT_CHUNKS_RECEIVED_TOTAL).increment(1);
                metrics::counter!(m::REPLICA_SNAPSHOT_BYTES_RECEIVED_TOTAL)
                    .increment(staging.bytes() - before);
                return Step::Staged;
            }
            Some(Kind::SnapshotEnd(end)) => {
                let Some(staging) = self.staging.take() else {
                    return out_of_place(shared, "a snapshot end without a begin");
                };
                return match staging.finish(end) {
                    Ok((index, snapshot)) => {
                        shared.replica.install_snapshot(index, &snapshot);
                        Step::Installed
                    }
                    Err(e) => abort(shared, e.label(), e.to_string()),
                };
            }
            kind => kind,
        };
        if self.staging.is_some() {
            self.staging = None;
            return out_of_place(shared, "another frame inside a streamed snapshot");
        }
        Step::Apply(Box::new(FollowFrame { kind, wire: None }))
    }

    /// The session ended: a snapshot still being received is dropped (counted).
    pub(super) fn abandon(&mut self, shared: &Shared) {
        if let Some(staging) = self.staging.take() {
            let detail = format!(
                "stream ended inside snapshot {} after {} bytes",
                staging.index(),
                staging.bytes()
            );
            let _ = abort(shared, "stream_ended", detail);
        }
    }
}

fn out_of_place(shared: &Shared, what: &str) -> Step {
    abort(shared, "unexpected_frame", what.into())
}

/// Counts and logs a dropped snapshot.
fn abort(shared: &Shared, reason: &'static str, detail: String) -> Step {
    shared.snapshots_aborted.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(m::REPLICA_SNAPSHOTS_ABORTED_TOTAL, "reason" => reason).increment(1);
    warn!(reason, %detail, "streamed snapshot dropped; the replica keeps its tables");
    Step::Abort { reason, detail }
}
