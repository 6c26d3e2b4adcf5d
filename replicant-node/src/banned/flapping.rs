//! Flapping detection as EMQX 5 does it: every disconnect of a client (after a successful
//! CONNECT) is counted per client id; a client id that reaches `max_count` disconnects
//! within `window_time` of the first counted one is banned for `ban_time` (a `banned` row
//! by client id, `by = "flapping detector"`, `reason = "flapping is detected"`), counted
//! (`meshmq_flapping_bans_total`) and logged once. A window that has passed starts again
//! at the next disconnect. Counts are per node (EMQX's are too): a client that flaps across
//! replicants is counted on each.
//!
//! The [`Detector`] is pure (the caller passes `now`) and bounded: at most
//! [`MAX_TRACKED`] client ids; when full, windows that have passed are swept (at most once
//! a second), and a disconnect that still finds no room is not counted
//! (`meshmq_flapping_untracked_total`). At most [`MAX_COMMITS`] bans are committed at once;
//! a detection past that is dropped and counted the same way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use meshmq_proto::tables::{BannedAs, BannedRow};
use meshmq_shared::metrics as m;
use tracing::{debug, warn};

use crate::ctx::Ctx;

/// Most client ids counted at once.
pub const MAX_TRACKED: usize = 100_000;
/// Most flapping bans being committed at once; a detection past it is not committed (the
/// client id is counted again from zero, and detected again if it keeps flapping).
pub const MAX_COMMITS: usize = 64;
/// EMQX's `by` of a flapping ban.
pub const BY: &str = "flapping detector";
/// EMQX's `reason` of a flapping ban.
pub const REASON: &str = "flapping is detected";
/// Shortest time between two sweeps of a full detector.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One client id's window.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The first disconnect counted in this window.
    started: Instant,
    /// Disconnects counted since `started`.
    count: u32,
}

/// What one disconnect did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Counted; below the limit.
    Counted,
    /// The limit was reached: ban the client id (its window is dropped).
    Flapping,
    /// Not counted: the detector is full.
    Untracked,
}

/// Disconnect counts per client id; see the module doc.
#[derive(Debug)]
pub struct Detector {
    windows: HashMap<Arc<str>, Window>,
    max_tracked: usize,
    last_sweep: Option<Instant>,
}

impl Default for Detector {
    fn default() -> Self {
        Self::with_capacity(MAX_TRACKED)
    }
}

impl Detector {
    /// A detector tracking at most `max_tracked` client ids.
    pub fn with_capacity(max_tracked: usize) -> Self {
        Self {
            windows: HashMap::new(),
            max_tracked,
            last_sweep: None,
        }
    }

    /// Client ids tracked now.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// True when no client id is tracked.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Counts one disconnect of `client_id` at `now`.
    pub fn record(
        &mut self,
        now: Instant,
        client_id: &str,
        max_count: u32,
        window: Duration,
    ) -> Seen {
        let fresh = Window {
            started: now,
            count: 0,
        };
        let w = match self.windows.get_mut(client_id) {
            Some(w) => w,
            None => {
                if self.windows.len() >= self.max_tracked {
                    self.sweep(now, window);
                }
                if self.windows.len() >= self.max_tracked {
                    return Seen::Untracked;
                }
                self.windows.entry(Arc::from(client_id)).or_insert(fresh)
            }
        };
        if now.saturating_duration_since(w.started) >= window {
            *w = fresh;
        }
        w.count = w.count.saturating_add(1);
        if w.count >= max_count {
            self.windows.remove(client_id);
            Seen::Flapping
        } else {
            Seen::Counted
        }
    }

    /// Drops the windows that have passed (at most once per [`SWEEP_EVERY`]).
    fn sweep(&mut self, now: Instant, window: Duration) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.windows
            .retain(|_, w| now.saturating_duration_since(w.started) < window);
    }
}

/// A connection of `client_id` ended: counts it, and bans the client id when it flaps.
pub fn disconnected(ctx: &Arc<Ctx>, client_id: &str) {
    let live = ctx.runtime.current();
    let cfg = &live.config.flapping_detect;
    if !cfg.enable {
        return;
    }
    let seen =
        ctx.banned
            .flapping
            .lock()
            .record(Instant::now(), client_id, cfg.max_count, cfg.window());
    match seen {
        Seen::Counted => {}
        Seen::Untracked => metrics::counter!(m::FLAPPING_UNTRACKED_TOTAL).increment(1),
        Seen::Flapping => {
            let now = super::now_s();
            let row = BannedRow {
                kind: BannedAs::Clientid as i32,
                who: client_id.to_owned(),
                by: BY.into(),
                reason: REASON.into(),
                at: now,
                until: now.saturating_add(cfg.ban().as_secs().max(1)),
            };
            let commits = &ctx.banned.flapping_commits;
            if commits.fetch_add(1, Ordering::AcqRel) >= MAX_COMMITS {
                commits.fetch_sub(1, Ordering::AcqRel);
                metrics::counter!(m::FLAPPING_UNTRACKED_TOTAL).increment(1);
                return;
            }
            let ctx = ctx.clone();
            tokio::spawn(async move {
                commit(&ctx, row).await;
                ctx.banned.flapping_commits.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }
}

/// Commits a flapping ban; logs it once.
async fn commit(ctx: &Ctx, row: BannedRow) {
    let who = row.who.chars().take(128).collect::<String>();
    let secs = row.until.saturating_sub(row.at);
    match super::add(ctx, row).await {
        Ok(()) => {
            metrics::counter!(m::FLAPPING_BANS_TOTAL).increment(1);
            warn!(client_id = %who, ban_secs = secs, "flapping detected: client id banned");
        }
        // Banned already (by an operator, or by another replicant's detector).
        Err(super::AddError::Exists) => debug!(client_id = %who, "flapping client already banned"),
        Err(e) => warn!(client_id = %who, error = %e, "flapping detected, but the ban failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_max_count_th_disconnect_in_the_window_flaps() {
        let mut d = Detector::default();
        let t0 = Instant::now();
        for i in 0..14 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(d.record(at, "c", 15, MIN), Seen::Counted, "{i}");
        }
        assert_eq!(
            d.record(t0 + Duration::from_secs(59), "c", 15, MIN),
            Seen::Flapping
        );
        assert!(d.is_empty(), "a banned id's window is dropped");
        // Another id is counted apart.
        assert_eq!(d.record(t0, "other", 15, MIN), Seen::Counted);
    }

    #[test]
    fn a_passed_window_starts_again() {
        let mut d = Detector::default();
        let t0 = Instant::now();
        for i in 0..2 {
            assert_eq!(
                d.record(t0 + Duration::from_secs(i), "c", 3, MIN),
                Seen::Counted
            );
        }
        // 60 s after the first: a new window, counted from 1.
        let t1 = t0 + MIN;
        assert_eq!(d.record(t1, "c", 3, MIN), Seen::Counted);
        assert_eq!(d.record(t1, "c", 3, MIN), Seen::Counted);
        assert_eq!(d.record(t1, "c", 3, MIN), Seen::Flapping);
    }

    #[test]
    fn a_full_detector_sweeps_passed_windows_then_refuses() {
        let mut d = Detector::with_capacity(2);
        let t0 = Instant::now();
        assert_eq!(d.record(t0, "a", 5, MIN), Seen::Counted);
        assert_eq!(d.record(t0, "b", 5, MIN), Seen::Counted);
        assert_eq!(d.record(t0, "c", 5, MIN), Seen::Untracked);
        assert_eq!(d.len(), 2);
        // Known ids are still counted when full.
        assert_eq!(d.record(t0, "a", 5, MIN), Seen::Counted);
        // Once their windows passed, a sweep makes room.
        assert_eq!(d.record(t0 + MIN, "c", 5, MIN), Seen::Counted);
        assert_eq!(d.len(), 1);
        // A max_count of 1 bans at the first disconnect.
        assert_eq!(d.record(t0 + MIN, "z", 1, MIN), Seen::Flapping);
    }
}
