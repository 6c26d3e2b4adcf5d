//! PUBLISH on the benchmark's hot path: runs of identical pre-encoded frames re-stamped in
//! place before each write, the in-place view a subscriber reads, and the stamp (send time,
//! sequence number, run tag) at the front of every payload.
//!
//! Pure, allocation-free per message, and it must never panic on a malformed PUBLISH.

use super::{MqttVersion, WireError, frame, put_str, read_u16, read_varint};

/// Bytes of the stamp every benchmark PUBLISH payload starts with (see [`Stamp`]).
pub const STAMP_LEN: usize = 24;

/// The stamp at the front of a benchmark payload, three little-endian `u64`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, nanoseconds on the sending run's clock.
    pub sent_ns: u64,
    /// Sequence number within its publisher.
    pub seq: u64,
    /// Tag of the run that sent it, so leftovers of an earlier run are not counted.
    pub run: u64,
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

/// The stamp at the front of a benchmark payload; `None` for payloads too short to carry
/// one (not ours).
pub fn read_stamp(payload: &[u8]) -> Option<Stamp> {
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            payload.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some(Stamp {
        sent_ns: word(0)?,
        seq: word(1)?,
        run: word(2)?,
    })
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
    /// Encodes `capacity` copies of a PUBLISH to `topic` with a payload of `size` bytes (at
    /// least [`STAMP_LEN`]): zeros after a stamp carrying `run`.
    pub fn new(
        version: MqttVersion,
        topic: &str,
        qos: u8,
        size: usize,
        capacity: usize,
        run: u64,
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
        body[body_payload_at + 16..body_payload_at + 24].copy_from_slice(&run.to_le_bytes());
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
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::super::parse_header;
    use super::*;

    fn split(frame: &[u8]) -> (super::super::FrameHeader, &[u8]) {
        let h = parse_header(frame).unwrap().unwrap();
        (h, &frame[h.header_len..h.frame_len()])
    }

    #[test]
    fn batch_frames_parse_back_with_stamp_and_ids() {
        for version in [MqttVersion::V311, MqttVersion::V5] {
            let mut batch = PublishBatch::new(version, "bench/3", 1, 100, 4, 9).unwrap();
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
                let stamp = Stamp {
                    sent_ns: 777,
                    seq: 40 + i as u64,
                    run: 9,
                };
                assert_eq!(read_stamp(p.payload), Some(stamp));
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
}
