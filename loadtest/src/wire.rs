//! The hand-rolled MQTT bytes the load generator sends and reads: CONNECT, SUBSCRIBE,
//! PUBACK and DISCONNECT encoders, CONNACK/SUBACK checks, the fixed-header reader and a
//! zero-copy PUBLISH view, plus pre-encoded PUBLISH batches stamped in place.
//!
//! Why not `meshmq_shared::codec`: the benchmark shares a 2-core box with the broker under
//! test, so the per-message path must cost next to nothing (no allocation, no owned
//! `Packet`), and the load generator must stay an independent second implementation of the
//! wire format rather than agree with the broker on a shared bug.
//!
//! Pure and synchronous: no socket, no clock. It must never panic on what a broker sends:
//! every read is bounds-checked and malformed input is a [`WireError`].

use std::fmt;

/// The payload stamp every benchmark PUBLISH starts with: send time (ns, little endian) then
/// sequence number (little endian).
pub const STAMP_LEN: usize = 16;

/// The largest remaining length MQTT can express (four varint bytes).
pub const MAX_REMAINING_LEN: usize = 268_435_455;

/// MQTT protocol level spoken by a benchmark client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl MqttVersion {
    /// The version for a protocol level given on the command line (4 or 5).
    pub fn from_level(level: u8) -> Option<MqttVersion> {
        match level {
            4 => Some(MqttVersion::V311),
            5 => Some(MqttVersion::V5),
            _ => None,
        }
    }

    /// The CONNECT protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            MqttVersion::V311 => 4,
            MqttVersion::V5 => 5,
        }
    }

    fn is_v5(self) -> bool {
        self == MqttVersion::V5
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
    put_str(&mut body, "MQTT")?;
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

/// A PUBLISH read in place: what the subscriber needs and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishView<'a> {
    /// QoS of this delivery.
    pub qos: u8,
    /// Packet identifier; 0 for QoS 0.
    pub packet_id: u16,
    /// The application payload.
    pub payload: &'a [u8],
}

/// Reads a PUBLISH body (after the fixed header whose first byte is `first`).
pub fn parse_publish(
    version: MqttVersion,
    first: u8,
    body: &[u8],
) -> Result<PublishView<'_>, WireError> {
    let qos = (first >> 1) & 0x03;
    if qos == 3 {
        return Err(WireError::BadQos);
    }
    let topic_len = usize::from(read_u16(body, 0, "PUBLISH topic")?);
    let mut pos = 2 + topic_len;
    let mut packet_id = 0;
    if qos > 0 {
        packet_id = read_u16(body, pos, "PUBLISH packet id")?;
        pos += 2;
    }
    if version.is_v5() {
        let (props, used) = read_varint(body, pos, "PUBLISH properties")?;
        pos += used + props;
    }
    let payload = body
        .get(pos..)
        .ok_or(WireError::Truncated("PUBLISH payload"))?;
    Ok(PublishView {
        qos,
        packet_id,
        payload,
    })
}

/// The send time (ns) and sequence number stamped at the front of a benchmark payload;
/// `None` for payloads too short to carry one (not ours).
pub fn read_stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let ts = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((ts, seq))
}

/// A run of identical pre-encoded PUBLISH frames, re-stamped in place before each write so
/// the hot path never encodes nor allocates.
#[derive(Debug, Clone)]
pub struct PublishBatch {
    /// `capacity` frames back to back.
    buf: Vec<u8>,
    /// Bytes of one frame.
    frame_len: usize,
    /// Offset of the packet id inside a frame, for QoS > 0.
    packet_id_at: Option<usize>,
    /// Offset of the payload (and so of the stamp) inside a frame.
    payload_at: usize,
    /// Frames in `buf`.
    capacity: usize,
}

impl PublishBatch {
    /// Encodes `capacity` copies of a PUBLISH to `topic` with a zero payload of `size`
    /// bytes (at least [`STAMP_LEN`]).
    pub fn new(
        version: MqttVersion,
        topic: &str,
        qos: u8,
        size: usize,
        capacity: usize,
    ) -> Result<PublishBatch, WireError> {
        let mut body = Vec::with_capacity(topic.len() + size + 8);
        put_str(&mut body, topic)?;
        let packet_id_at = (qos > 0).then(|| {
            body.extend_from_slice(&[0, 0]);
            body.len() - 2
        });
        if version.is_v5() {
            body.push(0);
        }
        let body_payload_at = body.len();
        body.resize(body_payload_at + size.max(STAMP_LEN), 0);
        let one = frame(0x30 | ((qos & 0x03) << 1), &body);
        let header_len = one.len() - body.len();
        let capacity = capacity.max(1);
        Ok(PublishBatch {
            buf: one.repeat(capacity),
            frame_len: one.len(),
            packet_id_at: packet_id_at.map(|at| at + header_len),
            payload_at: body_payload_at + header_len,
            capacity,
        })
    }

    /// How many frames one batch holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of one frame on the wire.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Stamps the first `n` frames (at most the capacity) with `ts_ns`, sequence numbers
    /// from `first_seq`, and packet ids from `next_id` (ignored at QoS 0); returns their bytes.
    pub fn stamp(
        &mut self,
        n: usize,
        ts_ns: u64,
        first_seq: u64,
        mut next_id: impl FnMut() -> u16,
    ) -> &[u8] {
        let n = n.min(self.capacity);
        for (i, frame) in self
            .buf
            .chunks_exact_mut(self.frame_len)
            .take(n)
            .enumerate()
        {
            if let Some(at) = self.packet_id_at {
                frame[at..at + 2].copy_from_slice(&next_id().to_be_bytes());
            }
            let p = self.payload_at;
            frame[p..p + 8].copy_from_slice(&ts_ns.to_le_bytes());
            frame[p + 8..p + 16].copy_from_slice(&(first_seq + i as u64).to_le_bytes());
        }
        &self.buf[..n * self.frame_len]
    }
}

#[cfg(test)]
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
    fn batch_frames_parse_back_with_stamp_and_ids() {
        for version in [MqttVersion::V311, MqttVersion::V5] {
            let mut batch = PublishBatch::new(version, "bench/3", 1, 100, 4).unwrap();
            let mut id = 10u16;
            let bytes = batch
                .stamp(3, 777, 40, || {
                    id += 1;
                    id
                })
                .to_vec();
            assert_eq!(bytes.len(), 3 * batch.frame_len());
            for (i, f) in bytes.chunks(batch.frame_len()).enumerate() {
                let (h, body) = split(f);
                assert_eq!(h.frame_len(), f.len());
                let p = parse_publish(version, h.first, body).unwrap();
                assert_eq!((p.qos, p.packet_id), (1, 11 + i as u16));
                assert_eq!(p.payload.len(), 100);
                assert_eq!(read_stamp(p.payload), Some((777, 40 + i as u64)));
            }
        }
    }

    #[test]
    fn malformed_publish_is_an_error_not_a_panic() {
        assert!(parse_publish(MqttVersion::V311, 0x30, &[0x00]).is_err());
        assert!(parse_publish(MqttVersion::V311, 0x30, &[0x00, 0x09, b'a']).is_err());
        assert!(parse_publish(MqttVersion::V311, 0x36, &[0, 1, b'a']).is_err());
        assert!(parse_publish(MqttVersion::V5, 0x30, &[0, 1, b'a', 0x80]).is_err());
        assert_eq!(read_stamp(&[1, 2, 3]), None);
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
