//! Slow subscribers: publishers are pushed back (their sockets not read for a while) when a
//! subscriber's queue passes its high-water mark, instead of queueing deeply and dropping
//! (docs/architecture.md, "Back-pressure"). A QoS 1 subscriber that acks slower than its
//! publisher publishes holds the publisher back, and its bounded queue keeps the newest
//! messages; a shared group passes over a backed-up member. Single node only (not in
//! `mqtt_rr`): the member choice sees the queues of its own node's members.

use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::QoS;
use meshmq_shared::config::SharedStrategy;

use crate::common::raw::RawClient;
use crate::common::{QUIET, TestBroker, WAIT, metric_sum, metrics_text, start_broker};
use crate::shared_subs::{FILTER, assert_each_once, publish_n};

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

/// Shared groups: round robin passes over a member whose queue is past its
/// high-water mark while another member has room, instead of filling that queue until it
/// drops (and holding the publisher back on its account).
#[tokio::test]
async fn round_robin_passes_over_a_member_whose_queue_is_backed_up() {
    let b = start_broker(|c| {
        c.mqtt.shared_subscription_strategy = SharedStrategy::RoundRobin;
        c.mqtt.max_inflight = 2;
        c.mqtt.max_mqueue_len = 10;
    })
    .await;
    let mut stuck = RawClient::connect(b.mqtt_addr(), V5, "stuck-member").await;
    stuck.subscribe(FILTER, QoS::AtLeastOnce).await;
    let mut fast = RawClient::connect(b.mqtt_addr(), V5, "fast-member").await;
    fast.subscribe(FILTER, QoS::AtLeastOnce).await;
    // The fast member acks everything as it comes; the stuck one reads nothing for now.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let fast_task = tokio::spawn(async move {
        while let Ok(p) = fast.try_recv_publish(WAIT).await {
            fast.ack(&p).await;
            if tx
                .send(String::from_utf8_lossy(&p.payload).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, "bp-rr-pub").await;
    publish_n(&mut publisher, "m", 60).await;

    let mut got = vec![Vec::new(), Vec::new()];
    let deadline = Instant::now() + WAIT;
    while got[0].len() + got[1].len() < 60 {
        assert!(Instant::now() < deadline, "only {got:?} of 60 arrived");
        while let Ok(p) = rx.try_recv() {
            got[1].push(p);
        }
        if let Ok(p) = stuck.try_recv_publish(Duration::from_millis(20)).await {
            stuck.ack(&p).await;
            got[0].push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    fast_task.abort();
    assert_each_once(&got, "m", 60);
    assert!(
        got[0].len() < 30,
        "the backed-up member still got every other message: {got:?}"
    );
    stuck.expect_no_publish(QUIET).await;
}
