//! A client id is unique cluster-wide (invariant 2): a client that reconnects through
//! another replicant closes its old connection there (MQTT 5: DISCONNECT 0x8E), gets its
//! persistent session back from the `subscriptions` rows (session present = 1) and receives
//! what is published anywhere afterwards. Raw MQTT bytes, so the reason codes are exact.

use meshmq_shared::codec::{ProtocolVersion, QoS, ReasonCode};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

fn persistent(version: ProtocolVersion, id: &str) -> meshmq_shared::codec::Connect {
    let mut c = connect_packet(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_moves_to_another_replicant_takes_its_session_along() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let id = unique("mover");
        let topic = format!("mv/{id}");
        let (mut old, ack) =
            RawClient::connect_with(r1.mqtt_addr(), persistent(version, &id)).await;
        assert!(!ack.session_present);
        old.subscribe(&format!("{topic}/+"), QoS::AtLeastOnce).await;

        let (mut new, ack) =
            RawClient::connect_with(r2.mqtt_addr(), persistent(version, &id)).await;
        assert_eq!(ack.code, ReasonCode::Success);
        assert!(ack.session_present, "{version:?}: the session came along");
        let reason = old
            .expect_closed_with(&[ReasonCode::SessionTakenOver])
            .await;
        if version.is_v5() {
            assert_eq!(
                reason,
                Some(ReasonCode::SessionTakenOver),
                "v5: DISCONNECT 0x8E"
            );
        }
        assert!(
            wait_until(WAIT, || r2
                .core()
                .read(|t| t.registry(&id).is_some_and(|r| r.node == "r2")))
            .await,
            "registry names r2"
        );
        // Published on the old node and on the new one: both reach the moved client.
        let mut p1 =
            RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("mv-p1")).await;
        p1.publish(&format!("{topic}/a"), "via-r1", QoS::AtLeastOnce, false)
            .await;
        let got = new.recv_publish().await;
        assert_eq!(
            (&got.payload[..], got.qos),
            (&b"via-r1"[..], QoS::AtLeastOnce)
        );
        new.ack(&got).await;
        let mut p2 =
            RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("mv-p2")).await;
        p2.publish(&format!("{topic}/b"), "via-r2", QoS::AtLeastOnce, false)
            .await;
        let got = new.recv_publish().await;
        assert_eq!(&got.payload[..], b"via-r2");
        new.ack(&got).await;

        // And back to r1: r2's connection is closed in turn, r1 serves it again.
        let (mut back, ack) =
            RawClient::connect_with(r1.mqtt_addr(), persistent(version, &id)).await;
        assert!(ack.session_present);
        new.expect_closed_with(&[ReasonCode::SessionTakenOver])
            .await;
        p2.publish(&format!("{topic}/c"), "again", QoS::AtLeastOnce, false)
            .await;
        assert_eq!(&back.recv_publish().await.payload[..], b"again");
    }
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_start_elsewhere_closes_the_old_connection_and_starts_fresh() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let id = unique("fresh");
    let (mut old, _) =
        RawClient::connect_with(r1.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    old.subscribe("fresh/+", QoS::AtLeastOnce).await;
    let (mut new, ack) =
        RawClient::connect_with(r2.mqtt_addr(), connect_packet(ProtocolVersion::V5, &id)).await;
    assert!(!ack.session_present, "clean start discards the session");
    old.expect_closed_with(&[ReasonCode::SessionTakenOver])
        .await;
    assert!(
        wait_until(WAIT, || r1.sessions() == 0).await,
        "r1 dropped its copy of the session"
    );
    let mut p = RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("fresh-p")).await;
    new.subscribe("marker", QoS::AtMostOnce).await;
    p.publish("fresh/x", "old-filter", QoS::AtMostOnce, false)
        .await;
    p.publish("marker", "m", QoS::AtMostOnce, false).await;
    assert_eq!(
        &new.recv_publish().await.payload[..],
        b"m",
        "nothing arrives on the discarded filter"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
