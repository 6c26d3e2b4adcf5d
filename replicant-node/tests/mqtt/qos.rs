//! QoS 0/1/2 in both directions (MQTT 5.0 sections 4.3, 4.4, 4.6, 3.3.4): acknowledgement
//! flows, granted QoS, packet identifiers, Receive Maximum both ways, redelivery and order.

use std::collections::HashSet;
use std::time::Duration;

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, PubResp, QoS, ReasonCode};

use crate::common::clients::{v4, v5};
use crate::common::raw::{RawClient, connect_packet, publish_packet};
use crate::common::{self, QUIET, start_broker};

#[tokio::test]
async fn v5_4_3_publisher_gets_puback_and_pubrec_pubcomp() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("pub")).await;
        let mut p = publish_packet("flow/t", b"one", QoS::AtLeastOnce, false);
        p.packet_id = 7;
        c.send(&Packet::Publish(p)).await;
        let ack = c.expect_ack(7, |p| matches!(p, Packet::PubAck(_))).await;
        assert_eq!(ack.reason, ReasonCode::Success, "{v:?} PUBACK");

        let mut p = publish_packet("flow/t", b"two", QoS::ExactlyOnce, false);
        p.packet_id = 9;
        c.send(&Packet::Publish(p)).await;
        let rec = c.expect_ack(9, |p| matches!(p, Packet::PubRec(_))).await;
        assert_eq!(rec.reason, ReasonCode::Success, "{v:?} PUBREC");
        c.send(&Packet::PubRel(PubResp::new(9))).await;
        let comp = c.expect_ack(9, |p| matches!(p, Packet::PubComp(_))).await;
        assert_eq!(comp.reason, ReasonCode::Success, "{v:?} PUBCOMP");
    }
}

#[tokio::test]
async fn v5_4_3_3_pubrel_for_unknown_packet_id_gets_pubcomp_0x92() {
    let b = common::broker().await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "unknown-rel").await;
    c.send(&Packet::PubRel(PubResp::new(42))).await;
    let comp = c.expect_ack(42, |p| matches!(p, Packet::PubComp(_))).await;
    assert_eq!(comp.reason, ReasonCode::PacketIdentifierNotFound);
}

#[tokio::test]
async fn v5_3_8_4_delivered_qos_is_min_of_publish_and_subscription_qos() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut subs4 = Vec::new();
    let mut subs5 = Vec::new();
    for (i, q) in [
        v4::QoS::AtMostOnce,
        v4::QoS::AtLeastOnce,
        v4::QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = v4::connect(addr, &format!("min-v4-{i}"), |_| {}).await;
        c.subscribe("min/t", q).await;
        subs4.push((i as u8, c));
    }
    for (i, q) in [
        v5::QoS::AtMostOnce,
        v5::QoS::AtLeastOnce,
        v5::QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = v5::connect(addr, &format!("min-v5-{i}"), |_| {}).await;
        c.subscribe("min/t", q).await;
        subs5.push((i as u8, c));
    }
    let mut publisher = v5::connect(addr, "min-pub", |_| {}).await;
    for (i, q) in [
        v5::QoS::AtMostOnce,
        v5::QoS::AtLeastOnce,
        v5::QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        publisher.publish("min/t", q, false, &i.to_string()).await;
    }
    for (sub_qos, c) in &mut subs4 {
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = c.recv_publish().await;
            let pub_qos: u8 = std::str::from_utf8(&p.payload)
                .expect("utf8")
                .parse()
                .expect("digit");
            got.push((pub_qos, p.qos as u8));
        }
        got.sort();
        let want: Vec<_> = (0..3u8).map(|q| (q, q.min(*sub_qos))).collect();
        assert_eq!(
            got, want,
            "3.1.1 subscriber at QoS {sub_qos}: (published, delivered)"
        );
        c.expect_no_publish(QUIET).await;
    }
    for (sub_qos, c) in &mut subs5 {
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = c.recv_publish().await;
            let pub_qos: u8 = std::str::from_utf8(&p.payload)
                .expect("utf8")
                .parse()
                .expect("digit");
            got.push((pub_qos, p.qos as u8));
        }
        got.sort();
        let want: Vec<_> = (0..3u8).map(|q| (q, q.min(*sub_qos))).collect();
        assert_eq!(
            got, want,
            "5.0 subscriber at QoS {sub_qos}: (published, delivered)"
        );
        c.expect_no_publish(QUIET).await;
    }
}

#[tokio::test]
async fn v5_2_2_1_packet_ids_are_distinct_while_in_flight() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let mut sub = RawClient::connect(b.mqtt_addr(), v, &common::unique("pids-sub")).await;
        sub.subscribe("pids/t", QoS::ExactlyOnce).await;
        let mut publisher =
            RawClient::connect(b.mqtt_addr(), V5, &common::unique("pids-pub")).await;
        for i in 0..10 {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            publisher
                .publish("pids/t", &i.to_string(), qos, false)
                .await;
        }
        let mut ids = HashSet::new();
        for i in 0..10 {
            let p = sub.recv_publish().await; // never acknowledged: all ten stay in flight
            assert_ne!(p.packet_id, 0, "{v:?}: QoS {:?} needs a packet id", p.qos);
            assert!(
                ids.insert(p.packet_id),
                "{v:?}: packet id {} reused while in flight",
                p.packet_id
            );
            assert_eq!(
                &p.payload[..],
                i.to_string().as_bytes(),
                "{v:?}: per-publisher order"
            );
        }
    }
}

#[tokio::test]
async fn v5_3_3_4_9_client_receive_maximum_limits_unacked_deliveries() {
    let b = common::broker().await;
    let mut connect = connect_packet(V5, "rm-sub");
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    sub.subscribe("rm/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "rm-pub").await;
    for i in 0..5 {
        publisher
            .publish("rm/t", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    let p0 = sub.recv_publish().await;
    let p1 = sub.recv_publish().await;
    assert_eq!((&p0.payload[..], &p1.payload[..]), (&b"0"[..], &b"1"[..]));
    sub.expect_no_publish(QUIET).await; // two unacknowledged: the window is full
    sub.ack(&p0).await;
    let p2 = sub.recv_publish().await;
    assert_eq!(&p2.payload[..], b"2");
    sub.expect_no_publish(QUIET).await;
    sub.ack(&p1).await;
    sub.ack(&p2).await;
    let p3 = sub.recv_publish().await;
    let p4 = sub.recv_publish().await;
    assert_eq!((&p3.payload[..], &p4.payload[..]), (&b"3"[..], &b"4"[..]));
    assert!(!p3.dup && !p4.dup);
}

#[tokio::test]
async fn v5_3_3_4_8_client_exceeding_our_receive_maximum_gets_disconnect_0x93() {
    let b = start_broker(|c| c.mqtt.receive_maximum = 2).await;
    let (mut c, ack) =
        RawClient::connect_with(b.mqtt_addr(), connect_packet(V5, "rm-exceed")).await;
    assert_eq!(
        ack.properties.receive_maximum,
        Some(2),
        "CONNACK announces Receive Maximum"
    );
    for pid in 1..=2u16 {
        let mut p = publish_packet("rmx/t", b"x", QoS::ExactlyOnce, false);
        p.packet_id = pid;
        c.send(&Packet::Publish(p)).await;
        let rec = c.expect_ack(pid, |p| matches!(p, Packet::PubRec(_))).await;
        assert_eq!(rec.reason, ReasonCode::Success);
    }
    let mut p = publish_packet("rmx/t", b"x", QoS::ExactlyOnce, false);
    p.packet_id = 3; // a third unreleased QoS 2 PUBLISH: over the limit of 2
    c.send(&Packet::Publish(p)).await;
    let reason = c
        .expect_closed_with(&[ReasonCode::ReceiveMaximumExceeded])
        .await;
    assert_eq!(
        reason,
        Some(ReasonCode::ReceiveMaximumExceeded),
        "DISCONNECT 0x93 before the close"
    );
}

#[tokio::test]
async fn v5_4_4_0_1_unacked_message_is_resent_with_dup_on_reconnect() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let id = common::unique("redeliver");
        let persistent = |v| {
            let mut c = connect_packet(v, &id);
            c.clean_start = false;
            c.properties.session_expiry_interval = v.is_v5().then_some(60);
            c
        };
        let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), persistent(v)).await;
        sub.subscribe("rd/t", QoS::AtLeastOnce).await;
        let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &common::unique("rd-pub")).await;
        publisher
            .publish("rd/t", "m1", QoS::AtLeastOnce, false)
            .await;
        let first = sub.recv_publish().await;
        assert!(!first.dup, "{v:?}: first delivery has DUP=0");
        sub.disconnect(ReasonCode::Success).await; // without acknowledging

        let (mut sub, ack) = RawClient::connect_with(b.mqtt_addr(), persistent(v)).await;
        assert!(
            ack.session_present,
            "{v:?}: session present after reconnect"
        );
        let again = sub.recv_publish().await;
        assert_eq!(&again.payload[..], b"m1");
        assert!(again.dup, "{v:?}: redelivery has DUP=1");
        assert_eq!(again.packet_id, first.packet_id, "{v:?}: same packet id");
        assert_eq!(again.qos, QoS::AtLeastOnce);
        sub.ack(&again).await;
        // Marker: the next message must follow, with no second copy of m1 before or after it.
        publisher
            .publish("rd/t", "m2", QoS::AtLeastOnce, false)
            .await;
        let next = sub.recv_publish().await;
        assert_eq!(
            &next.payload[..],
            b"m2",
            "{v:?}: m1 redelivered exactly once"
        );
        sub.ack(&next).await;
        sub.expect_no_publish(QUIET).await;
    }
}

#[tokio::test]
async fn v5_3_3_4_9_resent_in_flight_respects_the_new_receive_maximum() {
    let b = common::broker().await;
    let id = common::unique("rm-resend");
    let persistent = |receive_maximum: u16| {
        let mut c = connect_packet(V5, &id);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(60);
        c.properties.receive_maximum = Some(receive_maximum);
        c
    };
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), persistent(20)).await;
    sub.subscribe("rmr/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &common::unique("rmr-pub")).await;
    for i in 0..20 {
        publisher
            .publish("rmr/t", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    let mut first = Vec::new();
    for _ in 0..20 {
        first.push(sub.recv_publish().await);
    }
    sub.disconnect(ReasonCode::Success).await; // 20 in flight, none acknowledged

    // Back with Receive Maximum 5: exactly the 5 oldest, DUP=1 with their packet ids.
    let (mut sub, ack) = RawClient::connect_with(b.mqtt_addr(), persistent(5)).await;
    assert!(ack.session_present);
    let mut outstanding = std::collections::VecDeque::new();
    for want in &first[..5] {
        let p = sub.recv_publish().await;
        assert_eq!(
            (&p.payload, p.packet_id, p.dup),
            (&want.payload, want.packet_id, true)
        );
        outstanding.push_back(p);
    }
    // A new message meanwhile must not overtake the 15 still waiting.
    publisher
        .publish("rmr/t", "new", QoS::AtLeastOnce, false)
        .await;
    sub.expect_no_publish(QUIET).await; // five unacknowledged: the window is full
    // Each PUBACK opens one slot: the next waiting message, in order, then the new one.
    for want in &first[5..] {
        let acked = outstanding.pop_front().expect("one outstanding");
        sub.ack(&acked).await;
        let p = sub.recv_publish().await;
        assert_eq!(
            (&p.payload, p.packet_id, p.dup),
            (&want.payload, want.packet_id, true)
        );
        outstanding.push_back(p);
        if want.packet_id == first[5].packet_id {
            sub.expect_no_publish(QUIET).await; // one ack, one message
        }
    }
    let acked = outstanding.pop_front().expect("one outstanding");
    sub.ack(&acked).await;
    let p = sub.recv_publish().await;
    assert_eq!((&p.payload[..], p.dup), (&b"new"[..], false));
    outstanding.push_back(p);
    for p in &outstanding {
        sub.ack(p).await;
    }
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_4_4_0_2_no_redelivery_while_connected() {
    let b = common::broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "noretry-sub").await;
    sub.subscribe("nr/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "noretry-pub").await;
    publisher
        .publish("nr/t", "m1", QoS::AtLeastOnce, false)
        .await;
    let m1 = sub.recv_publish().await;
    assert_eq!(&m1.payload[..], b"m1");
    // Leave m1 unacknowledged for a while, then publish a marker: the marker must be the next
    // PUBLISH (no timer-driven re-send of m1 on a live connection).
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher
        .publish("nr/t", "m2", QoS::AtLeastOnce, false)
        .await;
    let next = sub.recv_publish().await;
    assert_eq!(&next.payload[..], b"m2", "got {next:?}");
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v311_4_3_real_clients_exchange_qos1_and_qos2() {
    let b = common::broker().await;
    let mut sub = v4::connect(b.mqtt_addr(), "v4-sub", |_| {}).await;
    sub.subscribe("v4/#", v4::QoS::ExactlyOnce).await;
    let mut publisher = v4::connect(b.mqtt_addr(), "v4-pub", |_| {}).await;
    for (i, q) in [
        v4::QoS::AtMostOnce,
        v4::QoS::AtLeastOnce,
        v4::QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        publisher.publish(&format!("v4/{i}"), q, false, "x").await;
        let p = sub.recv_publish().await;
        assert_eq!(p.topic, format!("v4/{i}"));
        assert_eq!(p.qos, q);
    }
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_4_4_0_1_pubrel_is_resent_after_reconnect() {
    let b = common::broker().await;
    let mut resume = connect_packet(V5, "rel-sub");
    resume.clean_start = false;
    resume.properties.session_expiry_interval = Some(60);
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), resume.clone()).await;
    sub.subscribe("rel/t", QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "rel-pub").await;
    publisher
        .publish("rel/t", "q2", QoS::ExactlyOnce, false)
        .await;
    let p = sub.recv_publish().await;
    sub.send(&Packet::PubRec(PubResp::new(p.packet_id))).await;
    sub.expect_ack(p.packet_id, |q| matches!(q, Packet::PubRel(_)))
        .await;
    sub.disconnect(ReasonCode::Success).await; // without PUBCOMP

    let (mut sub, ack) = RawClient::connect_with(b.mqtt_addr(), resume).await;
    assert!(ack.session_present);
    // The broker resends PUBREL, not the PUBLISH (MQTT 5.0 4.4).
    let first = sub.recv().await.expect("a packet after reconnect");
    match first {
        Packet::PubRel(r) => assert_eq!(r.packet_id, p.packet_id),
        other => panic!(
            "expected PUBREL {} to be re-sent, got {other:?}",
            p.packet_id
        ),
    }
    sub.send(&Packet::PubComp(PubResp::new(p.packet_id))).await;
    publisher
        .publish("rel/t", "next", QoS::AtMostOnce, false)
        .await;
    let next = sub.recv_publish().await;
    assert_eq!(&next.payload[..], b"next", "q2 delivered twice: {next:?}");
}

#[tokio::test]
async fn v5_4_6_messages_from_one_publisher_arrive_in_order() {
    let b = common::broker().await;
    let mut sub = v5::connect(b.mqtt_addr(), "order-sub", |_| {}).await;
    sub.subscribe("order/#", v5::QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "order-pub").await;
    let big = vec![b'z'; 64 * 1024];
    // Pipelined in batches of 20 (below our Receive Maximum of 32), acks collected per batch.
    for batch in 0..10u32 {
        for i in batch * 20..(batch + 1) * 20 {
            let mut p = publish_packet(
                &format!("order/{}", i % 3),
                &i.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
            );
            p.packet_id = (i + 1) as u16;
            if i == 100 {
                p.payload = bytes::Bytes::from(big.clone());
            }
            publisher.send(&Packet::Publish(p)).await;
        }
        for i in batch * 20..(batch + 1) * 20 {
            publisher
                .expect_ack((i + 1) as u16, |p| matches!(p, Packet::PubAck(_)))
                .await;
        }
    }
    for i in 0..200u32 {
        let p = sub.recv_publish().await;
        if i == 100 {
            assert_eq!(p.payload.len(), big.len(), "64 KiB payload intact");
        } else {
            assert_eq!(&p.payload[..], &i.to_be_bytes(), "message {i} out of order");
        }
    }
}
