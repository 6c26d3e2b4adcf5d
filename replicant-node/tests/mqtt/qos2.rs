//! Inbound QoS 2 (MQTT 5.0 section 4.3.3) and the `awaiting_rel` set: duplicates before
//! PUBREL, EMQX's `max_awaiting_rel` cap and `await_rel_timeout` purging.
//!
//! EMQX answers a full `awaiting_rel` with PUBREC 0x93, but 0x93 is not a PUBREC reason code
//! in MQTT 5.0 (section 3.5.2.1 allows 0x00, 0x10, 0x80, 0x83, 0x87, 0x91, 0x97, 0x99) and
//! strict clients reject the packet; these tests accept any error PUBREC a client can decode
//! (0x97 Quota exceeded is the natural one).

use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, PubResp, QoS, ReasonCode};

use crate::common::raw::{RawClient, publish_packet};
use crate::common::{self, QUIET, WAIT, start_broker};

/// Sends a QoS 2 PUBLISH with `pid` and returns the PUBREC's reason code (no PUBREL).
async fn publish_qos2_unreleased(c: &mut RawClient, pid: u16, payload: &str) -> ReasonCode {
    let mut p = publish_packet("ar/t", payload.as_bytes(), QoS::ExactlyOnce, false);
    p.packet_id = pid;
    c.send(&Packet::Publish(p)).await;
    c.expect_ack(pid, |p| matches!(p, Packet::PubRec(_)))
        .await
        .reason
}

#[tokio::test]
async fn v5_4_3_3_duplicate_qos2_publish_before_pubrel_is_delivered_once() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let mut sub = RawClient::connect(b.mqtt_addr(), V5, &common::unique("dup-sub")).await;
        sub.subscribe("ar/t", QoS::AtMostOnce).await;
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("dup-pub")).await;
        assert_eq!(
            publish_qos2_unreleased(&mut c, 5, "x").await,
            ReasonCode::Success
        );
        let mut again = publish_packet("ar/t", b"x", QoS::ExactlyOnce, false);
        again.packet_id = 5;
        again.dup = true;
        c.send(&Packet::Publish(again)).await;
        let rec = c.expect_ack(5, |p| matches!(p, Packet::PubRec(_))).await;
        assert_eq!(
            rec.reason,
            ReasonCode::Success,
            "{v:?}: the re-sent PUBLISH is acknowledged again"
        );
        c.send(&Packet::PubRel(PubResp::new(5))).await;
        c.expect_ack(5, |p| matches!(p, Packet::PubComp(_))).await;
        c.publish("ar/t", "marker", QoS::AtMostOnce, false).await;
        assert_eq!(&sub.recv_publish().await.payload[..], b"x");
        assert_eq!(
            &sub.recv_publish().await.payload[..],
            b"marker",
            "{v:?}: the duplicate was routed again"
        );
        sub.expect_no_publish(QUIET).await;
    }
}

#[tokio::test]
async fn emqx_max_awaiting_rel_refuses_with_an_error_pubrec() {
    let b = start_broker(|c| c.mqtt.max_awaiting_rel = 2).await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "mar-sub").await;
    sub.subscribe("ar/t", QoS::AtMostOnce).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "mar-pub").await;
    assert_eq!(
        publish_qos2_unreleased(&mut c, 1, "1").await,
        ReasonCode::Success
    );
    assert_eq!(
        publish_qos2_unreleased(&mut c, 2, "2").await,
        ReasonCode::Success
    );
    let third = publish_qos2_unreleased(&mut c, 3, "3").await;
    assert!(
        third.is_error(),
        "third un-released id refused by PUBREC, got {third:?}"
    );
    c.ping().await; // the connection stays up (below our Receive Maximum of 32)
    c.publish("ar/t", "marker", QoS::AtMostOnce, false).await;
    for want in ["1", "2", "marker"] {
        assert_eq!(
            &sub.recv_publish().await.payload[..],
            want.as_bytes(),
            "refused message 3 must not be routed"
        );
    }
    // Releasing one frees a slot.
    c.send(&Packet::PubRel(PubResp::new(1))).await;
    c.expect_ack(1, |p| matches!(p, Packet::PubComp(_))).await;
    assert_eq!(
        publish_qos2_unreleased(&mut c, 4, "4").await,
        ReasonCode::Success
    );
    assert_eq!(&sub.recv_publish().await.payload[..], b"4");
}

#[tokio::test]
async fn emqx_await_rel_timeout_purges_unreleased_packet_ids() {
    let b = start_broker(|c| {
        c.mqtt.max_awaiting_rel = 2;
        c.mqtt.await_rel_timeout = 1;
    })
    .await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "art-sub").await;
    sub.subscribe("ar/t", QoS::AtMostOnce).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "art-pub").await;
    assert_eq!(
        publish_qos2_unreleased(&mut c, 1, "a").await,
        ReasonCode::Success
    );
    assert_eq!(
        publish_qos2_unreleased(&mut c, 2, "b").await,
        ReasonCode::Success
    );
    let filled = Instant::now();
    assert_eq!(&sub.recv_publish().await.payload[..], b"a");
    assert_eq!(&sub.recv_publish().await.payload[..], b"b");

    // Deadline loop: a third id is refused until ids 1 and 2 expire, then accepted.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = publish_qos2_unreleased(&mut c, 3, "c").await;
        if r == ReasonCode::Success {
            break;
        }
        assert!(r.is_error(), "attempt {attempts}: {r:?}");
        assert!(
            filled.elapsed() < WAIT,
            "awaiting_rel entries never expired (await_rel_timeout = 1 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = filled.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "purged after {waited:?}, before await_rel_timeout"
    );
    assert_eq!(&sub.recv_publish().await.payload[..], b"c");

    // The purged id 1 is new again: a PUBLISH with it is routed, not taken for a duplicate.
    assert_eq!(
        publish_qos2_unreleased(&mut c, 1, "a2").await,
        ReasonCode::Success
    );
    assert_eq!(
        &sub.recv_publish().await.payload[..],
        b"a2",
        "purged packet id treated as a new message"
    );
    // Ids 3 and 1 are now awaiting: the cap still applies.
    assert!(
        publish_qos2_unreleased(&mut c, 4, "d").await.is_error(),
        "the cap still applies"
    );
    // PUBREL for the purged id 2 finds nothing.
    c.send(&Packet::PubRel(PubResp::new(2))).await;
    let comp = c.expect_ack(2, |p| matches!(p, Packet::PubComp(_))).await;
    assert_eq!(comp.reason, ReasonCode::PacketIdentifierNotFound);
    sub.expect_no_publish(QUIET).await;
}

/// A 3.1.1 client has no way to be told "refused": if the broker answers nothing, the client's
/// QoS 2 flow (and its in-flight slot) hangs until it reconnects. EMQX answers PUBREC (its
/// reason code cannot be encoded in 3.1.1) and drops the message; so must we.
#[tokio::test]
async fn emqx_v311_full_awaiting_rel_still_answers_pubrec() {
    let b = start_broker(|c| c.mqtt.max_awaiting_rel = 1).await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, "mar3-sub").await;
    sub.subscribe("ar/t", QoS::AtMostOnce).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V311, "mar3-pub").await;
    assert_eq!(
        publish_qos2_unreleased(&mut c, 1, "1").await,
        ReasonCode::Success
    );
    let mut p = publish_packet("ar/t", b"2", QoS::ExactlyOnce, false);
    p.packet_id = 2;
    c.send(&Packet::Publish(p)).await;
    let answer = c.recv_where(Duration::from_secs(2), |p| match p {
        Packet::PubRec(r) if r.packet_id == 2 => Some(()),
        _ => None,
    });
    assert!(
        answer.await.is_ok(),
        "3.1.1: no PUBREC for a QoS 2 PUBLISH refused by max_awaiting_rel"
    );
    c.publish("ar/t", "marker", QoS::AtMostOnce, false).await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"1");
    assert_eq!(
        &sub.recv_publish().await.payload[..],
        b"marker",
        "the refused message was routed"
    );
}

/// Receive Maximum is an MQTT 5 rule: a 3.1.1 client with 1 000 QoS 2 messages awaiting
/// PUBREL (far past our Receive Maximum of 32) is not disconnected. Every PUBLISH gets a
/// plain PUBREC; `max_awaiting_rel` (100) decides what is routed, the rest is dropped and
/// counted.
#[tokio::test]
async fn v311_has_no_receive_maximum_only_max_awaiting_rel() {
    let b = common::broker().await;
    let mut sub = RawClient::connect(b.mqtt_addr(), V5, &common::unique("rm3-sub")).await;
    sub.subscribe("rm3/t", QoS::AtMostOnce).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V311, &common::unique("rm3-pub")).await;
    let dropped = |t: &str| {
        common::metric_sum(
            t,
            "meshmq_messages_dropped_total",
            &[("reason", "awaiting_rel_full")],
        )
        .unwrap_or(0.0)
    };
    let before = dropped(&common::metrics_text(&b).await);
    for pid in 1..=1000u16 {
        let mut p = publish_packet("rm3/t", pid.to_string().as_bytes(), QoS::ExactlyOnce, false);
        p.packet_id = pid;
        c.send(&Packet::Publish(p)).await;
    }
    for pid in 1..=1000u16 {
        let rec = c.expect_ack(pid, |p| matches!(p, Packet::PubRec(_))).await;
        assert_eq!(rec.reason, ReasonCode::Success, "PUBREC {pid}");
    }
    c.ping().await; // still connected
    c.publish("rm3/t", "marker", QoS::AtMostOnce, false).await;
    for pid in 1..=100u16 {
        assert_eq!(sub.recv_publish().await.payload, pid.to_string().as_bytes());
    }
    assert_eq!(
        &sub.recv_publish().await.payload[..],
        b"marker",
        "only the first max_awaiting_rel (100) messages are routed"
    );
    let after = dropped(&common::metrics_text(&b).await);
    assert!(
        after - before >= 900.0,
        "900 refused messages counted, got {}",
        after - before
    );
}
