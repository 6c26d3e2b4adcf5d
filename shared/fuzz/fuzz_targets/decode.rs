//! Fuzz target for the MQTT decoder: arbitrary bytes must never panic, whatever decodes must
//! re-encode to something that decodes back equal, and feeding the same bytes in small chunks
//! must give the same packets as feeding them at once.
//!
//! Owns only the harness; it must never paper over a finding (no catching panics, no
//! filtering inputs the decoder should reject by itself).
//!
//! The first input byte picks the mode: bits 0-1 the maximum packet size, bits 2-3 the reader
//! (a fresh `Decoder`, or `decode_packet` with 3.1 / 3.1.1 / 5.0), bits 4-7 the chunk size of
//! the incremental feed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use meshmq_shared::codec::{
    DecodeError, Decoder, Packet, ProtocolVersion, decode_packet, encode, encoded_len,
};

/// Which decoding entry point a run exercises.
#[derive(Clone, Copy, Debug)]
enum Reader {
    /// A connection's decoder: CONNECT first, then its version.
    Stateful,
    /// The stateless `decode_packet` with a known version.
    Stateless(ProtocolVersion),
}

/// One decoding session over a growing buffer.
struct Session {
    reader: Reader,
    decoder: Decoder,
    max: u32,
}

impl Session {
    fn new(reader: Reader, max: u32) -> Session {
        Session {
            reader,
            decoder: Decoder::new(max),
            max,
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        match self.reader {
            Reader::Stateful => self.decoder.decode(buf),
            Reader::Stateless(v) => decode_packet(buf, v, self.max),
        }
    }

    /// The version the last decoded packet was read with.
    fn version_of(&self, packet: &Packet) -> ProtocolVersion {
        match (packet, self.reader) {
            (Packet::Connect(c), _) => c.protocol,
            (_, Reader::Stateless(v)) => v,
            (_, Reader::Stateful) => self.decoder.version().expect("a packet after CONNECT"),
        }
    }
}

/// Everything a run produced: the packets in order, and whether it ended in an error.
#[derive(Debug, PartialEq)]
struct Outcome {
    packets: Vec<Packet>,
    failed: bool,
}

/// Decodes `input` fed `chunk` bytes at a time, checking every packet re-encodes.
fn run(input: &[u8], reader: Reader, max: u32, chunk: usize) -> Outcome {
    let mut session = Session::new(reader, max);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    let mut fed = 0;
    loop {
        match session.decode(&mut buf) {
            Ok(Some(packet)) => {
                check_reencodes(&packet, session.version_of(&packet));
                packets.push(packet);
            }
            Ok(None) if fed < input.len() => {
                let end = input.len().min(fed + chunk);
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            Ok(None) => {
                return Outcome {
                    packets,
                    failed: false,
                };
            }
            Err(_) => {
                return Outcome {
                    packets,
                    failed: true,
                };
            }
        }
    }
}

/// `packet` encodes for `version`, `encoded_len` is exact, and the bytes decode back equal.
fn check_reencodes(packet: &Packet, version: ProtocolVersion) {
    let mut wire = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut wire) {
        panic!("decoded packet does not re-encode: {e:?}\n{packet:?}");
    }
    assert_eq!(
        encoded_len(packet, version),
        wire.len(),
        "encoded_len of {packet:?}"
    );
    let bytes = wire.to_vec();
    let again = match packet {
        Packet::Connect(_) => Decoder::new(u32::MAX).decode(&mut wire),
        _ => decode_packet(&mut wire, version, u32::MAX),
    };
    assert_eq!(
        again,
        Ok(Some(packet.clone())),
        "re-encoded as {bytes:02x?}"
    );
    assert!(wire.is_empty(), "re-encoding left {} bytes", wire.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let max = match mode & 0b11 {
        0 => u32::MAX,
        1 => 16,
        2 => 128,
        _ => 1024,
    };
    let reader = match (mode >> 2) & 0b11 {
        0 => Reader::Stateful,
        1 => Reader::Stateless(ProtocolVersion::V31),
        2 => Reader::Stateless(ProtocolVersion::V311),
        _ => Reader::Stateless(ProtocolVersion::V5),
    };
    let chunk = usize::from(mode >> 4) + 1;
    let whole = run(input, reader, max, input.len().max(1));
    let pieces = run(input, reader, max, chunk);
    assert_eq!(whole, pieces, "chunks of {chunk} bytes decode differently");
});
