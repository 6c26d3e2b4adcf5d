//! `conn`, `sub`, `pub`, `storm` and a scenario against the real broker
//! (`replicant_node::Broker`, standalone, in this process on loopback port 0), over TCP and
//! WebSocket, briefly; the counts must add up exactly.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use loadtest::args::Seat;
use loadtest::counters::stop_signal;
use loadtest::live::Live;
use meshmq_shared::config::Config;
use replicant_node::{Broker, BrokerHandle};
use support::{plan, run};

async fn broker(dir: &tempfile::TempDir) -> BrokerHandle {
    let mut config = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listeners.mqtt_bind = any;
    config.listeners.ws_bind = Some(any);
    config.listeners.http_bind = None;
    config.cluster.peer_bind = any;
    config.node.data_dir = dir.path().to_path_buf();
    Broker::builder(config).start().await.unwrap()
}

async fn until(within: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

/// Starts `sub` (args) in the background; returns its task once every subscriber has its
/// SUBACK.
async fn subscribed(args: &[&str], n: u64) -> tokio::task::JoinHandle<loadtest::figures::Figures> {
    let plan = Arc::new(plan(args));
    let live = Arc::new(Live::new());
    let task = tokio::spawn({
        let live = live.clone();
        async move {
            let (_trigger, stop) = stop_signal();
            loadtest::runner::run_plan(plan, live, stop).await.unwrap()
        }
    });
    let ok = until(Duration::from_secs(10), || {
        live.subscribed.load(Ordering::Relaxed) == n
    })
    .await;
    assert!(ok, "subscribers did not get their SUBACKs");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_sub_pub_against_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir).await;
    let port = b.mqtt_addr().port().to_string();

    let f = run(&[
        "conn",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "20",
        "-i",
        "0",
        "--duration",
        "0.5",
    ])
    .await;
    assert_eq!(f.connected, 20, "{:?}", f.error_messages);
    assert_eq!((f.connect_failed, f.open_at_end, f.peak_open), (0, 20, 20));
    assert_eq!(f.connect_latency.count(), 20);
    assert!(f.errors.is_empty(), "{:?}", f.error_messages);

    let sub = subscribed(
        &[
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
            "100",
        ],
        3,
    )
    .await;
    let p = run(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "2",
        "-i",
        "0",
        "-t",
        "bench/%i",
        "-q",
        "1",
        "-I",
        "0",
        "-L",
        "50",
        "-F",
        "8",
        "-s",
        "100",
    ])
    .await;
    assert_eq!((p.published, p.acked, p.connected), (100, 100, 2));
    let s = sub.await.unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.error_messages);
    assert_eq!(s.received, 300);
    assert_eq!(
        (s.lost, s.duplicated, s.out_of_order, s.unmarked),
        (0, 0, 0, 0)
    );
    assert_eq!(s.e2e_latency.count(), 300);
    assert!(s.subscribers.iter().all(|r| r.received == 100));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_storm_and_scenario_against_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir).await;
    let port = b.mqtt_addr().port().to_string();
    let ws = b.ws_addr().unwrap().port().to_string();

    let sub = subscribed(
        &[
            "sub",
            "--ws",
            "-h",
            "127.0.0.1",
            "-p",
            &ws,
            "-c",
            "2",
            "-t",
            "ws/#",
            "-q",
            "1",
            "-L",
            "30",
        ],
        2,
    )
    .await;
    let p = run(&[
        "pub",
        "--ws",
        "-h",
        "127.0.0.1",
        "-p",
        &ws,
        "-c",
        "1",
        "-t",
        "ws/1",
        "-q",
        "1",
        "-I",
        "0",
        "-L",
        "30",
        "-F",
        "4",
    ])
    .await;
    assert_eq!((p.published, p.acked), (30, 30), "{:?}", p.error_messages);
    let s = sub.await.unwrap();
    assert_eq!(s.received, 60, "{:?}", s.error_messages);
    assert_eq!((s.lost, s.duplicated, s.out_of_order), (0, 0, 0));

    let f = run(&[
        "storm",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "30",
        "--rate",
        "2000",
        "--cycles",
        "2",
        "--hold",
        "0",
    ])
    .await;
    assert_eq!(f.cycles.len(), 3);
    for c in &f.cycles {
        assert_eq!(
            (c.clients, c.connected, c.unconnected),
            (30, 30, 0),
            "{c:?}"
        );
        assert_eq!(c.connect_latency.count(), 30);
    }
    assert_eq!(f.unconnected_at_end, 0);
    assert_eq!(f.connected, 90);

    let text = format!(
        r#"
        [defaults]
        host = "127.0.0.1"
        port = {port}
        interval = 0

        [[phase]]
        run = "conn"
        name = "a"
        parallel = true
        count = 5
        duration = 0.3

        [[phase]]
        run = "conn"
        name = "b"
        parallel = true
        count = 7
        prefix = "other"
        duration = 0.3

        [[phase]]
        run = "storm"
        count = 4
        cycles = 1
        hold = 0
        "#
    );
    let phases = loadtest::scenario::parse(&text, Seat::ALONE, 1).unwrap();
    let (_trigger, stop) = stop_signal();
    let figures = loadtest::app::run_here(&phases, stop, |_| {}).await;
    let connected: Vec<u64> = figures.iter().map(|f| f.connected).collect();
    assert_eq!(connected, [5, 7, 8]);
    assert_eq!(figures[0].peak_open, 5);
    assert_eq!(figures[2].unconnected_at_end, 0);
    b.shutdown().await;
}
