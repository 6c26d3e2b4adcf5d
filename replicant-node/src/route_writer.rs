//! Writes this node's `routes` rows in the order the router decided them. The router
//! records each first-subscriber / last-subscriber decision with a seq under its own lock
//! (the latest decision per filter wins); this one task takes them in batches and commits
//! one batch at a time, so a `RouteRemove` can never commit before the `RouteAdd` it undoes
//! nor an old add after a newer remove (which would leave a stale row behind: the table
//! keeps no tombstones). A failed batch is put back (unless superseded) and retried with
//! backoff.
//!
//! [`RouteWriter::wait`] lets a SUBACK (or a restored session's CONNACK) wait until every
//! decision up to a seq is committed and applied here, before the peer barrier.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::cluster;
use crate::ctx::Ctx;

/// Most route ops in one batch (well under the core's per-entry op limit; a batch of long
/// filters is committed in several entries, see `core_node::api::split_entries`).
const MAX_BATCH: usize = 4_096;

/// The writer's progress.
#[derive(Debug)]
pub struct RouteWriter {
    /// Every decision with a seq up to this one is committed (or superseded and committed).
    committed: watch::Sender<u64>,
    /// Longest a caller of [`RouteWriter::wait`] waits (the core may be unreachable):
    /// `cluster.transact_timeout_ms`, what one table write may take.
    wait_max: Duration,
}

impl RouteWriter {
    /// A writer whose callers wait at most `wait_max` for their decisions.
    pub fn new(wait_max: Duration) -> Self {
        Self {
            committed: watch::Sender::new(0),
            wait_max,
        }
    }

    /// Waits until every route decision up to `seq` is committed (at most the writer's
    /// `wait_max`); false on timeout.
    pub async fn wait(&self, seq: u64) -> bool {
        let mut rx = self.committed.subscribe();
        tokio::time::timeout(self.wait_max, rx.wait_for(|c| *c >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The writer task; runs until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    let writer = &ctx.tables.route_writer;
    let mut backoff = Duration::from_millis(50);
    loop {
        if !ctx.local.router.has_decisions() {
            tokio::select! {
                _ = ctx.admission.shutdown.cancelled() => return,
                _ = ctx.local.router.decided.notified() => {}
            }
        }
        let d = ctx.local.router.take_decisions(MAX_BATCH);
        if d.batch.is_empty() {
            writer.committed.send_if_modified(|c| {
                let raised = d.covered > *c;
                *c = (*c).max(d.covered);
                raised
            });
            continue;
        }
        let ops = d
            .batch
            .iter()
            .map(|(f, add, seq)| {
                if *add {
                    cluster::route_add(ctx.node(), f, *seq)
                } else {
                    cluster::route_remove(ctx.node(), f, *seq)
                }
            })
            .collect();
        // In as many entries as the entry bounds take (long filters), in order; what did not
        // commit is put back.
        let mut done = 0;
        for run in core_node::api::split_entries(ops) {
            let k = run.len();
            if cluster::transact(&ctx.tables, run).await.len() != k {
                break;
            }
            done += k;
        }
        let n = d.batch.len();
        if done == n {
            backoff = Duration::from_millis(50);
            writer.committed.send_modify(|c| *c = (*c).max(d.covered));
        } else {
            warn!(ops = n - done, "route batch not committed; retrying");
            let mut batch = d.batch;
            ctx.local.router.requeue_decisions(batch.split_off(done));
            tokio::select! {
                _ = ctx.admission.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
