//! Topic matching (MQTT 5.0 sections 4.7, 3.3.4): `#` and `+` wildcards, `$` topics hidden
//! from leading wildcards, overlapping subscriptions of one client giving one copy at the
//! highest QoS, and subscription identifiers of every matching subscription.

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Properties, QoS, ReasonCode};

use crate::common::clients::v5;
use crate::common::raw::{RawClient, sub_opts};
use crate::common::{self, QUIET};

/// Publishes to every topic in order, then returns the topics the subscriber received up to
/// and including `marker` (which it must match).
async fn matched(
    sub: &mut RawClient,
    publisher: &mut RawClient,
    topics: &[&str],
    marker: &str,
) -> Vec<String> {
    for t in topics {
        publisher.publish(t, "x", QoS::AtMostOnce, false).await;
    }
    publisher
        .publish(marker, "marker", QoS::AtMostOnce, false)
        .await;
    let mut got = Vec::new();
    loop {
        let p = sub.recv_publish().await;
        let done = p.topic == marker;
        got.push(p.topic);
        if done {
            return got;
        }
    }
}

#[tokio::test]
async fn v5_4_7_1_2_multi_level_wildcard_matches_parent_and_children() {
    let b = common::broker().await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "ml-pub").await;
    for v in [V311, V5] {
        let mut sub = RawClient::connect(b.mqtt_addr(), v, &common::unique("ml")).await;
        sub.subscribe("ml/#", QoS::AtMostOnce).await;
        let got = matched(
            &mut sub,
            &mut publisher,
            &["ml", "ml/b", "ml/b/c", "mlx", "other/ml", "/ml"],
            "ml/end",
        )
        .await;
        assert_eq!(got, ["ml", "ml/b", "ml/b/c", "ml/end"], "{v:?}");
    }
}

#[tokio::test]
async fn v5_4_7_1_3_single_level_wildcard_matches_one_level() {
    let b = common::broker().await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "sl-pub").await;
    for v in [V311, V5] {
        let mut sub = RawClient::connect(b.mqtt_addr(), v, &common::unique("sl")).await;
        sub.subscribe("sl/+/c", QoS::AtMostOnce).await;
        sub.subscribe("+", QoS::AtMostOnce).await;
        sub.subscribe("+/+", QoS::AtMostOnce).await;
        let topics = [
            "sl/b/c", "sl//c", "sl/b/d", "sl/b/c/d", "single", "x/y", "/", "x/y/z",
        ];
        let got = matched(&mut sub, &mut publisher, &topics, "sl/end/c").await;
        assert_eq!(
            got,
            ["sl/b/c", "sl//c", "single", "x/y", "/", "sl/end/c"],
            "{v:?}"
        );
    }
}

#[tokio::test]
async fn v5_4_7_2_dollar_topics_are_not_matched_by_leading_wildcards() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    // The broker publishes retained $SYS topics at start: wait until one exists.
    let mut probe = RawClient::connect(addr, V5, "sys-probe").await;
    probe
        .subscribe("$SYS/brokers/+/version", QoS::AtMostOnce)
        .await;
    let sys = probe
        .try_recv_publish(std::time::Duration::from_secs(12))
        .await
        .expect("a $SYS message");
    assert!(sys.topic.starts_with("$SYS/brokers/"));

    for v in [V311, V5] {
        let mut c = RawClient::connect(addr, v, &common::unique("dollar")).await;
        c.subscribe("#", QoS::AtMostOnce).await;
        c.subscribe("+/brokers/#", QoS::AtMostOnce).await;
        // Marker: an explicit $SYS subscription replays the retained version topic; nothing
        // may come before it from "#" or "+/brokers/#".
        c.subscribe("$SYS/brokers/+/version", QoS::AtMostOnce).await;
        // (Behind a load balancer every replicant has its own version topic: any of them.)
        let p = c.recv_publish().await;
        assert!(
            p.topic.starts_with("$SYS/brokers/") && p.topic.ends_with("/version"),
            "{v:?}: a '#' or '+/...' subscription matched a $ topic: {}",
            p.topic
        );

        // Live: a client's message on a $ topic, then a plain marker from the same publisher.
        let mut publisher = RawClient::connect(addr, V5, &common::unique("dollar-pub")).await;
        publisher
            .publish("$app/x", "hidden", QoS::AtMostOnce, false)
            .await;
        publisher
            .publish("plain/x", "marker", QoS::AtMostOnce, false)
            .await;
        loop {
            let p = c.recv_publish().await;
            assert!(
                !p.topic.starts_with("$app"),
                "{v:?}: '#' received {}",
                p.topic
            );
            if p.topic == "plain/x" {
                break;
            }
            assert!(
                p.topic.starts_with("$SYS/"),
                "{v:?}: unexpected {}",
                p.topic
            ); // periodic $SYS refresh
        }
    }
}

#[tokio::test]
async fn v5_3_3_4_overlapping_subscriptions_give_one_copy_at_the_highest_qos() {
    let b = common::broker().await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "ov-pub").await;
    for v in [V311, V5] {
        let mut sub = RawClient::connect(b.mqtt_addr(), v, &common::unique("ov")).await;
        sub.subscribe("ov/+", QoS::AtMostOnce).await;
        sub.subscribe("ov/#", QoS::ExactlyOnce).await;
        publisher
            .publish("ov/b", "x", QoS::ExactlyOnce, false)
            .await;
        publisher
            .publish("ov/c", "marker", QoS::AtMostOnce, false)
            .await;
        let p = sub.recv_publish().await;
        assert_eq!(
            (&p.payload[..], p.qos),
            (&b"x"[..], QoS::ExactlyOnce),
            "{v:?}: one copy at QoS 2"
        );
        let p = sub.recv_publish().await;
        assert_eq!(
            &p.payload[..],
            b"marker",
            "{v:?}: a second copy of x arrived: {p:?}"
        );
        sub.expect_no_publish(QUIET).await;
    }
}

#[tokio::test]
async fn v5_3_3_4_one_copy_carries_every_subscription_identifier() {
    let b = common::broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "sid").await;
    for (filter, id) in [("sid/+", 1u32), ("sid/#", 2)] {
        let props = Properties {
            subscription_identifiers: vec![id],
            ..Properties::default()
        };
        let ack = sub
            .subscribe_opts(filter, sub_opts(QoS::AtLeastOnce), props)
            .await;
        assert!(!ack.reasons[0].is_error());
    }
    sub.subscribe("sid/none", QoS::AtMostOnce).await; // no identifier
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "sid-pub").await;
    publisher
        .publish("sid/x", "both", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("sid/none", "none", QoS::AtMostOnce, false)
        .await;
    let p = sub.recv_publish().await;
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2], "one copy with both identifiers: {p:?}");
    sub.ack(&p).await;
    let p = sub.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"none",
        "a second copy of 'both' arrived: {p:?}"
    );
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![1, 2],
        "sid/none matches sid/# (2) and sid/+ (1) plus an id-less one"
    );
}

#[tokio::test]
async fn v5_3_8_2_1_2_subscription_identifier_with_real_client() {
    let b = common::broker().await;
    let mut sub = v5::connect(b.mqtt_addr(), "sid-rumqttc", |_| {}).await;
    let props = v5::SubscribeProperties {
        id: Some(7),
        user_properties: vec![],
    };
    let codes = sub
        .subscribe_filter(v5::Filter::new("rsid/#", v5::QoS::AtLeastOnce), Some(props))
        .await;
    assert_eq!(
        codes,
        vec![v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)]
    );
    let mut publisher = v5::connect(b.mqtt_addr(), "sid-rumqttc-pub", |_| {}).await;
    publisher
        .publish("rsid/a", v5::QoS::AtLeastOnce, false, "x")
        .await;
    let p = sub.recv_publish().await;
    let props = p.properties.expect("PUBLISH properties");
    assert_eq!(props.subscription_identifiers, vec![7]);
}

#[tokio::test]
async fn v5_4_7_1_invalid_topic_filters_are_refused_per_filter() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("badfilter")).await;
        let bad = ["a/#/b", "a#", "a/b+", "+a/b", "#/a"];
        let mut filters: Vec<(&str, _)> = bad
            .iter()
            .map(|f| (*f, sub_opts(QoS::AtMostOnce)))
            .collect();
        filters.push(("ok/+", sub_opts(QoS::AtLeastOnce)));
        let ack = c.subscribe_many(&filters, Properties::default()).await;
        let refused = if v.is_v5() {
            ReasonCode::TopicFilterInvalid
        } else {
            ReasonCode::UnspecifiedError
        };
        let mut want = vec![refused; bad.len()];
        want.push(ReasonCode::GrantedQoS1);
        assert_eq!(
            ack.reasons, want,
            "{v:?}: 0x8F (5.0) / 0x80 (3.1.1) for each invalid filter"
        );
        c.ping().await;
    }
}

#[tokio::test]
async fn v5_3_8_4_3_resubscribing_replaces_the_subscription() {
    let b = common::broker().await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "rs-pub").await;
    for v in [V311, V5] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("resub")).await;
        c.subscribe("rs/t", QoS::ExactlyOnce).await;
        c.subscribe("rs/t", QoS::AtMostOnce).await;
        publisher
            .publish("rs/t", "x", QoS::ExactlyOnce, false)
            .await;
        publisher
            .publish("rs/t", "marker", QoS::AtMostOnce, false)
            .await;
        let p = c.recv_publish().await;
        assert_eq!(
            (&p.payload[..], p.qos),
            (&b"x"[..], QoS::AtMostOnce),
            "{v:?}: the new QoS applies"
        );
        assert_eq!(
            &c.recv_publish().await.payload[..],
            b"marker",
            "{v:?}: one subscription, one copy"
        );
    }
}

#[tokio::test]
async fn v5_3_10_4_unsubscribe_stops_delivery() {
    let b = common::broker().await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "un-pub").await;
    for v in [V311, V5] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("unsub")).await;
        c.subscribe("un/t", QoS::AtLeastOnce).await;
        c.subscribe("un/marker", QoS::AtMostOnce).await;
        let ack = c.unsubscribe_many(&["un/t", "un/never"]).await;
        if v.is_v5() {
            assert_eq!(
                ack.reasons,
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        } else {
            assert!(ack.reasons.is_empty(), "3.1.1 UNSUBACK has no payload");
        }
        publisher
            .publish("un/t", "gone", QoS::AtLeastOnce, false)
            .await;
        publisher
            .publish("un/marker", "marker", QoS::AtMostOnce, false)
            .await;
        assert_eq!(
            c.recv_publish().await.topic,
            "un/marker",
            "{v:?}: delivered after UNSUBSCRIBE"
        );
    }
}
