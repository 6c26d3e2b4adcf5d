//! Will messages (MQTT 5.0 sections 3.1.2.5, 3.1.3.2, 3.14.2.1): published on abnormal close,
//! not after a normal DISCONNECT, published on DISCONNECT 0x04, delayed by the Will Delay
//! Interval, cancelled by a reconnect within the delay, and sent at session expiry when that
//! comes first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{self, V5, V311};
use meshmq_shared::codec::{QoS, ReasonCode};

use crate::common::clients::v4;
use crate::common::raw::{RawClient, connect_packet, will};
use crate::common::{self, QUIET, WAIT};

/// A client subscribed to `will/#`.
async fn watcher(addr: SocketAddr) -> RawClient {
    let mut w = RawClient::connect(addr, V5, &common::unique("watcher")).await;
    w.subscribe("will/#", QoS::AtMostOnce).await;
    w
}

/// Connects `id` with a will on `topic`; `delay`/`expiry` are the 5.0 Will Delay Interval and
/// Session Expiry Interval (ignored for 3.1.1).
async fn with_will(
    addr: SocketAddr,
    v: ProtocolVersion,
    id: &str,
    topic: &str,
    delay: Option<u32>,
    expiry: Option<u32>,
) -> RawClient {
    let mut c = connect_packet(v, id);
    let mut w = will(topic, &format!("gone:{id}"), QoS::AtLeastOnce);
    if v.is_v5() {
        w.properties.will_delay_interval = delay;
        c.properties.session_expiry_interval = expiry;
    }
    c.will = Some(w);
    let (client, ack) = RawClient::connect_with(addr, c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    client
}

#[tokio::test]
async fn v5_3_1_2_5_will_is_published_on_abnormal_close() {
    let b = common::broker().await;
    let mut w = watcher(b.mqtt_addr()).await;
    // 3.1.1 with a real client, killed without DISCONNECT.
    let lw = v4::LastWill::new("will/v4", "v4 gone", v4::QoS::AtLeastOnce, false);
    let c4 = v4::connect(b.mqtt_addr(), "will-v4", |o| {
        o.set_last_will(lw);
    })
    .await;
    c4.kill();
    let p = w.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/v4", &b"v4 gone"[..])
    );
    // 5.0 raw: the TCP connection is dropped.
    let c5 = with_will(b.mqtt_addr(), V5, "will-v5", "will/v5", None, None).await;
    drop(c5);
    let p = w.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/v5", &b"gone:will-v5"[..])
    );
    assert!(!p.retain);
}

#[tokio::test]
async fn v5_3_1_2_8_will_is_not_published_after_normal_disconnect() {
    let b = common::broker().await;
    let mut w = watcher(b.mqtt_addr()).await;
    for v in [V311, V5] {
        let c = with_will(
            b.mqtt_addr(),
            v,
            &common::unique("normal"),
            "will/normal",
            None,
            None,
        )
        .await;
        c.disconnect(ReasonCode::Success).await;
        // The broker has finished with that connection (will settled) once it stops counting it.
        assert!(
            common::wait_until(WAIT, || b.connections() == 1).await,
            "{v:?}: connection not released"
        );
        // Marker: another client's will, triggered afterwards, must be the first to arrive.
        let marker = with_will(
            b.mqtt_addr(),
            V5,
            &common::unique("marker"),
            "will/marker",
            None,
            None,
        )
        .await;
        drop(marker);
        let p = w.recv_publish().await;
        assert_eq!(
            p.topic, "will/marker",
            "{v:?}: will published after a normal DISCONNECT: {p:?}"
        );
        assert!(common::wait_until(WAIT, || b.connections() == 1).await);
    }
    w.expect_no_publish(QUIET).await;
}

#[tokio::test]
async fn v5_3_14_2_1_disconnect_with_will_message_publishes_it() {
    let b = common::broker().await;
    let mut w = watcher(b.mqtt_addr()).await;
    let c = with_will(b.mqtt_addr(), V5, "dww", "will/0x04", None, None).await;
    c.disconnect(ReasonCode::DisconnectWithWillMessage).await;
    let p = w.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/0x04", &b"gone:dww"[..])
    );
}

#[tokio::test]
async fn v5_3_1_3_2_will_delay_interval_delays_the_will() {
    let b = common::broker().await;
    let mut w = watcher(b.mqtt_addr()).await;
    let c = with_will(
        b.mqtt_addr(),
        V5,
        "delayed",
        "will/delayed",
        Some(2),
        Some(10),
    )
    .await;
    drop(c);
    let closed = Instant::now();
    let p = w
        .try_recv_publish(Duration::from_secs(6))
        .await
        .expect("delayed will arrives");
    let after = closed.elapsed();
    assert_eq!(p.topic, "will/delayed");
    assert!(
        after >= Duration::from_millis(1800),
        "will sent {after:?} after the close, delay is 2 s"
    );
    assert!(
        after <= Duration::from_millis(4000),
        "will sent only {after:?} after the close"
    );
}

#[tokio::test]
async fn v5_3_1_3_2_reconnect_within_will_delay_cancels_the_will() {
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut w = watcher(addr).await;
    let c = with_will(addr, V5, "comeback", "will/comeback", Some(2), Some(10)).await;
    drop(c);
    let mut resume = connect_packet(V5, "comeback");
    resume.clean_start = false;
    resume.properties.session_expiry_interval = Some(10);
    let (mut back, ack) = RawClient::connect_with(addr, resume).await;
    assert!(ack.session_present);
    // Marker: a will with a 3 s delay started after the first one's 2 s delay.
    let marker = with_will(addr, V5, "marker", "will/marker", Some(3), Some(10)).await;
    drop(marker);
    let p = w
        .try_recv_publish(Duration::from_secs(7))
        .await
        .expect("marker will arrives");
    assert_eq!(
        p.topic, "will/marker",
        "the cancelled will was published: {p:?}"
    );
    back.ping().await;
}

#[tokio::test]
async fn v5_3_1_2_5_will_is_published_at_session_expiry_when_earlier() {
    let b = common::broker().await;
    let mut w = watcher(b.mqtt_addr()).await;
    let c = with_will(
        b.mqtt_addr(),
        V5,
        "expires",
        "will/expires",
        Some(10),
        Some(1),
    )
    .await;
    drop(c);
    let closed = Instant::now();
    let p = w
        .try_recv_publish(Duration::from_secs(6))
        .await
        .expect("will at session expiry");
    let after = closed.elapsed();
    assert_eq!(p.topic, "will/expires");
    assert!(
        after >= Duration::from_millis(800),
        "will sent {after:?} after the close, expiry is 1 s"
    );
    assert!(
        after <= Duration::from_millis(3000),
        "will sent {after:?} after the close: not at the 1 s session expiry"
    );
}

#[tokio::test]
async fn v5_3_1_2_5_takeover_publishes_will_without_delay() {
    let b = common::broker().await;
    let mut w = watcher(b.mqtt_addr()).await;
    let _first = with_will(b.mqtt_addr(), V5, "taken", "will/taken", None, None).await;
    let _second = RawClient::connect(b.mqtt_addr(), V5, "taken").await;
    let p = w.recv_publish().await;
    assert_eq!(
        p.topic, "will/taken",
        "taken-over connection's will (no delay) is published"
    );
}
