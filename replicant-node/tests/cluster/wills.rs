//! Will messages and session expiry behave the same whichever replicant the client is on or
//! moves to: a delayed will is cancelled by a reconnect through another node and
//! published by the node the client was last on when it does not come back; an expired
//! session is not resumed anywhere.

use std::time::Duration;

use meshmq_shared::codec::{ProtocolVersion, QoS};

use crate::common::raw::{RawClient, connect_packet, will};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const WILL_DELAY: u32 = 2;

fn with_will(id: &str, topic: &str) -> meshmq_shared::codec::Connect {
    let mut c = connect_packet(ProtocolVersion::V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let mut w = will(topic, "gone", QoS::AtLeastOnce);
    w.properties.will_delay_interval = Some(WILL_DELAY);
    c.will = Some(w);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_follows_the_client_across_replicants() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let id = unique("will");
    let topic = format!("will/{id}");
    let mut watcher = RawClient::connect(r3.mqtt_addr(), ProtocolVersion::V5, &unique("w")).await;
    watcher.subscribe(&topic, QoS::AtLeastOnce).await;

    // Gone from r1 without DISCONNECT, back through r2 within the will delay: no will.
    let (c, _) = RawClient::connect_with(r1.mqtt_addr(), with_will(&id, &topic)).await;
    drop(c);
    assert!(
        wait_until(WAIT, || r1
            .core()
            .read(|t| t.registry(&id).is_some_and(|r| !r.connected)))
        .await,
        "r1 recorded the disconnect"
    );
    let (c, ack) = RawClient::connect_with(r2.mqtt_addr(), with_will(&id, &topic)).await;
    assert!(ack.session_present);
    watcher
        .expect_no_publish(Duration::from_secs(u64::from(WILL_DELAY) + 1))
        .await;

    // Gone from r2 for good: r2 publishes the will after the delay, seen on r3.
    drop(c);
    let will = watcher
        .try_recv_publish(Duration::from_secs(u64::from(WILL_DELAY) + 5))
        .await
        .expect("the will arrives after its delay");
    assert_eq!(&will.payload[..], b"gone");
    watcher.ack(&will).await;
    watcher.expect_no_publish(Duration::from_millis(500)).await;
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_not_resumed_on_another_replicant() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let id = unique("exp");
    let mut c = connect_packet(ProtocolVersion::V5, &id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(1);
    let (mut s, _) = RawClient::connect_with(r1.mqtt_addr(), c.clone()).await;
    s.subscribe(&format!("exp/{id}"), QoS::AtLeastOnce).await;
    s.disconnect(meshmq_shared::codec::ReasonCode::Success)
        .await;
    // r1 ends the session after 1 s; its registry row and subscriptions go with it.
    assert!(
        // r1 holds the row (its client's); r2's projection never did.
        wait_until(WAIT, || r1.core().read(|t| t.registry(&id).is_none())).await,
        "the expired session left the tables"
    );
    let (_s, ack) = RawClient::connect_with(r2.mqtt_addr(), c).await;
    assert!(!ack.session_present, "no session to resume after expiry");
    assert_eq!(r2.core().read(|t| t.subscriptions(&id).count()), 0);
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
