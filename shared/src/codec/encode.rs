//! The MQTT encoder: one [`Packet`] in, its bytes appended to a buffer.
//!
//! Owns the wire layout of every packet for 3.1, 3.1.1 and 5.0: the 5.0 short forms (an ack,
//! DISCONNECT or AUTH with Success and no properties), the 3.x reason code mapping
//! (`to_v3_connack`, `to_v3_suback`), and dropping what a version cannot carry (properties
//! and reason codes in 3.x). It trusts the packet's semantics (the broker builds valid
//! packets) but checks every length first, so it never writes a partial packet; it must
//! never validate on the hot path beyond that.
//!
//! Sizes and bytes come from two walks over the packet ([`body_len`] and [`write_body`]) that
//! must make the same choices; `encoded_len` is exact because of that.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::packet::*;
use super::properties::Properties;
use super::props_codec::{PropsOf, properties_len, put_properties, section_len};
use super::reason::ReasonCode;
use super::wire::{Sizer, put_binary, put_str, put_varint, varint_len};

/// Encodes `packet` for `version` (server→client or client→server), appending it to `out`.
/// A CONNECT is written with its own `protocol`. On error nothing is appended.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut sizer = Sizer::default();
    let body = body_len(packet, version, &mut sizer);
    let total = 1 + sizer.remaining(body);
    if let Some(e) = sizer.err {
        return Err(e);
    }
    out.reserve(total);
    out.put_u8(first_byte(packet));
    put_varint(out, u32::try_from(body).unwrap_or(u32::MAX));
    write_body(packet, version, out);
    Ok(())
}

/// Size the packet would have on the wire (fixed header included), for Maximum Packet Size
/// checks. Exact for every packet `encode` accepts.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let mut sizer = Sizer::default();
    let body = body_len(packet, version, &mut sizer);
    1 + sizer.remaining(body)
}

/// The first byte: packet type and flags.
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            0x30 | (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xa2,
        Packet::UnsubAck(_) => 0xb0,
        Packet::PingReq => 0xc0,
        Packet::PingResp => 0xd0,
        Packet::Disconnect(_) => 0xe0,
        Packet::Auth(_) => 0xf0,
    }
}

/// The remaining length of `packet`; problems go to `s`.
fn body_len(packet: &Packet, v: ProtocolVersion, s: &mut Sizer) -> usize {
    match packet {
        Packet::Connect(c) => connect_len(c, s),
        Packet::ConnAck(a) => 2 + section(v, &a.properties, PropsOf::ConnAck, s),
        Packet::Publish(p) => {
            let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
            s.string(&p.topic)
                + id
                + section(v, &p.properties, PropsOf::Publish, s)
                + p.payload.len()
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            if v.is_v5() {
                2 + tail_len(r.reason, &r.properties, PropsOf::PubResp, s)
            } else {
                2
            }
        }
        Packet::Subscribe(sub) => {
            let filters: usize = sub.filters.iter().map(|(f, _)| s.string(f) + 1).sum();
            2 + section(v, &sub.properties, PropsOf::Subscribe, s) + filters
        }
        Packet::SubAck(a) => 2 + section(v, &a.properties, PropsOf::SubAck, s) + a.reasons.len(),
        Packet::Unsubscribe(u) => {
            let filters: usize = u.filters.iter().map(|f| s.string(f)).sum();
            2 + section(v, &u.properties, PropsOf::Unsubscribe, s) + filters
        }
        Packet::UnsubAck(a) if v.is_v5() => {
            2 + section(v, &a.properties, PropsOf::UnsubAck, s) + a.reasons.len()
        }
        Packet::UnsubAck(_) => 2,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) if v.is_v5() => {
            tail_len(d.reason, &d.properties, PropsOf::Disconnect, s)
        }
        Packet::Disconnect(_) => 0,
        Packet::Auth(a) => {
            if !v.is_v5() {
                s.fail(EncodeError::NotInVersion {
                    packet: "AUTH",
                    version: v,
                });
            }
            tail_len(a.reason, &a.properties, PropsOf::Auth, s)
        }
    }
}

/// Writes the body of `packet` (after the fixed header), making the choices of [`body_len`].
fn write_body(packet: &Packet, v: ProtocolVersion, out: &mut BytesMut) {
    match packet {
        Packet::Connect(c) => write_connect(c, out),
        Packet::ConnAck(a) => write_connack(a, v, out),
        Packet::Publish(p) => {
            put_str(out, &p.topic);
            if p.qos != QoS::AtMostOnce {
                out.put_u16(p.packet_id);
            }
            put_section(out, v, &p.properties, PropsOf::Publish);
            out.put_slice(&p.payload);
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            out.put_u16(r.packet_id);
            if v.is_v5() {
                put_tail(out, r.reason, &r.properties, PropsOf::PubResp);
            }
        }
        Packet::Subscribe(sub) => {
            out.put_u16(sub.packet_id);
            put_section(out, v, &sub.properties, PropsOf::Subscribe);
            for (filter, options) in &sub.filters {
                put_str(out, filter);
                out.put_u8(options_byte(options, v));
            }
        }
        Packet::SubAck(a) => {
            out.put_u16(a.packet_id);
            put_section(out, v, &a.properties, PropsOf::SubAck);
            for r in &a.reasons {
                out.put_u8(if v.is_v5() {
                    r.as_u8()
                } else {
                    r.to_v3_suback()
                });
            }
        }
        Packet::Unsubscribe(u) => {
            out.put_u16(u.packet_id);
            put_section(out, v, &u.properties, PropsOf::Unsubscribe);
            for filter in &u.filters {
                put_str(out, filter);
            }
        }
        Packet::UnsubAck(a) => {
            out.put_u16(a.packet_id);
            if v.is_v5() {
                put_section(out, v, &a.properties, PropsOf::UnsubAck);
                out.extend(a.reasons.iter().map(|r| r.as_u8()));
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) if v.is_v5() => {
            put_tail(out, d.reason, &d.properties, PropsOf::Disconnect)
        }
        Packet::Disconnect(_) => {}
        Packet::Auth(a) => put_tail(out, a.reason, &a.properties, PropsOf::Auth),
    }
}

/// A property section's size in 5.0; nothing in 3.x.
fn section(v: ProtocolVersion, p: &Properties, of: PropsOf, s: &mut Sizer) -> usize {
    if v.is_v5() { section_len(p, of, s) } else { 0 }
}

/// Writes a property section in 5.0; nothing in 3.x.
fn put_section(out: &mut BytesMut, v: ProtocolVersion, p: &Properties, of: PropsOf) {
    if v.is_v5() {
        put_properties(out, p, of);
    }
}

/// Size of a 5.0 reason code and properties that may be left out: nothing for Success with no
/// properties, the reason alone with no properties, else both.
fn tail_len(reason: ReasonCode, p: &Properties, of: PropsOf, s: &mut Sizer) -> usize {
    match (properties_len(p, of, s), reason) {
        (0, ReasonCode::Success) => 0,
        (0, _) => 1,
        (len, _) => 1 + varint_len(u32::try_from(len).unwrap_or(u32::MAX)) + len,
    }
}

/// Writes what [`tail_len`] sized.
fn put_tail(out: &mut BytesMut, reason: ReasonCode, p: &Properties, of: PropsOf) {
    match (properties_len(p, of, &mut Sizer::default()), reason) {
        (0, ReasonCode::Success) => {}
        (0, _) => out.put_u8(reason.as_u8()),
        _ => {
            out.put_u8(reason.as_u8());
            put_properties(out, p, of);
        }
    }
}

/// The subscription options byte; only the QoS in 3.x.
fn options_byte(o: &SubscriptionOptions, v: ProtocolVersion) -> u8 {
    let qos = o.qos as u8;
    if !v.is_v5() {
        return qos;
    }
    qos | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling & 0b11) << 4)
}

/// The protocol name of a CONNECT.
fn protocol_name(v: ProtocolVersion) -> &'static str {
    if v == ProtocolVersion::V31 {
        "MQIsdp"
    } else {
        "MQTT"
    }
}

/// CONNECT's remaining length, in its own protocol version.
fn connect_len(c: &Connect, s: &mut Sizer) -> usize {
    let v = c.protocol;
    let mut len = s.string(protocol_name(v)) + 4 + section(v, &c.properties, PropsOf::Connect, s);
    len += s.string(&c.client_id);
    if let Some(w) = &c.will {
        len +=
            section(v, &w.properties, PropsOf::Will, s) + s.string(&w.topic) + s.binary(&w.payload);
    }
    len += c.username.as_deref().map_or(0, |u| s.string(u));
    len + c.password.as_deref().map_or(0, |p| s.binary(p))
}

/// CONNECT's flags byte (section 3.1.2.3).
fn connect_flags(c: &Connect) -> u8 {
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    flags | (u8::from(c.password.is_some()) << 6) | (u8::from(c.username.is_some()) << 7)
}

/// Writes CONNECT's body in its own protocol version.
fn write_connect(c: &Connect, out: &mut BytesMut) {
    let v = c.protocol;
    put_str(out, protocol_name(v));
    out.put_u8(v.level());
    out.put_u8(connect_flags(c));
    out.put_u16(c.keep_alive);
    put_section(out, v, &c.properties, PropsOf::Connect);
    put_str(out, &c.client_id);
    if let Some(w) = &c.will {
        put_section(out, v, &w.properties, PropsOf::Will);
        put_str(out, &w.topic);
        put_binary(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_str(out, u);
    }
    if let Some(p) = &c.password {
        put_binary(out, p);
    }
}

/// Writes CONNACK's body: the 5.0 reason code, or the 3.x return code.
fn write_connack(a: &ConnAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u8(u8::from(a.session_present));
    out.put_u8(if v.is_v5() {
        a.code.as_u8()
    } else {
        a.code.to_v3_connack()
    });
    put_section(out, v, &a.properties, PropsOf::ConnAck);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use bytes::Bytes;

    use super::*;

    fn bytes(packet: &Packet, v: ProtocolVersion) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(packet, v, &mut out).unwrap();
        assert_eq!(encoded_len(packet, v), out.len());
        out.to_vec()
    }

    #[test]
    fn qos0_publish_is_a_straight_write() {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: 0,
            payload: Bytes::from_static(b"hi"),
            properties: Properties::default(),
        });
        assert_eq!(
            bytes(&p, ProtocolVersion::V311),
            [0x31, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']
        );
        assert_eq!(
            bytes(&p, ProtocolVersion::V5),
            [0x31, 8, 0, 3, b'a', b'/', b'b', 0, b'h', b'i']
        );
    }

    #[test]
    fn short_forms_in_v5_and_fixed_forms_in_v311() {
        let v5 = ProtocolVersion::V5;
        let v311 = ProtocolVersion::V311;
        let ack = Packet::PubAck(PubResp::new(7));
        assert_eq!(bytes(&ack, v5), [0x40, 2, 0, 7]);
        assert_eq!(bytes(&ack, v311), [0x40, 2, 0, 7]);
        let mut refused = PubResp::new(7);
        refused.reason = ReasonCode::NotAuthorized;
        assert_eq!(
            bytes(&Packet::PubRec(refused.clone()), v5),
            [0x50, 3, 0, 7, 0x87]
        );
        assert_eq!(bytes(&Packet::PubRec(refused), v311), [0x50, 2, 0, 7]);
        let normal = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
        assert_eq!(bytes(&normal, v5), [0xe0, 0]);
        assert_eq!(bytes(&normal, v311), [0xe0, 0]);
        let taken = Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver));
        assert_eq!(bytes(&taken, v5), [0xe0, 1, 0x8e]);
        assert_eq!(bytes(&taken, v311), [0xe0, 0]);
        let auth = Packet::Auth(Auth {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        });
        assert_eq!(bytes(&auth, v5), [0xf0, 0]);
        let mut out = BytesMut::new();
        assert!(matches!(
            encode(&auth, v311, &mut out),
            Err(EncodeError::NotInVersion { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn v311_maps_reason_codes_and_drops_properties() {
        let v311 = ProtocolVersion::V311;
        let props = Properties {
            reason_string: Some("no".into()),
            ..Properties::default()
        };
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::Banned,
            properties: props.clone(),
        });
        assert_eq!(bytes(&connack, v311), [0x20, 2, 0, 5]);
        assert_eq!(
            bytes(&connack, ProtocolVersion::V5),
            [0x20, 8, 0, 0x8a, 5, 0x1f, 0, 2, b'n', b'o']
        );
        let reasons = vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid];
        let suback = Packet::SubAck(SubAck {
            packet_id: 1,
            reasons: reasons.clone(),
            properties: props,
        });
        assert_eq!(bytes(&suback, v311), [0x90, 4, 0, 1, 1, 0x80]);
        let unsuback = Packet::UnsubAck(UnsubAck {
            packet_id: 1,
            reasons,
            properties: Properties::default(),
        });
        assert_eq!(bytes(&unsuback, v311), [0xb0, 2, 0, 1]);
        assert_eq!(
            bytes(&unsuback, ProtocolVersion::V5),
            [0xb0, 5, 0, 1, 0, 0x01, 0x8f]
        );
    }

    #[test]
    fn oversized_fields_are_refused_before_writing() {
        let mut out = BytesMut::new();
        let p = Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            filters: vec!["x".repeat(70_000)],
            properties: Properties::default(),
        });
        assert_eq!(
            encode(&p, ProtocolVersion::V5, &mut out),
            Err(EncodeError::StringTooLong { len: 70_000 })
        );
        let big = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: 0,
            payload: Bytes::from(vec![0u8; 268_435_456]),
            properties: Properties::default(),
        });
        assert!(matches!(
            encode(&big, ProtocolVersion::V311, &mut out),
            Err(EncodeError::RemainingLengthTooLarge { .. })
        ));
        assert!(out.is_empty());
    }
}
