//! Compaction on demand: build a Raft snapshot of this core's state machine now and,
//! if asked, purge its log up to that snapshot (`POST /api/v5/cluster/snapshot`).
//!
//! Cores compact by themselves every `RaftTimings::snapshot_every` entries; this is for an
//! operator (or the tables benchmark) who wants it now, e.g. to measure a snapshot's size
//! and build time, or to make a replicant that joins afterwards start from a snapshot.
//! Only this core is compacted (each core keeps its own snapshot and log). Every wait is
//! bounded by the caller's timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::CoreNode;

/// What a compaction asked while another runs on this core is told.
pub const BUSY: &str = "a compaction of this core is already in progress";
/// Clears the "compaction running" flag when dropped.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// How long to wait for a build before triggering again (a trigger is ignored while an
/// earlier build runs).
const RETRIGGER: Duration = Duration::from_secs(5);

/// What a compaction did.
#[derive(Debug, Clone, Serialize)]
pub struct Compacted {
    /// Log index the snapshot covers.
    pub snapshot_index: u64,
    /// Seconds from the trigger until the snapshot was built (0 if one already covered
    /// every applied entry).
    pub build_seconds: f64,
    /// Index the log is purged up to (inclusive) afterwards; None if no purge was asked.
    pub purged_index: Option<u64>,
}

impl CoreNode {
    /// Builds a snapshot covering at least every entry applied now, then (with `purge`)
    /// purges the log up to it; gives up after `timeout` (the snapshot may still be built
    /// later).
    pub async fn compact_now(&self, purge: bool, timeout: Duration) -> Result<Compacted, String> {
        // One compaction at a time per core: a second caller is told so at once instead of
        // queueing builds and saves (each save holds redb's one write transaction).
        if self.compacting.swap(true, Ordering::SeqCst) {
            return Err(BUSY.into());
        }
        // Cleared on drop: a caller that goes away mid-compaction (its HTTP connection
        // closed) must not leave the flag set for ever.
        let _running = Running(&self.compacting);
        self.compact(purge, timeout).await
    }

    async fn compact(&self, purge: bool, timeout: Duration) -> Result<Compacted, String> {
        let started = Instant::now();
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        let Some(applied) = applied else {
            return Err("nothing applied yet".into());
        };
        // openraft ignores a trigger while a build runs; if that build covers less than
        // `applied`, trigger again once it ended (bounded by the timeout).
        let built = loop {
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| format!("snapshot trigger: {e}"))?;
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(format!("snapshot: not built within {timeout:?}"));
            }
            match self
                .raft
                .wait(Some(left.min(RETRIGGER)))
                .metrics(
                    |m| m.snapshot.is_some_and(|s| s.index >= applied),
                    "snapshot built",
                )
                .await
            {
                Ok(built) => break built,
                Err(openraft::metrics::WaitError::Timeout(..)) => continue,
                Err(e) => return Err(format!("snapshot: {e}")),
            }
        };
        let build_seconds = started.elapsed().as_secs_f64();
        let snapshot_index = built.snapshot.map_or(applied, |s| s.index);
        let purged_index = if purge {
            self.raft
                .trigger()
                .purge_log(snapshot_index)
                .await
                .map_err(|e| format!("purge trigger: {e}"))?;
            let left = timeout.saturating_sub(started.elapsed());
            let purged = self
                .raft
                .wait(Some(left))
                .metrics(
                    |m| m.purged.is_some_and(|p| p.index >= snapshot_index),
                    "log purged",
                )
                .await
                .map_err(|e| format!("purge: {e}"))?;
            purged.purged.map(|p| p.index)
        } else {
            None
        };
        Ok(Compacted {
            snapshot_index,
            build_seconds,
            purged_index,
        })
    }
}
