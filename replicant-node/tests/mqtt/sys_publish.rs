//! Clients may not publish into the broker's own `$SYS` namespace (`$SYS` or `$SYS/...`):
//! 5.0 QoS 1 gets PUBACK 0x87, QoS 2 PUBREC 0x87, QoS 0 is dropped; 3.1.1 gets the normal
//! acks and the message is dropped; a retained one is not stored; a will is not published.
//! Every refusal counts in `meshmq_messages_dropped_total{reason="sys_topic"}`. The
//! broker's own `$SYS` topics keep coming.

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{QoS, ReasonCode};

use crate::common::raw::{RawClient, connect_packet, publish_packet, will};
use crate::common::{self, QUIET, TestBroker, WAIT, metric_sum, metrics_text};

/// `meshmq_messages_dropped_total{reason="sys_topic"}` now (process-wide).
async fn sys_drops(b: &TestBroker) -> f64 {
    let text = metrics_text(b).await;
    metric_sum(
        &text,
        "meshmq_messages_dropped_total",
        &[("reason", "sys_topic")],
    )
    .unwrap_or(0.0)
}

/// A subscriber to everything a client could have put under `$SYS` here, plus a plain
/// marker topic. Subscribes to the exact `$SYS` topic too.
async fn watcher(b: &TestBroker, marker: &str) -> RawClient {
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-watch")).await;
    sub.subscribe("$SYS/client/#", QoS::AtLeastOnce).await;
    sub.subscribe("$SYS", QoS::AtLeastOnce).await;
    sub.subscribe(marker, QoS::AtLeastOnce).await;
    sub
}

/// The next PUBLISH must be the marker: nothing a client sent to `$SYS` came first.
async fn expect_marker_first(sub: &mut RawClient, marker: &str) {
    let p = sub.recv_publish().await;
    assert_eq!(
        p.topic, marker,
        "a client's $SYS publish was delivered: {p:?}"
    );
    sub.ack(&p).await;
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_client_publish_to_sys_is_refused_with_0x87_and_counted() {
    let b = common::broker().await;
    let marker = common::unique("sys-marker5");
    let mut sub = watcher(&b, &marker).await;
    let before = sys_drops(&b).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-pub5")).await;
    assert_eq!(
        c.publish("$SYS/client/q1", "x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NotAuthorized,
        "QoS 1 to $SYS/...: PUBACK 0x87"
    );
    assert_eq!(
        c.publish("$SYS/client/q2", "x", QoS::ExactlyOnce, false)
            .await,
        ReasonCode::NotAuthorized,
        "QoS 2 to $SYS/...: PUBREC 0x87"
    );
    assert_eq!(
        c.publish("$SYS", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "the bare $SYS topic is the namespace too"
    );
    c.publish("$SYS/client/q0", "x", QoS::AtMostOnce, false)
        .await;
    c.ping().await; // refused, not disconnected
    c.publish(&marker, "m", QoS::AtLeastOnce, false).await;
    expect_marker_first(&mut sub, &marker).await;
    let after = sys_drops(&b).await;
    assert!(
        after >= before + 4.0,
        "4 refusals counted as sys_topic drops: {before} -> {after}"
    );
}

#[tokio::test]
async fn v3_client_publish_to_sys_is_acked_and_dropped() {
    let b = common::broker().await;
    let marker = common::unique("sys-marker3");
    let mut sub = watcher(&b, &marker).await;
    let before = sys_drops(&b).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V311, &common::unique("sys-pub3")).await;
    assert_eq!(
        c.publish("$SYS/client/q1", "x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success,
        "3.1.1 has no failure PUBACK"
    );
    // QoS 2: PUBREC, PUBREL, PUBCOMP complete the client's flow; nothing is routed.
    assert_eq!(
        c.publish("$SYS/client/q2", "x", QoS::ExactlyOnce, false)
            .await,
        ReasonCode::Success
    );
    c.publish("$SYS/client/q0", "x", QoS::AtMostOnce, false)
        .await;
    c.publish(&marker, "m", QoS::AtLeastOnce, false).await;
    expect_marker_first(&mut sub, &marker).await;
    let after = sys_drops(&b).await;
    assert!(after >= before + 3.0, "{before} -> {after}");
}

#[tokio::test]
async fn retained_publish_to_sys_is_not_stored_and_the_brokers_own_sys_still_is() {
    let b = common::broker().await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-retain")).await;
    let topic = common::unique("$SYS/client/retained");
    assert_eq!(
        c.publish_full(publish_packet(&topic, b"r", QoS::AtLeastOnce, true))
            .await,
        ReasonCode::NotAuthorized
    );
    // Also a retained QoS 0 (no ack to wait for): a marker retained message after it, from
    // the same connection, is stored once the marker's PUBACK came.
    c.publish_full(publish_packet(&topic, b"r0", QoS::AtMostOnce, true))
        .await;
    let marker = common::unique("sys-retain-marker");
    c.publish_full(publish_packet(&marker, b"m", QoS::AtLeastOnce, true))
        .await;
    let mut late = RawClient::connect(b.mqtt_addr(), V5, &common::unique("sys-late")).await;
    late.subscribe(&marker, QoS::AtLeastOnce).await;
    let m = late.recv_publish().await;
    assert!(m.retain && m.topic == marker, "{m:?}");
    late.subscribe(&topic, QoS::AtLeastOnce).await;
    late.expect_no_publish(QUIET).await;
    // The broker's own $SYS publisher is not a client: its retained topics are there.
    late.subscribe("$SYS/brokers/+/version", QoS::AtMostOnce)
        .await;
    let own = late
        .try_recv_publish(std::time::Duration::from_secs(12))
        .await
        .expect("the broker's own retained $SYS version topic");
    assert!(own.topic.starts_with("$SYS/brokers/"), "{own:?}");
}

#[tokio::test]
async fn will_to_sys_is_not_published() {
    let b = common::broker().await;
    let marker = common::unique("sys-will-marker");
    let mut sub = watcher(&b, &marker).await;
    let before = sys_drops(&b).await;
    for v in [V311, V5] {
        let id = common::unique("sys-will");
        let mut connect = connect_packet(v, &id);
        connect.will = Some(will("$SYS/client/will", &id, QoS::AtLeastOnce));
        let (c, ack) = RawClient::connect_with(b.mqtt_addr(), connect).await;
        assert_eq!(ack.code, ReasonCode::Success);
        drop(c); // no DISCONNECT: the will is due now
    }
    let settled =
        common::wait_until_async(WAIT, || async { sys_drops(&b).await >= before + 2.0 }).await;
    assert!(settled, "both wills refused and counted as sys_topic drops");
    // A will to a plain topic proves the path is live; it must be the first delivery.
    let mut connect = connect_packet(V5, &common::unique("plain-will"));
    connect.will = Some(will(&marker, "m", QoS::AtLeastOnce));
    let (c, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
    drop(c);
    expect_marker_first(&mut sub, &marker).await;
}
