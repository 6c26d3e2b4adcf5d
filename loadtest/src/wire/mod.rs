//! The hand-rolled MQTT bytes the load generator sends and reads: CONNECT, SUBSCRIBE,
//! PUBACK and DISCONNECT encoders, CONNACK/SUBACK checks and the fixed-header reader here;
//! PUBLISH (pre-encoded batches stamped in place, zero-copy view, payload stamp) in
//! `publish`. For the emqtt-bench-style subcommands: CONNECT with every option and
//! CONNACK/DISCONNECT with MQTT 5 properties (Server Reference) in `connect`, the QoS 2 and
//! ping packets in `acks`, the 32-byte payload mark in `mark`, and the one-frame PUBLISH
//! template in `template`.
//!
//! Why not `meshmq_shared::codec`: the benchmark shares a 2-core box with the broker under
//! test, so the per-message path must cost next to nothing (no allocation, no owned
//! `Packet`), and the load generator must stay an independent second implementation of the
//! wire format rather than agree with the broker on a shared bug.
//!
//! Pure and synchronous: no socket, no clock. It must never panic on what a broker sends:
//! every read is bounds-checked and malformed input is a [`WireError`].

use std::fmt;

mod acks;
mod connect;
mod mark;
mod publish;
mod template;

pub use acks::{PINGREQ, ack_packet_id, pubcomp, pubrec, pubrel};
pub use connect::{
    Connack, ConnectSpec, Disconnect, encode_connect_spec, parse_connack, parse_disconnect,
};
pub use mark::{MARK_LEN, MARK_MAGIC, Mark, read_mark, write_mark};
pub use publish::{PublishBatch, PublishView, STAMP_LEN, Stamp, parse_publish, read_stamp};
pub use template::PublishTemplate;

/// MQTT protocol level spoken by a benchmark client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1 (protocol level 3, protocol name `MQIsdp`); only the `conn`/`sub`/`pub`
    /// family offers it (`-V 3`).
    V31,
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl MqttVersion {
    /// The version for a protocol level given on the command line (3, 4 or 5).
    pub fn from_level(level: u8) -> Option<MqttVersion> {
        match level {
            3 => Some(MqttVersion::V31),
            4 => Some(MqttVersion::V311),
            5 => Some(MqttVersion::V5),
            _ => None,
        }
    }

    /// The CONNECT protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            MqttVersion::V31 => 3,
            MqttVersion::V311 => 4,
            MqttVersion::V5 => 5,
        }
    }

    /// Whether this is MQTT 5.0 (properties in every packet).
    pub fn is_v5(self) -> bool {
        self == MqttVersion::V5
    }

    /// The protocol name CONNECT carries: `MQIsdp` for 3.1, `MQTT` otherwise.
    pub fn protocol_name(self) -> &'static str {
        match self {
            MqttVersion::V31 => "MQIsdp",
            _ => "MQTT",
        }
    }
}

/// What is wrong with bytes received from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The remaining-length varint runs past four bytes.
    BadRemainingLength,
    /// A packet ends before a field it must carry.
    Truncated(&'static str),
    /// A packet of an unexpected type arrived during a handshake.
    Unexpected {
        /// What the handshake was waiting for.
        expected: &'static str,
        /// The packet type nibble that came instead.
        got: u8,
    },
    /// The broker refused the CONNECT with this return/reason code.
    ConnectRefused(u8),
    /// The broker refused the subscription with this reason code.
    SubscribeRefused(u8),
    /// A PUBLISH carries QoS 3.
    BadQos,
    /// A topic or client id does not fit the 65 535 bytes of an MQTT string.
    StringTooLong,
    /// An MQTT 5 property block holds an identifier this reader does not know.
    UnknownProperty(u8),
    /// A string field is not UTF-8.
    BadUtf8,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadRemainingLength => write!(f, "malformed remaining length"),
            WireError::Truncated(what) => write!(f, "packet truncated in {what}"),
            WireError::Unexpected { expected, got } => {
                write!(f, "expected {expected}, got packet type {got}")
            }
            WireError::ConnectRefused(code) => write!(f, "CONNECT refused, code {code:#04x}"),
            WireError::SubscribeRefused(code) => {
                write!(f, "SUBSCRIBE refused, code {code:#04x}")
            }
            WireError::BadQos => write!(f, "PUBLISH with QoS 3"),
            WireError::StringTooLong => write!(f, "string longer than 65535 bytes"),
            WireError::UnknownProperty(id) => write!(f, "unknown MQTT 5 property {id:#04x}"),
            WireError::BadUtf8 => write!(f, "string is not UTF-8"),
        }
    }
}

impl std::error::Error for WireError {}

/// Packet type nibbles the generator cares about.
pub mod kind {
    /// CONNACK.
    pub const CONNACK: u8 = 2;
    /// PUBLISH.
    pub const PUBLISH: u8 = 3;
    /// PUBACK.
    pub const PUBACK: u8 = 4;
    /// SUBACK.
    pub const SUBACK: u8 = 9;
    /// PUBREC (QoS 2, step 1).
    pub const PUBREC: u8 = 5;
    /// PUBREL (QoS 2, step 2).
    pub const PUBREL: u8 = 6;
    /// PUBCOMP (QoS 2, step 3).
    pub const PUBCOMP: u8 = 7;
    /// PINGRESP.
    pub const PINGRESP: u8 = 13;
    /// DISCONNECT.
    pub const DISCONNECT: u8 = 14;
}

/// A fixed header read from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The first byte: type in the high nibble, flags in the low one.
    pub first: u8,
    /// Bytes taken by the first byte and the remaining-length varint.
    pub header_len: usize,
    /// The remaining length: bytes of the packet after the fixed header.
    pub body_len: usize,
}

impl FrameHeader {
    /// The packet type nibble.
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// Header plus body: how many bytes the whole packet takes.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// Reads the fixed header at the front of `buf`; `Ok(None)` when more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut body_len = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        body_len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(FrameHeader {
                first,
                header_len: 2 + i,
                body_len,
            }));
        }
    }
    Err(WireError::BadRemainingLength)
}

/// Reads a varint (MQTT "variable byte integer") at `pos`; returns value and bytes used.
fn read_varint(body: &[u8], pos: usize, what: &'static str) -> Result<(usize, usize), WireError> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *body.get(pos + i).ok_or(WireError::Truncated(what))?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(WireError::BadRemainingLength)
}

fn read_u16(body: &[u8], pos: usize, what: &'static str) -> Result<u16, WireError> {
    match body.get(pos..pos + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Truncated(what)),
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut b = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        out.push(b);
        if value == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    let len = u16::try_from(s.len()).map_err(|_| WireError::StringTooLong)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// CONNECT with Clean Session/Clean Start, no will, no credentials.
pub fn encode_connect(
    version: MqttVersion,
    client_id: &str,
    keep_alive: u16,
) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(16 + client_id.len());
    put_str(&mut body, version.protocol_name())?;
    body.push(version.level());
    body.push(0x02);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if version.is_v5() {
        body.push(0);
    }
    put_str(&mut body, client_id)?;
    Ok(frame(0x10, &body))
}

/// SUBSCRIBE to one filter at `qos`.
pub fn encode_subscribe(
    version: MqttVersion,
    packet_id: u16,
    filter: &str,
    qos: u8,
) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::with_capacity(8 + filter.len());
    body.extend_from_slice(&packet_id.to_be_bytes());
    if version.is_v5() {
        body.push(0);
    }
    put_str(&mut body, filter)?;
    body.push(qos & 0x03);
    Ok(frame(0x82, &body))
}

/// PUBACK with success (the 2-byte form is valid in 3.1.1 and 5.0).
pub fn puback(packet_id: u16) -> [u8; 4] {
    let [hi, lo] = packet_id.to_be_bytes();
    [0x40, 0x02, hi, lo]
}

/// DISCONNECT with normal disconnection (remaining length 0 in both versions).
pub const DISCONNECT: [u8; 2] = [0xe0, 0x00];

/// Checks a CONNACK body: return/reason code 0 is success.
pub fn check_connack(header: &FrameHeader, body: &[u8]) -> Result<(), WireError> {
    if header.kind() != kind::CONNACK {
        return Err(WireError::Unexpected {
            expected: "CONNACK",
            got: header.kind(),
        });
    }
    match body.get(1) {
        Some(0) => Ok(()),
        Some(&code) => Err(WireError::ConnectRefused(code)),
        None => Err(WireError::Truncated("CONNACK")),
    }
}

/// Checks a SUBACK body for `packet_id`: every reason code must grant a QoS (< 0x80).
pub fn check_suback(
    version: MqttVersion,
    header: &FrameHeader,
    body: &[u8],
    packet_id: u16,
) -> Result<(), WireError> {
    if header.kind() != kind::SUBACK {
        return Err(WireError::Unexpected {
            expected: "SUBACK",
            got: header.kind(),
        });
    }
    if read_u16(body, 0, "SUBACK packet id")? != packet_id {
        return Err(WireError::Unexpected {
            expected: "SUBACK for our packet id",
            got: 9,
        });
    }
    let mut pos = 2;
    if version.is_v5() {
        let (props, used) = read_varint(body, pos, "SUBACK properties")?;
        pos += used + props;
    }
    let codes = body
        .get(pos..)
        .ok_or(WireError::Truncated("SUBACK codes"))?;
    if codes.is_empty() {
        return Err(WireError::Truncated("SUBACK codes"));
    }
    match codes.iter().find(|&&c| c >= 0x80) {
        Some(&code) => Err(WireError::SubscribeRefused(code)),
        None => Ok(()),
    }
}

/// Largest packet accepted during a handshake (CONNACK, SUBACK).
pub const MAX_HANDSHAKE_PACKET: usize = 64 * 1024;

/// Reads one whole packet from `stream` (handshakes only: at most [`MAX_HANDSHAKE_PACKET`],
/// no deadline of its own), keeping what follows it in `buf`; `None` when the stream closed
/// first.
pub async fn read_handshake_packet<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut bytes::BytesMut,
) -> anyhow::Result<Option<(FrameHeader, Vec<u8>)>> {
    use bytes::Buf;
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(header) = parse_header(buf)? {
            if header.body_len > MAX_HANDSHAKE_PACKET {
                anyhow::bail!("handshake packet of {} bytes", header.body_len);
            }
            if buf.len() >= header.frame_len() {
                buf.advance(header.header_len);
                let body = buf.split_to(header.body_len).to_vec();
                return Ok(Some((header, body)));
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn split(frame: &[u8]) -> (FrameHeader, &[u8]) {
        let h = parse_header(frame).unwrap().unwrap();
        (h, &frame[h.header_len..h.frame_len()])
    }

    #[test]
    fn header_needs_more_bytes_then_parses_multi_byte_length() {
        assert_eq!(parse_header(&[]).unwrap(), None);
        assert_eq!(parse_header(&[0x30, 0x80]).unwrap(), None);
        let h = parse_header(&[0x30, 0xc1, 0x02]).unwrap().unwrap();
        assert_eq!((h.kind(), h.header_len, h.body_len), (3, 3, 321));
        assert_eq!(
            parse_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(WireError::BadRemainingLength)
        );
    }

    #[test]
    fn connack_and_suback_checks() {
        let ok = [0x20, 0x02, 0x00, 0x00];
        let (h, b) = split(&ok);
        assert_eq!(check_connack(&h, b), Ok(()));
        let refused = [0x20, 0x02, 0x00, 0x05];
        let (h, b) = split(&refused);
        assert_eq!(check_connack(&h, b), Err(WireError::ConnectRefused(5)));
        let suback_v5 = [0x90, 0x04, 0x00, 0x07, 0x00, 0x01];
        let (h, b) = split(&suback_v5);
        assert_eq!(check_suback(MqttVersion::V5, &h, b, 7), Ok(()));
        let failed = [0x90, 0x03, 0x00, 0x07, 0x80];
        let (h, b) = split(&failed);
        assert_eq!(
            check_suback(MqttVersion::V311, &h, b, 7),
            Err(WireError::SubscribeRefused(0x80))
        );
    }

    #[test]
    fn connect_and_subscribe_bytes() {
        let c = encode_connect(MqttVersion::V311, "ab", 30).unwrap();
        assert_eq!(
            c,
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 2, b'a', b'b'
            ]
        );
        let s = encode_subscribe(MqttVersion::V5, 1, "a/#", 1).unwrap();
        assert_eq!(s, [0x82, 9, 0, 1, 0, 0, 3, b'a', b'/', b'#', 1]);
    }
}
