//! The new owner's side of a hand-over: ask the old owner for the session, wait (bounded)
//! for its deliveries and state, import them into the new session, and say when the old
//! owner may stop forwarding.

use std::time::{Duration, Instant};

use meshmq_proto::peer::{
    SessionDelivery, SessionItem, TakeoverEnd, TakeoverRequest, TakeoverState, session_item,
};
use meshmq_proto::tables::NodeState;
use meshmq_shared::metrics as m;
use tracing::{debug, warn};

use super::{Received, from_wire};
use crate::ctx::Ctx;
use crate::session::HandedState;
use crate::sessions::SessionSlot;

/// Longest a CONNECT waits for the old owner's state before going on without it.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

fn counted(result: &'static str) {
    metrics::counter!(m::HANDOVERS_TOTAL, "role" => "take", "result" => result).increment(1);
}

/// The peer address of replicant `node`, unless it left or never had one.
pub(super) fn peer_addr(ctx: &Ctx, node: &str) -> Option<String> {
    ctx.tables.core.read(|t| {
        t.node(node)
            .filter(|r| r.status != NodeState::Left as i32 && !r.peer_addr.is_empty())
            .map(|r| r.peer_addr.clone())
    })
}

fn item(kind: session_item::Kind) -> SessionItem {
    SessionItem { kind: Some(kind) }
}

/// Asks `node` for the session of `slot`'s client (our registry claim is `generation`) and
/// imports what it sends into the slot's session. True when a session was handed over;
/// false when `node` had none, could not be reached or did not answer within
/// [`TAKEOVER_WAIT`] (counted; the caller goes on with the subscriptions table alone).
pub(crate) async fn take_over(ctx: &Ctx, slot: &SessionSlot, node: &str, generation: u64) -> bool {
    let Some(peers) = &ctx.cluster.peers else {
        return false;
    };
    let client_id = &*slot.client_id;
    let Some(addr) = peer_addr(ctx, node) else {
        counted("unreachable");
        return false;
    };
    let answer = ctx.cluster.handovers.expect(client_id, generation);
    let request = item(session_item::Kind::Request(TakeoverRequest {
        client_id: client_id.to_owned(),
        generation,
    }));
    if let Err(reason) = peers.send_session(node, &addr, request) {
        ctx.cluster.handovers.cancel(client_id, generation);
        counted("unreachable");
        debug!(
            client_id,
            node,
            reason = reason.label(),
            "takeover request not sent"
        );
        return false;
    }
    let received = match tokio::time::timeout(TAKEOVER_WAIT, answer).await {
        Ok(Ok(r)) => r,
        _ => {
            ctx.cluster.handovers.cancel(client_id, generation);
            counted("timeout");
            warn!(
                client_id,
                node, "no session state from the old owner in time"
            );
            return false;
        }
    };
    if !received.found {
        counted("not_found");
        return false;
    }
    let n = received.state.deliveries.len() as u64;
    let drops = {
        let mut inner = slot.inner.lock();
        if inner.ended {
            return false;
        }
        let s = &mut inner.session;
        s.import(Instant::now(), received.state);
        // The same bound as on the old owner: the imported queue and what reached this
        // node's mailbox meanwhile, together.
        let (queued, queued_bytes) = slot.mailbox.usage();
        s.fit_queue(queued, queued_bytes);
        slot.mailbox.set_pending(s.pending_len(), s.pending_bytes());
        s.take_drops()
    };
    crate::connection::record_drops(drops);
    counted("ok");
    metrics::counter!(m::HANDOVER_MESSAGES_TOTAL, "direction" => "received").increment(n);
    debug!(client_id, node, deliveries = n, "session handed over");
    true
}

/// Tells `node` that this node's routes for `client_id` are known everywhere, so it may stop
/// forwarding and drop its copy (if this cannot be sent, it stops at its own deadline). The
/// index named is this node's applied index, at or past the one those routes were confirmed
/// at.
pub(crate) fn finish(ctx: &Ctx, node: &str, client_id: &str, generation: u64) {
    let (Some(peers), Some(addr)) = (&ctx.cluster.peers, peer_addr(ctx, node)) else {
        return;
    };
    let end = item(session_item::Kind::End(TakeoverEnd {
        client_id: client_id.to_owned(),
        generation,
        routes_index: ctx.tables.core.applied_index(),
    }));
    let _ = peers.send_session(node, &addr, end);
}

/// A delivery of a session handed to this node: buffered while the takeover waits for its
/// state, then (forwarded by the old owner afterwards) pushed to the session's mailbox.
pub(super) fn on_delivery(ctx: &Ctx, sd: SessionDelivery) {
    let (client_id, generation) = (sd.client_id.clone(), sd.generation);
    let Some(h) = from_wire(sd, Instant::now()) else {
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "bad_peer_message").increment(1);
        return;
    };
    {
        let mut incoming = ctx.cluster.handovers.incoming.lock();
        if let Some(i) = incoming.get_mut(&client_id)
            && i.generation == generation
        {
            i.deliveries.push(h);
            return;
        }
    }
    match ctx.local.sessions.get(&client_id) {
        Some(slot) if slot.inner.lock().generation == generation => {
            metrics::counter!(m::HANDOVER_MESSAGES_TOTAL, "direction" => "received").increment(1);
            slot.mailbox.push(h.delivery);
        }
        _ => {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "handover_orphan")
                .increment(1);
        }
    }
}

/// The end of the old owner's snapshot: completes the waiting takeover.
pub(super) fn on_state(ctx: &Ctx, s: TakeoverState) {
    let incoming = {
        let mut map = ctx.cluster.handovers.incoming.lock();
        match map.get(&s.client_id) {
            Some(i) if i.generation == s.generation => map.remove(&s.client_id),
            _ => None,
        }
    };
    let Some(incoming) = incoming else {
        debug!(client_id = %s.client_id, "session state for no waiting takeover (it timed out)");
        return;
    };
    if incoming.deliveries.len() as u64 != s.deliveries {
        warn!(
            client_id = %s.client_id,
            expected = s.deliveries,
            got = incoming.deliveries.len(),
            "handed-over deliveries missing"
        );
    }
    let state = HandedState {
        deliveries: incoming.deliveries,
        next_packet_id: u16::try_from(s.next_packet_id).unwrap_or(0),
        awaiting_rel: s
            .awaiting_rel
            .iter()
            .filter_map(|&id| u16::try_from(id).ok())
            .collect(),
    };
    let _ = incoming.done.send(Received {
        found: s.found,
        state,
    });
}
