//! A session adopted without a connection: an evacuating node asks this one to take one of
//! its disconnected persistent sessions (`crate::evacuation::migrate`). This node claims
//! the client id on condition that the evacuating node still holds the session
//! disconnected (apply decides, so a client that came back keeps its connection), and takes
//! the session over exactly as a CONNECT with clean start = 0 would (in-flight and queued
//! messages come over the peer link, subscriptions from the tables), then keeps it
//! disconnected: deliveries queue, the expiry clock runs, and the client finds it here
//! (session present = 1), or anywhere else through a normal takeover.

use std::sync::Arc;

use meshmq_shared::codec::ProtocolVersion;
use tracing::debug;

use super::{close, connect, restore};
use crate::cluster::{self, ClaimRefused};
use crate::ctx::Ctx;
use crate::handover;

/// What an adoption did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adopted {
    /// The session came over with its in-flight and queued messages.
    HandedOver,
    /// The old node did not hand it over in time: rebuilt from the tables (subscriptions
    /// only; what was queued there is lost and counted there).
    Rebuilt,
    /// Nothing adopted: its client is connected somewhere, it is held here already, it
    /// expired, or the claim failed.
    Skipped,
}

/// Adopts `client_id`'s session from `from`. The claim itself requires that `from` still
/// holds it, disconnected (`cluster::claim_held_offline_by`); otherwise nothing changes.
pub(crate) async fn adopt(
    ctx: &Arc<Ctx>,
    from: &str,
    client_id: &str,
    expiry: u32,
    version: ProtocolVersion,
) -> Adopted {
    if expiry == 0 || ctx.local.sessions.get(client_id).is_some() {
        // Nothing is left to keep, or its client came back here.
        return Adopted::Skipped;
    }
    let client_id: Arc<str> = Arc::from(client_id);
    // The claim applies only while `from` still holds the session disconnected, decided
    // by apply in the claim's place in the log: no window in which a client that came back
    // (to `from` or anywhere) could be taken over.
    let claimed = match cluster::claim_held_offline_by(
        &ctx.tables,
        &client_id,
        from,
        expiry,
        version,
    )
    .await
    {
        Ok(claimed) => claimed,
        Err(ClaimRefused::Conflict) => {
            debug!(%client_id, from, "not adopted: its session is no longer offline there");
            return Adopted::Skipped;
        }
        Err(ClaimRefused::NotCommitted) => return Adopted::Skipped,
    };
    let generation = claimed.generation;
    if !claimed.session_existed {
        // It expired meanwhile: the claim must not linger.
        cluster::transact(
            &ctx.tables,
            vec![cluster::registry_remove(&client_id, generation)],
        )
        .await;
        return Adopted::Skipped;
    }
    if ctx.local.sessions.get(&client_id).is_some() {
        // A CONNECT of its client is being set up here right now: it takes the session.
        return Adopted::Skipped;
    }
    let owner = (None, None);
    let slot = connect::install_slot(ctx, &client_id, version, owner, generation, expiry).await;
    let previous = claimed
        .previous
        .map(|p| p.node)
        .filter(|node| node != ctx.node());
    let mut handed = false;
    if let Some(node) = &previous {
        handed = handover::take::take_over(ctx, &slot, node, generation).await;
    }
    restore::restore(ctx, &slot).await;
    if let Some(node) = previous.filter(|_| handed) {
        handover::take::finish(ctx, &node, &client_id, generation);
    }
    let (epoch, generation) = {
        let mut inner = slot.inner.lock();
        if inner.ended {
            return Adopted::Skipped;
        }
        if inner.owner.is_some() {
            // Its client connected here while it moved: it is attached already.
            return if handed {
                Adopted::HandedOver
            } else {
                Adopted::Rebuilt
            };
        }
        inner.epoch += 1;
        (inner.epoch, inner.generation)
    };
    cluster::disconnected(&ctx.tables, &client_id, generation, expiry).await;
    close::spawn_expiry_timer(ctx, &slot, epoch, expiry);
    debug!(%client_id, from, handed, "session adopted without a connection");
    if handed {
        Adopted::HandedOver
    } else {
        Adopted::Rebuilt
    }
}
