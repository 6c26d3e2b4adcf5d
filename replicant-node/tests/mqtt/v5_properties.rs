//! MQTT 5.0 properties end to end (sections 3.1.2, 3.2.2, 3.3.2, 3.8.3): topic aliases both
//! ways, message expiry, pass-through of application properties, No Local, Maximum Packet
//! Size both ways, Request / Response Information, and no Subscription Identifier from a
//! client.

use std::time::Duration;

use bytes::Bytes;
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Packet, Properties, QoS, ReasonCode, SubscriptionOptions};

use crate::common::clients::v5;
use crate::common::raw::{RawClient, connect_packet, publish_packet};
use crate::common::{self, QUIET, start_broker};

#[tokio::test]
async fn v5_3_3_2_3_4_topic_alias_from_client_is_resolved() {
    let b = common::broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "ta-sub").await;
    sub.subscribe("ta/#", QoS::AtMostOnce).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "ta-pub").await;
    let mut first = publish_packet("ta/long/topic", b"1", QoS::AtLeastOnce, false);
    first.properties.topic_alias = Some(1);
    assert_eq!(c.publish_full(first).await, ReasonCode::Success);
    let mut second = publish_packet("", b"2", QoS::AtLeastOnce, false);
    second.properties.topic_alias = Some(1);
    assert_eq!(c.publish_full(second).await, ReasonCode::Success);
    for want in [&b"1"[..], b"2"] {
        let p = sub.recv_publish().await;
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("ta/long/topic", want));
        assert_eq!(
            p.properties.topic_alias, None,
            "the publisher's alias is not forwarded"
        );
    }
}

#[tokio::test]
async fn v5_3_3_2_3_4_unknown_topic_alias_is_a_protocol_error() {
    let b = common::broker().await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "ta-unknown").await;
    let mut p = publish_packet("", b"x", QoS::AtMostOnce, false);
    p.properties.topic_alias = Some(3);
    c.send(&Packet::Publish(p)).await;
    let reason = c
        .expect_closed_with(&[ReasonCode::ProtocolError, ReasonCode::TopicAliasInvalid])
        .await;
    assert!(
        reason.is_some(),
        "DISCONNECT 0x82 (or 0x94) before the close"
    );
}

#[tokio::test]
async fn v5_3_3_4_6_subscription_identifier_from_client_is_a_protocol_error() {
    let b = common::broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sid-sub")).await;
    sub.subscribe("sid/#", QoS::AtMostOnce).await;
    let before = protocol_errors(&b, "subscription_identifier").await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sid-pub")).await;
    let mut p = publish_packet("sid/x", b"x", QoS::AtLeastOnce, false);
    p.packet_id = 1;
    p.properties.subscription_identifiers = vec![7];
    c.send(&Packet::Publish(p)).await;
    let reason = c.expect_closed_with(&[ReasonCode::ProtocolError]).await;
    assert_eq!(
        reason,
        Some(ReasonCode::ProtocolError),
        "MQTT-3.3.4-6: DISCONNECT 0x82, not a PUBACK"
    );
    sub.expect_no_publish(QUIET).await;
    let after = protocol_errors(&b, "subscription_identifier").await;
    assert!(after > before, "counted: {before} -> {after}");
}

/// `meshmq_protocol_errors_total{reason}` now (process-wide).
async fn protocol_errors(b: &common::TestBroker, reason: &str) -> f64 {
    let text = common::metrics_text(b).await;
    common::metric_sum(&text, "meshmq_protocol_errors_total", &[("reason", reason)]).unwrap_or(0.0)
}

#[tokio::test]
async fn v5_3_2_2_18_server_uses_topic_aliases_only_when_the_client_allows() {
    let b = common::broker().await;
    let mut connect = connect_packet(V5, "ta-out");
    connect.properties.topic_alias_maximum = Some(5);
    let (mut aliased, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    aliased.subscribe("tao/t", QoS::AtMostOnce).await;
    let mut plain = RawClient::connect(b.mqtt_addr(), V5, "ta-none").await; // Topic Alias Maximum absent = 0
    plain.subscribe("tao/t", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "tao-pub").await;
    for i in 0..3 {
        publisher
            .publish("tao/t", &i.to_string(), QoS::AtMostOnce, false)
            .await;
    }
    let first = aliased.recv_publish().await;
    let alias = first
        .properties
        .topic_alias
        .expect("first message sets an alias");
    assert!(
        (1..=5).contains(&alias),
        "alias within the client's maximum: {alias}"
    );
    assert_eq!(first.topic, "tao/t");
    for _ in 1..3 {
        let p = aliased.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.properties.topic_alias),
            ("", Some(alias)),
            "later messages: alias only"
        );
    }
    for _ in 0..3 {
        let p = plain.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.properties.topic_alias),
            ("tao/t", None),
            "no alias without Topic Alias Maximum"
        );
    }
}

#[tokio::test]
async fn v5_3_3_2_3_application_properties_pass_through_unchanged() {
    let b = common::broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "pp-sub").await;
    sub.subscribe("pp/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "pp-pub").await;
    let mut p = publish_packet("pp/t", "héllo".as_bytes(), QoS::AtLeastOnce, false);
    p.properties = Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain; charset=utf-8".into()),
        response_topic: Some("pp/reply".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xff])),
        user_properties: vec![
            ("k".into(), "v1".into()),
            ("a".into(), "b".into()),
            ("k".into(), "v2".into()),
        ],
        ..Properties::default()
    };
    let sent = p.properties.clone();
    publisher.publish_full(p).await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], "héllo".as_bytes());
    let left = got
        .properties
        .message_expiry_interval
        .expect("message expiry forwarded");
    assert!((58..=60).contains(&left), "remaining expiry {left}");
    let mut props = got.properties.clone();
    props.message_expiry_interval = sent.message_expiry_interval;
    assert_eq!(
        props, sent,
        "properties forwarded unchanged (user property order and duplicates kept)"
    );
}

#[tokio::test]
async fn v5_3_3_2_3_properties_pass_through_with_real_client() {
    let b = common::broker().await;
    let mut sub = v5::connect(b.mqtt_addr(), "ppr-sub", |_| {}).await;
    sub.subscribe("ppr/t", v5::QoS::AtLeastOnce).await;
    let mut publisher = v5::connect(b.mqtt_addr(), "ppr-pub", |_| {}).await;
    let props = v5::PublishProperties {
        content_type: Some("application/json".into()),
        response_topic: Some("ppr/reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![("x".into(), "1".into())],
        ..v5::PublishProperties::default()
    };
    publisher
        .publish_props("ppr/t", v5::QoS::AtLeastOnce, false, b"{}", props)
        .await;
    let p = sub.recv_publish().await;
    let got = p.properties.expect("properties");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.response_topic.as_deref(), Some("ppr/reply"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(
        got.user_properties,
        vec![("x".to_string(), "1".to_string())]
    );
}

#[tokio::test]
async fn v5_3_8_3_1_no_local_suppresses_own_messages() {
    let b = common::broker().await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "nl").await;
    let opts = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: true,
        ..SubscriptionOptions::default()
    };
    c.subscribe_opts("nl/t", opts, Properties::default()).await;
    let mut other = RawClient::connect(b.mqtt_addr(), V5, "nl-other").await;
    c.publish("nl/t", "own", QoS::AtLeastOnce, false).await;
    other
        .publish("nl/t", "other", QoS::AtLeastOnce, false)
        .await;
    let p = c.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"other",
        "No Local: own message delivered back: {p:?}"
    );
    // Without No Local the client does get its own messages.
    let mut echo = RawClient::connect(b.mqtt_addr(), V5, "echo").await;
    echo.subscribe("echo/t", QoS::AtMostOnce).await;
    echo.publish("echo/t", "own", QoS::AtMostOnce, false).await;
    assert_eq!(&echo.recv_publish().await.payload[..], b"own");
    c.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_3_1_2_25_messages_over_the_client_maximum_packet_size_are_not_sent() {
    let b = common::broker().await;
    let mut connect = connect_packet(V5, "mps-sub");
    connect.properties.maximum_packet_size = Some(100);
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    sub.subscribe("mps/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "mps-pub").await;
    publisher
        .publish_full(publish_packet(
            "mps/t",
            &[b'x'; 500],
            QoS::AtLeastOnce,
            false,
        ))
        .await;
    publisher
        .publish("mps/t", "small", QoS::AtLeastOnce, false)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"small",
        "a 500-byte message was sent to a client with Maximum Packet Size 100"
    );
    sub.ack(&p).await;
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_3_2_2_15_packet_over_our_maximum_packet_size_gets_disconnect_0x95() {
    let b = start_broker(|c| c.mqtt.max_packet_size = 1024).await;
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), connect_packet(V5, "too-big")).await;
    assert_eq!(
        ack.properties.maximum_packet_size,
        Some(1024),
        "CONNACK announces Maximum Packet Size"
    );
    c.publish_full(publish_packet("big/t", &[0u8; 900], QoS::AtMostOnce, false))
        .await;
    c.ping().await; // under the limit: fine
    c.send(&Packet::Publish(publish_packet(
        "big/t",
        &[0u8; 2000],
        QoS::AtMostOnce,
        false,
    )))
    .await;
    let reason = c.expect_closed_with(&[ReasonCode::PacketTooLarge]).await;
    assert_eq!(
        reason,
        Some(ReasonCode::PacketTooLarge),
        "DISCONNECT 0x95 before the close"
    );
    RawClient::connect(b.mqtt_addr(), V5, "after-big")
        .await
        .ping()
        .await;
}

#[tokio::test]
async fn v5_3_1_2_28_request_response_information() {
    let b = common::broker().await;
    let mut connect = connect_packet(V5, "rri");
    connect.properties.request_response_information = Some(1);
    let (_c, ack) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    let info = ack
        .properties
        .response_information
        .expect("Response Information when requested");
    assert!(!info.is_empty());
    let (_c, ack) = RawClient::connect_with(b.mqtt_addr(), connect_packet(V5, "no-rri")).await;
    assert_eq!(
        ack.properties.response_information, None,
        "not sent unless requested"
    );
}

#[tokio::test]
async fn v5_3_3_2_3_3_expired_message_is_not_delivered_from_the_queue() {
    let b = common::broker().await;
    let mut resume = connect_packet(V5, "mx-sub");
    resume.clean_start = false;
    resume.properties.session_expiry_interval = Some(60);
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), resume.clone()).await;
    sub.subscribe("mx/t", QoS::AtLeastOnce).await;
    sub.disconnect(ReasonCode::Success).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "mx-pub").await;
    let mut p = publish_packet("mx/t", b"short", QoS::AtLeastOnce, false);
    p.properties.message_expiry_interval = Some(1);
    publisher.publish_full(p).await;
    let mut p = publish_packet("mx/t", b"long", QoS::AtLeastOnce, false);
    p.properties.message_expiry_interval = Some(60);
    publisher.publish_full(p).await;
    // Bounded wait past the 1 s expiry while the subscriber is offline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut sub, ack) = RawClient::connect_with(b.mqtt_addr(), resume).await;
    assert!(ack.session_present);
    let p = sub.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"long",
        "the expired message was delivered: {p:?}"
    );
    let left = p
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!(
        left <= 59,
        "remaining interval counts down while queued: {left}"
    );
}
