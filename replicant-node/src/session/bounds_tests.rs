//! Socket-free tests of the session's bounds: the pending queue in messages and bytes, its
//! fitting beside the mailbox, the window room the connection takes by, and the bytes of
//! the inbound topic aliases.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use meshmq_shared::codec::{Properties, ProtocolVersion, Publish, QoS};
use meshmq_shared::config::{MqttConfig, QueueDropPolicy};

use super::*;
use crate::message::Delivery;

fn session(c: MqttConfig, receive_maximum: u16) -> Session {
    let conn = ConnParams {
        version: ProtocolVersion::V5,
        receive_maximum,
        max_packet_size: u32::MAX,
        topic_alias_maximum: 0,
    };
    Session::new(Arc::from("c"), Limits::from_config(&c), conn)
}

/// A QoS 1 delivery of `size` counted bytes whose payload starts with `n`.
fn sized(now: Instant, n: u8, size: usize) -> Delivery {
    let mut payload = vec![0; size - 1];
    payload[0] = n;
    Delivery::for_test(now, "t", Bytes::from(payload), QoS::AtLeastOnce)
}

fn pending_payloads(s: &mut Session) -> Vec<u8> {
    s.export()
        .deliveries
        .iter()
        .filter(|h| h.inflight.is_none())
        .map(|h| h.delivery.msg.payload[0])
        .collect()
}

#[test]
fn the_pending_queue_is_bounded_in_bytes_and_fitted_beside_the_mailbox() {
    let now = Instant::now();
    let c = MqttConfig {
        max_mqueue_len: 10,
        max_mqueue_bytes: 100,
        ..MqttConfig::default()
    };
    let mut s = session(c.clone(), 1);
    let mut out = Vec::new();
    s.deliver(now, sized(now, 0, 10), &mut out); // in flight
    for n in 1..=4 {
        s.deliver(now, sized(now, n, 30), &mut out);
    }
    assert_eq!(
        (s.pending_len(), s.pending_bytes()),
        (3, 90),
        "the oldest of 4 × 30 dropped"
    );
    assert_eq!(s.take_drops().queue_full, 1);
    assert_eq!(s.window_room(), 0);
    // The mailbox holds 2 deliveries of 40 bytes: the bound is for both.
    s.fit_queue(2, 40);
    assert_eq!((s.pending_len(), s.pending_bytes()), (2, 60));
    assert_eq!(s.take_drops().queue_full, 1);
    assert_eq!(
        pending_payloads(&mut s),
        vec![3, 4],
        "drop_oldest keeps the newest"
    );

    let mut newest = session(
        MqttConfig {
            mqueue_drop_policy: QueueDropPolicy::DropNewest,
            ..c
        },
        1,
    );
    newest.deliver(now, sized(now, 0, 10), &mut out);
    for n in 1..=3 {
        newest.deliver(now, sized(now, n, 30), &mut out);
    }
    newest.fit_queue(9, 0);
    assert_eq!(
        pending_payloads(&mut newest),
        vec![1],
        "drop_newest keeps the oldest"
    );
}

#[test]
fn the_window_room_is_what_the_connection_may_take() {
    let now = Instant::now();
    let mut s = session(MqttConfig::default(), 3);
    assert_eq!(s.window_room(), 3);
    let mut out = Vec::new();
    s.deliver(now, sized(now, 1, 2), &mut out);
    assert_eq!(s.window_room(), 2);
    for n in 2..=4 {
        s.deliver(now, sized(now, n, 2), &mut out);
    }
    assert_eq!(s.pending_len(), 1);
    assert_eq!(s.window_room(), 0, "the pending queue goes first");
}

fn aliased(topic: &str, alias: u16) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: topic.into(),
        packet_id: 0,
        payload: Bytes::new(),
        properties: Properties {
            topic_alias: Some(alias),
            ..Properties::default()
        },
    }
}

#[test]
fn topic_aliases_past_their_byte_quota_close_with_0x97() {
    let c = MqttConfig {
        max_topic_alias_bytes: 10,
        ..MqttConfig::default()
    };
    let mut s = session(c, 10);
    s.resolve_alias(&mut aliased("aaaa", 1)).expect("4 bytes");
    s.resolve_alias(&mut aliased("bbbbbb", 2))
        .expect("10 bytes");
    let err = s.resolve_alias(&mut aliased("c", 3)).expect_err("11 bytes");
    assert_eq!(err, SessionError::TopicAliasQuotaExceeded);
    assert_eq!(err.reason_code(), ReasonCode::QuotaExceeded);
    // Re-pointing an alias counts the difference only.
    s.resolve_alias(&mut aliased("bbb", 2)).expect("7 bytes");
    s.resolve_alias(&mut aliased("ccc", 3)).expect("10 bytes");
    // A new connection starts with no aliases.
    let mut out = Vec::new();
    s.attach(Instant::now(), s.conn.clone(), &mut out);
    s.resolve_alias(&mut aliased("dddddddddd", 1))
        .expect("10 bytes again");
}
