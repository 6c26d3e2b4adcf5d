//! Slow subscribers (ARCHITECTURE: "push back on publishers when subscribers' queues pass a
//! high-water mark"): a QoS 1 subscriber that acks slower than its publisher publishes holds
//! the publisher back, and its bounded queue keeps the newest messages.

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::QoS;

use crate::common::raw::RawClient;
use crate::common::{TestBroker, metric_sum, metrics_text, start_broker};

const BACKPRESSURE: &str = "meshmq_publish_backpressure_total";

async fn counter(b: &TestBroker, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&metrics_text(b).await, name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn a_subscriber_behind_its_in_flight_window_holds_its_publisher_back() {
    // Window of 2, queue of 20: the connection moves every delivery into the session at once,
    // so the session's queue behind the window, not the mailbox, is what fills up.
    let b = start_broker(|c| {
        c.mqtt.max_inflight = 2;
        c.mqtt.max_mqueue_len = 20;
    })
    .await;
    let waits_before = counter(&b, BACKPRESSURE, &[("on", "subscriber_queue")]).await;
    let drops_before = counter(
        &b,
        "meshmq_messages_dropped_total",
        &[("reason", "queue_full")],
    )
    .await;

    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "bp-sub").await;
    sub.subscribe("bp/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "bp-pub").await;
    for i in 0..40 {
        publisher
            .publish("bp/t", &i.to_string(), QoS::AtLeastOnce, false)
            .await;
    }

    let waits = counter(&b, BACKPRESSURE, &[("on", "subscriber_queue")]).await - waits_before;
    assert!(
        waits >= 1.0,
        "the publisher was never held back while the subscriber's queue was past half full"
    );
    let drops = counter(
        &b,
        "meshmq_messages_dropped_total",
        &[("reason", "queue_full")],
    )
    .await
        - drops_before;
    assert!(
        drops >= 18.0,
        "40 = 2 in flight + 20 queued + 18 dropped: {drops} counted"
    );

    let mut got = Vec::new();
    for _ in 0..22 {
        let p = sub.recv_publish().await;
        sub.ack(&p).await;
        got.push(
            String::from_utf8_lossy(&p.payload)
                .parse::<u32>()
                .expect("number"),
        );
    }
    let want: Vec<u32> = [0, 1].into_iter().chain(20..40).collect();
    assert_eq!(
        got, want,
        "the 2 in flight, then the newest 20 (drop_oldest)"
    );

    // Caught up: the publisher's next message goes straight through.
    publisher
        .publish("bp/t", "marker", QoS::AtLeastOnce, false)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"marker");
}
