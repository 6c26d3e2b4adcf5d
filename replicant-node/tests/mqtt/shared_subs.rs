//! Shared subscriptions (MQTT 5.0 section 4.8.2): each message to exactly one member of a
//! group, the member choice by `mqtt.shared_subscription_strategy`, non-shared subscribers
//! unaffected, and invalid `$share` filters refused per filter.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{self, V5, V311};
use meshmq_shared::codec::{Properties, QoS, ReasonCode};
use meshmq_shared::config::SharedStrategy;

use crate::common::raw::{RawClient, sub_opts};
use crate::common::{self, QUIET, TestBroker, WAIT, start_broker};

pub(crate) const FILTER: &str = "$share/g/sh/#";

async fn broker_with(strategy: SharedStrategy) -> TestBroker {
    start_broker(|c| c.mqtt.shared_subscription_strategy = strategy).await
}

/// Three members of group `g` (two 5.0, one 3.1.1), subscribed in order.
async fn members(b: &TestBroker) -> Vec<RawClient> {
    let mut out = Vec::new();
    for (i, v) in [V5, V311, V5].into_iter().enumerate() {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &format!("member-{i}")).await;
        c.subscribe(FILTER, QoS::AtMostOnce).await;
        out.push(c);
    }
    out
}

/// Collects `total` messages across the members (deadline), then checks nothing more comes.
/// Returns, per member, the payloads it received.
async fn collect(members: &mut [RawClient], total: usize) -> Vec<Vec<String>> {
    let mut got: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + WAIT;
    while got.iter().map(Vec::len).sum::<usize>() < total {
        assert!(Instant::now() < deadline, "only {got:?} of {total} arrived");
        for (i, m) in members.iter_mut().enumerate() {
            while let Ok(p) = m.try_recv_publish(Duration::from_millis(20)).await {
                got[i].push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    }
    for m in members.iter_mut() {
        m.expect_no_publish(QUIET).await;
    }
    got
}

/// Publishes `n` messages `{prefix}{i}` to `sh/{i}` at QoS 1 (each acknowledged).
pub(crate) async fn publish_n(publisher: &mut RawClient, prefix: &str, n: usize) {
    for i in 0..n {
        publisher
            .publish(
                &format!("sh/{i}"),
                &format!("{prefix}{i}"),
                QoS::AtLeastOnce,
                false,
            )
            .await;
    }
}

/// Every payload exactly once across the members.
pub(crate) fn assert_each_once(got: &[Vec<String>], prefix: &str, n: usize) {
    let mut all: Vec<&String> = got.iter().flatten().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        got.iter().map(Vec::len).sum::<usize>(),
        "a message reached two members: {got:?}"
    );
    for i in 0..n {
        assert!(
            all.contains(&&format!("{prefix}{i}")),
            "{prefix}{i} reached no member: {got:?}"
        );
    }
}

#[tokio::test]
async fn v5_4_8_2_round_robin_gives_each_member_an_equal_share() {
    let b = broker_with(SharedStrategy::RoundRobin).await;
    let mut ms = members(&b).await;
    let mut plain = RawClient::connect(b.mqtt_addr(), V5, "plain").await;
    plain.subscribe("sh/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "rr-pub").await;
    publish_n(&mut publisher, "m", 30).await;
    let got = collect(&mut ms, 30).await;
    assert_each_once(&got, "m", 30);
    let counts: Vec<usize> = got.iter().map(Vec::len).collect();
    assert_eq!(
        counts,
        vec![10, 10, 10],
        "round robin over 3 members and 30 messages"
    );
    // A non-shared subscriber on the same topics gets every message.
    for i in 0..30 {
        assert_eq!(
            plain.recv_publish().await.payload,
            format!("m{i}").into_bytes()
        );
    }
    plain.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_4_8_2_random_gives_each_message_to_exactly_one_member() {
    let b = broker_with(SharedStrategy::Random).await;
    let mut ms = members(&b).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "rnd-pub").await;
    publish_n(&mut publisher, "m", 30).await;
    let got = collect(&mut ms, 30).await;
    assert_each_once(&got, "m", 30);
}

#[tokio::test]
async fn v5_4_8_2_sticky_keeps_one_member_until_it_leaves() {
    let b = broker_with(SharedStrategy::Sticky).await;
    let mut ms = members(&b).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "st-pub").await;
    publish_n(&mut publisher, "a", 10).await;
    let got = collect(&mut ms, 10).await;
    assert_each_once(&got, "a", 10);
    let first = got
        .iter()
        .position(|g| g.len() == 10)
        .unwrap_or_else(|| panic!("sticky spread messages: {got:?}"));
    ms[first].unsubscribe(FILTER).await;
    publish_n(&mut publisher, "b", 10).await;
    let got = collect(&mut ms, 10).await;
    assert_each_once(&got, "b", 10);
    let second = got
        .iter()
        .position(|g| g.len() == 10)
        .unwrap_or_else(|| panic!("sticky spread messages: {got:?}"));
    assert_ne!(
        second, first,
        "the member that unsubscribed still gets messages"
    );
}

#[tokio::test]
async fn v5_4_8_2_hash_clientid_keeps_a_publisher_on_one_member() {
    let b = broker_with(SharedStrategy::HashClientid).await;
    let mut ms = members(&b).await;
    for publisher_id in ["hash-pub-1", "hash-pub-2", "hash-pub-3"] {
        let mut publisher = RawClient::connect(b.mqtt_addr(), V5, publisher_id).await;
        publish_n(&mut publisher, publisher_id, 10).await;
        let got = collect(&mut ms, 10).await;
        assert_each_once(&got, publisher_id, 10);
        assert!(
            got.iter().any(|g| g.len() == 10),
            "{publisher_id}'s messages spread over members: {got:?}"
        );
    }
}

#[tokio::test]
async fn v5_4_8_2_hash_topic_keeps_a_topic_on_one_member() {
    let b = broker_with(SharedStrategy::HashTopic).await;
    let mut ms = members(&b).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "ht-pub").await;
    for i in 0..10 {
        publisher
            .publish("sh/same", &format!("m{i}"), QoS::AtLeastOnce, false)
            .await;
    }
    let got = collect(&mut ms, 10).await;
    assert_each_once(&got, "m", 10);
    assert!(
        got.iter().any(|g| g.len() == 10),
        "one topic spread over members: {got:?}"
    );
}

#[tokio::test]
async fn v5_4_8_2_invalid_shared_filter_is_refused_per_filter() {
    let b = common::broker().await;
    let expect: HashMap<ProtocolVersion, ReasonCode> = [
        (V5, ReasonCode::TopicFilterInvalid),
        (V311, ReasonCode::UnspecifiedError),
    ]
    .into_iter()
    .collect();
    for v in [V311, V5] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("badshare")).await;
        let filters = [
            ("$share/g", sub_opts(QoS::AtLeastOnce)),
            ("$share/g/ok/#", sub_opts(QoS::AtLeastOnce)),
        ];
        let ack = c.subscribe_many(&filters, Properties::default()).await;
        assert_eq!(
            ack.reasons,
            vec![expect[&v], ReasonCode::GrantedQoS1],
            "{v:?}: 0x8F (5.0) / 0x80 (3.1.1) for '$share/g' only"
        );
        c.ping().await;
    }
}

#[tokio::test]
async fn v5_4_8_2_retained_messages_are_not_sent_to_a_new_shared_subscription() {
    let b = common::broker().await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "shr-pub").await;
    publisher
        .publish("sh/r", "retained", QoS::AtLeastOnce, true)
        .await;
    publisher
        .publish("shm/marker", "marker", QoS::AtLeastOnce, true)
        .await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "shr").await;
    c.subscribe(FILTER, QoS::AtMostOnce).await;
    c.subscribe("shm/marker", QoS::AtMostOnce).await;
    let p = c.recv_publish().await;
    assert_eq!(
        p.topic, "shm/marker",
        "a retained message was sent to a shared subscription: {p:?}"
    );
}

#[tokio::test]
async fn v5_3_8_3_1_no_local_on_a_shared_subscription_is_a_protocol_error() {
    let b = common::broker().await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "shnl").await;
    let opts = meshmq_shared::codec::SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: true,
        ..Default::default()
    };
    c.send(&meshmq_shared::codec::Packet::Subscribe(
        meshmq_shared::codec::Subscribe {
            packet_id: 1,
            filters: vec![(FILTER.into(), opts)],
            properties: Properties::default(),
        },
    ))
    .await;
    let reason = c.expect_closed_with(&[ReasonCode::ProtocolError]).await;
    assert_eq!(
        reason,
        Some(ReasonCode::ProtocolError),
        "DISCONNECT 0x82 before the close"
    );
}
