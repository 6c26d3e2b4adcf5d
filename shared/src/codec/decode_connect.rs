//! Decoding of the handshake packets, CONNECT and CONNACK: protocol name and level, CONNECT
//! flags, the will, and the CONNACK reason or return code.
//!
//! Owns version detection: the protocol name and level are read before anything else, so an
//! unknown level is reported as such and never as a malformed packet. It must never read a
//! field of a CONNECT whose version it does not speak, and never judge credentials or client
//! identifiers (the broker does).

use super::decode::{check_payload_format, props, reason, topic_name};
use super::error::DecodeError;
use super::packet::{ConnAck, Connect, ProtocolVersion, QoS, Will};
use super::props_codec::PropsOf;
use super::reason::ReasonCode;
use super::wire::{Cursor, malformed};

/// Protocol name and level (sections 3.1.2.1, 3.1.2.2), read before anything else.
fn protocol_version(c: &mut Cursor) -> Result<ProtocolVersion, DecodeError> {
    let mqisdp = match c.str("protocol name")? {
        "MQTT" => false,
        "MQIsdp" => true,
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    match (mqisdp, c.u8("protocol level")?) {
        (false, 4) => Ok(ProtocolVersion::V311),
        (false, 5) => Ok(ProtocolVersion::V5),
        (true, 3) => Ok(ProtocolVersion::V31),
        (_, level) => Err(DecodeError::UnsupportedProtocolVersion { level }),
    }
}

/// The CONNECT flags byte (section 3.1.2.3), validated.
#[derive(Debug, Clone, Copy)]
struct ConnectFlags {
    /// Clean Start / Clean Session.
    clean_start: bool,
    /// Will QoS and retain, when the will flag is set.
    will: Option<(QoS, bool)>,
    /// A user name follows in the payload.
    username: bool,
    /// A password follows in the payload.
    password: bool,
}

impl ConnectFlags {
    /// Validates the flags byte for version `v` (a password alone is legal only in 5.0).
    fn parse(byte: u8, v: ProtocolVersion) -> Result<ConnectFlags, DecodeError> {
        if byte & 0x01 != 0 {
            return Err(malformed("reserved CONNECT flag set"));
        }
        let will_qos = (byte >> 3) & 0b11;
        let will_retain = byte & 0x20 != 0;
        let will = if byte & 0x04 != 0 {
            let qos = QoS::from_u8(will_qos).ok_or(malformed("will QoS 3"))?;
            Some((qos, will_retain))
        } else if will_qos != 0 || will_retain {
            return Err(malformed("will QoS or retain without the will flag"));
        } else {
            None
        };
        let (username, password) = (byte & 0x80 != 0, byte & 0x40 != 0);
        if password && !username && !v.is_v5() {
            return Err(malformed("password without user name"));
        }
        Ok(ConnectFlags {
            clean_start: byte & 0x02 != 0,
            will,
            username,
            password,
        })
    }
}

/// CONNECT (section 3.1).
pub(super) fn decode_connect(c: &mut Cursor) -> Result<Connect, DecodeError> {
    let protocol = protocol_version(c)?;
    let flags = ConnectFlags::parse(c.u8("connect flags")?, protocol)?;
    let keep_alive = c.u16("keep alive")?;
    let properties = props(c, protocol, PropsOf::Connect)?;
    let client_id = c.string("client identifier")?;
    let will = match flags.will {
        Some((qos, retain)) => Some(decode_will(c, protocol, qos, retain)?),
        None => None,
    };
    let username = if flags.username {
        Some(c.string("user name")?)
    } else {
        None
    };
    let password = if flags.password {
        Some(c.binary("password")?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start: flags.clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// The will in CONNECT's payload (section 3.1.3.2 to 3.1.3.4).
fn decode_will(
    c: &mut Cursor,
    v: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Result<Will, DecodeError> {
    let properties = props(c, v, PropsOf::Will)?;
    let topic = topic_name(c, "will topic")?;
    if topic.is_empty() {
        return Err(DecodeError::TopicNameInvalid("empty will topic"));
    }
    let payload = c.binary("will payload")?;
    check_payload_format(&properties, &payload)?;
    Ok(Will {
        topic,
        payload,
        qos,
        retain,
        properties,
    })
}

/// CONNACK (section 3.2).
pub(super) fn decode_connack(c: &mut Cursor, v: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = c.u8("connack flags")?;
    if flags & 0xfe != 0 {
        return Err(malformed("reserved CONNACK flags"));
    }
    let code = if v.is_v5() {
        reason(c, CONNACK_CODES)?
    } else {
        ReasonCode::from_v3_connack(c.u8("return code")?).ok_or(malformed("CONNACK return code"))?
    };
    let session_present = flags & 0x01 != 0;
    if session_present && code != ReasonCode::Success {
        return Err(DecodeError::ProtocolError("session present with a refusal"));
    }
    let properties = props(c, v, PropsOf::ConnAck)?;
    Ok(ConnAck {
        session_present,
        code,
        properties,
    })
}

/// CONNACK reason codes (section 3.2.2.2).
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
