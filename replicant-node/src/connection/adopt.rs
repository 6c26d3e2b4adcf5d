//! A session adopted without a connection: an evacuating node asks this one to take one of
//! its disconnected persistent sessions (`crate::evacuation::migrate`). This node claims
//! the client id and takes the session over exactly as a CONNECT with clean start = 0
//! would (in-flight and queued messages come over the peer link, subscriptions from the
//! tables), then keeps it disconnected: deliveries queue, the expiry clock runs, and the
//! client finds it here (session present = 1), or anywhere else through a normal takeover.

use std::sync::Arc;

use meshmq_shared::codec::ProtocolVersion;
use tracing::debug;

use super::{close, connect, restore};
use crate::broker::Ctx;
use crate::cluster;
use crate::handover;

/// Adopts `client_id`'s session from `from`; true when it is now held here.
pub(crate) async fn adopt(
    ctx: &Arc<Ctx>,
    from: &str,
    client_id: &str,
    expiry: u32,
    version: ProtocolVersion,
) -> bool {
    if expiry == 0 || ctx.sessions.get(client_id).is_some() {
        // Nothing to keep, or the session (or its client) is already here.
        return false;
    }
    let client_id: Arc<str> = Arc::from(client_id);
    let claimed = cluster::claim(ctx, &client_id, false, expiry, version).await;
    if claimed.generation == 0 {
        return false;
    }
    let generation = claimed.generation;
    let owner = (None, None);
    let slot = connect::install_slot(ctx, &client_id, version, owner, generation, expiry).await;
    if !claimed.session_existed {
        // It expired meanwhile: nothing to adopt, and the claim must not linger.
        super::end_session(ctx, &slot, true).await;
        return false;
    }
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
    let epoch = {
        let mut inner = slot.inner.lock();
        if inner.ended {
            return false;
        }
        if inner.owner.is_some() {
            // Its client connected here while it moved: it is attached already.
            return true;
        }
        inner.epoch += 1;
        inner.epoch
    };
    cluster::disconnected(ctx, &client_id, generation, expiry).await;
    close::spawn_expiry_timer(ctx, &slot, epoch, expiry);
    debug!(%client_id, from, handed, "session adopted without a connection");
    true
}
