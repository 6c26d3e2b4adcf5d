//! One pre-encoded PUBLISH (QoS 0, 1 or 2) of the `pub` subcommand, re-marked in place for
//! each message: the frame is encoded once, and sending a message only rewrites its packet
//! id and the [`Mark`](super::Mark) fields, then copies the frame out.
//!
//! Pure; no allocation per message beyond the caller's output buffer growing.

use super::{MARK_LEN, Mark, MqttVersion, WireError, frame, put_str, write_mark};

/// A PUBLISH frame to one topic, ready to be marked and copied out.
#[derive(Debug, Clone)]
pub struct PublishTemplate {
    /// The whole frame.
    frame: Vec<u8>,
    /// Offset of the packet id, for QoS > 0.
    packet_id_at: Option<usize>,
    /// Offset of the payload (and so of the mark).
    payload_at: usize,
}

impl PublishTemplate {
    /// Encodes a PUBLISH to `topic` at `qos` with a `size`-byte payload (at least
    /// [`MARK_LEN`]: the mark, then zeros).
    pub fn new(
        version: MqttVersion,
        topic: &str,
        qos: u8,
        size: usize,
    ) -> Result<PublishTemplate, WireError> {
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
        body.resize(body_payload_at + size.max(MARK_LEN), 0);
        let frame = frame(0x30 | ((qos & 0x03) << 1), &body);
        let header_len = frame.len() - body.len();
        Ok(PublishTemplate {
            frame,
            packet_id_at: packet_id_at.map(|at| at + header_len),
            payload_at: body_payload_at + header_len,
        })
    }

    /// Sets the RETAIN flag of the frame (a retained message).
    pub fn set_retain(&mut self) {
        if let Some(first) = self.frame.first_mut() {
            *first |= 0x01;
        }
    }

    /// Bytes of the frame on the wire.
    pub fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// Marks the frame with `mark` and `packet_id` (ignored at QoS 0) and appends it to
    /// `out`.
    pub fn append(&mut self, out: &mut Vec<u8>, mark: &Mark, packet_id: u16) {
        if let Some(at) = self.packet_id_at {
            self.frame[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        write_mark(&mut self.frame[self.payload_at..], mark);
        out.extend_from_slice(&self.frame);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::super::{parse_header, parse_publish, read_mark};
    use super::*;

    #[test]
    fn frames_parse_back_with_mark_and_id() {
        for (version, qos) in [(MqttVersion::V311, 0), (MqttVersion::V5, 2)] {
            let mut t = PublishTemplate::new(version, "a/b", qos, 100).unwrap();
            let mut out = Vec::new();
            for seq in 0..3u64 {
                let mark = Mark {
                    sent_ns: 5,
                    seq,
                    run: 9,
                    publisher: 4,
                };
                t.append(&mut out, &mark, 10 + seq as u16);
            }
            assert_eq!(out.len(), 3 * t.frame_len());
            for (i, f) in out.chunks(t.frame_len()).enumerate() {
                let h = parse_header(f).unwrap().unwrap();
                let p = parse_publish(version, h.first, &f[h.header_len..]).unwrap();
                assert_eq!(p.qos, qos);
                if qos > 0 {
                    assert_eq!(p.packet_id, 10 + i as u16);
                }
                assert_eq!(p.payload.len(), 100);
                let m = read_mark(p.payload).unwrap();
                assert_eq!((m.seq, m.run, m.publisher), (i as u64, 9, 4));
            }
        }
    }
}
