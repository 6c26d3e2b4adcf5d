//! Session hand-over between replicants (docs/architecture.md, invariant 3): a client that
//! reconnects through another replicant finds there what its session held on the old one —
//! in-flight QoS 1 deliveries (re-sent with DUP=1 and the same packet ids), queued messages,
//! QoS 2 flows half done — and what reaches the old node during the move is forwarded. Raw
//! MQTT bytes, so packet ids and flags are exact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meshmq_shared::codec::{Packet, ProtocolVersion, PubResp, QoS, ReasonCode};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{QUIET, unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

fn persistent(version: ProtocolVersion, id: &str) -> meshmq_shared::codec::Connect {
    let mut c = connect_packet(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(3600);
    }
    c
}

fn seq_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("payload is a sequence number: {payload:?}"))
}

/// 1 000 QoS 1 messages in flight (unacknowledged) on r1, 300 more queued behind them, and
/// a publisher on r3 that keeps going while the client moves to r2: every message arrives,
/// the in-flight ones first again with DUP=1 and their packet ids, and none of the ones
/// published before the move arrives twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_moves_1000_in_flight_qos1_messages_and_the_queue() {
    const INFLIGHT: u32 = 1_000;
    const QUEUED: u32 = 300;
    const DURING: u32 = 400;
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let tweak = |c: &mut meshmq_shared::config::Config| {
        c.mqtt.max_inflight = INFLIGHT as u16;
        c.mqtt.max_mqueue_len = 5_000;
    };
    let r1 = cluster.start_replicant_with("r1", tweak).await;
    let r2 = cluster.start_replicant_with("r2", tweak).await;
    let r3 = cluster.start_replicant_with("r3", tweak).await;
    let id = unique("ho");
    let filter = format!("ho/{id}/#");

    let (mut old, ack) =
        RawClient::connect_with(r1.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    assert!(!ack.session_present);
    old.subscribe(&filter, QoS::AtLeastOnce).await;

    let mut publisher =
        RawClient::connect(r3.mqtt_addr(), ProtocolVersion::V5, &unique("ho-p")).await;
    for seq in 0..INFLIGHT + QUEUED {
        let rc = publisher
            .publish(
                &format!("ho/{id}/m"),
                &seq.to_string(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
        assert_eq!(rc, ReasonCode::Success);
    }
    // The old connection reads the whole window and acknowledges nothing.
    let mut old_ids: BTreeMap<u32, u16> = BTreeMap::new();
    while old_ids.len() < INFLIGHT as usize {
        let p = old.recv_publish().await;
        assert!(!p.dup);
        old_ids.insert(seq_of(&p.payload), p.packet_id);
    }
    assert_eq!(
        old_ids.keys().copied().collect::<Vec<_>>(),
        (0..INFLIGHT).collect::<Vec<_>>(),
        "the window holds the first {INFLIGHT}, in order"
    );
    old.expect_no_publish(QUIET).await;

    // Keep publishing on r3 while the client moves.
    let topic = format!("ho/{id}/m");
    let during = tokio::spawn(async move {
        for seq in INFLIGHT + QUEUED..INFLIGHT + QUEUED + DURING {
            let rc = publisher
                .publish(&topic, &seq.to_string(), QoS::AtLeastOnce, false)
                .await;
            assert_eq!(rc, ReasonCode::Success);
        }
        publisher
    });

    let started = Instant::now();
    let (mut new, ack) =
        RawClient::connect_with(r2.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    let connack_ms = started.elapsed().as_millis();
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(ack.session_present, "the session came along");
    let seen = old.wait_closed(WAIT).await;
    assert!(
        seen.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason == ReasonCode::SessionTakenOver)
        ),
        "the old connection got DISCONNECT 0x8E: {seen:?}"
    );

    let total = INFLIGHT + QUEUED + DURING;
    let mut copies: BTreeMap<u32, u32> = BTreeMap::new();
    let mut order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (copies.len() as u32) < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived",
            copies.len()
        );
        let p = new
            .try_recv_publish(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| {
                let missing: Vec<u32> = (0..total).filter(|s| !copies.contains_key(s)).collect();
                panic!(
                    "{} of {total} arrived, then: {e:?}; missing (first 20): {:?}",
                    copies.len(),
                    &missing[..missing.len().min(20)]
                )
            });
        let seq = seq_of(&p.payload);
        if *copies.entry(seq).or_default() == 0 && seq < INFLIGHT {
            assert!(p.dup, "in-flight message {seq} is re-sent with DUP=1");
            assert_eq!(
                Some(&p.packet_id),
                old_ids.get(&seq),
                "message {seq} keeps its packet id"
            );
        }
        *copies.get_mut(&seq).expect("counted") += 1;
        order.push(seq);
        new.send(&Packet::PubAck(PubResp::new(p.packet_id))).await;
    }
    let publisher = during.await.expect("publisher task");
    // The in-flight ones come first, in their order, then the queue.
    let before: Vec<u32> = order
        .iter()
        .copied()
        .filter(|s| *s < INFLIGHT + QUEUED)
        .collect();
    let mut expected: Vec<u32> = (0..INFLIGHT + QUEUED).collect();
    expected.dedup();
    let mut first_seen = before.clone();
    let mut seen_set = std::collections::HashSet::new();
    first_seen.retain(|s| seen_set.insert(*s));
    assert_eq!(first_seen, expected, "in flight then queued, in order");
    let dup_before = copies
        .iter()
        .filter(|(s, n)| **s < INFLIGHT + QUEUED && **n > 1)
        .count();
    assert_eq!(
        dup_before, 0,
        "nothing published before the move arrives twice"
    );
    let dup_during = copies.values().filter(|n| **n > 1).count();
    println!(
        "handover: CONNACK after {connack_ms} ms; {total} messages, none lost; \
         {dup_during} published during the move arrived twice (QoS 1 allows it)"
    );
    // The old node dropped its copy once the new owner's routes were live.
    assert!(
        wait_until(WAIT, || r1.sessions() == 0).await,
        "r1 dropped its copy of the session"
    );
    drop(publisher);
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

/// `TakeoverEnd` travels on the new owner's link to the old owner, which is not ordered with
/// a third replicant's link to the old owner: a QoS 1 message that r3 routed to r1 by the old
/// routes (before r2 had one) can reach r1 after r1 heard `TakeoverEnd`. r1 still forwards
/// it to r2 (it waits for r3's ack behind it) instead of dropping it with its copy. The late
/// arrival is made certain by holding r3's link to r1 until r1 heard `TakeoverEnd`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_routed_to_the_old_owner_arriving_after_the_takeover_end_is_forwarded() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let id = unique("late");
    let topic = format!("late/{id}/m");
    let (mut old, _) =
        RawClient::connect_with(r1.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    old.subscribe(&format!("late/{id}/#"), QoS::AtLeastOnce)
        .await;
    let mut p = RawClient::connect(r3.mqtt_addr(), ProtocolVersion::V5, &unique("late-p")).await;
    p.publish(&topic, "before", QoS::AtLeastOnce, false).await;
    let before = old.recv_publish().await;
    assert_eq!(&before.payload[..], b"before", "r3 → r1 works");
    old.ack(&before).await;

    let r3_peers = r3.peers().expect("cluster");
    assert!(r3_peers.hold_link("r1", true), "r3 has a link to r1");
    // Routed to r1 only (r2 has no route yet), held in r3's queue for r1.
    let rc = p.publish(&topic, "late", QoS::AtLeastOnce, false).await;
    assert_eq!(rc, ReasonCode::Success);

    let barriers_before = r3_peers.stats().barriers_received;
    let (mut new, ack) =
        RawClient::connect_with(r2.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    assert!(ack.session_present, "the session came along");
    // r1 heard TakeoverEnd: it either dropped its copy at once (the message would be lost)
    // or asked r3 for a barrier (r3's ack waits behind the held message). r3 receives two
    // barriers from here on: r2's before its CONNACK (its restored route), then r1's.
    let heard = wait_until(WAIT, || {
        r1.sessions() == 0 || r3_peers.stats().barriers_received >= barriers_before + 2
    })
    .await;
    assert!(heard, "r1 acted on TakeoverEnd");
    assert!(r3_peers.hold_link("r1", false));

    // "before" may come again first (DUP=1): its PUBACK may not have reached r1 in time.
    loop {
        let m = new
            .try_recv_publish(WAIT)
            .await
            .unwrap_or_else(|e| panic!("the late message reached the new owner: {e:?}"));
        new.ack(&m).await;
        if &m.payload[..] == b"late" {
            break;
        }
        assert_eq!(&m.payload[..], b"before");
    }
    assert!(
        wait_until(WAIT, || r1.sessions() == 0).await,
        "r1 dropped its copy"
    );
    drop(old);
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}

/// An offline persistent session with queued QoS 1 messages and a QoS 2 delivery waiting
/// for PUBCOMP (3.1.1 and 5.0): reconnecting on another node delivers the queue in order and
/// re-sends the PUBREL with the same packet id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_session_moves_with_its_queue_and_its_qos2_flow() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = unique("off");
        let (mut s, _) = RawClient::connect_with(r1.mqtt_addr(), persistent(version, &id)).await;
        s.subscribe(&format!("off/{id}/#"), QoS::ExactlyOnce).await;
        let mut p = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("off-p")).await;
        // A QoS 2 delivery left waiting for PUBCOMP.
        p.publish(&format!("off/{id}/q2"), "q2", QoS::ExactlyOnce, false)
            .await;
        let q2 = s.recv_publish().await;
        s.send(&Packet::PubRec(PubResp::new(q2.packet_id))).await;
        s.expect_ack(q2.packet_id, |p| matches!(p, Packet::PubRel(_)))
            .await;
        drop(s); // gone without DISCONNECT
        assert!(
            wait_until(WAIT, || r1
                .core()
                .read(|t| t.registry(&id).is_some_and(|r| !r.connected)))
            .await,
            "r1 recorded the disconnect"
        );
        for seq in 0..50u32 {
            p.publish(
                &format!("off/{id}/m"),
                &seq.to_string(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
        }
        let (mut s, ack) = RawClient::connect_with(r2.mqtt_addr(), persistent(version, &id)).await;
        assert!(ack.session_present, "{version:?}: session present");
        let rel = s
            .expect_ack(q2.packet_id, |p| matches!(p, Packet::PubRel(_)))
            .await;
        assert_eq!(rel.packet_id, q2.packet_id, "{version:?}: PUBREL re-sent");
        s.send(&Packet::PubComp(PubResp::new(q2.packet_id))).await;
        for seq in 0..50u32 {
            let m = s.recv_publish().await;
            assert_eq!(seq_of(&m.payload), seq, "{version:?}: queue in order");
            s.ack(&m).await;
        }
        s.expect_no_publish(QUIET).await;
        assert!(
            wait_until(WAIT, || r1.sessions() == 0).await,
            "{version:?}: r1 dropped its copy"
        );
    }
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

/// The replicant holding a persistent session is gone: reconnecting on another one still
/// resumes it from the `subscriptions` table (session present = 1), and what is published
/// afterwards arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_replicant_is_gone_resumes_elsewhere() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let id = unique("dead");
    let (mut s, _) =
        RawClient::connect_with(r1.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    s.subscribe(&format!("dead/{id}"), QoS::AtLeastOnce).await;
    r1.shutdown().await;
    let _ = s.wait_closed(WAIT).await;
    assert!(
        wait_until(WAIT, || !r2.peers().expect("cluster").is_up("r1")).await,
        "r2 saw r1 go"
    );
    let started = Instant::now();
    let (mut s, ack) =
        RawClient::connect_with(r2.mqtt_addr(), persistent(ProtocolVersion::V5, &id)).await;
    assert!(ack.session_present, "restored from the tables");
    println!(
        "CONNACK with the old node down after {:?}",
        started.elapsed()
    );
    let mut p = RawClient::connect(r3.mqtt_addr(), ProtocolVersion::V5, &unique("dead-p")).await;
    p.publish(&format!("dead/{id}"), "after", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&s.recv_publish().await.payload[..], b"after");
    r2.shutdown().await;
    r3.shutdown().await;
    cluster.stop().await;
}

/// A session with expiry 0 ends with its connection even while its owner cannot commit the
/// removal of its registry row yet (the row still reads "connected on r1"): a client that
/// comes back through r2 with clean start = 0 gets session present = 0, not a session
/// "restored" from nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_expiry_zero_session_is_not_present_while_its_removal_is_pending() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let id = unique("ended");
    let (mut old, ack) =
        RawClient::connect_with(r1.mqtt_addr(), connect_packet(ProtocolVersion::V5, &id)).await;
    assert!(!ack.session_present);
    old.subscribe(&format!("ended/{id}"), QoS::AtLeastOnce)
        .await;
    let connected_on_r1 = |t: &meshmq_shared::tables::Tables| {
        t.registry(&id)
            .is_some_and(|row| row.node == "r1" && row.connected)
    };
    // The cores hold every row (r2's replica holds its own clients' only).
    let leader = cluster.wait_leader(None).await;
    let seen = wait_until(WAIT, || leader.sm.read(connected_on_r1)).await;
    assert!(seen, "the registry row of {id} on r1 not on the cores");

    // r1 can no longer commit; the client drops; r1 ends the session locally.
    r1.core().link().stop();
    drop(old);
    let ended = wait_until(WAIT, || r1.sessions() == 0).await;
    assert!(ended, "r1 still holds the session of {id}");
    assert!(
        leader.sm.read(connected_on_r1),
        "the row must still read connected on r1 for this test to mean anything"
    );

    let mut again = connect_packet(ProtocolVersion::V5, &id);
    again.clean_start = false;
    let (_new, ack) = RawClient::connect_with(r2.mqtt_addr(), again).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert!(
        !ack.session_present,
        "an expiry-0 session ended with its connection"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
