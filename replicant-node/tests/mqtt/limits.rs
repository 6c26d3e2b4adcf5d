//! Limits in bytes as well as counts (docs/configuration.md, "Sizing"): one bound per
//! session over everything it queues (`mqtt.max_mqueue_len`, `mqtt.max_mqueue_bytes`), the
//! node's byte budget (`mqtt.max_node_mqueue_bytes`), the write budget of a client that does
//! not read (`mqtt.max_write_buffer_bytes`), inbound topic aliases in bytes, subscriptions
//! per session and the retained store in messages and bytes (0x97 Quota exceeded). Every
//! drop and refusal is counted. Single node: the counters and the budget are one node's.

use std::time::Duration;

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode};

use crate::common::raw::{RawClient, connect_packet, publish_packet, sub_opts};
use crate::common::{QUIET, TestBroker, WAIT, metric_sum, metrics_text, start_broker, unique};

const DROPPED: &str = "meshmq_messages_dropped_total";
const QUOTA: &str = "meshmq_quota_exceeded_total";

async fn counter(b: &TestBroker, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sum(&metrics_text(b).await, name, labels).unwrap_or(0.0)
}

fn resume(v: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect_packet(v, id);
    c.clean_start = false;
    if v.is_v5() {
        c.properties.session_expiry_interval = Some(300);
    }
    c
}

/// A payload of `len` bytes that starts with `tag` (padded with dots).
fn padded(tag: &str, len: usize) -> String {
    format!("{tag:.<len$}")
}

/// Every PUBLISH that arrives until none has for [`QUIET`] (the first within [`WAIT`]),
/// acknowledged, as (payload tag before the padding, DUP).
async fn drain(c: &mut RawClient) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    let mut wait = WAIT;
    while let Ok(p) = c.try_recv_publish(wait).await {
        c.ack(&p).await;
        let text = String::from_utf8_lossy(&p.payload).into_owned();
        got.push((text.trim_end_matches('.').to_owned(), p.dup));
        wait = QUIET;
    }
    got
}

fn tags(got: &[(String, bool)]) -> Vec<&str> {
    got.iter().map(|(t, _)| t.as_str()).collect()
}

/// `mqtt.max_mqueue_len` is ONE bound for everything a session queues. A QoS 1 subscriber
/// whose Receive Maximum is 1 has one message in flight, unacknowledged, and 9 more waiting
/// behind its window; it goes offline and 10 more arrive; it comes back with a window of
/// 32. It gets the one in flight and the newest 5, not 5 from behind the old window plus 5
/// from offline (before, the queue behind the window and the mailbox each held
/// `max_mqueue_len`: 11 came back).
#[tokio::test]
async fn one_bound_per_session_covers_the_queue_behind_the_window_and_offline() {
    let b = start_broker(|c| c.mqtt.max_mqueue_len = 5).await;
    let before = counter(&b, DROPPED, &[("reason", "queue_full")]).await;
    let id = unique("bound-sub");
    let mut first = resume(V5, &id);
    first.properties.receive_maximum = Some(1);
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), first).await;
    sub.subscribe("bound/t", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("bound-pub")).await;
    for i in 0..10 {
        let payload = format!("a{i}");
        publisher
            .publish("bound/t", &payload, QoS::AtLeastOnce, false)
            .await;
    }
    let first = sub.recv_publish().await;
    assert_eq!(&first.payload[..], b"a0", "in flight, never acknowledged");
    sub.disconnect(ReasonCode::Success).await;
    for i in 0..10 {
        let payload = format!("b{i}");
        publisher
            .publish("bound/t", &payload, QoS::AtLeastOnce, false)
            .await;
    }

    let (mut sub, ack) = RawClient::connect_with(b.mqtt_addr(), resume(V5, &id)).await;
    assert!(ack.session_present);
    let got = drain(&mut sub).await;
    assert_eq!(
        tags(&got),
        ["a0", "b5", "b6", "b7", "b8", "b9"],
        "the one in flight (re-sent), then the newest 5 (drop_oldest)"
    );
    assert!(got[0].1, "re-sent with DUP");
    let drops = counter(&b, DROPPED, &[("reason", "queue_full")]).await - before;
    assert!(drops >= 14.0, "19 queued, 5 kept: {drops} counted");
}

/// `mqtt.max_mqueue_bytes`: an offline session of 1 000 messages but 10 KiB keeps the newest
/// 9 messages of 1 029 bytes (topic + payload), not all 20; the node's budget holds exactly
/// those bytes.
#[tokio::test]
async fn max_mqueue_bytes_bounds_an_offline_queue_in_bytes() {
    let b = start_broker(|c| c.mqtt.max_mqueue_bytes = 10 * 1024).await;
    let before = counter(&b, DROPPED, &[("reason", "queue_full")]).await;
    let id = unique("bytes-sub");
    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, &id)).await;
    sub.subscribe("lim/b", QoS::AtLeastOnce).await;
    sub.disconnect(ReasonCode::Success).await;
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("bytes-pub")).await;
    for i in 0..20 {
        let payload = padded(&format!("m{i}"), 1024);
        publisher
            .publish("lim/b", &payload, QoS::AtLeastOnce, false)
            .await;
    }
    let node = &b.nodes()[0];
    assert!(
        crate::common::wait_until(WAIT, || node.queued_bytes() == 9 * 1029).await,
        "9 × 1 029 bytes held, not {}",
        node.queued_bytes()
    );

    let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, &id)).await;
    let got = drain(&mut sub).await;
    let want: Vec<String> = (11..20).map(|i| format!("m{i}")).collect();
    assert_eq!(tags(&got), want, "the newest 9 (drop_oldest)");
    let drops = counter(&b, DROPPED, &[("reason", "queue_full")]).await - before;
    assert!(drops >= 11.0, "11 dropped: {drops} counted");
}

/// `mqtt.max_node_mqueue_bytes`: two offline sessions share the node's 8 KiB; of 10 messages
/// of 1 029 bytes to both (20 deliveries), 7 fit in all and the other 13 are dropped as
/// `node_queue_full` (before: all 20 were queued).
#[tokio::test]
async fn max_node_mqueue_bytes_bounds_every_session_together() {
    let b = start_broker(|c| {
        c.mqtt.max_mqueue_bytes = 8 * 1024;
        c.mqtt.max_node_mqueue_bytes = 8 * 1024;
    })
    .await;
    let before = counter(&b, DROPPED, &[("reason", "node_queue_full")]).await;
    let ids = [unique("node-a"), unique("node-b")];
    for id in &ids {
        let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, id)).await;
        sub.subscribe("lim/n", QoS::AtLeastOnce).await;
        sub.disconnect(ReasonCode::Success).await;
    }
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("node-pub")).await;
    for i in 0..10 {
        let payload = padded(&format!("m{i}"), 1024);
        publisher
            .publish("lim/n", &payload, QoS::AtLeastOnce, false)
            .await;
    }
    assert!(b.nodes()[0].queued_bytes() <= 8 * 1024);
    let drops = counter(&b, DROPPED, &[("reason", "node_queue_full")]).await - before;
    assert_eq!(drops, 13.0);
    let mut total = 0;
    for id in &ids {
        let (mut sub, _) = RawClient::connect_with(b.mqtt_addr(), resume(V5, id)).await;
        total += drain(&mut sub).await.len();
    }
    assert_eq!(total, 7, "7 × 1 029 bytes fit in 8 KiB");
}

/// `mqtt.max_write_buffer_bytes`: a QoS 0 subscriber that never reads (small receive
/// buffer) costs the broker its 64 KiB write budget, not 16 MiB of queued messages. The
/// publisher is paced so that the subscriber's connection keeps up until the sockets'
/// buffers are full and its write blocks; from then on what finds the budget full is
/// dropped as `slow_consumer` (before, all of it was queued, bounded only by
/// `max_mqueue_len`).
#[tokio::test]
async fn qos0_to_a_client_that_never_reads_is_dropped_past_its_write_budget() {
    let b = start_broker(|c| {
        c.mqtt.max_write_buffer_bytes = 64 * 1024;
        c.mqtt.max_mqueue_len = 100_000;
        c.mqtt.max_mqueue_bytes = 1 << 30;
    })
    .await;
    let before = counter(&b, DROPPED, &[("reason", "slow_consumer")]).await;
    let mut sub = RawClient::open_with_rcvbuf(b.mqtt_addr(), 4096).await;
    sub.version = V5;
    sub.send(&Packet::Connect(Box::new(connect_packet(
        V5,
        &unique("slow-sub"),
    ))))
    .await;
    assert!(matches!(sub.recv().await, Ok(Packet::ConnAck(a)) if a.code == ReasonCode::Success));
    sub.subscribe("slow/t", QoS::AtMostOnce).await;

    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("slow-pub")).await;
    let payload = padded("x", 8 * 1024);
    for i in 0..2_000 {
        publisher
            .send(&Packet::Publish(publish_packet(
                "slow/t",
                payload.as_bytes(),
                QoS::AtMostOnce,
                false,
            )))
            .await;
        if i % 4 == 3 {
            // Pacing: the subscriber's connection takes each few before the next.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Handled in order: once this is acknowledged, every message above was routed.
    publisher
        .publish("slow/other", "marker", QoS::AtLeastOnce, false)
        .await;

    let held = b.nodes()[0].queued_bytes();
    assert!(
        held > 0,
        "the write to the client that does not read is still blocked"
    );
    // The write in progress and the QoS 0 waiting are each at most the budget and one message.
    assert!(
        held <= 2 * (64 + 9) * 1024,
        "{held} bytes held for the slow client"
    );
    let drops = counter(&b, DROPPED, &[("reason", "slow_consumer")]).await - before;
    // The kernel's socket buffers take some (the broker's send buffer grows to a few MiB on
    // loopback); far from all of the 16 MiB.
    assert!(drops >= 1_000.0, "only {drops} dropped as slow_consumer");
    drop(sub);
}

/// `mqtt.max_subscriptions` (3): a filter new to the session past it is refused in the
/// SUBACK, 0x97 in 5.0 and 0x80 in 3.1.1, and counted; a filter the session has, or repeats
/// in the same SUBSCRIBE, is a re-subscription and always granted; unsubscribing makes room.
/// (Before, every filter was granted.)
#[tokio::test]
async fn max_subscriptions_refuses_new_filters_with_0x97_and_counts_them() {
    let b = start_broker(|c| c.mqtt.max_subscriptions = 3).await;
    let before = counter(&b, QUOTA, &[("quota", "subscriptions")]).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("subq")).await;
    let q1 = sub_opts(QoS::AtLeastOnce);
    let ack = c
        .subscribe_many(&[("q/1", q1), ("q/2", q1)], Properties::default())
        .await;
    assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1; 2]);
    let ack = c
        .subscribe_many(
            &[("q/1", q1), ("q/3", q1), ("q/3", q1), ("q/4", q1)],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS1,
            ReasonCode::QuotaExceeded
        ]
    );
    let mut publisher = RawClient::connect(b.mqtt_addr(), V5, &unique("subq-pub")).await;
    publisher
        .publish("q/4", "no", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("q/3", "yes", QoS::AtLeastOnce, false)
        .await;
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"yes", "q/4 was not subscribed");
    c.ack(&p).await;
    c.unsubscribe("q/1").await;
    c.subscribe("q/4", QoS::AtLeastOnce).await;

    let mut v3 = RawClient::connect(b.mqtt_addr(), V311, &unique("subq-v3")).await;
    let ack = v3
        .subscribe_many(
            &[("v/1", q1), ("v/2", q1), ("v/3", q1), ("v/4", q1)],
            Properties::default(),
        )
        .await;
    assert!(ack.reasons[..3].iter().all(|r| !r.is_error()), "{ack:?}");
    assert!(ack.reasons[3].is_error(), "3.1.1 failure (0x80): {ack:?}");
    let refused = counter(&b, QUOTA, &[("quota", "subscriptions")]).await - before;
    assert_eq!(refused, 2.0);
}

/// `mqtt.max_topic_alias_bytes` (64): a client whose new alias would make its aliases'
/// topics pass 64 bytes is disconnected with 0x97 Quota exceeded and counted (before, the
/// broker stored up to 65 535 topics of up to 64 KiB each per connection).
#[tokio::test]
async fn topic_aliases_past_their_byte_quota_disconnect_with_0x97() {
    let b = start_broker(|c| c.mqtt.max_topic_alias_bytes = 64).await;
    let before = counter(&b, QUOTA, &[("quota", "topic_alias_bytes")]).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("alias-q")).await;
    let aliased = |topic: &str, alias: u16| {
        let mut p = publish_packet(topic, b"x", QoS::AtLeastOnce, false);
        p.properties.topic_alias = Some(alias);
        p
    };
    let first = "alias/".to_owned() + &"a".repeat(34); // 40 bytes
    assert_eq!(
        c.publish_full(aliased(&first, 1)).await,
        ReasonCode::Success
    );
    assert_eq!(
        c.publish_full(aliased(&first, 1)).await,
        ReasonCode::Success,
        "the same alias again: no more bytes"
    );
    let second = "alias/".to_owned() + &"b".repeat(24); // 30 bytes: 70 in all
    let mut p = aliased(&second, 2);
    p.packet_id = c.pid();
    c.send(&Packet::Publish(p)).await;
    assert_eq!(
        c.expect_closed_with(&[ReasonCode::QuotaExceeded]).await,
        Some(ReasonCode::QuotaExceeded)
    );
    let counted = counter(&b, QUOTA, &[("quota", "topic_alias_bytes")]).await - before;
    assert_eq!(counted, 1.0);
}

/// `mqtt.max_retained_messages` (2): a 5.0 QoS 1 retained PUBLISH on a third topic gets
/// PUBACK 0x97 and is neither stored nor delivered; replacing a stored topic's message and
/// deleting one still work (a full store can be updated and emptied); a QoS 0 or 3.1.1
/// publisher, which cannot be told, has its message delivered to current subscribers but
/// not stored. Every refusal is counted.
#[tokio::test]
async fn retained_messages_past_their_count_quota_are_refused_with_0x97() {
    let b = start_broker(|c| c.mqtt.max_retained_messages = 2).await;
    let before = counter(&b, QUOTA, &[("quota", "retained_messages")]).await;
    let mut live = RawClient::connect(b.mqtt_addr(), V5, &unique("rq-live")).await;
    live.subscribe("rq/#", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(b.mqtt_addr(), V5, &unique("rq-pub")).await;
    let q1 = QoS::AtLeastOnce;
    assert_eq!(
        p.publish("rq/1", "one", q1, true).await,
        ReasonCode::Success
    );
    assert_eq!(
        p.publish("rq/2", "two", q1, true).await,
        ReasonCode::Success
    );
    assert_eq!(
        p.publish("rq/3", "three", q1, true).await,
        ReasonCode::QuotaExceeded
    );
    assert_eq!(
        p.publish("rq/1", "uno", q1, true).await,
        ReasonCode::Success,
        "a replacement no larger always fits"
    );
    assert_eq!(p.publish("rq/2", "", q1, true).await, ReasonCode::Success);
    assert_eq!(
        p.publish("rq/3", "three", q1, true).await,
        ReasonCode::Success
    );
    // Full again: QoS 0 and 3.1.1 are delivered, not stored.
    p.publish("rq/4", "four", QoS::AtMostOnce, true).await;
    let mut v3 = RawClient::connect(b.mqtt_addr(), V311, &unique("rq-v3")).await;
    assert_eq!(
        v3.publish("rq/5", "five", q1, true).await,
        ReasonCode::Success
    );
    p.publish("rq/marker", "", q1, false).await;
    let got = drain(&mut live).await;
    assert_eq!(
        tags(&got),
        ["one", "two", "uno", "", "three", "four", "five", ""],
        "rq/3 refused with 0x97 was not delivered"
    );

    let mut late = RawClient::connect(b.mqtt_addr(), V5, &unique("rq-late")).await;
    late.subscribe("rq/#", QoS::AtLeastOnce).await;
    let mut stored = tags(&drain(&mut late).await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    stored.sort();
    assert_eq!(stored, ["three", "uno"]);
    let refused = counter(&b, QUOTA, &[("quota", "retained_messages")]).await - before;
    assert_eq!(refused, 3.0, "rq/3 once, rq/4 and rq/5");
}

/// `mqtt.max_retained_bytes` (100, counting topic and payload): a message that would pass
/// it is refused with 0x97, a smaller replacement always fits and frees room, a larger one
/// needs the difference. (Before, the store took everything.)
#[tokio::test]
async fn retained_messages_past_their_byte_quota_are_refused_with_0x97() {
    let b = start_broker(|c| c.mqtt.max_retained_bytes = 100).await;
    let before = counter(&b, QUOTA, &[("quota", "retained_bytes")]).await;
    let mut p = RawClient::connect(b.mqtt_addr(), V5, &unique("rb-pub")).await;
    let q1 = QoS::AtLeastOnce;
    let pub_sized = |tag: &str, len: usize| padded(tag, len);
    assert_eq!(
        p.publish("rb/a", &pub_sized("a1", 50), q1, true).await,
        ReasonCode::Success,
        "54 bytes"
    );
    assert_eq!(
        p.publish("rb/b", &pub_sized("b1", 50), q1, true).await,
        ReasonCode::QuotaExceeded,
        "108 bytes"
    );
    assert_eq!(
        p.publish("rb/a", &pub_sized("a2", 20), q1, true).await,
        ReasonCode::Success,
        "smaller: 24 bytes"
    );
    assert_eq!(
        p.publish("rb/b", &pub_sized("b2", 50), q1, true).await,
        ReasonCode::Success,
        "78 bytes"
    );
    assert_eq!(
        p.publish("rb/a", &pub_sized("a3", 60), q1, true).await,
        ReasonCode::QuotaExceeded,
        "118 bytes"
    );
    assert_eq!(
        b.nodes()[0].core().read(|t| t.retained_bytes()),
        78,
        "what the tables count"
    );
    let mut late = RawClient::connect(b.mqtt_addr(), V5, &unique("rb-late")).await;
    late.subscribe("rb/#", QoS::AtLeastOnce).await;
    let mut stored = tags(&drain(&mut late).await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    stored.sort();
    assert_eq!(stored, ["a2", "b2"]);
    let refused = counter(&b, QUOTA, &[("quota", "retained_bytes")]).await - before;
    assert_eq!(refused, 2.0);
}
