//! How the broker ends a connection: a lingering close after a DISCONNECT with a reason or
//! a refusing CONNACK (MQTT 5.0 4.13: the client can read why, even while it is still
//! sending), keep-alive counted in complete packets (MQTT-3.1.2-24) and the CONNECT
//! deadline (`mqtt.connect_timeout`).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{self, Packet, Properties, PubResp, QoS, ReasonCode};

use crate::common::raw::{RawClient, connect_packet, publish_packet};
use crate::common::{self, WAIT, start_broker};

/// A v5 client that reads slowly (small receive buffer, so the broker's writes back up),
/// pipelines 40 QoS 2 PUBLISHes of 16 KiB to a topic it subscribes to (Receive Maximum is
/// 32) and 20 QoS 0 ones behind them, and then answers every PUBREC with PUBREL: it must still read DISCONNECT 0x93 after
/// the echoes queued before it. Closing at once, with the client's input unread, made the kernel reset
/// the connection and discard what was still queued for the client, DISCONNECT included.
#[tokio::test]
async fn v5_3_3_4_receive_maximum_exceeded_is_read_by_a_client_still_sending() {
    let b = common::broker().await;
    let mut c = RawClient::open_with_rcvbuf(b.mqtt_addr(), 4096).await;
    c.version = V5;
    c.send(&Packet::Connect(Box::new(connect_packet(
        V5,
        &common::unique("rm-linger"),
    ))))
    .await;
    assert!(matches!(c.recv().await, Ok(Packet::ConnAck(a)) if a.code == ReasonCode::Success));
    let topic = common::unique("rm-linger/t");
    c.subscribe(&topic, QoS::AtMostOnce).await;
    let mut burst = BytesMut::new();
    for pid in 1..=40u16 {
        let mut p = publish_packet(&topic, &[b'x'; 16 * 1024], QoS::ExactlyOnce, false);
        p.packet_id = pid;
        codec::encode(&Packet::Publish(p), V5, &mut burst).expect("encodes");
    }
    // More behind them, still unread when the broker closes.
    for _ in 0..20 {
        let p = publish_packet(&topic, &[b'y'; 16 * 1024], QoS::AtMostOnce, false);
        codec::encode(&Packet::Publish(p), V5, &mut burst).expect("encodes");
    }
    c.send_bytes(&burst).await;
    // Let the broker's echoes fill our small window before we read anything.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut echoes, mut reason) = (0, None);
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.recv_timeout(left).await {
            Ok(Packet::PubRec(r)) => c.send(&Packet::PubRel(PubResp::new(r.packet_id))).await,
            Ok(Packet::Publish(_)) => echoes += 1,
            Ok(Packet::Disconnect(d)) => reason = Some(d.reason),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert_eq!(
        reason,
        Some(ReasonCode::ReceiveMaximumExceeded),
        "DISCONNECT 0x93 read before the close (after {echoes} echoes)"
    );
}

/// A refused CONNECT (here 0x8C Bad authentication method) from a client that pipelined more
/// packets behind it: it reads the CONNACK and then a clean end of stream, and what it
/// still sends for a short while is read and discarded, not answered with a reset.
#[tokio::test]
async fn refusing_connack_is_followed_by_a_clean_close_not_a_reset() {
    let b = common::broker().await;
    for v in [V5, V311] {
        let mut c = RawClient::open(b.mqtt_addr()).await;
        c.version = v;
        let mut connect = connect_packet(v, &common::unique("refused"));
        if v == V5 {
            connect.properties = Properties {
                authentication_method: Some("SCRAM-SHA-1".into()),
                ..Properties::default()
            };
        } else {
            connect.client_id.clear();
            connect.clean_start = false; // 3.1.1: empty id needs clean session: code 2
        }
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Ok(Packet::ConnAck(a)) => assert!(a.code.is_error(), "{v:?}: {a:?}"),
            other => panic!("{v:?}: expected a refusing CONNACK, got {other:?}"),
        }
        // Still sending after the refusal (for a bounded while): the broker keeps reading
        // during its linger, so no write meets a reset.
        for i in 0..10 {
            let sent = c.try_send(&Packet::PingReq).await;
            assert!(sent.is_ok(), "{v:?}: write {i} after the CONNACK: {sent:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let end = c.read_to_close(WAIT).await;
        assert!(
            end.is_ok(),
            "{v:?}: the refused connection ended with {end:?}"
        );
    }
}

/// Keep-alive 1 s: a client that drips one byte of a PUBLISH every 200 ms never completes a
/// packet, so it is closed after 1.5 s like a silent one (before, every byte counted as
/// activity and the drip held the connection for as long as the packet lasted).
#[tokio::test]
async fn mqtt_3_1_2_24_keepalive_counts_complete_packets_not_bytes() {
    let b = common::broker().await;
    for v in [V311, V5] {
        let mut connect = connect_packet(v, &common::unique("drip"));
        connect.keep_alive = 1;
        let (mut c, ack) = RawClient::connect_with(b.mqtt_addr(), connect).await;
        assert_eq!(ack.code, ReasonCode::Success);
        let since = Instant::now();
        let mut bytes = BytesMut::new();
        let p = publish_packet("drip/t", &[b'x'; 200], QoS::AtMostOnce, false);
        codec::encode(&Packet::Publish(p), v, &mut bytes).expect("encodes");
        let closed = async {
            for byte in bytes.iter().take(50) {
                c.send_bytes(&[*byte]).await;
                match c.recv_timeout(Duration::from_millis(200)).await {
                    Err(common::raw::RecvError::Timeout) => {}
                    _ => return true,
                }
            }
            false
        };
        assert!(
            closed.await,
            "{v:?}: a dripping client kept its connection for 10 s"
        );
        let waited = since.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited <= Duration::from_millis(4000),
            "{v:?}: closed after {waited:?}, expected about 1.5 s"
        );
    }
}

/// `mqtt.connect_timeout` bounds the whole CONNECT, not the silence between its bytes: a
/// client that drips a CONNECT one byte every 200 ms is closed after about 1 s.
#[tokio::test]
async fn connect_must_arrive_whole_within_connect_timeout() {
    let b = start_broker(|c| c.mqtt.connect_timeout = 1).await;
    let mut bytes = BytesMut::new();
    let connect = connect_packet(V5, &common::unique("drip-connect-with-a-long-client-id"));
    codec::encode(&Packet::Connect(Box::new(connect)), V5, &mut bytes).expect("encodes");
    let mut c = RawClient::open(b.mqtt_addr()).await;
    let since = Instant::now();
    let mut sent = 0;
    for byte in bytes.iter().take(bytes.len() - 1) {
        c.send_bytes(&[*byte]).await;
        sent += 1;
        match c.recv_timeout(Duration::from_millis(200)).await {
            Err(common::raw::RecvError::Timeout) => {}
            Err(common::raw::RecvError::Closed) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let waited = since.elapsed();
    assert!(c.is_closed(), "still open after {sent} dripped bytes");
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_millis(3000),
        "closed after {waited:?}, expected about 1 s"
    );
}
