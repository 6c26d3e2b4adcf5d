//! The follow snapshots of one core, shared between followers: at most one is built at a
//! time, and a follower that needs one while another is being built, or while a usable one
//! is still being sent, gets that one instead of a new build.
//!
//! Owns the build (rows captured under the state machine's lock in O(tables), then sorted,
//! cut and encoded on a blocking thread) and the reuse rule. A build belongs to a task of
//! its own, not to the follower that asked for it: a follower that goes away (or a hostile
//! peer that opens and resets Follow streams) neither cancels it nor makes room for another
//! one, so a core never runs more than one follow build whatever its followers do. The
//! result is held only by the followers that wait for it or send it: a core keeps no
//! snapshot in memory once its followers have theirs. Without this, N replicants joining at
//! once (an autoscaling group starting) made N builds of the whole tables side by side.

use std::sync::{Arc, Weak};

use meshmq_shared::follow_snapshot::{self, Chunks};
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::CoreNode;

/// A built follow snapshot: the chunks and the log index they reflect.
pub struct Built {
    /// The index of the last entry the snapshot reflects.
    pub index: u64,
    /// The rows, cut in bounded chunks.
    pub chunks: Chunks,
}

/// What a build publishes when it ends: the snapshot, or `None` if it failed.
type Outcome = Option<Option<Arc<Built>>>;

/// The last follow snapshot and the build in progress, if any.
#[derive(Default)]
pub struct FollowSnapshots {
    /// Held only for a few field reads and writes, never across an `.await`.
    slot: Mutex<Slot>,
    /// Held by the projected build in progress: one at a time per core. Guards the last
    /// projected build of each node (as long as a follower holds it, at most
    /// [`PROJECTED_KEPT`] nodes), so that followers of one node asking together, or one
    /// asking again, get one build.
    projecting: Arc<tokio::sync::Mutex<std::collections::HashMap<String, Weak<Built>>>>,
}

/// Nodes whose last projected build is remembered (dead ones are forgotten first).
const PROJECTED_KEPT: usize = 64;

/// What the core knows of its follow snapshots.
#[derive(Default)]
struct Slot {
    /// The last build, as long as some follower holds it.
    last: Weak<Built>,
    /// The build in progress: its outcome arrives here.
    building: Option<watch::Receiver<Outcome>>,
}

/// Builds a snapshot that is not behind `next` again at most this many times for one
/// follower (the log is purged past each one before it could be used only under a write
/// load far above what snapshots are built for).
const ATTEMPTS: usize = 3;

impl FollowSnapshots {
    /// A snapshot for a follower that needs entries from `next` on, which this core's log no
    /// longer holds: the last one built if it is still held and the log holds every entry
    /// after it, else the one being built, else a new one. `None` if the build failed or
    /// never gave a usable snapshot (the follower reconnects and asks again).
    pub async fn get(&self, core: &Arc<CoreNode>, next: u64) -> Option<Arc<Built>> {
        for _ in 0..ATTEMPTS {
            let mut rx = {
                let mut slot = self.slot.lock();
                if let Some(built) = slot.last.upgrade().filter(|b| usable(core, b, next)) {
                    metrics::counter!(m::CORE_FOLLOW_SNAPSHOT_REUSED_TOTAL).increment(1);
                    debug!(
                        index = built.index,
                        from = next,
                        "follow: reusing a snapshot"
                    );
                    return Some(built);
                }
                match &slot.building {
                    Some(rx) => rx.clone(),
                    None => {
                        let rx = start_build(core);
                        slot.building = Some(rx.clone());
                        rx
                    }
                }
            };
            let outcome = rx.wait_for(Option::is_some).await.ok()?.clone().flatten();
            let built = outcome?;
            if usable(core, &built, next) {
                return Some(built);
            }
        }
        warn!(
            from = next,
            "follow: no usable snapshot after {ATTEMPTS} builds"
        );
        None
    }

    /// A projected snapshot for the follower `node` (docs/roles.md): the rows captured now,
    /// cut down to `node`'s projection and cut in chunks on a blocking thread. Each is
    /// built for one follower (projections differ), one at a time per core, so followers
    /// joining together wait their turn instead of scanning the tables side by side; a
    /// fresh replicant's projection is small, but cutting it scans the registry once.
    /// `None` if the build failed or would be behind `next`.
    pub async fn get_projected(
        &self,
        core: &Arc<CoreNode>,
        next: u64,
        node: &str,
    ) -> Option<Arc<Built>> {
        let mut turn = Arc::clone(&self.projecting).lock_owned().await;
        if let Some(built) = turn
            .get(node)
            .and_then(Weak::upgrade)
            .filter(|b| usable(core, b, next) && notes_follow(core, b))
        {
            metrics::counter!(m::CORE_FOLLOW_SNAPSHOT_REUSED_TOTAL).increment(1);
            return Some(built);
        }
        let mut source = core.sm.capture();
        let index = source.applied_index();
        if index + 1 < next {
            warn!(
                from = next,
                index, "follow: a follower asked for entries past this core's"
            );
            return None;
        }
        let chunk_bytes = core.follow_limits.chunk_bytes;
        let hook = core.sm.build_hook();
        let name = node.to_owned();
        // The turn goes with the build: a follower that goes away does not free it early.
        let built = crate::background::run("follow-projected", move || {
            if let Some(hook) = hook {
                hook();
            }
            source.project(&name);
            let chunks = follow_snapshot::split_source(&source, chunk_bytes);
            let built = Arc::new(Built { index, chunks });
            turn.retain(|_, b| b.strong_count() > 0);
            if turn.len() >= PROJECTED_KEPT {
                turn.clear();
            }
            turn.insert(name, Arc::downgrade(&built));
            built
        })
        .await;
        match built {
            Ok(built) => {
                metrics::counter!(m::CORE_FOLLOW_PROJECTED_SNAPSHOTS_TOTAL).increment(1);
                Some(built)
            }
            Err(e) => {
                warn!(index, error = %e, "follow: building a projected snapshot failed");
                None
            }
        }
    }

    /// Records the end of the build in progress.
    fn finish(&self, built: Option<&Arc<Built>>) {
        let mut slot = self.slot.lock();
        if let Some(built) = built {
            slot.last = Arc::downgrade(built);
        }
        slot.building = None;
    }
}

/// Starts a build in a task of its own and returns where its outcome arrives.
fn start_build(core: &Arc<CoreNode>) -> watch::Receiver<Outcome> {
    let (tx, rx) = watch::channel(None);
    let source = core.sm.capture();
    let index = source.applied_index();
    let chunk_bytes = core.follow_limits.chunk_bytes;
    let hook = core.sm.build_hook();
    let core = Arc::clone(core);
    tokio::spawn(async move {
        let built = crate::background::run("follow-snapshot", move || {
            if let Some(hook) = hook {
                hook();
            }
            let chunks = follow_snapshot::split_source(&source, chunk_bytes);
            Built { index, chunks }
        })
        .await;
        let built = match built {
            Ok(built) => Some(Arc::new(built)),
            Err(e) => {
                warn!(index, error = %e, "follow: building the snapshot failed");
                None
            }
        };
        core.follow_snapshots.finish(built.as_ref());
        tx.send_replace(Some(built));
    });
    rx
}

/// Whether this core still holds the notes of the entries after the projected snapshot
/// `built` (a projected follower needs them next; without them it would be sent the same
/// snapshot again).
fn notes_follow(core: &CoreNode, built: &Built) -> bool {
    built.index >= core.sm.applied_index() || core.sm.notes(built.index + 1).is_ok()
}

/// Whether `built` can serve a follower that needs entries from `next`: it is not behind
/// the follower, and this core's log still holds every entry after it (or there is none).
fn usable(core: &CoreNode, built: &Built, next: u64) -> bool {
    if built.index + 1 < next {
        return false;
    }
    if built.index >= core.sm.applied_index() {
        return true;
    }
    match core.log.first_index() {
        Ok(Some(first)) => first <= built.index + 1,
        _ => false,
    }
}
