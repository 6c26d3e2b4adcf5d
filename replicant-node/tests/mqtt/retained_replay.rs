//! Retained replay of a subscription that matches thousands of retained messages (issue 12,
//! part 8): paced by the subscriber's flow control, it delivers every one exactly once
//! through a small in-flight window and a short queue, keeps the connection (and everyone
//! else's) served while it runs, and stops on UNSUBSCRIBE or restarts on a new SUBSCRIBE.
//! Single node only (not in `mqtt_rr`): loading thousands of retained messages through a
//! 3-core cluster would only make the suite slower, and pacing is per connection.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{
    self, Packet, Properties, PubResp, Publish, QoS, Subscribe, SubscriptionOptions, Unsubscribe,
};

use crate::common::raw::{RawClient, publish_packet, sub_opts};
use crate::common::{self, QUIET, TestBroker, WAIT, metric_sum, metrics_text, start_broker};

/// Retained messages each test stores.
const N: usize = 5_000;
/// The subscriber's in-flight window (`mqtt.max_inflight`) and queue (`max_mqueue_len`).
const WINDOW: usize = 8;
const QUEUE: usize = 100;
/// Deadline for loading the messages and for a whole replay (a slow, shared box).
const LONG: Duration = Duration::from_secs(120);
const REPLAYS: &str = "meshmq_retained_replays";
const REPLAYS_TOTAL: &str = "meshmq_retained_replays_total";

async fn broker() -> TestBroker {
    start_broker(|c| {
        c.mqtt.max_inflight = WINDOW as u16;
        c.mqtt.max_mqueue_len = QUEUE;
    })
    .await
}

async fn metric(b: &TestBroker, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&metrics_text(b).await, name, labels).unwrap_or(0.0)
}

/// Stores `N` retained QoS 1 messages `{prefix}/{i}` with 100-byte payloads, from 10
/// clients that each pipeline their share; returns once every one is stored (a publisher's
/// last PUBACK comes after its earlier publishes were handled, table write included).
async fn load(addr: SocketAddr, prefix: &str) {
    const CLIENTS: usize = 10;
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr, V5, &common::unique("rl-load")).await;
            let mut buf = BytesMut::new();
            let mut last = 0;
            for i in (k..N).step_by(CLIENTS) {
                let mut p = publish_packet(
                    &format!("{prefix}/{i:05}"),
                    &[b'r'; 100],
                    QoS::AtLeastOnce,
                    true,
                );
                last = c.pid();
                p.packet_id = last;
                codec::encode(&Packet::Publish(p), V5, &mut buf).expect("encodes");
            }
            c.send_bytes(&buf).await;
            c.recv_where(LONG, |p| {
                matches!(p, Packet::PubAck(a) if a.packet_id == last).then_some(())
            })
            .await
            .expect("the last PUBACK of the load");
        }));
    }
    for t in tasks {
        t.await.expect("loader task");
    }
}

/// What a subscriber has seen of the replay of `prefix`.
#[derive(Default)]
struct Seen {
    topics: HashSet<String>,
    /// Retained deliveries, duplicates included.
    count: usize,
}

impl Seen {
    fn add(&mut self, p: &Publish, prefix: &str) {
        if p.retain && p.topic.starts_with(prefix) {
            self.count += 1;
            self.topics.insert(p.topic.clone());
        }
    }
}

/// Reads PUBLISHes, acking each, until `N` retained ones of `prefix` arrived (panics with
/// the count so far if the next one takes longer than `WAIT`); then proves that no more
/// come. Asserts each of the `N` topics arrived exactly once.
async fn receive_all(c: &mut RawClient, prefix: &str, seen: &mut Seen) {
    while seen.count < N {
        let p = c.try_recv_publish(WAIT).await.unwrap_or_else(|e| {
            panic!(
                "replay stalled after {} of {N} retained messages ({} distinct): {e:?}",
                seen.count,
                seen.topics.len()
            )
        });
        seen.add(&p, prefix);
        c.ack(&p).await;
    }
    c.expect_no_publish(QUIET).await;
    assert_eq!(
        (seen.count, seen.topics.len()),
        (N, N),
        "every retained message exactly once"
    );
}

/// Subscribes `c` to `#` at QoS 1 and reads the window's worth of retained messages without
/// acking them: the replay then waits for room. Returns them.
async fn subscribe_and_fill_window(c: &mut RawClient, prefix: &str) -> Vec<Publish> {
    c.subscribe("#", QoS::AtLeastOnce).await;
    let mut unacked = Vec::new();
    for _ in 0..WINDOW {
        let p = c.recv_publish().await;
        assert!(p.retain && p.topic.starts_with(prefix), "{p:?}");
        unacked.push(p);
    }
    unacked
}

#[tokio::test]
async fn a_qos1_replay_of_5000_retained_messages_reaches_a_small_window_exactly_once() {
    let b = broker().await;
    load(b.mqtt_addr(), "rp1").await;
    let mut s = RawClient::connect(b.mqtt_addr(), V5, "rp1-sub").await;
    s.subscribe("#", QoS::AtLeastOnce).await;
    receive_all(&mut s, "rp1/", &mut Seen::default()).await;
}

#[tokio::test]
async fn while_a_replay_waits_for_acks_everyone_else_is_served_promptly() {
    let b = broker().await;
    let addr = b.mqtt_addr();
    load(addr, "rp2").await;
    let mut s = RawClient::connect(addr, V5, "rp2-sub").await;
    let unacked = subscribe_and_fill_window(&mut s, "rp2/").await;
    s.expect_no_publish(QUIET).await;
    assert!(
        metric(&b, REPLAYS, &[]).await >= 1.0,
        "the replay is still in progress, waiting for acks"
    );

    // Another client's publish -> receive round trip, and the subscriber's own PINGREQ.
    let mut other = RawClient::connect(addr, V5, "rp2-other").await;
    other.subscribe("rp2-live/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(addr, V5, "rp2-pub").await;
    let round_trip = async {
        publisher
            .publish("rp2-live/t", "live", QoS::AtLeastOnce, false)
            .await;
        other.recv_publish().await
    };
    let p = tokio::time::timeout(WAIT, round_trip)
        .await
        .expect("a round trip completes while the replay is in progress");
    assert_eq!(&p.payload[..], b"live");
    tokio::time::timeout(WAIT, s.ping())
        .await
        .expect("the replaying connection answers PINGREQ");

    // Then the subscriber acks: the rest of the replay follows, none lost.
    let mut seen = Seen::default();
    for p in &unacked {
        seen.add(p, "rp2/");
        s.ack(p).await;
    }
    receive_all(&mut s, "rp2/", &mut seen).await;
}

#[tokio::test]
async fn a_qos0_replay_delivers_everything_and_lets_the_subscribers_packets_through() {
    let b = broker().await;
    load(b.mqtt_addr(), "rp3").await;
    let mut s = RawClient::connect(b.mqtt_addr(), V5, "rp3-sub").await;
    // SUBSCRIBE and PINGREQ in one write: the broker reads both before it sends anything.
    let mut buf = BytesMut::new();
    let subscribe = Subscribe {
        packet_id: s.pid(),
        filters: vec![("#".to_owned(), sub_opts(QoS::AtMostOnce))],
        properties: Properties::default(),
    };
    codec::encode(&Packet::Subscribe(subscribe), V5, &mut buf).expect("encodes");
    codec::encode(&Packet::PingReq, V5, &mut buf).expect("encodes");
    s.send_bytes(&buf).await;
    let mut seen = Seen::default();
    let mut before_pong = None;
    while seen.count < N {
        match s.recv_timeout(WAIT).await {
            Ok(Packet::Publish(p)) => {
                assert_eq!(p.qos, QoS::AtMostOnce);
                seen.add(&p, "rp3/");
            }
            Ok(Packet::PingResp) => before_pong = Some(seen.count),
            Ok(Packet::SubAck(_)) => {}
            other => panic!("after {} retained messages: {other:?}", seen.count),
        }
    }
    if before_pong.is_none() {
        s.recv_where(WAIT, |p| matches!(p, Packet::PingResp).then_some(()))
            .await
            .expect("PINGRESP");
    }
    s.expect_no_publish(QUIET).await;
    assert_eq!((seen.count, seen.topics.len()), (N, N));
    let before_pong = before_pong.unwrap_or(N);
    assert!(
        before_pong < N,
        "PINGRESP came after {before_pong} of {N} retained messages: the replay held it up"
    );
}

#[tokio::test]
async fn unsubscribe_stops_a_replay_and_a_new_subscribe_restarts_it_or_not() {
    let b = broker().await;
    let addr = b.mqtt_addr();
    load(addr, "rp4").await;
    let unsubscribed = metric(&b, REPLAYS_TOTAL, &[("outcome", "unsubscribed")]).await;
    let replaced = metric(&b, REPLAYS_TOTAL, &[("outcome", "replaced")]).await;

    // UNSUBSCRIBE mid-replay: once the window is acked, nothing more comes.
    let mut s = RawClient::connect(addr, V5, "rp4-unsub").await;
    let unacked = subscribe_and_fill_window(&mut s, "rp4/").await;
    s.unsubscribe("#").await;
    for p in &unacked {
        s.ack(p).await;
    }
    s.expect_no_publish(QUIET).await;
    assert_eq!(
        metric(&b, REPLAYS_TOTAL, &[("outcome", "unsubscribed")]).await - unsubscribed,
        1.0
    );
    let unsubscribed = unsubscribed + 1.0;

    // UNSUBSCRIBE then SUBSCRIBE with Retain Handling 2 (in one write, so the broker handles
    // both before its next replay step): the old replay does not come back with it.
    let mut s = RawClient::connect(addr, V5, "rp4-rh2").await;
    let unacked = subscribe_and_fill_window(&mut s, "rp4/").await;
    let mut buf = BytesMut::new();
    let unsubscribe = Unsubscribe {
        packet_id: s.pid(),
        filters: vec!["#".to_owned()],
        properties: Properties::default(),
    };
    let rh2 = SubscriptionOptions {
        retain_handling: 2,
        ..sub_opts(QoS::AtLeastOnce)
    };
    let subscribe = Subscribe {
        packet_id: s.pid(),
        filters: vec![("#".to_owned(), rh2)],
        properties: Properties::default(),
    };
    codec::encode(&Packet::Unsubscribe(unsubscribe), V5, &mut buf).expect("encodes");
    codec::encode(&Packet::Subscribe(subscribe), V5, &mut buf).expect("encodes");
    s.send_bytes(&buf).await;
    for p in &unacked {
        s.ack(p).await;
    }
    s.recv_where(WAIT, |p| matches!(p, Packet::SubAck(_)).then_some(()))
        .await
        .expect("SUBACK");
    s.expect_no_publish(QUIET).await;

    // A new SUBSCRIBE of the filter (Retain Handling 0) mid-replay: the replay starts over,
    // once: exactly N retained messages after its SUBACK, not what was left of the first
    // replay on top.
    let mut s = RawClient::connect(addr, V5, "rp4-resub").await;
    let unacked = subscribe_and_fill_window(&mut s, "rp4/").await;
    let ack = s
        .subscribe_opts("#", sub_opts(QoS::AtLeastOnce), Properties::default())
        .await;
    assert!(!ack.reasons[0].is_error(), "{ack:?}");
    for p in &unacked {
        s.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
    }
    receive_all(&mut s, "rp4/", &mut Seen::default()).await;
    assert_eq!(
        metric(&b, REPLAYS_TOTAL, &[("outcome", "replaced")]).await - replaced,
        1.0
    );
    assert_eq!(
        metric(&b, REPLAYS_TOTAL, &[("outcome", "unsubscribed")]).await - unsubscribed,
        1.0,
        "the UNSUBSCRIBE + SUBSCRIBE (Retain Handling 2) pair ended its replay"
    );
}
