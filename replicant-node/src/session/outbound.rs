//! Server → client: the in-flight window, packet ids, the pending queue, redelivery and
//! server-assigned topic aliases.
//!
//! Unacknowledged QoS 1/2 messages are re-sent only when a connection attaches to the
//! session (DUP=1), never on a timer while connected (MQTT 5.0 4.4).

use std::time::Instant;

use meshmq_shared::codec::{self, Packet, PubResp, QoS, ReasonCode};
use meshmq_shared::config::QueueDropPolicy;

use super::{Outgoing, Session};
use crate::message::{Delivery, PublishVariant};

/// Where an outbound QoS 1/2 delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// QoS 1 sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// One outbound QoS 1/2 delivery awaiting acknowledgement.
#[derive(Debug, Clone)]
pub struct Inflight {
    pub(super) packet_id: u16,
    pub(super) delivery: Delivery,
    pub(super) stage: Stage,
}

impl Session {
    /// Accepts a delivery routed to this session: sends it now if the window allows, else
    /// queues it (bounded; the drop policy decides, and the drop is counted).
    pub fn deliver(&mut self, now: Instant, d: Delivery, out: &mut Vec<Outgoing>) {
        if d.msg.is_expired(now) {
            self.drops.expired += 1;
            return;
        }
        if d.qos == QoS::AtMostOnce || (self.pending.is_empty() && self.window_open()) {
            self.send_new(now, d, out);
            return;
        }
        self.queue_back(d);
    }

    /// Queues `d` behind the pending queue; when it is full the drop policy picks the victim
    /// (counted).
    pub(super) fn queue_back(&mut self, d: Delivery) {
        if self.pending.len() >= self.limits.max_queue {
            self.drops.queue_full += 1;
            match self.limits.drop_policy {
                QueueDropPolicy::DropNewest => return,
                QueueDropPolicy::DropOldest => {
                    self.pending.pop_front();
                }
            }
        }
        self.pending.push_back(d);
    }

    /// Sends what the window admits from the pending queue.
    pub(super) fn pump(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        while self.window_open() {
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            if d.msg.is_expired(now) {
                self.drops.expired += 1;
                continue;
            }
            self.send_new(now, d, out);
        }
    }

    /// How many new QoS 1/2 deliveries would go out at once rather than wait: the free slots
    /// of the in-flight window, while nothing waits in the pending queue. A retained replay
    /// feeds the session no more than this, leaving the pending queue to live deliveries.
    pub fn send_room(&self) -> usize {
        if !self.pending.is_empty() {
            return 0;
        }
        let window = self.conn.receive_maximum.min(self.limits.max_inflight);
        usize::from(window).saturating_sub(self.inflight.len())
    }

    fn window_open(&self) -> bool {
        let window = self.conn.receive_maximum.min(self.limits.max_inflight);
        self.inflight.len() < usize::from(window)
    }

    fn send_new(&mut self, now: Instant, d: Delivery, out: &mut Vec<Outgoing>) {
        let mut variant = PublishVariant {
            qos: d.qos,
            packet_id: 0,
            dup: false,
            retain: d.retain,
            subscription_ids: d.subscription_ids.clone(),
            topic_alias: None,
            omit_topic: false,
        };
        if !self.fits_client(now, &d, &variant) {
            self.drops.too_large += 1;
            return;
        }
        self.assign_alias(&d, &mut variant);
        if d.qos != QoS::AtMostOnce {
            variant.packet_id = self.alloc_packet_id();
            let stage = if d.qos == QoS::AtLeastOnce {
                Stage::AwaitPubAck
            } else {
                Stage::AwaitPubRec
            };
            self.inflight.push_back(Inflight {
                packet_id: variant.packet_id,
                delivery: d.clone(),
                stage,
            });
        }
        out.push(Outgoing::Publish {
            msg: d.msg,
            variant,
        });
    }

    /// Maximum Packet Size of the client: a PUBLISH that would exceed it is dropped, not sent
    /// (MQTT 5.0 3.1.2.25). Only computed when the client set a limit.
    fn fits_client(&self, now: Instant, d: &Delivery, variant: &PublishVariant) -> bool {
        let max = self.conn.max_packet_size;
        if max == u32::MAX {
            return true;
        }
        let mut probe = variant.clone();
        probe.packet_id = u16::from(d.qos != QoS::AtMostOnce);
        let packet = Packet::Publish(d.msg.to_publish(now, &probe));
        codec::encoded_len(&packet, self.conn.version) <= max as usize
    }

    /// Server → client topic aliases (5.0): reuse a known alias with an empty topic, else
    /// assign a new one while the client's Topic Alias Maximum allows.
    fn assign_alias(&mut self, d: &Delivery, variant: &mut PublishVariant) {
        let max = self.conn.topic_alias_maximum;
        if max == 0 || !self.conn.version.is_v5() {
            return;
        }
        if let Some(&alias) = self.out_aliases.get(d.msg.topic.as_str()) {
            variant.topic_alias = Some(alias);
            variant.omit_topic = true;
        } else if self.out_aliases.len() < usize::from(max) {
            let alias = self.out_aliases.len() as u16 + 1;
            self.out_aliases.insert(d.msg.topic.clone(), alias);
            variant.topic_alias = Some(alias);
        }
    }

    pub(super) fn alloc_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }

    pub(super) fn resend_inflight(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        let mut expired = Vec::new();
        for f in &self.inflight {
            match f.stage {
                Stage::AwaitPubComp => {
                    out.push(Outgoing::Packet(Packet::PubRel(PubResp::new(f.packet_id))))
                }
                _ if f.delivery.msg.is_expired(now) => expired.push(f.packet_id),
                _ => {
                    let variant = PublishVariant {
                        qos: f.delivery.qos,
                        packet_id: f.packet_id,
                        dup: true,
                        retain: f.delivery.retain,
                        subscription_ids: f.delivery.subscription_ids.clone(),
                        topic_alias: None,
                        omit_topic: false,
                    };
                    out.push(Outgoing::Publish {
                        msg: f.delivery.msg.clone(),
                        variant,
                    });
                }
            }
        }
        for id in expired {
            self.drops.expired += 1;
            self.inflight.retain(|f| f.packet_id != id);
        }
    }

    fn position(&self, packet_id: u16, stage: Stage) -> Option<usize> {
        self.inflight
            .iter()
            .position(|f| f.packet_id == packet_id && f.stage == stage)
    }

    /// PUBACK from the client: frees the window slot.
    pub fn on_puback(&mut self, now: Instant, packet_id: u16, out: &mut Vec<Outgoing>) {
        if let Some(i) = self.position(packet_id, Stage::AwaitPubAck) {
            self.inflight.remove(i);
            self.pump(now, out);
        }
    }

    /// PUBREC from the client: answer PUBREL (or end the flow on an error reason code).
    pub fn on_pubrec(&mut self, now: Instant, p: &PubResp, out: &mut Vec<Outgoing>) {
        match self.position(p.packet_id, Stage::AwaitPubRec) {
            Some(i) if p.reason.is_error() => {
                self.inflight.remove(i);
                self.pump(now, out);
            }
            Some(i) => {
                if let Some(f) = self.inflight.get_mut(i) {
                    f.stage = Stage::AwaitPubComp;
                }
                out.push(Outgoing::Packet(Packet::PubRel(PubResp::new(p.packet_id))));
            }
            None if self.position(p.packet_id, Stage::AwaitPubComp).is_some() => {
                out.push(Outgoing::Packet(Packet::PubRel(PubResp::new(p.packet_id))));
            }
            None if self.conn.version.is_v5() => {
                let mut rel = PubResp::new(p.packet_id);
                rel.reason = ReasonCode::PacketIdentifierNotFound;
                out.push(Outgoing::Packet(Packet::PubRel(rel)));
            }
            None => out.push(Outgoing::Packet(Packet::PubRel(PubResp::new(p.packet_id)))),
        }
    }

    /// PUBCOMP from the client: the QoS 2 flow is complete.
    pub fn on_pubcomp(&mut self, now: Instant, packet_id: u16, out: &mut Vec<Outgoing>) {
        if let Some(i) = self.position(packet_id, Stage::AwaitPubComp) {
            self.inflight.remove(i);
            self.pump(now, out);
        }
    }
}
