//! A session's outbound and QoS 2 state as it moves to another node (cross-node takeover):
//! [`Session::export`] takes it out of the old owner's copy, [`Session::import`] puts it into
//! the new owner's, where the next `attach` re-sends what was in flight (DUP=1, same packet
//! ids) and pumps the rest.
//!
//! Pure: no wire format (see `crate::handover`), no clock of its own.

use std::time::Instant;

use super::outbound::Stage;
use super::{Inflight, Session};
use crate::message::Delivery;

/// One outbound delivery of a session being handed over.
#[derive(Debug, Clone)]
pub struct Handed {
    /// The delivery (message, granted QoS, flags, subscription ids).
    pub delivery: Delivery,
    /// Where it stood: `None` = not sent yet (queued); else its packet id and stage.
    pub inflight: Option<(u16, Stage)>,
}

/// Everything of a session that lives only in the owning node's memory.
#[derive(Debug, Clone, Default)]
pub struct HandedState {
    /// In flight first (in send order), then queued (in queue order).
    pub deliveries: Vec<Handed>,
    /// The packet id the session would have used next.
    pub next_packet_id: u16,
    /// Inbound QoS 2 packet ids not yet released.
    pub awaiting_rel: Vec<u16>,
}

impl Session {
    /// Takes the in-flight window, the pending queue and `awaiting_rel` out of this session
    /// (it keeps its subscriptions), in the order the new owner must restore them.
    pub fn export(&mut self) -> HandedState {
        self.unsent = 0;
        let mut deliveries: Vec<Handed> = self
            .inflight
            .drain(..)
            .map(|f| Handed {
                delivery: f.delivery,
                inflight: Some((f.packet_id, f.stage)),
            })
            .collect();
        deliveries.extend(self.pending.drain(..).map(|delivery| Handed {
            delivery,
            inflight: None,
        }));
        let mut awaiting_rel: Vec<u16> = self.awaiting_rel.drain().map(|(id, _)| id).collect();
        awaiting_rel.sort_unstable();
        HandedState {
            deliveries,
            next_packet_id: self.next_packet_id,
            awaiting_rel,
        }
    }

    /// Adds a handed-over state to this session: in-flight entries keep their packet ids
    /// (one whose id is already in use here is queued instead, to be sent under a new id),
    /// queued ones go behind this session's own queue (bounded as usual, drops counted).
    /// Nothing is sent: the next [`Session::attach`] does.
    pub fn import(&mut self, now: Instant, state: HandedState) {
        if state.next_packet_id != 0 && self.inflight.is_empty() {
            self.next_packet_id = state.next_packet_id;
        }
        for h in state.deliveries {
            match h.inflight {
                Some((packet_id, stage))
                    if packet_id != 0
                        && !self.inflight.iter().any(|f| f.packet_id == packet_id) =>
                {
                    self.inflight.push_back(Inflight {
                        packet_id,
                        delivery: h.delivery,
                        stage,
                    });
                    // Not sent on any connection of this node: waits for the attach.
                    self.unsent += 1;
                }
                // A PUBREL whose id is taken here cannot be re-sent: the PUBREC was
                // received, so the client has the message; nothing is lost.
                Some((_, Stage::AwaitPubComp)) => {}
                _ => self.enqueue(now, h.delivery),
            }
        }
        for id in state.awaiting_rel {
            if id != 0 {
                self.awaiting_rel.insert(id, now);
            }
        }
    }

    /// Queues `d` behind the pending queue unless it expired.
    fn enqueue(&mut self, now: Instant, d: Delivery) {
        if d.msg.is_expired(now) {
            self.drops.expired += 1;
        } else {
            self.queue_back(d);
        }
    }
}
