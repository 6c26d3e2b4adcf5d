//! Helpers for the codec fixtures: hex literals, framing, and decoding with each reader.
//!
//! Owns only how fixtures are spelled; it must never compute an expected value with the
//! codec's encoder.

#![allow(dead_code)]

use bytes::BytesMut;
use meshmq_shared::codec::{DecodeError, Decoder, Packet, ProtocolVersion, decode_packet};

/// Bytes from a hex string with optional spaces ("10 0e 00 04").
pub fn hex_v(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// [`hex_v`] as a buffer.
pub fn hex(s: &str) -> BytesMut {
    BytesMut::from(&hex_v(s)[..])
}

/// A length-prefixed UTF-8 string.
pub fn str_(s: &str) -> Vec<u8> {
    let mut out = u16::try_from(s.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// A whole packet: `first`, the remaining length of `body` (written out by hand here, not by
/// the codec), then `body`.
pub fn frame(first: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(&[first]);
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.extend_from_slice(&[if len > 0 { byte | 0x80 } else { byte }]);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Decodes a copy of `buf` with [`decode_packet`] for `v` and no size limit; a decoded
/// packet must have consumed every byte of the fixture.
pub fn decode_with(v: ProtocolVersion, buf: &BytesMut) -> Result<Option<Packet>, DecodeError> {
    let mut buf = buf.clone();
    let result = decode_packet(&mut buf, v, u32::MAX);
    if let Ok(Some(p)) = &result {
        assert!(buf.is_empty(), "{} bytes left after {p:?}", buf.len());
    }
    result
}

/// [`decode_with`] for MQTT 5.0.
pub fn decode_v5(buf: &BytesMut) -> Result<Option<Packet>, DecodeError> {
    decode_with(ProtocolVersion::V5, buf)
}

/// [`decode_with`] for MQTT 3.1.1.
pub fn decode_v311(buf: &BytesMut) -> Result<Option<Packet>, DecodeError> {
    decode_with(ProtocolVersion::V311, buf)
}

/// Fails unless `r` is a malformed-packet error.
#[track_caller]
pub fn assert_malformed(r: Result<Option<Packet>, DecodeError>) {
    assert!(
        matches!(r, Err(DecodeError::MalformedPacket(_))),
        "expected malformed, got {r:?}"
    );
}

/// Fails unless `r` is a protocol error.
#[track_caller]
pub fn assert_protocol_error(r: Result<Option<Packet>, DecodeError>) {
    assert!(
        matches!(r, Err(DecodeError::ProtocolError(_))),
        "expected protocol error, got {r:?}"
    );
}

/// Decodes a CONNECT with body `body` through a fresh [`Decoder`].
pub fn decode_connect(body: &[u8]) -> Result<Option<Packet>, DecodeError> {
    let mut buf = frame(0x10, body);
    Decoder::new(u32::MAX).decode(&mut buf)
}

/// The protocol name and level of `v`.
fn name_and_level(v: ProtocolVersion) -> Vec<u8> {
    match v {
        ProtocolVersion::V31 => [str_("MQIsdp"), vec![3]].concat(),
        ProtocolVersion::V311 => [str_("MQTT"), vec![4]].concat(),
        ProtocolVersion::V5 => [str_("MQTT"), vec![5]].concat(),
    }
}

/// A minimal CONNECT for `v`: clean session, keep alive 60, client id "c".
pub fn connect_bytes(v: ProtocolVersion) -> BytesMut {
    let props = if v.is_v5() { vec![0] } else { vec![] };
    frame(
        0x10,
        &[name_and_level(v), hex_v("02 00 3c"), props, str_("c")].concat(),
    )
}

/// A CONNECT for `v` using every field: will (QoS 2, retain), user name, password, and in 5.0
/// CONNECT and will properties.
pub fn connect_with_everything(v: ProtocolVersion) -> BytesMut {
    let (props, will_props) = if v.is_v5() {
        (
            hex_v("0c 11 00 00 00 0a 26 00 01 6b 00 01 76"),
            hex_v("02 01 00"),
        )
    } else {
        (vec![], vec![])
    };
    let payload = [
        str_("cid"),
        will_props,
        str_("w"),
        str_("bye"),
        str_("u"),
        str_("p"),
    ]
    .concat();
    frame(
        0x10,
        &[name_and_level(v), hex_v("f6 00 3c"), props, payload].concat(),
    )
}

/// A decoder that has read a minimal CONNECT for `v`.
pub fn connected(v: ProtocolVersion) -> Decoder {
    let mut decoder = Decoder::new(u32::MAX);
    let mut buf = connect_bytes(v);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(decoder.version(), Some(v));
    decoder
}

/// Every strict prefix of `wire` decodes to `Ok(None)` without consuming anything, and the
/// whole of it decodes to a packet.
#[track_caller]
pub fn assert_needs_more_until_complete(v: ProtocolVersion, wire: &BytesMut) {
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert_eq!(
            decode_packet(&mut buf, v, u32::MAX),
            Ok(None),
            "prefix of {cut} bytes"
        );
        assert_eq!(buf.len(), cut, "Ok(None) consumed bytes");
    }
    assert!(matches!(decode_with(v, wire), Ok(Some(_))), "{wire:02x?}");
}
