//! Client → server: topic alias resolution, QoS 1/2 acknowledgements and the QoS 2
//! `awaiting_rel` set with its limits and expiry.
//!
//! Decides whether an inbound PUBLISH is routed and what answers it; the caller routes.

use std::time::Instant;

use meshmq_shared::codec::{Packet, PubResp, Publish, QoS, ReasonCode};

use super::{Outgoing, Session, SessionError};

/// The session's decision about one inbound PUBLISH.
#[derive(Debug)]
pub struct Inbound {
    /// The publish with its topic resolved from the alias, when it must be routed.
    pub route: Option<Publish>,
}

impl Session {
    /// Handles an inbound PUBLISH. `allowed` is the authorization verdict for its topic (the
    /// caller resolves the alias first with [`Session::resolve_alias`] to know the topic).
    /// Acks are pushed to `out`; an `Err` closes the connection with its reason code.
    pub fn on_publish(
        &mut self,
        now: Instant,
        p: Publish,
        allowed: bool,
        out: &mut Vec<Outgoing>,
    ) -> Result<Inbound, SessionError> {
        let refusal = (!allowed).then_some(ReasonCode::NotAuthorized);
        self.on_publish_or_refuse(now, p, refusal, out)
    }

    /// [`Session::on_publish`] with the reason a refused PUBLISH gets (0x87 Not authorized,
    /// 0x97 Quota exceeded), `None` to accept it. A refused one is never routed; 5.0 QoS 1/2
    /// acks carry the reason, 3.1.1 cannot say it and acks normally. A re-sent QoS 2
    /// PUBLISH that was accepted already is acknowledged as accepted, whatever `refusal`.
    pub fn on_publish_or_refuse(
        &mut self,
        now: Instant,
        p: Publish,
        refusal: Option<ReasonCode>,
        out: &mut Vec<Outgoing>,
    ) -> Result<Inbound, SessionError> {
        let v5 = self.conn.version.is_v5();
        let ack = |pid| {
            let mut r = PubResp::new(pid);
            if let (Some(reason), true) = (refusal, v5) {
                r.reason = reason;
            }
            r
        };
        match p.qos {
            QoS::AtMostOnce => Ok(Inbound {
                route: refusal.is_none().then_some(p),
            }),
            QoS::AtLeastOnce => {
                out.push(Outgoing::Packet(Packet::PubAck(ack(p.packet_id))));
                Ok(Inbound {
                    route: refusal.is_none().then_some(p),
                })
            }
            QoS::ExactlyOnce => self.on_publish_qos2(now, p, refusal, out),
        }
    }

    fn on_publish_qos2(
        &mut self,
        now: Instant,
        p: Publish,
        refusal: Option<ReasonCode>,
        out: &mut Vec<Outgoing>,
    ) -> Result<Inbound, SessionError> {
        let pid = p.packet_id;
        let v5 = self.conn.version.is_v5();
        self.purge_awaiting_rel(now);
        if self.awaiting_rel.contains_key(&pid) {
            // A re-sent PUBLISH (DUP) of a message we already have: acknowledge, don't route.
            out.push(Outgoing::Packet(Packet::PubRec(PubResp::new(pid))));
            return Ok(Inbound { route: None });
        }
        if let Some(reason) = refusal {
            let mut r = PubResp::new(pid);
            if v5 {
                r.reason = reason;
                out.push(Outgoing::Packet(Packet::PubRec(r)));
            } else {
                // 3.1.1 has no failure PUBREC: complete the flow without routing.
                self.awaiting_rel.insert(pid, now);
                out.push(Outgoing::Packet(Packet::PubRec(r)));
            }
            return Ok(Inbound { route: None });
        }
        // Receive Maximum is an MQTT 5 flow-control rule (3.3.4); a 3.1.1 client has no such
        // limit and meets only `max_awaiting_rel` below.
        if v5 && self.awaiting_rel.len() >= usize::from(self.limits.receive_maximum) {
            return Err(SessionError::ReceiveMaximumExceeded);
        }
        if self.awaiting_rel.len() >= self.limits.max_awaiting_rel {
            // Refused and counted. 5.0: PUBREC 0x97 Quota exceeded (0x93 is not a PUBREC
            // code). 3.1.1 cannot say "refused": a plain PUBREC completes the client's flow
            // (its PUBREL then gets a PUBCOMP) and the message is dropped, as EMQX does.
            self.drops.awaiting_rel_full += 1;
            let mut r = PubResp::new(pid);
            if v5 {
                r.reason = ReasonCode::QuotaExceeded;
            }
            out.push(Outgoing::Packet(Packet::PubRec(r)));
            return Ok(Inbound { route: None });
        }
        self.awaiting_rel.insert(pid, now);
        out.push(Outgoing::Packet(Packet::PubRec(PubResp::new(pid))));
        Ok(Inbound { route: Some(p) })
    }

    /// Resolves a 5.0 topic alias in place: records `alias → topic` when both are given,
    /// fills the topic when only the alias is.
    pub fn resolve_alias(&mut self, p: &mut Publish) -> Result<(), SessionError> {
        let Some(alias) = p.properties.topic_alias else {
            return if p.topic.is_empty() {
                Err(SessionError::Protocol("empty topic without topic alias"))
            } else {
                Ok(())
            };
        };
        if alias == 0 || alias > self.limits.max_topic_alias {
            return Err(SessionError::TopicAliasInvalid);
        }
        if p.topic.is_empty() {
            match self.in_aliases.get(&alias) {
                Some(topic) => p.topic.clone_from(topic),
                None => return Err(SessionError::Protocol("unknown topic alias")),
            }
        } else {
            let max = self.limits.max_topic_alias_bytes;
            self.in_aliases.insert_within(alias, p.topic.clone(), max)?;
        }
        p.properties.topic_alias = None;
        Ok(())
    }

    /// PUBREL from the client: releases the packet id and answers PUBCOMP (0x92 when the id
    /// is unknown, in 5.0).
    pub fn on_pubrel(&mut self, now: Instant, packet_id: u16, out: &mut Vec<Outgoing>) {
        self.purge_awaiting_rel(now);
        let mut comp = PubResp::new(packet_id);
        if self.awaiting_rel.remove(&packet_id).is_none() && self.conn.version.is_v5() {
            comp.reason = ReasonCode::PacketIdentifierNotFound;
        }
        out.push(Outgoing::Packet(Packet::PubComp(comp)));
    }

    /// Purges inbound QoS 2 packet ids older than `await_rel_timeout`; they then neither block
    /// a new message with the same id nor count against the limits.
    pub fn purge_awaiting_rel(&mut self, now: Instant) {
        let timeout = self.limits.await_rel_timeout;
        let before = self.awaiting_rel.len();
        self.awaiting_rel
            .retain(|_, t| now.saturating_duration_since(*t) < timeout);
        self.drops.awaiting_rel_expired += (before - self.awaiting_rel.len()) as u64;
    }
}
