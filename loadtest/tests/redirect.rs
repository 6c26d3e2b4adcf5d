//! MQTT 5 Server Reference: a CONNACK 0x9C (Use another server) or a DISCONNECT 0x9D
//! (Server moved) carrying a Server Reference sends the client to the referenced fake
//! broker; `--no-redirect` turns that off; a reference off the box is refused.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::sync::atomic::Ordering;

use support::{FakeBroker, Faults, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_0x9c_with_server_reference_reconnects_to_the_referenced_broker() {
    let target = FakeBroker::start(Faults::default()).await;
    let referral = FakeBroker::start(Faults {
        // A list: the first entry has nothing listening, the second is the target.
        refuse: Some((0x9c, format!("127.0.0.1:1 127.0.0.1:{}", target.port))),
        ..Faults::default()
    })
    .await;
    let port = referral.port.to_string();
    let f = run(&[
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "3",
        "-i",
        "0",
        "--duration",
        "0.3",
    ])
    .await;
    assert_eq!(f.connected, 3, "{:?}", f.error_messages);
    assert_eq!(f.connect_failed, 0);
    assert_eq!(f.redirects, 3);
    assert_eq!(f.open_at_end, 3);
    assert_eq!(referral.stats.refused.load(Ordering::Relaxed), 3);
    assert_eq!(target.stats.connected.load(Ordering::Relaxed), 3);

    let f = run(&[
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "2",
        "--duration",
        "0.2",
        "--no-redirect",
    ])
    .await;
    assert_eq!((f.connected, f.connect_failed, f.redirects), (0, 2, 0));
    assert_eq!(f.connect_failures.get("connack 0x9c"), Some(&2));
    assert_eq!(target.stats.connected.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_0x9d_moves_a_connected_client_and_remote_references_are_refused() {
    let target = FakeBroker::start(Faults::default()).await;
    let old = FakeBroker::start(Faults {
        kick: Some((0x9d, format!("localhost:{}", target.port))),
        ..Faults::default()
    })
    .await;
    let f = run(&[
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        &old.port.to_string(),
        "-c",
        "2",
        "-i",
        "0",
        "--duration",
        "0.5",
    ])
    .await;
    assert_eq!(f.connected, 4, "{:?}", f.error_messages);
    assert_eq!(f.redirects, 2);
    assert_eq!(f.open_at_end, 2);
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert_eq!(target.stats.connected.load(Ordering::Relaxed), 2);

    let remote = FakeBroker::start(Faults {
        refuse: Some((0x9c, "192.0.2.1:1883".into())),
        ..Faults::default()
    })
    .await;
    let f = run(&[
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        &remote.port.to_string(),
        "-c",
        "1",
        "--duration",
        "0.2",
    ])
    .await;
    assert_eq!((f.connected, f.connect_failed), (0, 1));
    assert_eq!(f.connect_failures.get("bad redirect"), Some(&1), "{f:?}");
}
