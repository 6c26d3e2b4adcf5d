//! Socket-free tests of the session state machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshmq_shared::codec::{
    Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, ReasonCode,
};
use meshmq_shared::config::MqttConfig;

use super::*;
use crate::message::Delivery;

fn conn(version: ProtocolVersion, receive_maximum: u16) -> ConnParams {
    ConnParams {
        version,
        receive_maximum,
        max_packet_size: u32::MAX,
        topic_alias_maximum: 0,
    }
}

fn session(receive_maximum: u16) -> Session {
    let limits = Limits::from_config(&MqttConfig {
        await_rel_timeout: 10,
        ..MqttConfig::default()
    });
    Session::new(
        Arc::from("c"),
        limits,
        conn(ProtocolVersion::V5, receive_maximum),
    )
}

fn delivery(now: Instant, topic: &str, qos: QoS) -> Delivery {
    Delivery::for_test(now, topic, Bytes::from_static(b"x"), qos)
}

fn publishes(out: &[Outgoing]) -> Vec<(u16, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Outgoing::Publish { variant, .. } => Some((variant.packet_id, variant.dup)),
            Outgoing::Packet(_) => None,
        })
        .collect()
}

#[test]
fn v5_4_9_receive_maximum_limits_the_window_and_acks_reopen_it() {
    let now = Instant::now();
    let mut s = session(2);
    let mut out = Vec::new();
    for _ in 0..5 {
        s.deliver(now, delivery(now, "t", QoS::AtLeastOnce), &mut out);
    }
    assert_eq!(publishes(&out), vec![(1, false), (2, false)]);
    assert_eq!(s.pending_len(), 3);
    out.clear();
    s.on_puback(now, 1, &mut out);
    assert_eq!(publishes(&out), vec![(3, false)]);
}

#[test]
fn v5_4_9_resent_inflight_waits_for_a_smaller_receive_maximum() {
    let now = Instant::now();
    let mut s = session(20);
    let mut out = Vec::new();
    for _ in 0..20 {
        s.deliver(now, delivery(now, "t", QoS::AtLeastOnce), &mut out);
    }
    assert_eq!(publishes(&out).len(), 20, "all 20 in flight, none acked");
    out.clear();
    // The client comes back with Receive Maximum 5: only the 5 oldest are re-sent.
    s.attach(now, conn(ProtocolVersion::V5, 5), &mut out);
    let dup = |ids: std::ops::RangeInclusive<u16>| ids.map(|i| (i, true)).collect::<Vec<_>>();
    assert_eq!(publishes(&out), dup(1..=5));
    assert_eq!(s.inflight_len(), 20, "the rest keep their packet ids");
    out.clear();
    // A new message must not overtake them.
    s.deliver(now, delivery(now, "new", QoS::AtLeastOnce), &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(s.pending_len(), 1);
    // Each ack opens one slot: the next waiting one, in order, DUP=1, same id.
    s.on_puback(now, 1, &mut out);
    assert_eq!(publishes(&out), dup(6..=6));
    out.clear();
    // An ack for a waiting one (the client had it from the old connection) frees no slot
    // on this connection: nothing more is sent, and it is not re-sent later.
    s.on_puback(now, 20, &mut out);
    assert!(out.is_empty(), "{out:?}");
    for id in 2..=14 {
        s.on_puback(now, id, &mut out);
    }
    assert_eq!(publishes(&out), dup(7..=19));
    out.clear();
    // Nothing waits any more: the queued new message goes under a fresh id.
    s.on_puback(now, 15, &mut out);
    assert_eq!(publishes(&out), vec![(21, false)]);
    assert_eq!((s.inflight_len(), s.pending_len()), (5, 0));
}

#[test]
fn v5_4_9_a_pubrel_to_resend_takes_a_slot_of_the_window() {
    let now = Instant::now();
    let mut s = session(10);
    let mut out = Vec::new();
    for _ in 0..3 {
        s.deliver(now, delivery(now, "t", QoS::ExactlyOnce), &mut out);
    }
    s.on_pubrec(now, &PubResp::new(1), &mut out);
    out.clear();
    s.attach(now, conn(ProtocolVersion::V5, 1), &mut out);
    assert!(
        matches!(&out[..], [Outgoing::Packet(Packet::PubRel(r))] if r.packet_id == 1),
        "only the PUBREL fits a window of 1: {out:?}"
    );
    out.clear();
    s.on_pubcomp(now, 1, &mut out);
    assert_eq!(publishes(&out), vec![(2, true)]);
    out.clear();
    s.on_pubrec(now, &PubResp::new(2), &mut out);
    assert!(
        publishes(&out).is_empty(),
        "message 2 still holds the slot until PUBCOMP"
    );
    out.clear();
    s.on_pubcomp(now, 2, &mut out);
    assert_eq!(publishes(&out), vec![(3, true)]);
}

#[test]
fn v5_4_4_redelivery_on_attach_only_with_dup() {
    let now = Instant::now();
    let mut s = session(10);
    let mut out = Vec::new();
    s.deliver(now, delivery(now, "t", QoS::AtLeastOnce), &mut out);
    s.deliver(now, delivery(now, "t", QoS::ExactlyOnce), &mut out);
    out.clear();
    s.on_pubrec(now, &PubResp::new(2), &mut out);
    out.clear();
    s.attach(now, conn(ProtocolVersion::V5, 10), &mut out);
    assert_eq!(publishes(&out), vec![(1, true)]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Outgoing::Packet(Packet::PubRel(r)) if r.packet_id == 2))
    );
}

#[test]
fn v5_4_3_3_awaiting_rel_dedupes_and_expires() {
    let now = Instant::now();
    let mut s = session(10);
    let mut out = Vec::new();
    let p = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        packet_id: 7,
        payload: Bytes::new(),
        properties: Properties::default(),
    };
    assert!(
        s.on_publish(now, p.clone(), true, &mut out)
            .expect("ok")
            .route
            .is_some()
    );
    assert!(
        s.on_publish(now, p.clone(), true, &mut out)
            .expect("ok")
            .route
            .is_none()
    );
    let later = now + Duration::from_secs(11);
    assert!(
        s.on_publish(later, p, true, &mut out)
            .expect("ok")
            .route
            .is_some()
    );
    assert_eq!(s.take_drops().awaiting_rel_expired, 1);
}

#[test]
fn v5_3_3_4_exceeding_our_receive_maximum_is_an_error() {
    let now = Instant::now();
    let limits = Limits::from_config(&MqttConfig {
        receive_maximum: 2,
        ..MqttConfig::default()
    });
    let mut s = Session::new(Arc::from("c"), limits, conn(ProtocolVersion::V5, 10));
    let mut out = Vec::new();
    for pid in 1..=2 {
        let p = Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: "t".into(),
            packet_id: pid,
            payload: Bytes::new(),
            properties: Properties::default(),
        };
        s.on_publish(now, p, true, &mut out).expect("within limit");
    }
    let p = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "t".into(),
        packet_id: 3,
        payload: Bytes::new(),
        properties: Properties::default(),
    };
    let err = s
        .on_publish(now, p, true, &mut out)
        .expect_err("over limit");
    assert_eq!(err.reason_code(), ReasonCode::ReceiveMaximumExceeded);
}

#[test]
fn v5_3_3_2_3_4_server_topic_aliases_reuse() {
    let now = Instant::now();
    let mut s = session(10);
    let mut out = Vec::new();
    s.attach(
        now,
        ConnParams {
            topic_alias_maximum: 1,
            ..conn(ProtocolVersion::V5, 10)
        },
        &mut out,
    );
    for topic in ["a", "a", "b"] {
        s.deliver(now, delivery(now, topic, QoS::AtMostOnce), &mut out);
    }
    let aliases: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Outgoing::Publish { variant, .. } => Some((variant.topic_alias, variant.omit_topic)),
            Outgoing::Packet(_) => None,
        })
        .collect();
    assert_eq!(
        aliases,
        vec![(Some(1), false), (Some(1), true), (None, false)]
    );
}

#[test]
fn a_handed_over_session_resends_in_flight_with_the_same_ids_then_its_queue() {
    let now = Instant::now();
    let mut old = session(2);
    let mut out = Vec::new();
    old.attach(now, conn(ProtocolVersion::V5, 2), &mut out);
    for t in ["a", "b", "c", "d"] {
        old.deliver(now, delivery(now, t, QoS::AtLeastOnce), &mut out);
    }
    assert_eq!(publishes(&out), vec![(1, false), (2, false)]);
    let mut inbound = Vec::new();
    let p = Publish {
        dup: false,
        qos: QoS::ExactlyOnce,
        retain: false,
        topic: "in".into(),
        packet_id: 9,
        payload: Bytes::from_static(b"q2"),
        properties: Properties::default(),
    };
    old.on_publish(now, p, true, &mut inbound)
        .expect("accepted");
    let state = old.export();
    assert_eq!(
        old.inflight_len() + old.pending_len() + old.awaiting_rel_len(),
        0
    );
    assert_eq!(state.deliveries.len(), 4);
    assert_eq!(state.awaiting_rel, vec![9]);

    let mut new = session(10);
    new.import(now, state);
    assert_eq!(new.awaiting_rel_len(), 1);
    let mut out = Vec::new();
    new.attach(now, conn(ProtocolVersion::V5, 10), &mut out);
    // In flight again with DUP and the same ids, then the queue under fresh ids.
    assert_eq!(
        publishes(&out),
        vec![(1, true), (2, true), (3, false), (4, false)]
    );
    let topics: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Outgoing::Publish { msg, .. } => Some(msg.topic.clone()),
            Outgoing::Packet(_) => None,
        })
        .collect();
    assert_eq!(topics, ["a", "b", "c", "d"]);
}

#[test]
fn window_room_is_the_free_window_while_nothing_is_pending() {
    let now = Instant::now();
    let mut s = session(3);
    let mut out = Vec::new();
    assert_eq!(s.window_room(), 3);
    s.deliver(now, delivery(now, "t", QoS::AtLeastOnce), &mut out);
    s.deliver(now, delivery(now, "t", QoS::AtMostOnce), &mut out);
    assert_eq!(s.window_room(), 2, "QoS 0 takes no slot");
    for _ in 0..3 {
        s.deliver(now, delivery(now, "t", QoS::AtLeastOnce), &mut out);
    }
    assert_eq!((s.inflight_len(), s.pending_len()), (3, 1));
    assert_eq!(s.window_room(), 0);
    out.clear();
    s.on_puback(now, 1, &mut out);
    assert_eq!(
        (s.pending_len(), s.window_room()),
        (0, 0),
        "the freed slot went to the pending delivery"
    );
    s.on_puback(now, 2, &mut out);
    assert_eq!(s.window_room(), 1);
}
