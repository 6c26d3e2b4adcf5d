//! `loadtest sub` + `loadtest pub` against the fake broker that drops every 100th PUBLISH,
//! forwards one twice and swaps two: the subscribers must report exactly those losses,
//! duplicates and reorderings, each of them; and the QoS 2 flow completes.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{FakeBroker, Faults, run};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_report_exactly_the_injected_loss_dup_and_reorder() {
    let broker = FakeBroker::start(Faults {
        drop_every: Some(100),
        duplicate: Some(250),
        swap: Some(420),
        ..Faults::default()
    })
    .await;
    let port = broker.port.to_string();
    // 1050 messages: 10 dropped (#100 .. #1000), #250 twice, #420 after #421.
    // Each subscriber receives 1050 - 10 + 1 = 1041.
    let sub_args = [
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "3",
        "-i",
        "0",
        "-t",
        "bench/#",
        "-q",
        "1",
        "-L",
        "1041",
        "--timeout",
        "5",
    ];
    let sub = tokio::spawn({
        let args: Vec<String> = sub_args.iter().map(|s| s.to_string()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args).await
        }
    });
    assert!(
        broker
            .wait_for(WAIT, |s| s.subscribed.load(Ordering::Relaxed) == 3)
            .await
    );
    let published = run(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "1",
        "-t",
        "bench/%i",
        "-q",
        "1",
        "-I",
        "0",
        "-L",
        "1050",
        "-F",
        "16",
        "-s",
        "64",
    ])
    .await;
    assert_eq!(published.published, 1050);
    assert_eq!(published.acked, 1050);
    assert_eq!(published.connected, 1);
    assert!(
        published.errors.is_empty(),
        "{:?}",
        published.error_messages
    );

    let subs = sub.await.unwrap();
    assert!(subs.errors.is_empty(), "{:?}", subs.error_messages);
    assert_eq!(subs.subscribed, 3);
    assert_eq!(subs.received, 3 * 1041);
    assert_eq!(subs.subscribers.len(), 3);
    for (i, row) in subs.subscribers.iter().enumerate() {
        assert_eq!(row.client, i as u64);
        assert_eq!(row.received, 1041, "{row:?}");
        assert_eq!(row.lost, 10, "{row:?}");
        assert_eq!(row.duplicated, 1, "{row:?}");
        assert_eq!(row.out_of_order, 1, "{row:?}");
    }
    assert_eq!((subs.lost, subs.duplicated, subs.out_of_order), (30, 3, 3));
    assert_eq!(subs.unmarked, 0);
    assert_eq!(subs.e2e_latency.count(), 3 * 1041);
    assert_eq!(broker.stats.published.load(Ordering::Relaxed), 1050);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_flows_complete_both_ways() {
    let broker = FakeBroker::start(Faults::default()).await;
    let port = broker.port.to_string();
    let sub = tokio::spawn({
        let port = port.clone();
        async move {
            run(&[
                "sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-c",
                "2",
                "-t",
                "q2/#",
                "-q",
                "2",
                "-L",
                "40",
                "-V",
                "4",
            ])
            .await
        }
    });
    assert!(
        broker
            .wait_for(WAIT, |s| s.subscribed.load(Ordering::Relaxed) == 2)
            .await
    );
    let published = run(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "2",
        "-t",
        "q2/%c",
        "-q",
        "2",
        "-I",
        "1",
        "-L",
        "20",
        "-F",
        "4",
        "-V",
        "4",
    ])
    .await;
    assert_eq!((published.published, published.acked), (40, 40));
    let subs = sub.await.unwrap();
    assert!(subs.errors.is_empty(), "{:?}", subs.error_messages);
    assert_eq!(subs.received, 80);
    assert_eq!((subs.lost, subs.duplicated, subs.out_of_order), (0, 0, 0));
    let ids = broker.stats.client_ids.lock().await.clone();
    assert!(ids.contains(&"loadtest_pub_1".to_owned()), "{ids:?}");
}
