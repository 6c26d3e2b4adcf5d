//! Why decoding or encoding a packet failed.
//!
//! Owns the two codec error enums and the one mapping from a decode failure to the MQTT 5.0
//! reason code the server answers with (CONNACK or DISCONNECT). It must never carry data
//! copied from the network: every message is a `&'static str`, so a hostile peer cannot make
//! an error allocate or end up verbatim in logs.

use super::packet::ProtocolVersion;
use super::reason::ReasonCode;

/// Why decoding failed; maps to the reason code the server must answer with.
///
/// After any error the connection must be closed: the decoder makes no promise about what it
/// left in the buffer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes do not follow the packet grammar (0x81).
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
    /// The bytes parse but break a protocol rule (0x82).
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
    /// The fixed header announces a packet larger than our limit (0x95).
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// Whole packet size announced by the fixed header, fixed header included.
        size: usize,
        /// Our limit.
        max: u32,
    },
    /// A topic name (PUBLISH, will, response topic) is not a valid topic name (0x90).
    #[error("topic name invalid: {0}")]
    TopicNameInvalid(&'static str),
    /// A topic filter is not valid (0x8F). The decoder itself passes filters through; the
    /// broker checks them per filter and may use this variant.
    #[error("topic filter invalid: {0}")]
    TopicFilterInvalid(&'static str),
    /// CONNECT names a known protocol with a level we do not speak (0x84 / return code 1).
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion {
        /// The protocol level byte of the CONNECT.
        level: u8,
    },
    /// CONNECT's protocol name is neither `MQTT` nor `MQIsdp` (0x81).
    #[error("invalid protocol name")]
    InvalidProtocolName,
    /// The first packet of a connection is not CONNECT (0x82).
    #[error("first packet is not CONNECT")]
    FirstPacketNotConnect,
    /// The payload format indicator says UTF-8 but the payload is not (0x99).
    #[error("payload is not valid UTF-8 despite its payload format indicator")]
    PayloadFormatInvalid,
}

impl DecodeError {
    /// The MQTT 5.0 reason code for a CONNACK or DISCONNECT answering this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::MalformedPacket(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::MalformedPacket
            }
            DecodeError::ProtocolError(_) | DecodeError::FirstPacketNotConnect => {
                ReasonCode::ProtocolError
            }
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TopicNameInvalid,
            DecodeError::TopicFilterInvalid(_) => ReasonCode::TopicFilterInvalid,
            DecodeError::UnsupportedProtocolVersion { .. } => {
                ReasonCode::UnsupportedProtocolVersion
            }
            DecodeError::PayloadFormatInvalid => ReasonCode::PayloadFormatInvalid,
        }
    }

    /// A short, stable metric label ("malformed", "too_large", ...).
    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::MalformedPacket(_) => "malformed",
            DecodeError::ProtocolError(_) => "protocol_error",
            DecodeError::PacketTooLarge { .. } => "too_large",
            DecodeError::TopicNameInvalid(_) => "topic_name_invalid",
            DecodeError::TopicFilterInvalid(_) => "topic_filter_invalid",
            DecodeError::UnsupportedProtocolVersion { .. } => "unsupported_version",
            DecodeError::InvalidProtocolName => "invalid_protocol_name",
            DecodeError::FirstPacketNotConnect => "first_not_connect",
            DecodeError::PayloadFormatInvalid => "payload_format_invalid",
        }
    }
}

/// Why a packet could not be encoded. Nothing is appended to the output when this is returned.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The packet body would exceed the largest remaining length, 268 435 455 bytes.
    #[error("remaining length {len} exceeds 268435455")]
    RemainingLengthTooLarge {
        /// The body length the packet would need.
        len: usize,
    },
    /// A UTF-8 string is longer than 65 535 bytes.
    #[error("string of {len} bytes exceeds 65535")]
    StringTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Binary data (password, correlation or authentication data, will payload) is longer
    /// than 65 535 bytes.
    #[error("binary data of {len} bytes exceeds 65535")]
    BinaryTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A variable byte integer property (subscription identifier) exceeds 268 435 455.
    #[error("variable byte integer {value} exceeds 268435455")]
    VarIntTooLarge {
        /// The value.
        value: u32,
    },
    /// The packet type does not exist in this protocol version (AUTH before 5.0).
    #[error("{packet} does not exist in {version:?}")]
    NotInVersion {
        /// The packet name.
        packet: &'static str,
        /// The version asked for.
        version: ProtocolVersion,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn every_decode_error_maps_to_an_error_reason() {
        let all = [
            DecodeError::MalformedPacket("x"),
            DecodeError::ProtocolError("x"),
            DecodeError::PacketTooLarge { size: 10, max: 5 },
            DecodeError::TopicNameInvalid("x"),
            DecodeError::TopicFilterInvalid("x"),
            DecodeError::UnsupportedProtocolVersion { level: 6 },
            DecodeError::InvalidProtocolName,
            DecodeError::FirstPacketNotConnect,
            DecodeError::PayloadFormatInvalid,
        ];
        for e in all {
            assert!(e.reason_code().is_error(), "{e:?}");
            assert!(!e.label().is_empty());
        }
        assert_eq!(
            DecodeError::PacketTooLarge { size: 10, max: 5 }.reason_code(),
            ReasonCode::PacketTooLarge
        );
        assert_eq!(DecodeError::MalformedPacket("x").label(), "malformed");
        assert_eq!(
            DecodeError::PacketTooLarge { size: 1, max: 0 }.label(),
            "too_large"
        );
    }
}
