//! Primitive values for the codec strategies: protocol versions, MQTT UTF-8 strings, binary
//! data, topic names and filters, QoS and packet identifiers.
//!
//! Owns what a valid string or topic is for the generators: no U+0000, no control characters,
//! no non-characters, topic names without wildcards, filters with `+` and `#` only where the
//! spec allows them. It must never produce a value a conforming receiver may reject.

use bytes::Bytes;
use meshmq_shared::codec::{ProtocolVersion, QoS};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// Every protocol version the codec speaks.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];

/// Largest Subscription Identifier (a 4-byte variable byte integer).
pub const MAX_SUBSCRIPTION_ID: u32 = 268_435_455;

/// Any of the three protocol versions.
pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(&VERSIONS[..])
}

/// A character the spec allows in a UTF-8 string and that no receiver should object to:
/// no U+0000, no control characters, no surrogates, no non-characters.
pub fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{A0}', '\u{D7FF}'),
        1 => proptest::char::range('\u{E000}', '\u{FDCF}'),
        1 => proptest::char::range('\u{1F300}', '\u{1F6FF}'),
    ]
}

/// A valid MQTT UTF-8 string of at most `max` characters.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    vec(text_char(), 0..=max).prop_map(|chars| chars.into_iter().collect())
}

/// Binary data of at most `max` bytes.
pub fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// One topic level: no separator and no wildcard; may be empty.
pub fn level() -> impl Strategy<Value = String> {
    vec(
        text_char().prop_filter("no / + #", |c| !matches!(c, '/' | '+' | '#')),
        0..6,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A topic name: non-empty, no wildcards.
pub fn topic_name() -> impl Strategy<Value = String> {
    vec(level(), 1..4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |t| !t.is_empty())
}

/// A valid topic filter: `+` alone in its level, `#` alone and last.
pub fn topic_filter() -> impl Strategy<Value = String> {
    let lvl = prop_oneof![4 => level(), 1 => Just("+".to_string())];
    (vec(lvl, 1..4), any::<bool>())
        .prop_map(|(mut levels, multi)| {
            if multi {
                levels.push("#".to_string());
            }
            levels.join("/")
        })
        .prop_filter("non-empty", |f| !f.is_empty())
}

/// Any QoS.
pub fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

/// A non-zero packet identifier.
pub fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}
