//! The old owner's side of a hand-over: detach the session from its connection (kicked with
//! 0x8E), send its deliveries and state to the new owner, forward what still reaches it
//! until the new owner says its routes are live (or [`FORWARD_MAX`]), then drop the copy.
//! A claim seen in the replica before any request waits [`REQUEST_WAIT`] for one.
//!
//! `TakeoverEnd` comes over the new owner's link, which is not ordered with the other
//! replicants' links to this node: a message another replicant routed here by the old routes
//! (before it applied the new owner's) can still be on its way. So on `TakeoverEnd` this node
//! first runs a peer barrier at the index it names: each replicant acks on its own link to
//! this node, behind whatever it queued here before, and the reader delivers a batch's
//! messages before it records its acks. Once the barrier is through, every message routed
//! here by the old routes is in the mailbox, and later ones also went to the new owner.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmq_proto::peer::{SessionItem, TakeoverEnd, TakeoverRequest, TakeoverState, session_item};
use meshmq_shared::codec::ReasonCode;
use meshmq_shared::metrics as m;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::take::peer_addr;
use super::to_wire;
use crate::connection::end_session_moved;
use crate::ctx::Ctx;
use crate::peer::Peers;
use crate::session::{Handed, HandedState};
use crate::sessions::{Control, Leaving, SessionSlot};

/// How long a session claimed elsewhere waits for the new owner's request before it ends.
pub const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// Longest this node forwards to the new owner without hearing `TakeoverEnd`.
pub const FORWARD_MAX: Duration = Duration::from_secs(10);
/// Longest this node waits, after `TakeoverEnd`, for the other replicants to confirm that
/// what they routed here by the old routes has arrived (a peer barrier).
pub const SETTLE_MAX: Duration = Duration::from_secs(5);

fn counted(result: &'static str) {
    metrics::counter!(m::HANDOVERS_TOTAL, "role" => "give", "result" => result).increment(1);
}

fn item(kind: session_item::Kind) -> SessionItem {
    SessionItem { kind: Some(kind) }
}

/// A takeover request from `from` (handled on its own task).
pub(super) fn on_request(ctx: &Arc<Ctx>, from: &str, req: TakeoverRequest) {
    tokio::spawn(give(ctx.clone(), from.to_owned(), req));
}

/// The new owner's routes are live (at `e.routes_index`): stop forwarding that session once
/// what was routed here before has arrived.
pub(super) fn on_end(ctx: &Ctx, e: &TakeoverEnd) {
    let mut outgoing = ctx.cluster.handovers.outgoing.lock();
    if outgoing
        .get(&e.client_id)
        .is_some_and(|(g, _)| *g == e.generation)
        && let Some((_, stop)) = outgoing.remove(&e.client_id)
    {
        let _ = stop.send(e.routes_index);
    }
}

/// A claim of `slot`'s client by another node was seen (clean start = 0): close the local
/// connection and keep the session, without an owner, for the new owner's request; end it
/// after [`REQUEST_WAIT`] if none comes. False when there is nothing to do (a newer local
/// connection, or a hand-over already under way).
pub(crate) fn await_request(ctx: &Arc<Ctx>, slot: &Arc<SessionSlot>, generation: u64) -> bool {
    let control = {
        let mut inner = slot.inner.lock();
        if inner.ended || inner.generation >= generation || inner.leaving != Leaving::No {
            return false;
        }
        inner.leaving = Leaving::AwaitingRequest;
        inner.owner = None;
        inner.epoch += 1;
        slot.mailbox.release();
        inner.control.take()
    };
    kick(control, false);
    let (ctx, slot) = (ctx.clone(), slot.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tokio::time::sleep(REQUEST_WAIT) => {}
        }
        if slot.inner.lock().leaving == Leaving::AwaitingRequest {
            counted("abandoned");
            debug!(client_id = %slot.client_id, "no takeover request came; session copy dropped");
            end_session_moved(&ctx, &slot).await;
        }
    });
    true
}

/// Drops (and counts) deliveries whose message expired: on the wire an expiry can only be
/// a remaining interval, which would bring them back to life.
fn drop_expired(deliveries: &mut Vec<Handed>, now: Instant) {
    let before = deliveries.len();
    deliveries.retain(|h| !h.delivery.msg.is_expired(now));
    let expired = before - deliveries.len();
    if expired > 0 {
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "expired")
            .increment(expired as u64);
    }
}

/// Closes the connection owning a session taken over by another node (DISCONNECT 0x8E);
/// `session_ends`: the session is discarded, so its will goes at once.
pub(crate) fn kick(control: Option<oneshot::Sender<Control>>, session_ends: bool) {
    if let Some(tx) = control {
        metrics::counter!(m::TAKEOVERS_TOTAL).increment(1);
        let _ = tx.send(Control::Kick {
            reason: ReasonCode::SessionTakenOver,
            session_ends,
        });
    }
}

/// Detaches the session of `slot` for a claim of `generation`: no connection owns it any
/// more and its state (with what waited in the mailbox) is taken out. `None` when there is
/// nothing to hand over.
fn detach(
    slot: &SessionSlot,
    generation: u64,
) -> Option<(Option<oneshot::Sender<Control>>, HandedState)> {
    let mut inner = slot.inner.lock();
    if inner.ended || inner.generation >= generation || inner.leaving == Leaving::Forwarding {
        return None;
    }
    let control = inner.control.take();
    inner.owner = None;
    inner.epoch += 1;
    inner.leaving = Leaving::Forwarding;
    let mut state = inner.session.export();
    slot.mailbox.set_pending(0, 0);
    let mut queued = Vec::new();
    slot.mailbox.drain(usize::MAX, &mut queued);
    slot.mailbox.release();
    state
        .deliveries
        .extend(queued.into_iter().map(|delivery| Handed {
            delivery,
            inflight: None,
        }));
    Some((control, state))
}

async fn give(ctx: Arc<Ctx>, from: String, req: TakeoverRequest) {
    let Some(peers) = ctx.cluster.peers.clone() else {
        return;
    };
    let Some(addr) = peer_addr(&ctx, &from) else {
        counted("unreachable");
        return;
    };
    let TakeoverRequest {
        client_id,
        generation,
    } = req;
    let slot = ctx.local.sessions.get(&client_id);
    let detached = slot.as_ref().and_then(|s| detach(s, generation));
    let (Some(slot), Some((control, mut state))) = (slot, detached) else {
        counted("not_found");
        let none = TakeoverState {
            client_id,
            generation,
            ..TakeoverState::default()
        };
        let _ = peers.send_session(&from, &addr, item(session_item::Kind::State(none)));
        return;
    };
    kick(control, false);
    // The client is connected (at the new owner): QoS 0 keeps flowing while forwarded.
    slot.mailbox.set_online(true);
    let stop = ctx.cluster.handovers.forwarding(&client_id, generation);
    let now = Instant::now();
    drop_expired(&mut state.deliveries, now);
    let n = state.deliveries.len();
    let send = |kind| peers.send_session(&from, &addr, item(kind));
    let mut sent = 0;
    for h in &state.deliveries {
        let d = to_wire(&client_id, generation, h, now);
        if send(session_item::Kind::Delivery(d)).is_ok() {
            sent += 1;
        }
    }
    let done = TakeoverState {
        client_id: client_id.clone(),
        generation,
        found: true,
        next_packet_id: u32::from(state.next_packet_id),
        awaiting_rel: state.awaiting_rel.iter().map(|&id| u32::from(id)).collect(),
        deliveries: n as u64,
    };
    metrics::counter!(m::HANDOVER_MESSAGES_TOTAL, "direction" => "sent").increment(sent as u64);
    if sent < n || send(session_item::Kind::State(done)).is_err() {
        // The new owner times out and goes on from the subscriptions table alone.
        counted("unreachable");
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "handover_failed")
            .increment((n - sent) as u64);
        ctx.cluster.handovers.forwarded(&client_id, generation);
        end_session_moved(&ctx, &slot).await;
        return;
    }
    counted("ok");
    debug!(%client_id, to = %from, deliveries = n, "session handed over");
    forward(&ctx, &peers, (&from, &addr), &slot, generation, stop).await;
}

/// Forwards what reaches the handed-over session's mailbox to the new owner until it says
/// stop (or [`FORWARD_MAX`]), then drops the local copy (its routes go with it).
async fn forward(
    ctx: &Arc<Ctx>,
    peers: &Peers,
    (node, addr): (&str, &str),
    slot: &Arc<SessionSlot>,
    generation: u64,
    mut stop: oneshot::Receiver<u64>,
) {
    let deadline = tokio::time::sleep(FORWARD_MAX);
    tokio::pin!(deadline);
    let mut queued = Vec::new();
    loop {
        let last = tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => true,
            end = &mut stop => {
                if let Ok(routes_index) = end {
                    settle(ctx, peers, routes_index).await;
                }
                true
            }
            _ = &mut deadline => true,
            _ = slot.mailbox.ready.notified() => false,
        };
        if last {
            // Nothing new reaches the mailbox after this; the drain below is the final one.
            ctx.local.router.unregister(slot.id);
        }
        slot.mailbox.drain(usize::MAX, &mut queued);
        let now = Instant::now();
        let mut batch: Vec<Handed> = queued
            .drain(..)
            .map(|delivery| Handed {
                delivery,
                inflight: None,
            })
            .collect();
        drop_expired(&mut batch, now);
        let (mut sent, mut failed) = (0u64, 0u64);
        for h in batch {
            let d = to_wire(&slot.client_id, generation, &h, now);
            match peers.send_session(node, addr, item(session_item::Kind::Delivery(d))) {
                Ok(()) => sent += 1,
                Err(_) => failed += 1,
            }
        }
        metrics::counter!(m::HANDOVER_MESSAGES_TOTAL, "direction" => "sent").increment(sent);
        if failed > 0 {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "handover_failed")
                .increment(failed);
        }
        if last {
            break;
        }
    }
    ctx.cluster.handovers.forwarded(&slot.client_id, generation);
    end_session_moved(ctx, slot).await;
}

/// After `TakeoverEnd` naming `routes_index`: waits (at most [`SETTLE_MAX`], or until
/// shutdown) until every other replicant whose link is up has acked that index (or this
/// node's own applied index, if higher) on its link to this node. Its acks ride behind what
/// it queued here, so the messages it routed here before it applied the new owner's routes
/// have by then been pushed into the mailbox (module doc). What reaches the mailbox
/// meanwhile waits there, in order, for the final drain.
async fn settle(ctx: &Ctx, peers: &Peers, routes_index: u64) {
    let index = routes_index.max(ctx.tables.core.applied_index());
    let report = tokio::select! {
        _ = ctx.admission.shutdown.cancelled() => return,
        r = peers.barrier(index, SETTLE_MAX) => r,
    };
    if !report.missing.is_empty() {
        warn!(
            index,
            missing = ?report.missing,
            "hand-over: replicants did not confirm in time; a message they routed here late is lost"
        );
    }
}
