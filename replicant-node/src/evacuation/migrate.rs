//! Session migration, the last stage of an evacuation: every disconnected session still on
//! the evacuating node is offered to a `migrate_to` node (`MigrateRequest` on the peer
//! link), which adopts it with a normal claim and hand-over
//! (`crate::connection::adopt`); the session leaves this node when that hand-over takes it.
//! A session not gone [`RETRY_AFTER`] after its request is offered again (to the next
//! target), at most [`ATTEMPTS`] times.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};
use meshmq_proto::peer::{MigrateRequest, SessionItem, session_item};
use meshmq_proto::tables::{self, NodeRole, NodeState};
use meshmq_shared::codec::ProtocolVersion;
use meshmq_shared::metrics as m;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::publish_progress;
use super::run::{disconnected_sessions, pause, refresh};
use crate::connection::Adopted;
use crate::ctx::Ctx;
use crate::sessions::Leaving;

/// How long a session may stay after its migration request before it is offered again.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Offers per session before giving up on it (it stays here, and is counted).
const ATTEMPTS: u32 = 3;
/// How often the loop looks again at what is left.
const POLL: Duration = Duration::from_millis(100);
/// How long the stage waits for a node to migrate to before giving up.
const NO_TARGET_MAX: Duration = Duration::from_secs(60);

/// Nodes that may receive sessions: `migrate_to` if given, else every other running
/// replicant; only those with a peer address.
pub fn targets(ctx: &Ctx, migrate_to: &[String]) -> Vec<(String, String)> {
    ctx.tables.core.read(|t| {
        t.nodes()
            .filter(|r| r.node != ctx.node())
            .filter(|r| r.role == NodeRole::Replicant as i32)
            .filter(|r| r.status == NodeState::Running as i32 && !r.peer_addr.is_empty())
            .filter(|r| migrate_to.is_empty() || migrate_to.contains(&r.node))
            .map(|r| (r.node.clone(), r.peer_addr.clone()))
            .collect()
    })
}

struct Offer {
    at: Instant,
    attempts: u32,
}

/// Migrates every disconnected session, `rate` per second (0: no pacing), until none is
/// left, or what is left was offered [`ATTEMPTS`] times without going; with a `goal`
/// (rebalance), until no more than `goal` sessions are held here. False when stopped.
pub(super) async fn migrate_all(
    ctx: &Arc<Ctx>,
    plan: &tables::Evacuation,
    rate: u32,
    goal: u64,
    stop: &CancellationToken,
) -> bool {
    let Some(peers) = ctx.cluster.peers.clone() else {
        return true;
    };
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let mut next_target = 0usize;
    let mut offers: HashMap<Arc<str>, Offer> = HashMap::new();
    let mut migrated: u64 = 0;
    let mut last_progress = Instant::now();
    let mut no_target_since: Option<Instant> = None;
    let mut reached_goal = false;
    loop {
        // Offered sessions no longer here were taken by their new node.
        let here: HashSet<Arc<str>> = ctx
            .local
            .sessions
            .all()
            .iter()
            .map(|s| s.client_id.clone())
            .collect();
        let before = offers.len();
        offers.retain(|id, _| here.contains(id));
        let gone = (before - offers.len()) as u64;
        if gone > 0 {
            migrated += gone;
            metrics::counter!(m::EVACUATION_SESSIONS_MIGRATED_TOTAL, "result" => "migrated")
                .increment(gone);
            ctx.admission
                .evacuation
                .update(|r| r.stats.migrated_sessions = migrated);
        }
        let waiting_n = offers
            .values()
            .filter(|o| o.at.elapsed() < RETRY_AFTER)
            .count();
        let held = ctx.local.sessions.len() as u64;
        if goal > 0 && held <= goal {
            reached_goal = true;
            break;
        }
        let mut due: Vec<_> = disconnected_sessions(ctx)
            .into_iter()
            .filter(|s| match offers.get(&s.client_id) {
                None => true,
                Some(o) => o.attempts < ATTEMPTS && o.at.elapsed() >= RETRY_AFTER,
            })
            .collect();
        if goal > 0 {
            let room = held.saturating_sub(goal + waiting_n as u64);
            due.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        if due.is_empty() && waiting_n == 0 {
            break;
        }
        let targets = targets(ctx, &plan.migrate_to);
        if targets.is_empty() && !due.is_empty() {
            let since = *no_target_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= NO_TARGET_MAX {
                warn!("no running replicant to migrate sessions to; giving up");
                break;
            }
            warn!("no running replicant to migrate sessions to; waiting");
            if !pause(stop, Duration::from_secs(1)).await {
                return false;
            }
            continue;
        }
        no_target_since = None;
        for slot in due {
            if rate > 0 {
                let at = start + Duration::from_secs_f64(sent as f64 / f64::from(rate));
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            let (expiry, level) = {
                let i = slot.inner.lock();
                if i.ended || i.owner.is_some() || i.leaving != Leaving::No {
                    // Its client came back, or it is moving already: not ours to offer.
                    continue;
                }
                (i.expiry_secs, i.session.version().level())
            };
            let (node, addr) = &targets[next_target % targets.len()];
            next_target += 1;
            sent += 1;
            let offer = offers.entry(slot.client_id.clone()).or_insert(Offer {
                at: Instant::now(),
                attempts: 0,
            });
            offer.at = Instant::now();
            offer.attempts += 1;
            let request = SessionItem {
                kind: Some(session_item::Kind::Migrate(MigrateRequest {
                    client_id: slot.client_id.to_string(),
                    session_expiry_secs: expiry,
                    protocol_level: u32::from(level),
                })),
            };
            if let Err(reason) = peers.send_session(node, addr, request) {
                debug!(client_id = %slot.client_id, node, reason = reason.label(), "migration request not sent");
            }
            if last_progress.elapsed() >= Duration::from_secs(2) {
                last_progress = Instant::now();
                refresh(ctx);
                publish_progress(ctx, plan).await;
            }
        }
        if !pause(stop, POLL).await {
            return false;
        }
        refresh(ctx);
    }
    let stuck = disconnected_sessions(ctx).len() as u64;
    if stuck > 0 && !reached_goal {
        metrics::counter!(m::EVACUATION_SESSIONS_MIGRATED_TOTAL, "result" => "given_up")
            .increment(stuck);
        warn!(
            stuck,
            "sessions not migrated after every attempt; they stay here"
        );
    }
    refresh(ctx);
    true
}

/// A `MigrateRequest` from evacuating node `from`: adopt the session (in a task).
pub fn on_migrate(ctx: &Arc<Ctx>, from: &str, req: MigrateRequest) {
    let ctx = ctx.clone();
    let from = from.to_owned();
    tokio::spawn(async move {
        let version = match req.protocol_level {
            5 => ProtocolVersion::V5,
            3 => ProtocolVersion::V31,
            _ => ProtocolVersion::V311,
        };
        let adopted = crate::connection::adopt(
            &ctx,
            &from,
            &req.client_id,
            req.session_expiry_secs,
            version,
        )
        .await;
        let result = match adopted {
            Adopted::HandedOver => "ok",
            Adopted::Rebuilt => "rebuilt",
            Adopted::Skipped => "skipped",
        };
        metrics::counter!(m::EVACUATION_SESSIONS_ADOPTED_TOTAL, "result" => result).increment(1);
    });
}
