//! CONNECT (MQTT 5.0 section 3.1, 3.2): keep alive, server keep alive, empty client ids,
//! client-id takeover, packet order rules and unsupported protocol levels.

use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, ReasonCode};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{self, WAIT, hex, start_broker};

/// Connects a raw client with keep alive `ka`; returns it and when CONNACK arrived.
async fn connect_ka(
    addr: std::net::SocketAddr,
    v: meshmq_shared::codec::ProtocolVersion,
    ka: u16,
) -> (RawClient, Instant) {
    let mut c = connect_packet(v, &common::unique("ka"));
    c.keep_alive = ka;
    let (client, ack) = RawClient::connect_with(addr, c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    (client, Instant::now())
}

/// Waits for the close of a silent client and checks when and how it happened.
async fn assert_keepalive_close(c: &mut RawClient, since: Instant, min: Duration, max: Duration) {
    let reason = c.expect_closed_with(&[ReasonCode::KeepAliveTimeout]).await;
    let waited = since.elapsed();
    assert!(
        waited >= min,
        "{:?} client closed after {waited:?}, before {min:?} (reason {reason:?})",
        c.version
    );
    assert!(
        waited <= max,
        "{:?} client closed only after {waited:?} (> {max:?})",
        c.version
    );
}

#[tokio::test]
async fn v5_3_1_2_10_keepalive_zero_means_no_keepalive() {
    let b = common::broker().await;
    let (mut silent3, _) = connect_ka(b.mqtt_addr(), V311, 0).await;
    let (mut silent5, _) = connect_ka(b.mqtt_addr(), V5, 0).await;
    // Marker: a keep-alive-1 client is closed after 1.5 s of silence; by then the keep-alive-0
    // clients, silent for longer, must still be served.
    let (mut marker, _) = connect_ka(b.mqtt_addr(), V5, 1).await;
    marker.wait_closed(WAIT).await;
    silent3.ping().await;
    silent5.ping().await;
}

#[tokio::test]
async fn v5_3_1_2_10_keepalive_enforced_at_one_and_a_half_times() {
    let b = common::broker().await;
    let (mut c3, t3) = connect_ka(b.mqtt_addr(), V311, 1).await;
    let (mut c5, t5) = connect_ka(b.mqtt_addr(), V5, 1).await;
    let (min, max) = (Duration::from_millis(1400), Duration::from_millis(3500));
    assert_keepalive_close(&mut c3, t3, min, max).await;
    assert_keepalive_close(&mut c5, t5, min, max).await;
}

#[tokio::test]
async fn v5_3_1_2_10_pingreq_keeps_the_connection_alive() {
    let b = common::broker().await;
    let (mut c, _) = connect_ka(b.mqtt_addr(), V5, 1).await;
    // 2.5 s of PINGREQ every 500 ms: well past the 1.5 s limit, never silent for it.
    for _ in 0..5 {
        c.ping().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.ping().await;
}

#[tokio::test]
async fn v5_3_2_2_21_server_keep_alive_is_returned_in_connack() {
    let b = start_broker(|c| c.mqtt.server_keepalive = Some(5)).await;
    let mut c = connect_packet(V5, "ska");
    c.keep_alive = 60;
    let (_client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(ack.properties.server_keep_alive, Some(5), "CONNACK {ack:?}");
}

#[tokio::test]
async fn v5_3_2_2_21_server_keep_alive_is_enforced() {
    let b = start_broker(|c| c.mqtt.server_keepalive = Some(1)).await;
    let mut c = connect_packet(V5, "ska1");
    c.keep_alive = 60;
    let (mut client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    let since = Instant::now();
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    assert_keepalive_close(
        &mut client,
        since,
        Duration::from_millis(1400),
        Duration::from_millis(3500),
    )
    .await;
}

#[tokio::test]
async fn v311_3_1_3_7_empty_client_id_with_clean_session_is_accepted() {
    let b = common::broker().await;
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), connect_packet(V311, "")).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(!ack.session_present);
    c.subscribe("empty/id", meshmq_shared::codec::QoS::AtMostOnce)
        .await;
    c.publish(
        "empty/id",
        "hi",
        meshmq_shared::codec::QoS::AtMostOnce,
        false,
    )
    .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"hi");
}

#[tokio::test]
async fn v311_3_1_3_8_empty_client_id_without_clean_session_gets_return_code_2() {
    let b = common::broker().await;
    let mut connect = connect_packet(V311, "");
    connect.clean_start = false;
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    assert_eq!(
        ack.code,
        ReasonCode::ClientIdentifierNotValid,
        "return code 2 expected: {ack:?}"
    );
    assert!(!ack.session_present);
    c.expect_closed_with(&[]).await;
}

#[tokio::test]
async fn v5_3_2_2_3_7_empty_client_id_gets_assigned_client_identifier() {
    let b = common::broker().await;
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), connect_packet(V5, "")).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let assigned = ack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("Assigned Client Identifier present");
    assert!(!assigned.is_empty());
    c.ping().await;
    // A second anonymous client gets another identifier.
    let (_c2, ack2) = RawClient::connect_with(b.mqtt_addr(), connect_packet(V5, "")).await;
    assert_ne!(ack2.properties.assigned_client_identifier, Some(assigned));
}

#[tokio::test]
async fn v5_3_1_4_3_same_client_id_takes_over_the_first_connection() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let id = common::unique("takeover");
        let mut first = RawClient::connect(b.mqtt_addr(), v, &id).await;
        let mut second = RawClient::connect(b.mqtt_addr(), v, &id).await;
        let reason = first
            .expect_closed_with(&[ReasonCode::SessionTakenOver])
            .await;
        if v.is_v5() {
            assert_eq!(
                reason,
                Some(ReasonCode::SessionTakenOver),
                "5.0: first connection gets DISCONNECT 0x8E"
            );
        }
        second.ping().await;
    }
}

#[tokio::test]
async fn v5_3_1_0_1_first_packet_must_be_connect() {
    let b = common::broker().await;
    let cases = [
        ("PINGREQ", "c0 00"),
        ("PUBLISH", "30 05 00 01 61 68 69"),
        ("SUBSCRIBE", "82 06 00 01 00 01 61 00"),
        ("DISCONNECT", "e0 00"),
    ];
    for (name, bytes) in cases {
        let mut c = RawClient::open(b.mqtt_addr()).await;
        c.send_bytes(&hex(bytes)).await;
        let seen = c.wait_closed(WAIT).await;
        assert!(
            seen.is_empty(),
            "{name} as first packet: expected a bare close, got {seen:?}"
        );
    }
    RawClient::connect(b.mqtt_addr(), V311, "after")
        .await
        .ping()
        .await;
}

#[tokio::test]
async fn v5_3_1_0_2_second_connect_is_a_protocol_error() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let id = common::unique("twice");
        let mut c = RawClient::connect(b.mqtt_addr(), v, &id).await;
        c.send(&Packet::Connect(Box::new(connect_packet(v, &id))))
            .await;
        let reason = c.expect_closed_with(&[ReasonCode::ProtocolError]).await;
        if v.is_v5() {
            assert_eq!(
                reason,
                Some(ReasonCode::ProtocolError),
                "5.0: DISCONNECT 0x82 before the close"
            );
        }
    }
}

#[tokio::test]
async fn v5_3_1_2_2_unsupported_protocol_level_is_refused() {
    let b = common::broker().await;
    // "MQTT" level 6, flags clean start, keep alive 60, empty properties, client id "a".
    let level6 = hex("10 0e 00 04 4d 51 54 54 06 02 00 3c 00 00 01 61");
    let mut c = RawClient::open(b.mqtt_addr()).await;
    c.version = V5;
    c.send_bytes(&level6).await;
    match c.recv().await {
        Ok(Packet::ConnAck(a)) => {
            assert_eq!(a.code, ReasonCode::UnsupportedProtocolVersion, "{a:?}")
        }
        other => panic!("level 6: expected CONNACK 0x84, got {other:?}"),
    }
    c.expect_closed_with(&[]).await;

    // "MQTT" level 2 (3.1.1 layout): return code 1, then close.
    let level2 = hex("10 0d 00 04 4d 51 54 54 02 02 00 3c 00 01 61");
    let mut c = RawClient::open(b.mqtt_addr()).await;
    c.send_bytes(&level2).await;
    match c.recv().await {
        Ok(Packet::ConnAck(a)) => assert_eq!(
            a.code,
            ReasonCode::UnsupportedProtocolVersion,
            "return code 1 expected: {a:?}"
        ),
        other => panic!("level 2: expected CONNACK return code 1, got {other:?}"),
    }
    c.expect_closed_with(&[]).await;
    RawClient::connect(b.mqtt_addr(), V5, "still-serving")
        .await
        .ping()
        .await;
}

#[tokio::test]
async fn v5_3_1_real_clients_connect_with_both_versions() {
    use crate::common::clients::{v4, v5};
    let b = common::broker().await;
    let c4 = v4::connect(b.mqtt_addr(), "rumqttc-v4", |_| {}).await;
    assert!(!c4.connack.session_present);
    let c5 = v5::connect(b.mqtt_addr(), "rumqttc-v5", |_| {}).await;
    assert!(!c5.connack.session_present);
    let props = c5
        .connack
        .properties
        .clone()
        .expect("5.0 CONNACK carries properties");
    assert_eq!(
        props.max_packet_size,
        Some(1024 * 1024),
        "Maximum Packet Size from mqtt.max_packet_size"
    );
    assert!(
        common::wait_until(WAIT, || b.connections() == 2).await,
        "broker counts 2 connections"
    );
}
