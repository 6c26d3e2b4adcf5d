//! Message-side metrics: the sampled publish-to-deliver latency histogram and the gauge of
//! messages queued in the node's sessions.

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Disconnect, Packet, QoS, ReasonCode};
use meshmq_shared::metrics as m;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::unique;
use crate::{SERIAL, metric, start, wait_metric};

/// `meshmq_message_delivery_latency_seconds_count{path="local"}`.
async fn local_latency_count(b: &replicant_node::BrokerHandle) -> f64 {
    let count = format!("{}_count", m::DELIVERY_LATENCY_SECONDS);
    metric(b, &count, &[("path", "local")]).await
}

/// A subscriber and a publisher on `b`; `n` QoS 1 messages published and received.
async fn publish_received(b: &replicant_node::BrokerHandle, n: usize) {
    let topic = unique("lat");
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, &unique("lat-sub")).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("lat-pub")).await;
    for i in 0..n {
        publisher
            .publish(&topic, &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    for _ in 0..n {
        let p = sub.recv_publish().await;
        sub.ack(&p).await;
    }
}

#[tokio::test]
async fn sampled_deliveries_grow_the_latency_histogram() {
    let _turn = SERIAL.lock().await;
    let every = start(|c| c.metrics.latency_sample_every = 1).await;
    let before = local_latency_count(&every).await;
    publish_received(&every, 5).await;
    // Observed once each write is done: the subscriber may have read it a moment before.
    wait_metric(
        &every,
        &format!("{}_count", m::DELIVERY_LATENCY_SECONDS),
        &[("path", "local")],
        before + 5.0,
    )
    .await;
    let sum = format!("{}_sum", m::DELIVERY_LATENCY_SECONDS);
    assert!(metric(&every, &sum, &[("path", "local")]).await > 0.0);
    every.shutdown().await;

    let off = start(|c| c.metrics.latency_sample_every = 0).await;
    let before = local_latency_count(&off).await;
    publish_received(&off, 5).await;
    tokio::time::sleep(crate::common::QUIET).await;
    assert_eq!(
        local_latency_count(&off).await,
        before,
        "sampling off: nothing measured"
    );
    off.shutdown().await;
}

#[tokio::test]
async fn the_queued_gauge_counts_what_offline_sessions_hold() {
    let _turn = SERIAL.lock().await;
    let b = start(|_| {}).await;
    let queued = m::MESSAGES_QUEUED;
    wait_metric(&b, queued, &[], 0.0).await;
    let id = unique("q-sub");
    let topic = unique("q");
    let mut persistent = connect_packet(V5, &id);
    persistent.properties.session_expiry_interval = Some(300);
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), persistent.clone()).await;
    sub.subscribe(&topic, QoS::AtLeastOnce).await;
    sub.send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    drop(sub);
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("q-pub")).await;
    // Sent once the session is offline (the DISCONNECT processed): before that, a message
    // would be delivered, not queued.
    assert!(
        crate::common::wait_until(crate::common::WAIT, || b.connections() == 1).await,
        "the subscriber's connection ended"
    );
    for i in 0..4 {
        publisher
            .publish(&topic, &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }
    wait_metric(&b, queued, &[], 4.0).await;

    persistent.clean_start = false;
    let (mut back, _) = RawClient::connect_with(b.mqtt_addr(), persistent).await;
    for _ in 0..4 {
        let p = back.recv_publish().await;
        back.ack(&p).await;
    }
    wait_metric(&b, queued, &[], 0.0).await;
    b.shutdown().await;
}
