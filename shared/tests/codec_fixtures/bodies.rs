//! Fixtures for packet bodies after CONNECT: PUBLISH, the acknowledgements, SUBSCRIBE and
//! UNSUBSCRIBE, DISCONNECT and AUTH, 5.0 properties, the server→client packets, and the
//! bytes the encoder must produce.
//!
//! Owns hand-written wire bytes only; it must never take an expected value from the codec.

use bytes::{Bytes, BytesMut};
use meshmq_shared::codec::{
    Auth, ConnAck, DecodeError, Disconnect, Packet, Properties, ProtocolVersion, PubResp, QoS,
    ReasonCode, SubAck, SubscriptionOptions, UnsubAck, decode_packet, encode, encoded_len,
};

use super::support::*;

/// The encoding of `p` for `v`, checked against `encoded_len`.
fn encoded(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(p, v, &mut out).unwrap();
    assert_eq!(encoded_len(p, v), out.len());
    out.to_vec()
}

// ---- PUBLISH (section 3.3) ----

#[test]
fn v5_3_3_2_1_wildcard_in_publish_topic_is_topic_name_invalid() {
    for topic in ["a/+", "#", "a/b#"] {
        let err = decode_v5(&frame(0x30, &[str_(topic), vec![0]].concat())).unwrap_err();
        assert!(
            matches!(err, DecodeError::TopicNameInvalid(_)),
            "{topic}: {err:?}"
        );
        assert_eq!(err.reason_code(), ReasonCode::TopicNameInvalid);
    }
    let err = decode_v311(&frame(0x30, &str_("a/+"))).unwrap_err();
    assert!(matches!(err, DecodeError::TopicNameInvalid(_)));
}

#[test]
fn v5_1_5_4_nul_in_a_topic_is_malformed() {
    assert_malformed(decode_v5(&frame(0x30, &hex_v("00 03 61 00 62 00"))));
    assert_malformed(decode_v311(&frame(0x30, &hex_v("00 03 61 00 62"))));
}

#[test]
fn v311_1_5_3_ill_formed_utf8_in_a_topic_is_malformed() {
    assert_malformed(decode_v311(&frame(0x30, &hex_v("00 02 c3 28")))); // bad continuation
    assert_malformed(decode_v311(&frame(0x30, &hex_v("00 03 ed a0 80")))); // U+D800
}

#[test]
fn v311_1_5_3_string_longer_than_the_packet_is_malformed() {
    assert_malformed(decode_v311(&hex("30 03 ff ff 61")));
    assert_malformed(decode_v5(&hex("30 01 00")));
}

#[test]
fn v5_2_2_1_qos1_publish_with_packet_id_0_is_a_protocol_error() {
    assert_protocol_error(decode_v5(&frame(
        0x32,
        &[str_("t"), hex_v("00 00 00")].concat(),
    )));
    assert_protocol_error(decode_v311(&frame(
        0x34,
        &[str_("t"), hex_v("00 00")].concat(),
    )));
}

#[test]
fn v5_3_3_2_3_4_empty_topic_needs_a_topic_alias() {
    let Ok(Some(Packet::Publish(p))) = decode_v5(&frame(0x30, &hex_v("00 00 03 23 00 05 68 69")))
    else {
        panic!("rejected")
    };
    assert_eq!((p.topic.as_str(), p.properties.topic_alias), ("", Some(5)));
    assert_eq!(p.payload, Bytes::from_static(b"hi"));
    assert_protocol_error(decode_v5(&frame(0x30, &hex_v("00 00 00 68 69"))));
    let err = decode_v311(&frame(0x30, &hex_v("00 00 68 69"))).unwrap_err();
    assert!(matches!(err, DecodeError::TopicNameInvalid(_)));
}

#[test]
fn v5_3_3_2_3_4_topic_alias_0_is_a_protocol_error() {
    assert_protocol_error(decode_v5(&frame(
        0x30,
        &[str_("t"), hex_v("03 23 00 00")].concat(),
    )));
}

#[test]
fn v5_3_3_1_1_dup_on_qos0_is_a_protocol_error() {
    assert_protocol_error(decode_v5(&frame(0x38, &[str_("t"), vec![0]].concat())));
    // 3.1.1 states it as a sender rule only; the flag is kept.
    let Ok(Some(Packet::Publish(p))) = decode_v311(&frame(0x38, &str_("t"))) else {
        panic!()
    };
    assert!(p.dup);
}

#[test]
fn v5_3_3_2_3_2_payload_not_utf8_despite_format_indicator() {
    let bad = frame(0x30, &[str_("t"), hex_v("02 01 01 ff fe")].concat());
    assert_eq!(decode_v5(&bad), Err(DecodeError::PayloadFormatInvalid));
    let unspecified = frame(0x30, &[str_("t"), hex_v("02 01 00 ff fe")].concat());
    assert!(matches!(
        decode_v5(&unspecified),
        Ok(Some(Packet::Publish(_)))
    ));
}

#[test]
fn v5_3_3_publish_fields_and_zero_copy_payload() {
    let mut buf = frame(
        0x3b,
        &[str_("a/b"), hex_v("12 34 04 0b 01 0b 02 70 6c")].concat(),
    );
    let storage = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Ok(Some(Packet::Publish(p))) = decode_packet(&mut buf, ProtocolVersion::V5, u32::MAX)
    else {
        panic!("rejected")
    };
    assert_eq!(
        (p.dup, p.qos, p.retain, p.packet_id),
        (true, QoS::AtLeastOnce, true, 0x1234)
    );
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
    assert_eq!(p.payload, Bytes::from_static(b"pl"));
    assert!(
        storage.contains(&(p.payload.as_ptr() as usize)),
        "payload was copied"
    );
}

// ---- properties (section 2.2.2) ----

#[test]
fn v5_2_2_2_2_single_valued_property_given_twice_is_a_protocol_error() {
    let props = hex_v("0a 02 00 00 00 01 02 00 00 00 02");
    assert_protocol_error(decode_v5(&frame(0x30, &[str_("t"), props].concat())));
    // User properties may repeat, and keep their order.
    let props = hex_v("0e 26 00 01 6b 00 01 31 26 00 01 6b 00 01 32");
    let Ok(Some(Packet::Publish(p))) = decode_v5(&frame(0x30, &[str_("t"), props].concat())) else {
        panic!("rejected")
    };
    let kv = |v: &str| ("k".to_string(), v.to_string());
    assert_eq!(p.properties.user_properties, vec![kv("1"), kv("2")]);
}

#[test]
fn v5_2_2_2_2_property_not_allowed_in_the_packet_is_a_protocol_error() {
    // Session Expiry Interval in PUBLISH, Will Delay in PUBLISH, Topic Alias in PUBACK.
    assert_protocol_error(decode_v5(&frame(
        0x30,
        &[str_("t"), hex_v("05 11 00 00 00 01")].concat(),
    )));
    assert_protocol_error(decode_v5(&frame(
        0x30,
        &[str_("t"), hex_v("05 18 00 00 00 01")].concat(),
    )));
    assert_protocol_error(decode_v5(&hex("40 07 00 01 00 03 23 00 01")));
}

#[test]
fn v5_2_2_2_2_unknown_property_identifier_is_malformed() {
    assert_malformed(decode_v5(&frame(
        0x30,
        &[str_("t"), hex_v("02 7f 00")].concat(),
    )));
}

#[test]
fn v5_2_2_2_1_property_length_beyond_the_packet_is_malformed() {
    assert_malformed(decode_v5(&frame(
        0x30,
        &[str_("t"), hex_v("09 01 01")].concat(),
    )));
    assert_malformed(decode_v5(&hex("40 05 00 01 00 02 1f"))); // reason string cut short
}

#[test]
fn v5_3_8_2_1_2_subscription_identifier_0_is_a_protocol_error() {
    assert_protocol_error(decode_v5(&frame(
        0x82,
        &[hex_v("00 01 02 0b 00"), str_("a"), vec![0]].concat(),
    )));
    assert_protocol_error(decode_v5(&frame(
        0x30,
        &[str_("t"), hex_v("02 0b 00")].concat(),
    )));
}

#[test]
fn v5_3_8_2_1_2_two_subscription_identifiers_in_subscribe_is_a_protocol_error() {
    let body = [hex_v("00 01 04 0b 01 0b 02"), str_("a"), vec![0]].concat();
    assert_protocol_error(decode_v5(&frame(0x82, &body)));
}

// ---- acknowledgements, DISCONNECT, AUTH ----

#[test]
fn v5_3_4_2_1_puback_short_forms() {
    let success = Packet::PubAck(PubResp::new(1));
    assert_eq!(decode_v5(&hex("40 02 00 01")), Ok(Some(success.clone())));
    assert_eq!(decode_v5(&hex("40 03 00 01 00")), Ok(Some(success.clone())));
    assert_eq!(
        decode_v5(&hex("40 04 00 01 00 00")),
        Ok(Some(success.clone()))
    );
    let refused = PubResp {
        reason: ReasonCode::QuotaExceeded,
        ..PubResp::new(1)
    };
    assert_eq!(
        decode_v5(&hex("40 03 00 01 97")),
        Ok(Some(Packet::PubAck(refused.clone())))
    );
    // The encoder writes the shortest form.
    assert_eq!(encoded(&success, ProtocolVersion::V5), hex_v("40 02 00 01"));
    assert_eq!(
        encoded(&Packet::PubAck(refused), ProtocolVersion::V5),
        hex_v("40 03 00 01 97")
    );
}

#[test]
fn v5_3_4_2_1_reason_code_not_defined_for_the_packet_is_malformed() {
    assert_malformed(decode_v5(&hex("40 03 00 01 92"))); // 0x92 is for PUBREL/PUBCOMP
    assert_malformed(decode_v5(&hex("62 03 00 01 10"))); // 0x10 is for PUBACK/PUBREC
    assert_malformed(decode_v5(&hex("e0 01 05"))); // 0x05 is no reason code at all
    assert!(matches!(
        decode_v5(&hex("62 03 00 01 92")),
        Ok(Some(Packet::PubRel(_)))
    ));
}

#[test]
fn v311_3_4_puback_is_exactly_two_bytes_long() {
    assert_malformed(decode_v311(&hex("40 03 00 01 00")));
    assert_malformed(decode_v311(&hex("40 01 00")));
}

#[test]
fn v5_3_14_zero_length_disconnect_is_normal() {
    let normal = Packet::Disconnect(Disconnect::new(ReasonCode::Success));
    assert_eq!(decode_v5(&hex("e0 00")), Ok(Some(normal.clone())));
    assert_eq!(encoded(&normal, ProtocolVersion::V5), hex_v("e0 00"));
    let with_will = Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage));
    assert_eq!(decode_v5(&hex("e0 01 04")), Ok(Some(with_will)));
}

#[test]
fn v311_3_14_disconnect_has_no_body() {
    assert_malformed(decode_v311(&hex("e0 01 00")));
    let normal = Packet::Disconnect(Disconnect::new(ReasonCode::ServerShuttingDown));
    assert_eq!(encoded(&normal, ProtocolVersion::V311), hex_v("e0 00"));
}

#[test]
fn v311_3_12_pingreq_has_no_body() {
    assert_malformed(decode_v311(&hex("c0 01 00")));
    assert_eq!(decode_v311(&hex("d0 00")), Ok(Some(Packet::PingResp)));
}

#[test]
fn v5_3_15_zero_length_auth_is_success_and_otherwise_needs_a_method() {
    let empty = Auth {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    assert_eq!(decode_v5(&hex("f0 00")), Ok(Some(Packet::Auth(empty))));
    assert_protocol_error(decode_v5(&hex("f0 01 18")));
    let Ok(Some(Packet::Auth(a))) = decode_v5(&hex("f0 06 18 04 15 00 01 6d")) else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::ContinueAuthentication);
    assert_eq!(a.properties.authentication_method.as_deref(), Some("m"));
}

// ---- SUBSCRIBE / UNSUBSCRIBE (sections 3.8, 3.10) ----

#[test]
fn v5_3_8_3_subscribe_without_a_filter_is_a_protocol_error() {
    assert_protocol_error(decode_v5(&hex("82 03 00 01 00")));
    assert_protocol_error(decode_v311(&hex("82 02 00 01")));
    assert_protocol_error(decode_v5(&hex("a2 03 00 01 00")));
    assert_protocol_error(decode_v311(&hex("a2 02 00 01")));
}

#[test]
fn v5_3_8_3_1_invalid_subscription_options_are_malformed() {
    for options in [0x40, 0x80, 0x03, 0x30] {
        let body = [hex_v("00 01 00"), str_("a"), vec![options]].concat();
        assert_malformed(decode_v5(&frame(0x82, &body)));
    }
}

#[test]
fn v311_3_8_3_1_only_the_qos_bits_may_be_set() {
    for options in [0x04, 0x08, 0x10, 0x03] {
        assert_malformed(decode_v311(&frame(
            0x82,
            &[hex_v("00 01"), str_("a"), vec![options]].concat(),
        )));
    }
}

#[test]
fn v5_3_8_3_subscription_options_decode() {
    let body = [hex_v("00 07 00"), str_("a/+"), vec![0x2e]].concat();
    let Ok(Some(Packet::Subscribe(s))) = decode_v5(&frame(0x82, &body)) else {
        panic!()
    };
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: 2,
    };
    assert_eq!(s.filters, vec![("a/+".to_string(), options)]);
    assert_eq!(s.packet_id, 7);
}

#[test]
fn v5_4_7_1_invalid_filters_pass_through_to_the_broker() {
    let filters = ["a/#/b", "a+", "", "#/"];
    let body: Vec<u8> = filters
        .iter()
        .flat_map(|f| [str_(f), vec![1]].concat())
        .collect();
    let Ok(Some(Packet::Subscribe(s))) =
        decode_v5(&frame(0x82, &[hex_v("00 01 00"), body].concat()))
    else {
        panic!("the decoder judged a filter")
    };
    assert_eq!(
        s.filters
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        filters
    );
    let body: Vec<u8> = filters.iter().flat_map(|f| str_(f)).collect();
    assert!(matches!(
        decode_v311(&frame(0xa2, &[hex_v("00 01"), body].concat())),
        Ok(Some(_))
    ));
    // The string rules still apply to filters.
    assert_malformed(decode_v5(&frame(
        0x82,
        &[hex_v("00 01 00 00 01 00 01")].concat(),
    )));
}

// ---- server → client, and the 3.1.1 mappings ----

#[test]
fn v311_3_2_2_3_connack_return_codes_map_both_ways() {
    let not_authorized = ConnAck {
        session_present: false,
        code: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    };
    assert_eq!(
        decode_v311(&hex("20 02 00 05")),
        Ok(Some(Packet::ConnAck(not_authorized)))
    );
    assert_malformed(decode_v311(&hex("20 02 00 06")));
    assert_malformed(decode_v311(&hex("20 02 02 00"))); // reserved acknowledge flag
    let banned = ConnAck {
        code: ReasonCode::Banned,
        ..accepted(true)
    };
    assert_eq!(
        encoded(&Packet::ConnAck(banned.clone()), ProtocolVersion::V311),
        hex_v("20 02 01 05")
    );
    assert_eq!(
        encoded(&Packet::ConnAck(accepted(true)), ProtocolVersion::V311),
        hex_v("20 02 01 00")
    );
    assert_eq!(
        encoded(&Packet::ConnAck(accepted(false)), ProtocolVersion::V5),
        hex_v("20 03 00 00 00")
    );
}

fn accepted(session_present: bool) -> ConnAck {
    ConnAck {
        session_present,
        code: ReasonCode::Success,
        properties: Properties::default(),
    }
}

#[test]
fn v5_3_2_2_1_1_session_present_with_a_refusal_is_a_protocol_error() {
    assert_protocol_error(decode_v5(&hex("20 03 01 87 00")));
    assert_protocol_error(decode_v311(&hex("20 02 01 05")));
}

#[test]
fn v311_3_9_3_suback_failure_reads_as_unspecified_error() {
    let Ok(Some(Packet::SubAck(a))) = decode_v311(&hex("90 05 00 09 00 02 80")) else {
        panic!()
    };
    assert_eq!(
        a.reasons,
        [
            ReasonCode::Success,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError
        ]
    );
    assert_malformed(decode_v311(&hex("90 03 00 09 03")));
    let refused = SubAck {
        packet_id: 9,
        reasons: vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized],
        properties: Properties::default(),
    };
    assert_eq!(
        encoded(&Packet::SubAck(refused.clone()), ProtocolVersion::V311),
        hex_v("90 04 00 09 01 80")
    );
    assert_eq!(
        encoded(&Packet::SubAck(refused), ProtocolVersion::V5),
        hex_v("90 05 00 09 00 01 87")
    );
}

#[test]
fn v311_3_11_unsuback_has_no_payload() {
    let ack = UnsubAck {
        packet_id: 3,
        reasons: vec![],
        properties: Properties::default(),
    };
    assert_eq!(
        decode_v311(&hex("b0 02 00 03")),
        Ok(Some(Packet::UnsubAck(ack.clone())))
    );
    assert_malformed(decode_v311(&hex("b0 03 00 03 00")));
    let v5 = UnsubAck {
        reasons: vec![ReasonCode::NoSubscriptionExisted],
        ..ack
    };
    assert_eq!(
        encoded(&Packet::UnsubAck(v5.clone()), ProtocolVersion::V311),
        hex_v("b0 02 00 03")
    );
    assert_eq!(
        encoded(&Packet::UnsubAck(v5), ProtocolVersion::V5),
        hex_v("b0 04 00 03 00 11")
    );
}

// ---- partial input ----

#[test]
fn every_prefix_of_a_valid_packet_needs_more_bytes() {
    let v5 = ProtocolVersion::V5;
    assert_needs_more_until_complete(
        v5,
        &frame(
            0x3b,
            &[str_("a/b"), hex_v("12 34 04 0b 01 0b 02 70 6c")].concat(),
        ),
    );
    assert_needs_more_until_complete(
        v5,
        &frame(0x30, &[str_("t"), vec![0], vec![7; 200]].concat()),
    );
    assert_needs_more_until_complete(v5, &hex("40 07 00 01 10 03 1f 00 00"));
    assert_needs_more_until_complete(
        v5,
        &frame(
            0x82,
            &[hex_v("00 01 02 0b 05"), str_("a/#"), vec![2]].concat(),
        ),
    );
    assert_needs_more_until_complete(v5, &hex("f0 06 18 04 15 00 01 6d"));
    assert_needs_more_until_complete(ProtocolVersion::V311, &hex("90 05 00 09 00 02 80"));
    assert_needs_more_until_complete(
        ProtocolVersion::V311,
        &frame(0xa2, &[hex_v("00 01"), str_("x")].concat()),
    );
}
