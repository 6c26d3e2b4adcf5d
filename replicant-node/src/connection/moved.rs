//! Sessions claimed by another node. When a client connects to another replicant (a load
//! balancer sent it there), that node commits a `RegistryClaim`; this node sees the claim in
//! its replica and closes the old connection (MQTT 5: DISCONNECT 0x8E Session taken over).
//! With clean start = 0 the session then waits for the new owner's hand-over request
//! (`crate::handover`), which moves its in-flight and queued messages; with clean start = 1
//! the local copy is dropped.
//!
//! Owns only the watch: a claim feed from the replica, plus a rescan after every snapshot
//! install (claims folded into it), when the feed lagged, and every 5 s.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use crate::ctx::Ctx;
use crate::sessions::Leaving;

/// How often every local session is checked against the registry.
const RESCAN: Duration = Duration::from_secs(5);

/// Runs until shutdown.
pub async fn watch_remote_claims(ctx: Arc<Ctx>) {
    let mut claims = ctx.tables.core.replica().subscribe_claims();
    let mut installs = ctx.tables.core.replica().subscribe_installs();
    let mut tick = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            // Claims folded into a snapshot are not announced one by one.
            changed = installs.changed() => match changed {
                Ok(()) => rescan(&ctx).await,
                Err(_) => return,
            },
            c = claims.recv() => match c {
                Ok(c) if c.node != ctx.node() => {
                    moved(&ctx, &c.client_id, c.generation, c.clean_start).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => rescan(&ctx).await,
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => rescan(&ctx).await,
        }
    }
}

/// A claim of `client_id` by another node: with clean start = 0 the local connection is
/// closed and the session kept for the new owner's hand-over request
/// ([`crate::handover::give`]); with clean start = 1 the local copy is dropped. Nothing
/// happens when the local session is newer than the claim (the client came back here).
async fn moved(ctx: &Arc<Ctx>, client_id: &str, generation: u64, clean_start: bool) {
    let Some(slot) = ctx.local.sessions.get(client_id) else {
        return;
    };
    if !clean_start {
        if crate::handover::give::await_request(ctx, &slot, generation) {
            debug!(%client_id, "session claimed by another node; awaiting its request");
        }
        return;
    }
    let control = {
        let mut inner = slot.inner.lock();
        if inner.generation >= generation || inner.leaving == Leaving::Forwarding {
            return;
        }
        inner.control.take()
    };
    crate::handover::give::kick(control, true);
    debug!(%client_id, "session discarded by a clean start on another node");
    super::close::end_session_moved(ctx, &slot).await;
}

/// Every local session whose registry row now names another node. A replica that holds
/// the registry projection (docs/roles.md) keeps no row of a client claimed elsewhere (but
/// for shared-group members): there a session whose row is gone was claimed elsewhere too,
/// unless this node's own row is gone (purged: its rows went with it, nobody took them).
async fn rescan(ctx: &Arc<Ctx>) {
    let me = ctx.node().to_owned();
    let slots = ctx.local.sessions.all();
    // Taken before the replica's lock: a session's lock is never taken under it.
    let generations: Vec<u64> = slots.iter().map(|s| s.inner.lock().generation).collect();
    // One read of the replica for every session (not one lock round per session).
    let gone: Vec<(String, u64)> = ctx.tables.core.read(|t| {
        let absent_is_moved = t.projected_for().is_some() && t.node(&me).is_some();
        slots
            .iter()
            .zip(generations)
            .filter_map(|(slot, local)| {
                let moved_to = match t.registry(&slot.client_id) {
                    Some(row) if row.node != me => Some(row.generation),
                    Some(_) => None,
                    None if absent_is_moved => Some(local.saturating_add(1)),
                    None => None,
                };
                moved_to.map(|generation| (slot.client_id.to_string(), generation))
            })
            .collect()
    });
    for (client_id, generation) in gone {
        moved(ctx, &client_id, generation, false).await;
    }
}
