//! Byte-exact fixtures for the MQTT codec's edge cases, each named after the spec section it
//! checks (`v5_…` for MQTT 5.0, `v311_…` for 3.1.1; section numbers as in those specs).
//!
//! Owns hand-written wire bytes and the exact error or packet each must produce. It must
//! never derive an expected value from the codec under test (no encode-then-decode here: the
//! round trips live in `codec_roundtrip.rs`). Fixtures for CONNECT and the fixed header are
//! here; packet bodies and properties are in `codec_fixtures/`.

#![allow(clippy::unwrap_used)] // tests may unwrap

#[path = "codec_fixtures/bodies.rs"]
mod bodies;
#[path = "codec_fixtures/support.rs"]
mod support;

use bytes::BytesMut;
use meshmq_shared::codec::{
    DecodeError, Decoder, Packet, ProtocolVersion, ReasonCode, decode_packet,
};

use support::*;

// ---- fixed header (section 2.1) ----

#[test]
fn v311_2_2_2_reserved_flags_must_match_the_packet_type() {
    for (first, body) in [
        (0x60, "00 01"),             // PUBREL without 0b0010
        (0x63, "00 01"),             // PUBREL with a wrong bit
        (0x80, "00 01 00 01 61 00"), // SUBSCRIBE without 0b0010
        (0xa0, "00 01 00 01 61"),    // UNSUBSCRIBE without 0b0010
        (0x41, "00 01"),             // PUBACK with a flag
        (0xc8, ""),                  // PINGREQ with a flag
        (0xe1, ""),                  // DISCONNECT with a flag
    ] {
        assert_malformed(decode_v311(&frame(first, &hex(body))));
    }
    assert_eq!(
        decode_v311(&frame(0x62, &hex("00 01"))),
        Ok(Some(Packet::PubRel(meshmq_shared::codec::PubResp::new(1))))
    );
}

#[test]
fn v311_2_2_1_packet_type_0_is_malformed_from_its_first_byte() {
    assert_malformed(decode_v311(&hex("00")));
    assert_malformed(decode_v5(&hex("00 00")));
}

#[test]
fn v311_2_2_1_auth_is_malformed_before_v5() {
    assert_malformed(decode_v311(&hex("f0 00")));
    assert_malformed(decode_with(ProtocolVersion::V31, &hex("f0")));
    assert!(matches!(
        decode_v5(&hex("f0 00")),
        Ok(Some(Packet::Auth(_)))
    ));
}

#[test]
fn v5_3_3_1_2_publish_qos_3_is_malformed_from_its_first_byte() {
    assert_malformed(decode_v5(&hex("36")));
    assert_malformed(decode_v311(&hex("3e 05 00 01 61 00 01")));
}

#[test]
fn v5_1_5_5_remaining_length_of_5_bytes_is_malformed() {
    assert_malformed(decode_v5(&hex("30 ff ff ff ff 01")));
    // The 4th byte's continuation bit is enough to know.
    assert_malformed(decode_v5(&hex("30 80 80 80 80")));
    // The largest 4-byte remaining length is fine: it just needs more bytes.
    assert_eq!(decode_v5(&hex("30 ff ff ff 7f")), Ok(None));
}

#[test]
fn v5_3_1_2_24_too_large_packet_is_detected_from_the_header_alone() {
    let mut buf = hex("30 ff ff ff 7f"); // 5 bytes buffered, 268 435 460 announced
    let err = decode_packet(&mut buf, ProtocolVersion::V5, 1024);
    assert_eq!(
        err,
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        })
    );
    assert_eq!(err.unwrap_err().reason_code(), ReasonCode::PacketTooLarge);
    let mut buf = hex("30 80 01");
    assert!(matches!(
        decode_packet(&mut buf, ProtocolVersion::V311, 130),
        Err(DecodeError::PacketTooLarge { size: 131, .. })
    ));
}

#[test]
fn v5_3_1_2_24_packet_exactly_at_the_limit_is_accepted() {
    let publish = frame(0x30, &hex("00 01 61 68 69")); // 7 bytes in all
    let mut buf = publish.clone();
    assert!(
        decode_packet(&mut buf, ProtocolVersion::V311, 7)
            .unwrap()
            .is_some()
    );
    let mut buf = publish;
    assert_eq!(
        decode_packet(&mut buf, ProtocolVersion::V311, 6),
        Err(DecodeError::PacketTooLarge { size: 7, max: 6 })
    );
}

#[test]
fn decoder_checks_its_limit_after_connect_too() {
    let mut decoder = connected(ProtocolVersion::V5);
    decoder.set_max_packet_size(10);
    let mut buf = hex("30 0a");
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge { size: 12, max: 10 })
    );
}

// ---- CONNECT and version detection (section 3.1) ----

#[test]
fn v311_3_1_connect_decodes_and_sets_the_version() {
    let mut decoder = Decoder::new(u32::MAX);
    assert_eq!(decoder.version(), None);
    let mut buf = frame(
        0x10,
        &[str_("MQTT"), hex_v("04 02 00 3c"), str_("c")].concat(),
    );
    let Some(Packet::Connect(c)) = decoder.decode(&mut buf).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(
        (c.protocol, c.clean_start, c.keep_alive),
        (ProtocolVersion::V311, true, 60)
    );
    assert_eq!(c.client_id, "c");
    assert_eq!(decoder.version(), Some(ProtocolVersion::V311));
    assert!(buf.is_empty());
}

#[test]
fn v311_3_1_2_1_mqisdp_level_3_connect_is_mqtt_3_1() {
    let mut decoder = Decoder::new(u32::MAX);
    let mut buf = hex("10 0f 00 06 4d 51 49 73 64 70 03 02 00 3c 00 01 63");
    let Some(Packet::Connect(c)) = decoder.decode(&mut buf).unwrap() else {
        panic!("not CONNECT")
    };
    assert_eq!(c.protocol, ProtocolVersion::V31);
    assert_eq!(decoder.version(), Some(ProtocolVersion::V31));
}

#[test]
fn v5_3_1_2_2_unsupported_level_is_reported_before_the_rest_is_read() {
    // Level 6, then bytes that would be malformed for any known version.
    let mut buf = frame(0x10, &[str_("MQTT"), hex_v("06 ff ff")].concat());
    let err = Decoder::new(u32::MAX).decode(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion { level: 6 });
    assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    for (name, level) in [("MQTT", 3), ("MQIsdp", 4), ("MQTT", 0)] {
        let mut buf = frame(0x10, &[str_(name), vec![level, 0x02, 0, 0]].concat());
        assert_eq!(
            Decoder::new(u32::MAX).decode(&mut buf),
            Err(DecodeError::UnsupportedProtocolVersion { level })
        );
    }
}

#[test]
fn v311_3_1_2_1_wrong_protocol_name_is_invalid() {
    let mut buf = frame(
        0x10,
        &[str_("MQTX"), hex_v("04 02 00 3c 00 01 63")].concat(),
    );
    let err = Decoder::new(u32::MAX).decode(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::InvalidProtocolName);
    assert_eq!(err.reason_code(), ReasonCode::MalformedPacket);
}

#[test]
fn v311_3_1_0_1_first_packet_must_be_connect() {
    let mut buf = hex("c0"); // PINGREQ, known from the first byte
    let err = Decoder::new(u32::MAX).decode(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::FirstPacketNotConnect);
    assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(
        Decoder::new(u32::MAX).decode(&mut BytesMut::new()),
        Ok(None)
    );
}

#[test]
fn v311_3_1_0_2_second_connect_is_a_protocol_error() {
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let mut decoder = connected(v);
        let mut buf = connect_bytes(v);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(DecodeError::ProtocolError(_))
        ));
    }
}

#[test]
fn v311_3_1_2_3_reserved_connect_flag_is_malformed() {
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("04 03 00 3c"), str_("c")].concat(),
    ));
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("05 01 00 3c 00"), str_("c")].concat(),
    ));
}

#[test]
fn v311_3_1_2_12_will_qos_3_is_malformed() {
    let will = [str_("w"), str_("p")].concat();
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("04 1e 00 3c"), str_("c"), will].concat(),
    ));
}

#[test]
fn v311_3_1_2_11_will_qos_or_retain_without_will_flag_is_malformed() {
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("04 0a 00 3c"), str_("c")].concat(),
    ));
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("04 22 00 3c"), str_("c")].concat(),
    ));
}

#[test]
fn v311_3_1_2_22_password_without_user_name_is_malformed() {
    let body = [str_("MQTT"), hex_v("04 42 00 3c"), str_("c"), str_("pw")].concat();
    assert_malformed(decode_connect(&body));
}

#[test]
fn v5_3_1_2_9_password_without_user_name_is_accepted() {
    let body = [str_("MQTT"), hex_v("05 42 00 3c 00"), str_("c"), str_("pw")].concat();
    let Ok(Some(Packet::Connect(c))) = decode_connect(&body) else {
        panic!("rejected")
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn v5_3_1_3_2_will_has_its_own_properties() {
    // Will flag, will QoS 1, retain; will properties: delay 5, payload format 1.
    let props = hex_v("07 18 00 00 00 05 01 01");
    let body = [
        str_("MQTT"),
        hex_v("05 2e 00 00 00"),
        str_(""),
        props,
        str_("w/t"),
        str_("bye"),
    ]
    .concat();
    let Ok(Some(Packet::Connect(c))) = decode_connect(&body) else {
        panic!("rejected")
    };
    let will = c.will.expect("will");
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("w/t", &b"bye"[..])
    );
    assert_eq!(will.properties.will_delay_interval, Some(5));
    assert_eq!(will.properties.payload_format_indicator, Some(1));
    assert!(will.retain);
    assert_eq!(
        c.client_id, "",
        "an empty client id is the broker's call, not the decoder's"
    );
}

#[test]
fn v5_3_1_3_2_connect_only_properties_are_not_allowed_in_the_will() {
    let props = hex_v("05 11 00 00 00 05"); // session expiry: CONNECT yes, will no
    let body = [
        str_("MQTT"),
        hex_v("05 06 00 00 00"),
        str_("c"),
        props,
        str_("w"),
        str_("p"),
    ]
    .concat();
    assert!(matches!(
        decode_connect(&body),
        Err(DecodeError::ProtocolError(_))
    ));
}

#[test]
fn v5_3_1_3_3_wildcard_will_topic_is_topic_name_invalid() {
    let body = [
        str_("MQTT"),
        hex_v("05 06 00 00 00"),
        str_("c"),
        hex_v("00"),
        str_("a/#"),
        str_("p"),
    ]
    .concat();
    assert!(matches!(
        decode_connect(&body),
        Err(DecodeError::TopicNameInvalid(_))
    ));
}

#[test]
fn v5_3_1_3_2_3_will_payload_not_utf8_despite_format_indicator() {
    let body = [
        str_("MQTT"),
        hex_v("05 06 00 00 00"),
        str_("c"),
        hex_v("02 01 01"),
        str_("w"),
        hex_v("00 01 ff"),
    ]
    .concat();
    let err = decode_connect(&body).unwrap_err();
    assert_eq!(err, DecodeError::PayloadFormatInvalid);
    assert_eq!(err.reason_code(), ReasonCode::PayloadFormatInvalid);
}

#[test]
fn v5_3_1_2_11_connect_property_rules() {
    let connect = |props: &str| {
        decode_connect(&[str_("MQTT"), hex_v("05 02 00 00"), hex_v(props), str_("c")].concat())
    };
    let protocol = |r: Result<Option<Packet>, DecodeError>| {
        assert!(matches!(r, Err(DecodeError::ProtocolError(_))), "{r:?}");
    };
    protocol(connect("03 21 00 00")); // Receive Maximum 0
    protocol(connect("05 27 00 00 00 00")); // Maximum Packet Size 0
    protocol(connect("02 17 02")); // Request Problem Information 2
    protocol(connect("02 19 02")); // Request Response Information 2
    protocol(connect("03 23 00 01")); // Topic Alias: PUBLISH only
    protocol(connect("0a 11 00 00 00 01 11 00 00 00 02")); // Session Expiry twice
    protocol(connect("04 16 00 01 78")); // authentication data without a method
    let Ok(Some(Packet::Connect(c))) = connect("08 21 00 0a 26 00 00 00 00") else {
        panic!()
    };
    assert_eq!(c.properties.receive_maximum, Some(10));
    assert_eq!(
        c.properties.user_properties,
        vec![(String::new(), String::new())]
    );
}

#[test]
fn v311_1_5_3_truncated_or_overlong_connect_fields_are_malformed() {
    // Client id length 0x00ff but only one byte left: never an over-read.
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("04 02 00 3c 00 ff 63")].concat(),
    ));
    // A valid CONNECT followed by a stray byte inside the same remaining length.
    assert_malformed(decode_connect(
        &[str_("MQTT"), hex_v("04 02 00 3c"), str_("c"), vec![0]].concat(),
    ));
    // The protocol name cut short.
    assert_malformed(decode_connect(&hex_v("00 04 4d 51")));
}

// ---- partial input ----

#[test]
fn every_prefix_of_a_valid_connect_needs_more_bytes() {
    for v in [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ] {
        let wire = connect_with_everything(v);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(
                Decoder::new(u32::MAX).decode(&mut buf),
                Ok(None),
                "{v:?} prefix {cut}"
            );
            assert_eq!(buf.len(), cut, "Ok(None) consumed bytes");
        }
        let mut buf = wire.clone();
        assert!(matches!(
            Decoder::new(u32::MAX).decode(&mut buf),
            Ok(Some(Packet::Connect(_)))
        ));
        assert!(buf.is_empty());
    }
}

#[test]
fn a_connection_stream_decodes_packet_by_packet() {
    let mut buf = connect_bytes(ProtocolVersion::V5);
    buf.extend_from_slice(&hex("c0 00 30 06 00 01 61 00 68 69 e0 00"));
    let mut decoder = Decoder::new(u32::MAX);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Publish(_)))
    ));
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Disconnect(_)))
    ));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}
