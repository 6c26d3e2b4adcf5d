//! Retained messages (MQTT 5.0 sections 3.3.1.3, 3.8.3.1, 3.3.2.3.3): set, replace, clear,
//! RETAIN flag on replay and on live forwarding, Retain Handling 0/1/2, Retain As Published,
//! and message expiry of retained messages.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{self, V5, V311};
use meshmq_shared::codec::{Properties, Publish, QoS, SubscriptionOptions};

use crate::common::raw::{RawClient, publish_packet};
use crate::common::{self, QUIET, WAIT};

/// Subscribes a fresh client to `filter`, then to `marker` (which holds a retained message),
/// and returns every PUBLISH that arrived before the marker's: the retained replay of `filter`.
async fn retained_replay(
    addr: SocketAddr,
    v: ProtocolVersion,
    filter: &str,
    marker: &str,
) -> Vec<Publish> {
    let mut c = RawClient::connect(addr, v, &common::unique("replay")).await;
    c.subscribe(filter, QoS::AtLeastOnce).await;
    c.subscribe(marker, QoS::AtMostOnce).await;
    replay_until_marker(&mut c, marker).await
}

/// Reads PUBLISHes until the one on `marker`; returns those before it.
async fn replay_until_marker(c: &mut RawClient, marker: &str) -> Vec<Publish> {
    let mut before = Vec::new();
    loop {
        let p = c.recv_publish().await;
        if p.topic == marker {
            return before;
        }
        before.push(p);
    }
}

/// Subscribes with Retain Handling `rh` and returns the SUBACK's first reason.
async fn subscribe_rh(c: &mut RawClient, filter: &str, rh: u8) {
    let opts = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_handling: rh,
        ..SubscriptionOptions::default()
    };
    let ack = c.subscribe_opts(filter, opts, Properties::default()).await;
    assert!(!ack.reasons[0].is_error(), "SUBACK {ack:?}");
}

#[tokio::test]
async fn v5_3_3_1_3_retained_message_is_set_replaced_and_cleared() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut publisher = RawClient::connect(addr, V5, "rt-pub").await;
    publisher
        .publish("rt/marker", "marker", QoS::AtLeastOnce, true)
        .await;
    publisher.publish("rt/t", "a", QoS::AtLeastOnce, true).await;
    for v in [V311, V5] {
        let seen = retained_replay(addr, v, "rt/t", "rt/marker").await;
        assert_eq!(seen.len(), 1, "{v:?}: one retained message: {seen:?}");
        assert_eq!(&seen[0].payload[..], b"a");
        assert!(seen[0].retain, "{v:?}: replay carries RETAIN=1");
        assert_eq!(
            seen[0].qos,
            QoS::AtLeastOnce,
            "min(retained QoS 1, subscription QoS 1)"
        );
    }
    publisher.publish("rt/t", "b", QoS::AtLeastOnce, true).await;
    for v in [V311, V5] {
        let seen = retained_replay(addr, v, "rt/t", "rt/marker").await;
        let payloads: Vec<&[u8]> = seen.iter().map(|p| &p.payload[..]).collect();
        assert_eq!(
            payloads,
            vec![&b"b"[..]],
            "{v:?}: the retained message was replaced"
        );
    }
    publisher.publish("rt/t", "", QoS::AtLeastOnce, true).await;
    for v in [V311, V5] {
        let seen = retained_replay(addr, v, "rt/t", "rt/marker").await;
        assert!(
            seen.is_empty(),
            "{v:?}: an empty retained payload clears it, got {seen:?}"
        );
    }
}

#[tokio::test]
async fn v5_3_3_1_3_live_forwarding_clears_retain_unless_retain_as_published() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut s311 = RawClient::connect(addr, V311, "lf-311").await;
    s311.subscribe("lf/t", QoS::AtMostOnce).await;
    let mut s5 = RawClient::connect(addr, V5, "lf-5").await;
    s5.subscribe("lf/t", QoS::AtMostOnce).await;
    let mut rap = RawClient::connect(addr, V5, "lf-rap").await;
    let opts = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_as_published: true,
        ..SubscriptionOptions::default()
    };
    rap.subscribe_opts("lf/t", opts, Properties::default())
        .await;

    let mut publisher = RawClient::connect(addr, V5, "lf-pub").await;
    publisher
        .publish("lf/t", "retained", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("lf/t", "plain", QoS::AtLeastOnce, false)
        .await;
    for (name, c) in [("3.1.1", &mut s311), ("5.0", &mut s5)] {
        let p = c.recv_publish().await;
        assert_eq!(
            (&p.payload[..], p.retain),
            (&b"retained"[..], false),
            "{name}: live forward has RETAIN=0"
        );
        let p = c.recv_publish().await;
        assert_eq!((&p.payload[..], p.retain), (&b"plain"[..], false), "{name}");
    }
    let p = rap.recv_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain),
        (&b"retained"[..], true),
        "retain as published keeps RETAIN=1"
    );
    let p = rap.recv_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain),
        (&b"plain"[..], false),
        "retain as published keeps RETAIN=0 too"
    );
}

#[tokio::test]
async fn v5_3_8_3_1_retain_handling_0_1_2() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut publisher = RawClient::connect(addr, V5, "rh-pub").await;
    publisher.publish("rh/t", "r", QoS::AtLeastOnce, true).await;
    publisher
        .publish("rh/marker", "m", QoS::AtLeastOnce, true)
        .await;

    // 0: sent at every subscribe, including a repeated one.
    let mut c = RawClient::connect(addr, V5, "rh0").await;
    for round in 0..2 {
        subscribe_rh(&mut c, "rh/t", 0).await;
        let p = c.recv_publish().await;
        assert_eq!(
            (&p.payload[..], p.retain),
            (&b"r"[..], true),
            "RH 0, subscribe #{round}"
        );
    }
    // 1: only when the subscription is new.
    let mut c = RawClient::connect(addr, V5, "rh1").await;
    subscribe_rh(&mut c, "rh/t", 1).await;
    assert_eq!(
        &c.recv_publish().await.payload[..],
        b"r",
        "RH 1, new subscription"
    );
    subscribe_rh(&mut c, "rh/t", 1).await;
    subscribe_rh(&mut c, "rh/marker", 0).await;
    let before = replay_until_marker(&mut c, "rh/marker").await;
    assert!(
        before.is_empty(),
        "RH 1 on an existing subscription: nothing, got {before:?}"
    );
    // 2: never.
    let mut c = RawClient::connect(addr, V5, "rh2").await;
    subscribe_rh(&mut c, "rh/t", 2).await;
    subscribe_rh(&mut c, "rh/marker", 0).await;
    let before = replay_until_marker(&mut c, "rh/marker").await;
    assert!(before.is_empty(), "RH 2: never sent, got {before:?}");
    // The RH 2 subscription still gets live messages.
    publisher
        .publish("rh/t", "live", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"live");
    c.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_3_3_2_3_3_retained_message_expiry_is_honoured() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut publisher = RawClient::connect(addr, V5, "rx-pub").await;
    publisher
        .publish("rx/marker", "m", QoS::AtLeastOnce, true)
        .await;
    let mut long = publish_packet("rx/long", b"long", QoS::AtLeastOnce, true);
    long.properties.message_expiry_interval = Some(60);
    publisher.publish_full(long).await;
    let mut short = publish_packet("rx/t", b"short", QoS::AtLeastOnce, true);
    short.properties.message_expiry_interval = Some(1);
    publisher.publish_full(short).await;
    let published = Instant::now();

    let first = retained_replay(addr, V5, "rx/t", "rx/marker").await;
    assert_eq!(
        first.len(),
        1,
        "retained message with 1 s expiry delivered at once: {first:?}"
    );
    let left = first[0].properties.message_expiry_interval;
    assert!(
        matches!(left, Some(1)),
        "remaining Message Expiry Interval forwarded (<= 1): {left:?}"
    );

    // Deadline loop: new subscribers keep getting it while it is valid, never after 1.5 s.
    loop {
        let t = published.elapsed();
        let seen = retained_replay(addr, V5, "rx/t", "rx/marker").await;
        if t < Duration::from_millis(700) {
            assert_eq!(seen.len(), 1, "still valid at {t:?}, got {seen:?}");
        }
        if t >= Duration::from_millis(1500) {
            assert!(
                seen.is_empty(),
                "expired retained message delivered at {t:?}: {seen:?}"
            );
            break;
        }
        assert!(t < WAIT, "loop overran");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The long one counts down: at least 1 s has passed since it was published.
    let long = retained_replay(addr, V5, "rx/long", "rx/marker").await;
    assert_eq!(long.len(), 1);
    let left = long[0]
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!(
        (55..=59).contains(&left),
        "remaining interval of a 60 s message after >= 1.5 s: {left}"
    );
}

#[tokio::test]
async fn v311_3_3_1_3_new_subscriber_gets_retained_with_real_client() {
    use crate::common::clients::v4;
    let b = common::broker().await;
    let mut publisher = v4::connect(b.mqtt_addr(), "rt4-pub", |_| {}).await;
    publisher
        .publish("rt4/t", v4::QoS::AtLeastOnce, true, "kept")
        .await;
    let mut sub = v4::connect(b.mqtt_addr(), "rt4-sub", |_| {}).await;
    sub.subscribe("rt4/#", v4::QoS::AtLeastOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.retain),
        ("rt4/t", &b"kept"[..], true)
    );
}
