//! Sessions claimed by another node. When a client connects to another replicant (a load
//! balancer sent it there), that node commits a `RegistryClaim`; this node sees the claim in
//! its replica, closes the old connection (MQTT 5: DISCONNECT 0x8E Session taken over) and
//! drops its local copy of the session. The new owner rebuilds the session from the
//! `subscriptions` rows (session present = 1); what was queued or in flight only here is
//! lost and counted (`meshmq_messages_dropped_total{reason="session_ended"}`): the hand-over
//! of that state over the peer link is not built yet.
//!
//! Owns only the watch: a claim feed from the replica, plus a periodic rescan that also
//! covers claims missed by a lagging feed or folded into a snapshot.

use std::sync::Arc;
use std::time::Duration;

use meshmq_shared::codec::ReasonCode;
use meshmq_shared::metrics as m;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use crate::broker::Ctx;
use crate::sessions::Control;

/// How often every local session is checked against the registry.
const RESCAN: Duration = Duration::from_secs(5);

/// Runs until shutdown.
pub async fn watch_remote_claims(ctx: Arc<Ctx>) {
    let mut claims = ctx.core.replica().subscribe_claims();
    let mut tick = tokio::time::interval(RESCAN);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
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

/// Closes the local connection of `client_id` (if any) and drops the local session, unless
/// the local session is newer than the claim (the client came back here since).
async fn moved(ctx: &Arc<Ctx>, client_id: &str, generation: u64, clean_start: bool) {
    let Some(slot) = ctx.sessions.get(client_id) else {
        return;
    };
    let control = {
        let mut inner = slot.inner.lock();
        if inner.generation >= generation {
            return;
        }
        inner.control.take()
    };
    if let Some(tx) = control {
        metrics::counter!(m::TAKEOVERS_TOTAL).increment(1);
        let _ = tx.try_send(Control::Kick {
            reason: ReasonCode::SessionTakenOver,
            session_ends: clean_start,
        });
    }
    debug!(%client_id, "session claimed by another node");
    super::close::end_session_moved(ctx, &slot).await;
}

/// Every local session whose registry row now names another node.
async fn rescan(ctx: &Arc<Ctx>) {
    let me = ctx.node().to_owned();
    let slots = ctx.sessions.all();
    // One read of the replica for every session (not one lock round per session).
    let gone: Vec<(String, u64)> = ctx.core.read(|t| {
        slots
            .iter()
            .filter_map(|slot| {
                t.registry(&slot.client_id)
                    .filter(|row| row.node != me)
                    .map(|row| (slot.client_id.to_string(), row.generation))
            })
            .collect()
    });
    for (client_id, generation) in gone {
        moved(ctx, &client_id, generation, false).await;
    }
}
