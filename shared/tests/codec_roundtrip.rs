//! Property-based tests of the MQTT codec: every valid packet of every version round-trips,
//! partial input only ever asks for more bytes, and no input at all makes the decoder panic.
//!
//! Owns the round-trip and robustness properties and the regression cases the fuzz target
//! (`shared/fuzz`) finds. It must never weaken a property to make a codec bug pass: a finding
//! stays here as a failing `fuzz_regression_*` test until the codec is fixed. The strategies
//! (what "valid" means per version) live in `codec_roundtrip/`.

#[path = "codec_roundtrip/properties.rs"]
mod properties;
#[path = "codec_roundtrip/reasons.rs"]
mod reasons;
#[path = "codec_roundtrip/strategies.rs"]
mod strategies;
#[path = "codec_roundtrip/values.rs"]
mod values;

use bytes::BytesMut;
use meshmq_shared::codec::{
    DecodeError, Decoder, Packet, ProtocolVersion, decode_packet, encode, encoded_len,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use strategies::{connect, packet, versioned_connect, versioned_packet};
use values::VERSIONS;

/// No limit from our side: the round trips must not trip over the maximum packet size.
const NO_LIMIT: u32 = u32::MAX;

/// Encodes `packet` for `version`, checking `encoded_len` against the bytes written.
fn encode_checked(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, TestCaseError> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out)
        .map_err(|e| TestCaseError::fail(format!("encode failed: {e:?} for {packet:?}")))?;
    prop_assert_eq!(
        encoded_len(packet, version),
        out.len(),
        "encoded_len of {:?}",
        packet
    );
    Ok(out)
}

/// Decodes the way a reader of `packet` would: a fresh [`Decoder`] for CONNECT (it must also
/// learn the version), [`decode_packet`] with the known version for everything else.
struct Reader {
    /// Set for CONNECT; `None` means [`decode_packet`] with `version`.
    decoder: Option<Decoder>,
    /// The version the packet was encoded with.
    version: ProtocolVersion,
}

impl Reader {
    fn for_packet(packet: &Packet, version: ProtocolVersion) -> Reader {
        let decoder = matches!(packet, Packet::Connect(_)).then(|| Decoder::new(NO_LIMIT));
        Reader { decoder, version }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        match &mut self.decoder {
            Some(decoder) => decoder.decode(buf),
            None => decode_packet(buf, self.version, NO_LIMIT),
        }
    }
}

/// Encode → decode gives back `packet`, consuming exactly its bytes.
fn check_round_trip(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut buf = encode_checked(packet, version)?;
    let wire = buf.to_vec();
    let mut reader = Reader::for_packet(packet, version);
    let decoded = reader.decode(&mut buf);
    prop_assert_eq!(decoded, Ok(Some(packet.clone())), "wire: {:02x?}", wire);
    prop_assert!(
        buf.is_empty(),
        "{} bytes left over from {:02x?}",
        buf.len(),
        wire
    );
    if let Some(decoder) = &reader.decoder {
        prop_assert_eq!(decoder.version(), Some(version));
    }
    Ok(())
}

/// Feeding the encoding one byte at a time yields `Ok(None)` (consuming nothing) until the
/// last byte, then the packet.
fn check_byte_at_a_time(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let wire = encode_checked(packet, version)?;
    let mut reader = Reader::for_packet(packet, version);
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let decoded = reader.decode(&mut buf);
        if i + 1 < wire.len() {
            prop_assert_eq!(decoded, Ok(None), "after {} of {:02x?}", i + 1, &wire[..]);
            prop_assert_eq!(buf.len(), i + 1, "Ok(None) must not consume bytes");
        } else {
            prop_assert_eq!(
                decoded,
                Ok(Some(packet.clone())),
                "wire: {:02x?}",
                &wire[..]
            );
            prop_assert!(buf.is_empty());
        }
    }
    Ok(())
}

/// A prefix of a valid encoding is `Ok(None)` and leaves the buffer untouched.
fn check_truncated(
    packet: &Packet,
    version: ProtocolVersion,
    cut: Index,
) -> Result<(), TestCaseError> {
    let wire = encode_checked(packet, version)?;
    let len = cut.index(wire.len());
    let mut buf = BytesMut::from(&wire[..len]);
    let decoded = Reader::for_packet(packet, version).decode(&mut buf);
    prop_assert_eq!(decoded, Ok(None), "prefix of {} of {:02x?}", len, &wire[..]);
    prop_assert_eq!(buf.len(), len);
    Ok(())
}

/// Whatever the decoder accepted re-encodes, and that encoding decodes to the same packet.
fn check_reencodes(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let version = match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    };
    check_round_trip(packet, version)
}

/// Decodes everything in `buf` with a fresh decoder until it stops; panics are the failure.
fn drain_decoder(decoder: &mut Decoder, buf: &mut BytesMut) -> Result<(), TestCaseError> {
    loop {
        let before = buf.len();
        match decoder.decode(buf) {
            Ok(Some(_)) => prop_assert!(buf.len() < before, "a decoded packet consumes bytes"),
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// Same as [`drain_decoder`] for the stateless [`decode_packet`].
fn drain_decode_packet(
    bytes: &[u8],
    version: ProtocolVersion,
    max: u32,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode_packet(&mut buf, version, max) {
            Ok(Some(_)) => prop_assert!(buf.len() < before, "a decoded packet consumes bytes"),
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// The MQTT variable byte integer encoding of `len` (at most 268_435_455).
fn remaining_length(mut len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return out;
        }
    }
}

/// A maximum packet size: mostly tiny (to hit the limit checks), sometimes anything.
fn max_size() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..=64, any::<u32>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn packets_round_trip((version, packet) in versioned_packet()) {
        check_round_trip(&packet, version)?;
    }

    #[test]
    fn connect_round_trips_through_a_fresh_decoder((version, packet) in versioned_connect()) {
        check_round_trip(&packet, version)?;
    }

    #[test]
    fn packets_decode_one_byte_at_a_time((version, packet) in versioned_packet()) {
        check_byte_at_a_time(&packet, version)?;
    }

    #[test]
    fn connect_decodes_one_byte_at_a_time((version, packet) in versioned_connect()) {
        check_byte_at_a_time(&packet, version)?;
    }

    #[test]
    fn truncated_packet_needs_more_bytes((version, packet) in versioned_packet(), cut: Index) {
        check_truncated(&packet, version, cut)?;
    }

    #[test]
    fn truncated_connect_needs_more_bytes((version, packet) in versioned_connect(), cut: Index) {
        check_truncated(&packet, version, cut)?;
    }

    /// A whole connection's worth of packets in one buffer comes back in order.
    #[test]
    fn stream_after_connect_round_trips(
        (version, connect, packets) in values::version()
            .prop_flat_map(|v| (Just(v), connect(v), vec(packet(v), 0..8)))
    ) {
        let mut buf = encode_checked(&connect, version)?;
        for p in &packets {
            buf.extend_from_slice(&encode_checked(p, version)?);
        }
        let mut decoder = Decoder::new(NO_LIMIT);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(connect)));
        for p in packets {
            prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(p)));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512), max in max_size()) {
        drain_decoder(&mut Decoder::new(max), &mut BytesMut::from(&bytes[..]))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_decode_packet(bytes in vec(any::<u8>(), 0..512), max in max_size()) {
        for version in VERSIONS {
            drain_decode_packet(&bytes, version, max)?;
        }
    }

    /// Random bodies behind a well-formed fixed header reach every packet body parser.
    #[test]
    fn random_body_under_a_valid_header_never_panics(
        (version, connect) in versioned_connect(),
        first in any::<u8>(),
        body in vec(any::<u8>(), 0..200),
    ) {
        let mut bytes = vec![first];
        bytes.extend(remaining_length(body.len()));
        bytes.extend(&body);
        for v in VERSIONS {
            drain_decode_packet(&bytes, v, NO_LIMIT)?;
        }
        let mut buf = encode_checked(&connect, version)?;
        buf.extend_from_slice(&bytes);
        drain_decoder(&mut Decoder::new(NO_LIMIT), &mut buf)?;
    }

    /// Flipping bytes of a valid encoding never panics, and whatever still decodes is a
    /// packet the encoder can write back exactly.
    #[test]
    fn mutated_packets_never_panic_and_reencode(
        (version, packet) in prop_oneof![versioned_packet(), versioned_connect()],
        flips in vec((any::<Index>(), 1u8..=255), 1..4),
    ) {
        let mut wire = encode_checked(&packet, version)?.to_vec();
        for (at, xor) in flips {
            let i = at.index(wire.len());
            wire[i] ^= xor;
        }
        let mut buf = BytesMut::from(&wire[..]);
        if let Ok(Some(decoded)) = Reader::for_packet(&packet, version).decode(&mut buf) {
            check_reencodes(&decoded, version)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Payloads of 16 KiB and more need a 3-byte remaining length.
    #[test]
    fn large_publish_round_trips((version, packet) in strategies::large_publish()) {
        check_round_trip(&packet, version)?;
        let wire = encode_checked(&packet, version)?;
        for cut in [1, 2, 3, wire.len() / 2, wire.len() - 1] {
            check_truncated_at(&packet, version, &wire[..cut])?;
        }
    }
}

/// [`check_truncated`] for an explicit prefix.
fn check_truncated_at(
    packet: &Packet,
    version: ProtocolVersion,
    prefix: &[u8],
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(prefix);
    prop_assert_eq!(
        Reader::for_packet(packet, version).decode(&mut buf),
        Ok(None)
    );
    prop_assert_eq!(buf.len(), prefix.len());
    Ok(())
}

#[test]
fn remaining_length_helper_matches_the_spec_examples() {
    assert_eq!(remaining_length(0), [0x00]);
    assert_eq!(remaining_length(127), [0x7f]);
    assert_eq!(remaining_length(128), [0x80, 0x01]);
    assert_eq!(remaining_length(16_383), [0xff, 0x7f]);
    assert_eq!(remaining_length(16_384), [0x80, 0x80, 0x01]);
    assert_eq!(remaining_length(268_435_455), [0xff, 0xff, 0xff, 0x7f]);
}

/// Writes valid packet streams as a seed corpus for the `decode` fuzz target, framed the way
/// the target reads them (first byte = mode). Run on demand from the workspace root, with an
/// absolute path (tests run in `shared/`): `MESHMQ_FUZZ_SEEDS=$PWD/shared/fuzz/corpus/decode
/// cargo test -p meshmq-shared --test codec_roundtrip -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files; run on demand to seed the fuzz corpus"]
fn write_fuzz_seeds() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let Some(dir) = std::env::var_os("MESHMQ_FUZZ_SEEDS") else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let mut runner = TestRunner::deterministic();
    for n in 0..300 {
        let version = VERSIONS[n % VERSIONS.len()];
        // Bits 4-7: chunk size; bits 2-3: 0 = Decoder, 1..=3 = decode_packet with VERSIONS[r - 1].
        let reader = if n % 2 == 0 {
            0
        } else {
            1 + n % VERSIONS.len()
        };
        let mode = ((n % 16) << 4 | reader << 2) as u8;
        let mut seed = BytesMut::from(&[mode][..]);
        if reader == 0 {
            let c = connect(version)
                .new_tree(&mut runner)
                .expect("a CONNECT")
                .current();
            encode(&c, version, &mut seed).expect("encode CONNECT");
        }
        for _ in 0..1 + n % 3 {
            let p = packet(version)
                .new_tree(&mut runner)
                .expect("a packet")
                .current();
            encode(&p, version, &mut seed).expect("encode packet");
        }
        std::fs::write(
            std::path::Path::new(&dir).join(format!("seed-{n:03}")),
            &seed,
        )
        .expect("write a seed");
    }
}
