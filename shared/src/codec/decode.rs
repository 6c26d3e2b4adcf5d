//! The MQTT decoder: bytes from the front of a buffer in, one validated [`Packet`] out.
//!
//! Owns the fixed header rules (packet type, reserved flags, remaining length, maximum packet
//! size), CONNECT-first version detection, and the body grammar and validity rules of every
//! packet type in 3.1, 3.1.1 and 5.0. It must never panic or read past a packet, never
//! allocate for a length before the bytes are in the buffer, never consume bytes when it
//! answers `Ok(None)`, and never judge topic filters (the broker does, per filter).

use bytes::{Buf, BytesMut};

use super::decode_connect::{decode_connack, decode_connect};
use super::error::DecodeError;
use super::packet::*;
use super::properties::Properties;
use super::props_codec::{PropsOf, read_properties};
use super::reason::ReasonCode;
use super::wire::{Cursor, malformed, read_varint};

/// Stateful decoder for one connection: the first packet must be CONNECT, whose protocol
/// level selects how everything after it is read.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Set by the first CONNECT; `None` means only a CONNECT is acceptable.
    version: Option<ProtocolVersion>,
    /// Our limit on incoming packets, fixed header included.
    max_packet_size: u32,
}

impl Decoder {
    /// A decoder for a new connection accepting packets of at most `max_packet_size` bytes
    /// (whole packet, fixed header included).
    pub fn new(max_packet_size: u32) -> Decoder {
        Decoder {
            version: None,
            max_packet_size,
        }
    }

    /// The protocol version of the connection; `None` until CONNECT is decoded.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Changes the limit on incoming packets.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// Decodes one packet from the front of `buf`, consuming its bytes. `Ok(None)` means more
    /// bytes are needed (nothing is consumed). The announced size is checked against the
    /// limit as soon as the fixed header is readable, before the body arrives. After an error
    /// the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let is_connect = first >> 4 == 1;
        match self.version {
            None if !is_connect => return Err(DecodeError::FirstPacketNotConnect),
            Some(_) if is_connect => return Err(DecodeError::ProtocolError("second CONNECT")),
            _ => {}
        }
        let packet = decode_frame(buf, self.version, self.max_packet_size)?;
        if let Some(Packet::Connect(c)) = &packet {
            self.version = Some(c.protocol);
        }
        Ok(packet)
    }
}

/// Decodes one packet of a connection whose version is already known, with no CONNECT-first
/// rule (a CONNECT is read with its own protocol level). For clients and tests that read
/// server packets. `Ok(None)` means more bytes are needed (nothing is consumed).
pub fn decode_packet(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    decode_frame(buf, Some(version), max_packet_size)
}

/// What the fixed header announces.
#[derive(Debug, Clone, Copy)]
struct FixedHeader {
    /// Packet type, 1..=15.
    kind: u8,
    /// The low nibble of the first byte.
    flags: u8,
    /// Bytes taken by the fixed header itself (2..=5).
    header_len: usize,
    /// The remaining length: bytes of the packet after the fixed header.
    remaining: usize,
}

/// Checks the first byte on its own: packet type and reserved flags (section 2.1.3).
fn check_first_byte(byte: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let flags = byte & 0x0f;
    let expected = match byte >> 4 {
        0 => return Err(malformed("packet type 0 is reserved")),
        3 if (flags >> 1) & 0b11 == 0b11 => return Err(malformed("PUBLISH with QoS 3")),
        3 => return Ok(()),
        6 | 8 | 10 => 0b0010,
        15 if version.is_some_and(|v| !v.is_v5()) => {
            return Err(malformed("AUTH does not exist before MQTT 5.0"));
        }
        _ => 0,
    };
    if flags == expected {
        Ok(())
    } else {
        Err(malformed("reserved fixed header flags"))
    }
}

/// Reads the fixed header once it is complete, checking the packet size against `max`.
fn read_header(
    buf: &[u8],
    version: Option<ProtocolVersion>,
    max: u32,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    check_first_byte(first, version)?;
    let Some((remaining, len)) = read_varint(buf.get(1..).unwrap_or_default())? else {
        return Ok(None);
    };
    let (header_len, remaining) = (1 + len, remaining as usize);
    let size = header_len + remaining;
    if size as u64 > u64::from(max) {
        return Err(DecodeError::PacketTooLarge { size, max });
    }
    Ok(Some(FixedHeader {
        kind: first >> 4,
        flags: first & 0x0f,
        header_len,
        remaining,
    }))
}

/// Decodes one whole packet if `buf` holds it. `version` is `None` before CONNECT.
fn decode_frame(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(h) = read_header(buf, version, max)? else {
        return Ok(None);
    };
    if buf.len() - h.header_len < h.remaining {
        return Ok(None);
    }
    buf.advance(h.header_len);
    let mut cur = Cursor::new(buf.split_to(h.remaining).freeze());
    let packet = match (h.kind, version) {
        (1, _) => Packet::Connect(Box::new(decode_connect(&mut cur)?)),
        (_, Some(v)) => decode_body(h, &mut cur, v)?,
        (_, None) => return Err(DecodeError::FirstPacketNotConnect),
    };
    cur.finish("bytes after the end of the packet")?;
    Ok(Some(packet))
}

/// Decodes the body of every packet type but CONNECT.
fn decode_body(h: FixedHeader, c: &mut Cursor, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    Ok(match h.kind {
        2 => Packet::ConnAck(decode_connack(c, v)?),
        3 => Packet::Publish(decode_publish(h.flags, c, v)?),
        4 => Packet::PubAck(decode_pub_resp(c, v, PUBACK_CODES)?),
        5 => Packet::PubRec(decode_pub_resp(c, v, PUBACK_CODES)?),
        6 => Packet::PubRel(decode_pub_resp(c, v, PUBREL_CODES)?),
        7 => Packet::PubComp(decode_pub_resp(c, v, PUBREL_CODES)?),
        8 => Packet::Subscribe(decode_subscribe(c, v)?),
        9 => Packet::SubAck(decode_suback(c, v)?),
        10 => Packet::Unsubscribe(decode_unsubscribe(c, v)?),
        11 => Packet::UnsubAck(decode_unsuback(c, v)?),
        12 => Packet::PingReq,
        13 => Packet::PingResp,
        14 => Packet::Disconnect(decode_disconnect(c, v)?),
        _ => Packet::Auth(decode_auth(c)?),
    })
}

/// A property section in 5.0; nothing (empty properties) in 3.x.
pub(super) fn props(
    c: &mut Cursor,
    v: ProtocolVersion,
    of: PropsOf,
) -> Result<Properties, DecodeError> {
    if v.is_v5() {
        read_properties(c, of)
    } else {
        Ok(Properties::default())
    }
}

/// A topic name: no wildcards (0x90). Emptiness is the caller's rule.
pub(super) fn topic_name(c: &mut Cursor, what: &'static str) -> Result<String, DecodeError> {
    let topic = c.str(what)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::TopicNameInvalid("wildcard in a topic name"));
    }
    Ok(topic.to_owned())
}

/// A packet identifier that must not be 0 (SUBSCRIBE, UNSUBSCRIBE, PUBLISH with QoS > 0).
fn nonzero_packet_id(c: &mut Cursor) -> Result<u16, DecodeError> {
    match c.u16("packet identifier")? {
        0 => Err(DecodeError::ProtocolError("packet identifier 0")),
        id => Ok(id),
    }
}

/// With payload format indicator 1 the payload must be UTF-8 (0x99).
pub(super) fn check_payload_format(props: &Properties, payload: &[u8]) -> Result<(), DecodeError> {
    if props.payload_format_indicator == Some(1) && std::str::from_utf8(payload).is_err() {
        return Err(DecodeError::PayloadFormatInvalid);
    }
    Ok(())
}

/// A reason code byte that must be one of `codes`.
pub(super) fn reason(c: &mut Cursor, codes: &[u8]) -> Result<ReasonCode, DecodeError> {
    let raw = c.u8("reason code")?;
    codes
        .contains(&raw)
        .then(|| ReasonCode::from_u8(raw))
        .flatten()
        .ok_or(malformed("reason code not defined for this packet"))
}

/// PUBLISH (section 3.3): the hot path. The payload is a zero-copy slice.
fn decode_publish(flags: u8, c: &mut Cursor, v: ProtocolVersion) -> Result<Publish, DecodeError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(malformed("PUBLISH with QoS 3"))?;
    let retain = flags & 0x01 != 0;
    let topic = topic_name(c, "topic name")?;
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        nonzero_packet_id(c)?
    };
    let properties = props(c, v, PropsOf::Publish)?;
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(if v.is_v5() {
            DecodeError::ProtocolError("empty topic name without a topic alias")
        } else {
            DecodeError::TopicNameInvalid("empty topic name")
        });
    }
    if dup && qos == QoS::AtMostOnce && v.is_v5() {
        return Err(DecodeError::ProtocolError("DUP set on a QoS 0 PUBLISH"));
    }
    let payload = c.rest();
    check_payload_format(&properties, &payload)?;
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        payload,
        properties,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (sections 3.4 to 3.7), with the 5.0 short forms.
fn decode_pub_resp(
    c: &mut Cursor,
    v: ProtocolVersion,
    codes: &[u8],
) -> Result<PubResp, DecodeError> {
    let packet_id = c.u16("packet identifier")?;
    if !v.is_v5() || c.is_empty() {
        return Ok(PubResp::new(packet_id));
    }
    let reason = reason(c, codes)?;
    let properties = if c.is_empty() {
        Properties::default()
    } else {
        read_properties(c, PropsOf::PubResp)?
    };
    Ok(PubResp {
        packet_id,
        reason,
        properties,
    })
}

/// The subscription options byte (section 3.8.3.1; 3.1.1 has only the QoS).
fn subscription_options(byte: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if v.is_v5() { 0xc0 } else { 0xfc };
    if byte & reserved != 0 {
        return Err(malformed("reserved subscription option bits"));
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(malformed("subscription QoS 3"))?;
    let retain_handling = (byte >> 4) & 0b11;
    if retain_handling == 3 {
        return Err(malformed("retain handling 3"));
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

/// SUBSCRIBE (section 3.8). Filters pass through unjudged.
fn decode_subscribe(c: &mut Cursor, v: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = nonzero_packet_id(c)?;
    let properties = props(c, v, PropsOf::Subscribe)?;
    let mut filters = Vec::new();
    while !c.is_empty() {
        let filter = c.string("topic filter")?;
        let options = subscription_options(c.u8("subscription options")?, v)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "SUBSCRIBE without a topic filter",
        ));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// SUBACK (section 3.9); 3.x return code 0x80 reads as UnspecifiedError.
fn decode_suback(c: &mut Cursor, v: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = c.u16("packet identifier")?;
    let properties = props(c, v, PropsOf::SubAck)?;
    let mut reasons = Vec::with_capacity(c.remaining().min(64));
    while !c.is_empty() {
        reasons.push(reason(
            c,
            if v.is_v5() {
                SUBACK_CODES
            } else {
                V3_SUBACK_CODES
            },
        )?);
    }
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}

/// UNSUBSCRIBE (section 3.10). Filters pass through unjudged.
fn decode_unsubscribe(c: &mut Cursor, v: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = nonzero_packet_id(c)?;
    let properties = props(c, v, PropsOf::Unsubscribe)?;
    let mut filters = Vec::new();
    while !c.is_empty() {
        filters.push(c.string("topic filter")?);
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError(
            "UNSUBSCRIBE without a topic filter",
        ));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

/// UNSUBACK (section 3.11); no payload in 3.x.
fn decode_unsuback(c: &mut Cursor, v: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = c.u16("packet identifier")?;
    let properties = props(c, v, PropsOf::UnsubAck)?;
    let mut reasons = Vec::new();
    while v.is_v5() && !c.is_empty() {
        reasons.push(reason(c, UNSUBACK_CODES)?);
    }
    Ok(UnsubAck {
        packet_id,
        reasons,
        properties,
    })
}

/// The reason code and properties of DISCONNECT and AUTH, either of which may be omitted.
fn short_tail(
    c: &mut Cursor,
    codes: &[u8],
    of: PropsOf,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if c.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let reason = reason(c, codes)?;
    let properties = if c.is_empty() {
        Properties::default()
    } else {
        read_properties(c, of)?
    };
    Ok((reason, properties))
}

/// DISCONNECT (section 3.14); empty in 3.x, and may be empty in 5.0 (normal disconnection).
fn decode_disconnect(c: &mut Cursor, v: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() {
        return Ok(Disconnect::new(ReasonCode::Success));
    }
    let (reason, properties) = short_tail(c, DISCONNECT_CODES, PropsOf::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

/// AUTH (section 3.15): empty means Success; otherwise a method is required.
fn decode_auth(c: &mut Cursor) -> Result<Auth, DecodeError> {
    let (reason, properties) = short_tail(c, AUTH_CODES, PropsOf::Auth)?;
    let short = reason == ReasonCode::Success && properties.is_empty();
    if !short && properties.authentication_method.is_none() {
        return Err(DecodeError::ProtocolError(
            "AUTH without an authentication method",
        ));
    }
    Ok(Auth { reason, properties })
}

/// PUBACK and PUBREC reason codes (sections 3.4.2.1, 3.5.2.1).
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// PUBREL and PUBCOMP reason codes (sections 3.6.2.1, 3.7.2.1).
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
/// 5.0 SUBACK reason codes (section 3.9.3).
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// 3.x SUBACK return codes: granted QoS or failure.
const V3_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// UNSUBACK reason codes (section 3.11.3).
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// DISCONNECT reason codes (section 3.14.2.1).
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// AUTH reason codes (section 3.15.2.1).
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];
