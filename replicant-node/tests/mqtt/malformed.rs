//! Malformed input (MQTT 5.0 sections 1.5, 2.1.3, 4.13; docs/architecture.md, invariant 7: no
//! panic on the network): hand-written bad packets get a closed socket (5.0: optionally a
//! DISCONNECT with the right reason first), never a panic; the broker keeps serving new
//! clients and counts them in `meshmq_malformed_packets_total`.
//!
//! Broker tasks run on the test's current-thread runtime, so a panic in one of them happens on
//! this test's thread: a chained panic hook records thread names and the tests assert none.

use std::net::SocketAddr;
use std::sync::{Mutex, Once};

use meshmq_shared::codec::ProtocolVersion::{self, V5, V311};
use meshmq_shared::codec::ReasonCode::{self, MalformedPacket, ProtocolError, TopicNameInvalid};

use crate::common::raw::RawClient;
use crate::common::{self, WAIT, hex, metric_sum, metrics_text};

static PANICKED_THREADS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

/// Installs (once) a panic hook that records the panicking thread's name, then chains.
fn record_panics() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            if let Ok(mut v) = PANICKED_THREADS.lock() {
                v.push(name);
            }
            previous(info);
        }));
    });
}

/// Panics if anything panicked on this thread since the hook was installed.
fn assert_no_panic_here() {
    let me = std::thread::current().name().unwrap_or("?").to_owned();
    let v = PANICKED_THREADS
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    assert!(!v.contains(&me), "a broker task panicked on {me}");
}

/// Connects (or not, with `None`), sends `bytes`, and checks the broker closes the connection
/// with at most a 5.0 DISCONNECT carrying one of `reasons`; then that a new client is served.
async fn bad_input(
    addr: SocketAddr,
    v: Option<ProtocolVersion>,
    name: &str,
    bytes: &str,
    reasons: &[ReasonCode],
) {
    let mut c = match v {
        Some(v) => RawClient::connect(addr, v, &common::unique("bad")).await,
        None => RawClient::open(addr).await,
    };
    c.send_bytes(&hex(bytes)).await;
    let seen = c.wait_closed(WAIT).await;
    for p in &seen {
        match p {
            meshmq_shared::codec::Packet::Disconnect(d)
                if v == Some(V5) && reasons.contains(&d.reason) => {}
            other => panic!(
                "{name} ({v:?}): expected only a close (5.0: DISCONNECT in {reasons:?}), got {other:?}"
            ),
        }
    }
    RawClient::connect(addr, V5, &common::unique("after"))
        .await
        .ping()
        .await;
}

const MALFORMED: &[ReasonCode] = &[MalformedPacket, ProtocolError];

#[tokio::test]
async fn v5_1_5_malformed_packets_after_connect_close_the_connection() {
    record_panics();
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let cases: &[(&str, &str, &[ReasonCode])] = &[
        (
            "remaining length of 5 bytes",
            "30 ff ff ff ff 01",
            MALFORMED,
        ),
        (
            "SUBSCRIBE with reserved flags 0000",
            "80 06 00 01 00 01 61 00",
            MALFORMED,
        ),
        ("PUBREL with reserved flags 0000", "60 02 00 01", MALFORMED),
        ("PUBLISH with QoS 3", "36 05 00 01 61 00 01", MALFORMED),
        ("reserved packet type 0", "00 00", MALFORMED),
        (
            "reserved packet type 15 (AUTH) in 3.1.1",
            "f0 01 ff",
            MALFORMED,
        ),
        (
            "PUBLISH topic with '#'",
            "30 05 00 03 61 2f 23",
            &[TopicNameInvalid, MalformedPacket, ProtocolError],
        ),
        (
            "PUBLISH topic with '+'",
            "30 05 00 03 61 2f 2b",
            &[TopicNameInvalid, MalformedPacket, ProtocolError],
        ),
        (
            "PUBLISH topic with invalid UTF-8",
            "30 05 00 02 c3 28 78",
            MALFORMED,
        ),
        (
            "PUBLISH topic with U+0000",
            "30 05 00 02 61 00 78",
            MALFORMED,
        ),
        (
            "QoS 1 PUBLISH with packet id 0",
            "32 05 00 01 61 00 00",
            MALFORMED,
        ),
        ("SUBSCRIBE without filters", "82 02 00 01", MALFORMED),
        (
            "SUBSCRIBE asking for QoS 3",
            "82 06 00 01 00 01 61 03",
            MALFORMED,
        ),
    ];
    for (name, bytes, reasons) in cases {
        bad_input(addr, Some(V311), name, bytes, reasons).await;
    }
    let v5_cases: &[(&str, &str, &[ReasonCode])] = &[
        (
            "remaining length of 5 bytes",
            "30 ff ff ff ff 01",
            MALFORMED,
        ),
        (
            "PUBLISH topic with '#'",
            "30 06 00 03 61 2f 23 00",
            &[TopicNameInvalid, MalformedPacket, ProtocolError],
        ),
        (
            "PUBLISH topic with invalid UTF-8",
            "30 05 00 02 c3 28 00",
            MALFORMED,
        ),
        (
            "PUBLISH with unknown property 0x7f",
            "30 06 00 01 61 01 7f 78",
            MALFORMED,
        ),
        (
            "PUBLISH property length beyond the packet",
            "30 05 00 01 61 09 01",
            MALFORMED,
        ),
        (
            "SUBSCRIBE with reserved flags 0000",
            "80 07 00 01 00 00 01 61 00",
            MALFORMED,
        ),
        (
            "SUBSCRIBE options with reserved bits",
            "82 07 00 01 00 00 01 61 c1",
            MALFORMED,
        ),
        (
            "SUBSCRIBE retain handling 3",
            "82 07 00 01 00 00 01 61 30",
            MALFORMED,
        ),
        (
            "PUBLISH with topic alias 0",
            "30 07 00 01 61 03 23 00 00",
            &[
                ReasonCode::TopicAliasInvalid,
                MalformedPacket,
                ProtocolError,
            ],
        ),
    ];
    for (name, bytes, reasons) in v5_cases {
        bad_input(addr, Some(V5), name, bytes, reasons).await;
    }
    assert_no_panic_here();
    let text = metrics_text(&b).await;
    let n = metric_sum(&text, "meshmq_malformed_packets_total", &[])
        .unwrap_or_else(|| panic!("no meshmq_malformed_packets_total in:\n{text}"));
    assert!(n >= 1.0, "malformed packets counted: {n}");
}

#[tokio::test]
async fn v5_3_1_malformed_connect_closes_the_connection() {
    record_panics();
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let cases = [
        ("remaining length of 5 bytes", "10 ff ff ff ff 7f"),
        (
            "CONNECT ending before its keep alive",
            "10 08 00 04 4d 51 54 54 04 02",
        ),
        (
            "protocol name 'MQTX'",
            "10 0d 00 04 4d 51 54 58 04 02 00 3c 00 01 61",
        ),
        (
            "reserved connect flag bit set",
            "10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 61",
        ),
        ("will QoS 3", "10 0d 00 04 4d 51 54 54 04 1e 00 3c 00 01 61"),
        (
            "client id with invalid UTF-8",
            "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 c3 28 61",
        ),
        (
            "password without user name",
            "10 10 00 04 4d 51 54 54 04 42 00 3c 00 01 61 00 01 70",
        ),
        (
            "5.0 CONNECT with Receive Maximum 0",
            "10 11 00 04 4d 51 54 54 05 02 00 3c 03 21 00 00 00 01 61",
        ),
        (
            "5.0 CONNECT with truncated properties",
            "10 0f 00 04 4d 51 54 54 05 02 00 3c 05 11 00 01 61",
        ),
    ];
    for (name, bytes) in cases {
        let mut c = RawClient::open(addr).await;
        c.send_bytes(&hex(bytes)).await;
        let seen = c.wait_closed(WAIT).await;
        for p in &seen {
            let refused =
                matches!(p, meshmq_shared::codec::Packet::ConnAck(a) if a.code.is_error());
            assert!(
                refused,
                "{name}: only an error CONNACK may precede the close, got {p:?}"
            );
        }
        RawClient::connect(addr, V311, &common::unique("after"))
            .await
            .ping()
            .await;
    }
    assert_no_panic_here();
}

#[tokio::test]
async fn v5_4_13_random_bytes_never_take_the_broker_down() {
    record_panics();
    let b = common::broker().await;
    let addr = b.mqtt_addr();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..40 {
        let len = (next() % 200) as usize + 1;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let after_connect = round % 2 == 1;
        let mut c = if after_connect {
            RawClient::connect(
                addr,
                if round % 4 == 1 { V5 } else { V311 },
                &common::unique("fuzz"),
            )
            .await
        } else {
            RawClient::open(addr).await
        };
        if !after_connect && round % 3 == 0 {
            bytes[0] = 0x10; // a CONNECT header with garbage after it
        }
        c.send_bytes(&bytes).await;
        drop(c);
    }
    for v in [V311, V5] {
        RawClient::connect(addr, v, &common::unique("survivor"))
            .await
            .ping()
            .await;
    }
    assert_no_panic_here();
}
