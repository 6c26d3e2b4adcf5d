//! Sessions (MQTT 5.0 sections 3.1.2.4, 3.1.2.11, 4.1): clean start, session expiry, 3.1.1
//! persistent sessions, offline queues with their bound and drop accounting, and the Session
//! Present flag in each case.

use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{self, V5, V311};
use meshmq_shared::codec::{Connect, Disconnect, Packet, QoS, ReasonCode};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{self, QUIET, WAIT, metric_sum, metrics_text, start_broker};

/// A CONNECT resuming `id` (clean start 0; 5.0 with `expiry` seconds).
fn resume(v: ProtocolVersion, id: &str, expiry: u32) -> Connect {
    let mut c = connect_packet(v, id);
    c.clean_start = false;
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

#[tokio::test]
async fn v5_3_1_2_4_clean_start_discards_the_session() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let id = common::unique("clean");
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(v, &id, 60)).await;
        assert!(!ack.session_present, "{v:?}: no session yet");
        c.subscribe("cs/old", QoS::AtLeastOnce).await;
        c.disconnect(ReasonCode::Success).await;

        let mut fresh = connect_packet(v, &id); // clean start 1
        fresh.properties.session_expiry_interval = v.is_v5().then_some(60);
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), fresh).await;
        assert!(
            !ack.session_present,
            "{v:?}: clean start answers session present 0"
        );
        c.subscribe("cs/marker", QoS::AtLeastOnce).await;
        let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &common::unique("cs-pub")).await;
        publisher
            .publish("cs/old", "old", QoS::AtLeastOnce, false)
            .await;
        publisher
            .publish("cs/marker", "marker", QoS::AtLeastOnce, false)
            .await;
        let p = c.recv_publish().await;
        assert_eq!(
            p.topic, "cs/marker",
            "{v:?}: the discarded subscription still delivered {p:?}"
        );
        c.ack(&p).await;
        c.disconnect(ReasonCode::Success).await;
        // 5.0: the clean-start session had expiry 60 and persists; 3.1.1: clean session 1 ends
        // with the connection.
        let (_c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(v, &id, 60)).await;
        assert_eq!(
            ack.session_present,
            v.is_v5(),
            "{v:?}: session present after a clean-start session"
        );
    }
}

#[tokio::test]
async fn v5_3_1_2_11_session_expiry_interval_decides_session_present() {
    let b = common::broker().await;
    let id = "expiry-1s";
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, id, 1)).await;
    assert!(!ack.session_present);
    c.subscribe("se/t", QoS::AtLeastOnce).await;
    c.disconnect(ReasonCode::Success).await;

    // Within the expiry: the session is there.
    let (c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, id, 1)).await;
    assert!(
        ack.session_present,
        "reconnect within 1 s: session present 1"
    );
    c.disconnect(ReasonCode::Success).await;
    let closed = Instant::now();

    // After it: gone. Wait for the broker to drop it (deadline), then reconnect.
    assert!(
        common::wait_until(WAIT, || b.sessions() == 0).await,
        "session never expired"
    );
    assert!(
        closed.elapsed() >= Duration::from_millis(900),
        "expired after {:?} < 1 s",
        closed.elapsed()
    );
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, id, 1)).await;
    assert!(
        !ack.session_present,
        "reconnect after expiry: session present 0"
    );
    // Its subscription went with it.
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "se-pub").await;
    c.subscribe("se/marker", QoS::AtMostOnce).await;
    publisher
        .publish("se/t", "old", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("se/marker", "m", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(c.recv_publish().await.topic, "se/marker");
}

#[tokio::test]
async fn v5_3_1_2_11_expiry_zero_ends_the_session_at_disconnect() {
    let b = common::broker().await;
    let (c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "expiry-0", 0)).await;
    c.disconnect(ReasonCode::Success).await;
    let (_c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "expiry-0", 0)).await;
    assert!(
        !ack.session_present,
        "session expiry 0: nothing kept after the connection"
    );
}

#[tokio::test]
async fn v311_3_1_2_4_clean_session_0_persists_and_queues_offline_messages() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let id = common::unique("persist");
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(v, &id, 60)).await;
        assert!(!ack.session_present);
        c.subscribe("ps/#", QoS::AtLeastOnce).await;
        c.disconnect(ReasonCode::Success).await;

        let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &common::unique("ps-pub")).await;
        for i in 0..3 {
            publisher
                .publish(&format!("ps/{i}"), &i.to_string(), QoS::AtLeastOnce, false)
                .await;
        }
        publisher
            .publish("ps/q0", "qos0", QoS::AtMostOnce, false)
            .await;
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(v, &id, 60)).await;
        assert!(ack.session_present, "{v:?}: session present 1");
        for i in 0..3 {
            let p = c.recv_publish().await;
            assert_eq!(p.topic, format!("ps/{i}"), "{v:?}: queued in order");
            assert_eq!(p.qos, QoS::AtLeastOnce);
            c.ack(&p).await;
        }
        // mqueue_store_qos0 defaults to true: the QoS 0 message was queued too.
        assert_eq!(&c.recv_publish().await.payload[..], b"qos0");
        // The subscription survived: live messages arrive.
        publisher
            .publish("ps/live", "live", QoS::AtLeastOnce, false)
            .await;
        let p = c.recv_publish().await;
        assert_eq!(&p.payload[..], b"live");
        c.ack(&p).await;
        c.expect_no_publish(QUIET).await;
    }
}

#[tokio::test]
async fn emqx_max_mqueue_len_drops_oldest_and_counts_queue_full() {
    let b = start_broker(|c| c.mqtt.max_mqueue_len = 5).await;
    let before = metric_sum(
        &metrics_text(&b).await,
        "meshmq_messages_dropped_total",
        &[("reason", "queue_full")],
    )
    .unwrap_or(0.0);
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "mq-sub", 60)).await;
    c.subscribe("mq/t", QoS::AtLeastOnce).await;
    c.disconnect(ReasonCode::Success).await;

    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "mq-pub").await;
    for i in 0..10 {
        publisher
            .publish("mq/t", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "mq-sub", 60)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..5 {
        let p = c.recv_publish().await;
        c.ack(&p).await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    assert_eq!(
        got,
        ["5", "6", "7", "8", "9"],
        "drop_oldest keeps the newest 5"
    );
    publisher
        .publish("mq/t", "marker", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        &c.recv_publish().await.payload[..],
        b"marker",
        "only 5 were queued"
    );

    let text = metrics_text(&b).await;
    let after = metric_sum(
        &text,
        "meshmq_messages_dropped_total",
        &[("reason", "queue_full")],
    )
    .unwrap_or_else(|| {
        panic!("no meshmq_messages_dropped_total{{reason=\"queue_full\"}} in /metrics:\n{text}")
    });
    assert!(
        after - before >= 5.0,
        "queue_full drops counted: before {before}, after {after}"
    );
}

#[tokio::test]
async fn v5_3_1_4_3_takeover_moves_in_flight_messages_to_the_new_connection() {
    let b = common::broker().await;
    let (mut first, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "moving", 60)).await;
    first.subscribe("mv/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "mv-pub").await;
    publisher
        .publish("mv/t", "m1", QoS::AtLeastOnce, false)
        .await;
    let m1 = first.recv_publish().await; // not acknowledged
    let (mut second, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "moving", 60)).await;
    assert!(
        ack.session_present,
        "takeover with clean start 0 resumes the session"
    );
    assert_eq!(
        first
            .expect_closed_with(&[ReasonCode::SessionTakenOver])
            .await,
        Some(ReasonCode::SessionTakenOver)
    );
    let again = second.recv_publish().await;
    assert_eq!(
        (&again.payload[..], again.dup, again.packet_id),
        (&b"m1"[..], true, m1.packet_id),
        "in-flight moved"
    );
    second.ack(&again).await;
    publisher
        .publish("mv/t", "m2", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        &second.recv_publish().await.payload[..],
        b"m2",
        "subscription moved"
    );
}

#[tokio::test]
async fn v5_3_14_2_2_2_session_expiry_in_disconnect() {
    let b = common::broker().await;
    // Expiry 0 at CONNECT may not become non-zero at DISCONNECT: protocol error.
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "dx-zero", 0)).await;
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(10);
    c.send(&Packet::Disconnect(d)).await;
    let seen = c.wait_closed(WAIT).await;
    let reasons: Vec<_> = seen
        .iter()
        .filter_map(|p| {
            if let Packet::Disconnect(d) = p {
                Some(d.reason)
            } else {
                None
            }
        })
        .collect();
    assert!(
        reasons.is_empty() || reasons == [ReasonCode::ProtocolError],
        "DISCONNECT 0x82 (or a bare close), got {seen:?}"
    );

    // Non-zero at CONNECT, 0 at DISCONNECT: the session ends with the connection.
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "dx-end", 60)).await;
    let mut d = Disconnect::new(ReasonCode::Success);
    d.properties.session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(d)).await;
    c.wait_closed(WAIT).await;
    let (_c, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "dx-end", 60)).await;
    assert!(
        !ack.session_present,
        "DISCONNECT with Session Expiry 0 ended the session"
    );
}

#[tokio::test]
async fn emqx_mqueue_store_qos0_false_drops_offline_qos0() {
    let b = start_broker(|c| c.mqtt.mqueue_store_qos0 = false).await;
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "q0-sub", 60)).await;
    c.subscribe("q0/t", QoS::AtLeastOnce).await;
    c.disconnect(ReasonCode::Success).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "q0-pub").await;
    publisher
        .publish("q0/t", "qos0", QoS::AtMostOnce, false)
        .await;
    publisher
        .publish("q0/t", "qos1", QoS::AtLeastOnce, false)
        .await;
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, "q0-sub", 60)).await;
    assert_eq!(
        &c.recv_publish().await.payload[..],
        b"qos1",
        "offline QoS 0 must not be queued"
    );
}
