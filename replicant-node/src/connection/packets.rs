//! Dispatch of packets received after CONNECT: PUBLISH and the acks, PING, DISCONNECT,
//! AUTH (re-authentication, in `enhanced_auth`), and the packets a client must never send.

use std::sync::Arc;
use std::time::Instant;

use meshmq_shared::codec::{Disconnect, Packet, Publish, QoS, ReasonCode};
use meshmq_shared::metrics as m;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Conn, Exit};
use crate::authz::PublishDenied;
use crate::cluster;
use crate::message::{Message, counted_bytes};
use crate::publish;
use crate::session::{Outgoing, SessionError};
use meshmq_shared::auth::acl::Request;
use meshmq_shared::config::DenyAction;

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Handles one packet; `Some(exit)` ends the connection.
    pub(super) async fn on_packet(&mut self, packet: Packet) -> Option<Exit> {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await,
            Packet::PubAck(p) => self
                .with_session(|s, now, out| s.on_puback(now, p.packet_id, out))
                .map_or(self.kicked(), |_| None),
            Packet::PubRec(p) => self
                .with_session(|s, now, out| s.on_pubrec(now, &p, out))
                .map_or(self.kicked(), |_| None),
            Packet::PubRel(p) => self
                .with_session(|s, now, out| s.on_pubrel(now, p.packet_id, out))
                .map_or(self.kicked(), |_| None),
            Packet::PubComp(p) => self
                .with_session(|s, now, out| s.on_pubcomp(now, p.packet_id, out))
                .map_or(self.kicked(), |_| None),
            // Boxed: their table transactions make large futures, which would otherwise be
            // part of every (mostly idle) connection task's size.
            Packet::Subscribe(s) => Box::pin(self.on_subscribe(s)).await,
            Packet::Unsubscribe(u) => Box::pin(self.on_unsubscribe(u)).await,
            Packet::PingReq => {
                self.out.push(Outgoing::Packet(Packet::PingResp));
                self.encode_out();
                None
            }
            Packet::Disconnect(d) => Some(self.on_disconnect(d)),
            Packet::Auth(a) => self.on_auth(a),
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => {
                metrics::counter!(m::PROTOCOL_ERRORS_TOTAL, "reason" => "unexpected_packet")
                    .increment(1);
                self.queue_disconnect(ReasonCode::ProtocolError);
                Some(Exit::ServerClose(ReasonCode::ProtocolError))
            }
        }
    }

    /// The session was taken over while this connection was still reading.
    pub(super) fn kicked(&self) -> Option<Exit> {
        Some(Exit::Kicked {
            reason: ReasonCode::SessionTakenOver,
            session_ends: false,
        })
    }

    async fn on_publish(&mut self, mut p: Publish) -> Option<Exit> {
        metrics::counter!(m::MESSAGES_RECEIVED_TOTAL, "qos" => qos_label(p.qos)).increment(1);
        self.slot
            .stats
            .recv_msg
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !p.properties.subscription_identifiers.is_empty() {
            // MQTT-3.3.4-6: only the server puts Subscription Identifiers in a PUBLISH.
            metrics::counter!(m::PROTOCOL_ERRORS_TOTAL, "reason" => "subscription_identifier")
                .increment(1);
            self.queue_disconnect(ReasonCode::ProtocolError);
            return Some(Exit::ServerClose(ReasonCode::ProtocolError));
        }
        if p.retain && !self.ctx.config.mqtt.retain_available {
            self.queue_disconnect(ReasonCode::RetainNotSupported);
            return Some(Exit::ServerClose(ReasonCode::RetainNotSupported));
        }
        let resolved = self.with_session(|s, _, _| s.resolve_alias(&mut p));
        match resolved {
            None => return self.kicked(),
            Some(Err(e)) => {
                if e == SessionError::TopicAliasQuotaExceeded {
                    metrics::counter!(m::QUOTA_EXCEEDED_TOTAL, "quota" => "topic_alias_bytes")
                        .increment(1);
                } else {
                    metrics::counter!(m::PROTOCOL_ERRORS_TOTAL, "reason" => "topic_alias")
                        .increment(1);
                }
                self.queue_disconnect(e.reason_code());
                return Some(Exit::ServerClose(e.reason_code()));
            }
            Some(Ok(())) => {}
        }
        self.trace(&crate::trace::Event::PublishIn {
            topic: &p.topic,
            qos: super::traced::qos_num(p.qos),
            payload: &p.payload,
            retain: p.retain,
        });
        // Checked with its retain flag and QoS, so rules can forbid retaining.
        let req = Request::Publish {
            topic: &p.topic,
            qos: p.qos as u8,
            retain: p.retain,
        };
        let authz = &self.ctx.authz;
        let verdict = authz
            .check_async(
                &self.ctx.tables,
                &self.authz,
                self.authz_cache.as_ref(),
                req,
            )
            .await;
        if let Err(denied) = verdict {
            PublishDenied::from(denied).count();
            self.trace(&crate::trace::Event::PublishDenied { topic: &p.topic });
            if authz.deny_action == DenyAction::Disconnect {
                // 5.0: DISCONNECT 0x87 first; 3.1.1: the connection just closes.
                self.queue_disconnect(ReasonCode::NotAuthorized);
                return Some(Exit::ServerClose(ReasonCode::NotAuthorized));
            }
        }
        let allowed = verdict.is_ok();
        let (refusal, store) = self.retained_verdict(&p, allowed);
        let decision =
            self.with_session(|s, now, out| s.on_publish_or_refuse(now, p, refusal, out));
        let route = match decision {
            None => return self.kicked(),
            Some(Err(e)) => {
                self.queue_disconnect(e.reason_code());
                return Some(Exit::ServerClose(e.reason_code()));
            }
            Some(Ok(inbound)) => inbound.route,
        };
        if let Some(p) = route {
            let now = Instant::now();
            let every = self.ctx.config.metrics.latency_sample_every;
            let mut msg = Message::new(now, p.topic, p.payload, p.qos, p.retain, p.properties);
            msg.from = Some(self.slot.id);
            msg.from_client = Some(self.client_id.clone());
            msg.sampled = crate::delivery_latency::sample(every, now);
            let congested = if store {
                publish::publish(&self.ctx, Arc::new(msg)).await
            } else {
                publish::deliver(&self.ctx, Arc::new(msg))
            };
            if congested.is_some() {
                self.congested = congested;
            }
        }
        None
    }

    /// What answers `p` and whether its retained message is stored: a refusal when not
    /// `allowed` (0x87); a retained message the retained quota (`mqtt.max_retained_messages`,
    /// `mqtt.max_retained_bytes`) has no room for in the local replica is not stored and
    /// counted, and a 5.0 QoS 1/2 PUBLISH carrying it is refused with 0x97 Quota exceeded
    /// (a failure code means "not accepted", so it is not delivered either). QoS 0 and 3.1.1
    /// publishers cannot be told: theirs is delivered to current subscribers, as EMQX does.
    fn retained_verdict(&self, p: &Publish, allowed: bool) -> (Option<ReasonCode>, bool) {
        if !allowed {
            return (Some(ReasonCode::NotAuthorized), true);
        }
        if !p.retain || p.payload.is_empty() {
            return (None, true);
        }
        let bytes = counted_bytes(&p.topic, p.payload.len(), &p.properties);
        match cluster::retained_fits(&self.ctx, &p.topic, bytes) {
            Ok(()) => (None, true),
            Err(quota) => {
                cluster::count_retained_refused(quota);
                let told = self.version.is_v5() && p.qos != QoS::AtMostOnce;
                (told.then_some(ReasonCode::QuotaExceeded), false)
            }
        }
    }

    /// DISCONNECT from the client: 0x04 keeps the will; a 5.0 session expiry in DISCONNECT
    /// replaces the one from CONNECT, except that it may not turn 0 into non-zero.
    fn on_disconnect(&mut self, d: Disconnect) -> Exit {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.connect_expiry_zero && expiry != 0 {
                metrics::counter!(m::PROTOCOL_ERRORS_TOTAL, "reason" => "session_expiry")
                    .increment(1);
                self.queue_disconnect(ReasonCode::ProtocolError);
                return Exit::ServerClose(ReasonCode::ProtocolError);
            }
            let capped = expiry.min(self.ctx.runtime.current().config.mqtt.max_session_expiry);
            let mut inner = self.slot.inner.lock();
            if inner.owner == Some(self.id) {
                inner.expiry_secs = capped;
            }
        }
        Exit::ClientDisconnect(d.reason)
    }
}

/// Metric label of a QoS.
pub(crate) fn qos_label(q: QoS) -> &'static str {
    match q {
        QoS::AtMostOnce => "0",
        QoS::AtLeastOnce => "1",
        QoS::ExactlyOnce => "2",
    }
}
