//! Cross-node session hand-over: a client with a persistent session connects to another
//! replicant (a load balancer sent it there), and its session moves with it — in-flight
//! QoS 1/2 deliveries (same packet ids), the queue, `awaiting_rel`, the next packet id —
//! over the peer link, so that nothing queued for the client is lost by moving
//! (docs/architecture.md, invariant 3).
//!
//! The new owner N ([`take`]) claims the client id in the registry, sends `TakeoverRequest`
//! to the old owner O and waits (bounded) for the state. O ([`give`]) closes the client's
//! old connection (v5 DISCONNECT 0x8E), sends the session's deliveries then a
//! `TakeoverState`, and from then on forwards whatever still reaches its copy (its routes
//! are still in the tables) until N, whose routes are by then known on every replicant,
//! sends `TakeoverEnd`; O then waits until every other replicant has acked, on its own link
//! to O, the index N's routes were live at (so what they routed to O by the old routes has
//! arrived: [`give`]), forwards that, and drops its copy. Everything rides the ordered peer
//! link O→N, so the state arrives before the forwarded deliveries. Subscriptions are not sent: the
//! `subscriptions` table has them (N restores them as after a restart).
//!
//! Owns the registry of hand-overs in progress ([`Handovers`]) and the wire form of a
//! handed-over delivery. It never blocks the peer receive task (work is spawned), and a
//! hand-over that cannot finish ends in a bounded time with its losses counted.
//!
//! Known window: a message published while both nodes' routes are live can reach the client
//! twice (directly at N and forwarded by O); QoS 1 allows it, and for QoS 0 it is rare.

pub mod give;
pub mod take;

use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use hashbrown::HashMap;
use meshmq_proto::peer::{DeliveryStage, SessionDelivery, SessionItem, session_item};
use meshmq_shared::codec::QoS;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::ctx::Ctx;
use crate::message::Delivery;
use crate::peer::OnSession;
use crate::session::{Handed, HandedState, Stage};

/// What the old owner sent for a takeover this node requested.
#[derive(Debug)]
pub struct Received {
    /// The old owner had the session and handed it over.
    pub found: bool,
    /// The session's state (empty when not found).
    pub state: HandedState,
}

/// A takeover this node requested and is waiting for.
struct Incoming {
    /// The registry generation of our claim.
    generation: u64,
    /// Deliveries received so far, in order.
    deliveries: Vec<Handed>,
    /// Completed when the `TakeoverState` arrives.
    done: oneshot::Sender<Received>,
}

/// Hand-overs in progress on this node, both ways.
#[derive(Default)]
pub struct Handovers {
    /// Takeovers this node requested, by client id.
    incoming: Mutex<HashMap<String, Incoming>>,
    /// Sessions this node handed over and still forwards, by client id: the generation of
    /// the new owner's claim and how to tell the forwarder to stop (with the log index at
    /// which the new owner's routes are live).
    outgoing: Mutex<HashMap<String, (u64, oneshot::Sender<u64>)>>,
}

impl Handovers {
    /// Registers a takeover of `client_id` about to be requested (replacing an older one).
    fn expect(&self, client_id: &str, generation: u64) -> oneshot::Receiver<Received> {
        let (done, rx) = oneshot::channel();
        self.incoming.lock().insert(
            client_id.to_owned(),
            Incoming {
                generation,
                deliveries: Vec::new(),
                done,
            },
        );
        rx
    }

    /// Forgets the takeover of `client_id` at `generation` (it timed out or failed).
    fn cancel(&self, client_id: &str, generation: u64) {
        let mut incoming = self.incoming.lock();
        if incoming
            .get(client_id)
            .is_some_and(|i| i.generation == generation)
        {
            incoming.remove(client_id);
        }
    }

    /// Registers the forwarder of a session handed over; returns its stop signal.
    fn forwarding(&self, client_id: &str, generation: u64) -> oneshot::Receiver<u64> {
        let (tx, rx) = oneshot::channel();
        self.outgoing
            .lock()
            .insert(client_id.to_owned(), (generation, tx));
        rx
    }

    /// Removes the forwarder entry of `client_id` if it is still the one of `generation`.
    fn forwarded(&self, client_id: &str, generation: u64) {
        let mut outgoing = self.outgoing.lock();
        if outgoing
            .get(client_id)
            .is_some_and(|(g, _)| *g == generation)
        {
            outgoing.remove(client_id);
        }
    }
}

/// The peer callback for session items; `ctx` is set once the broker context exists.
pub fn on_session_fn(ctx: Arc<OnceLock<Weak<Ctx>>>) -> OnSession {
    Arc::new(move |from: &str, item: SessionItem| {
        let Some(ctx) = ctx.get().and_then(Weak::upgrade) else {
            return;
        };
        match item.kind {
            Some(session_item::Kind::Request(r)) => give::on_request(&ctx, from, r),
            Some(session_item::Kind::End(e)) => give::on_end(&ctx, &e),
            Some(session_item::Kind::Delivery(d)) => take::on_delivery(&ctx, d),
            Some(session_item::Kind::State(s)) => take::on_state(&ctx, s),
            Some(session_item::Kind::Migrate(r)) => {
                crate::evacuation::migrate::on_migrate(&ctx, from, r);
            }
            None => metrics::counter!(
                meshmq_shared::metrics::PEER_MALFORMED_TOTAL,
                "reason" => "empty_session_item"
            )
            .increment(1),
        }
    })
}

/// The wire form of one handed-over delivery.
fn to_wire(client_id: &str, generation: u64, h: &Handed, now: Instant) -> SessionDelivery {
    let d = &h.delivery;
    let (packet_id, stage) = match h.inflight {
        None => (0, DeliveryStage::Queued),
        Some((id, Stage::AwaitPubAck)) => (id, DeliveryStage::AwaitPuback),
        Some((id, Stage::AwaitPubRec)) => (id, DeliveryStage::AwaitPubrec),
        Some((id, Stage::AwaitPubComp)) => (id, DeliveryStage::AwaitPubcomp),
    };
    SessionDelivery {
        client_id: client_id.to_owned(),
        generation,
        message: Some(crate::forward::to_wire(&d.msg, now)),
        qos: d.qos as u32,
        retain: d.retain,
        subscription_ids: d.subscription_ids.clone(),
        packet_id: u32::from(packet_id),
        stage: stage as i32,
    }
}

/// A handed-over delivery from its wire form; `None` when a field is out of range.
fn from_wire(sd: SessionDelivery, now: Instant) -> Option<Handed> {
    let msg = crate::forward::from_wire(sd.message?, now)?;
    let qos = u8::try_from(sd.qos).ok().and_then(QoS::from_u8)?;
    let packet_id = u16::try_from(sd.packet_id).ok()?;
    let stage = match DeliveryStage::try_from(sd.stage).ok()? {
        DeliveryStage::Queued => None,
        DeliveryStage::AwaitPuback => Some(Stage::AwaitPubAck),
        DeliveryStage::AwaitPubrec => Some(Stage::AwaitPubRec),
        DeliveryStage::AwaitPubcomp => Some(Stage::AwaitPubComp),
    };
    let inflight = match stage {
        Some(s) if packet_id != 0 => Some((packet_id, s)),
        Some(_) => return None,
        None => None,
    };
    Some(Handed {
        delivery: Delivery {
            msg: Arc::new(msg),
            qos,
            retain: sd.retain,
            subscription_ids: sd.subscription_ids,
        },
        inflight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use meshmq_shared::codec::Properties;

    #[test]
    fn a_handed_delivery_survives_the_wire() {
        let now = Instant::now();
        let msg = crate::message::Message::new(
            now,
            "t/1".into(),
            Bytes::from_static(b"p"),
            QoS::ExactlyOnce,
            false,
            Properties::default(),
        );
        let h = Handed {
            delivery: Delivery {
                msg: Arc::new(msg),
                qos: QoS::AtLeastOnce,
                retain: true,
                subscription_ids: vec![4],
            },
            inflight: Some((17, Stage::AwaitPubAck)),
        };
        let back = from_wire(to_wire("c", 3, &h, now), now).expect("valid");
        assert_eq!(back.inflight, Some((17, Stage::AwaitPubAck)));
        assert_eq!(back.delivery.qos, QoS::AtLeastOnce);
        assert!(back.delivery.retain);
        assert_eq!(back.delivery.subscription_ids, vec![4]);
        assert_eq!(back.delivery.msg.topic, "t/1");
        let mut bad = to_wire("c", 3, &h, now);
        bad.packet_id = 0;
        assert!(
            from_wire(bad, now).is_none(),
            "in flight without a packet id"
        );
        let mut bad = to_wire("c", 3, &h, now);
        bad.packet_id = 70_000;
        assert!(from_wire(bad, now).is_none());
    }
}
