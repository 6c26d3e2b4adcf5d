//! Drives the fan-out benchmark against a tiny fake broker started in the test and checks
//! that what the load generator counts is what actually crossed the wire.
//!
//! The fake broker (tokio `TcpListener` on 127.0.0.1:0) answers CONNECT and SUBSCRIBE,
//! acknowledges QoS 1 PUBLISHes, and forwards every PUBLISH frame byte for byte to every
//! subscriber through bounded queues, so it never drops: after the drain, deliveries must
//! equal publishes times subscribers exactly. Its parser is written here on purpose, apart
//! from the library's, so a shared bug cannot hide. Several listeners can share one
//! subscriber list: a fake "cluster" where a PUBLISH on one node reaches subscribers on all,
//! for the `--pub-hosts` / `--sub-hosts` split.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use loadtest::endpoint::Endpoint;
use loadtest::wire::MqttVersion;
use loadtest::{FanoutConfig, run_fanout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// Queues from the broker to each subscribed connection's writer task.
type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Vec<u8>>>>>;

/// Starts the fake broker; returns its port.
async fn start_fake_broker() -> u16 {
    start_node(Arc::default(), Arc::default()).await
}

/// Starts one listener of a fake broker whose subscribers are `subscribers` (shared by
/// every node of a fake cluster); counts its accepted connections in `accepted`.
async fn start_node(subscribers: Subscribers, accepted: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(stream, subscribers.clone()));
        }
    });
    port
}

/// Reads one packet: (first byte, body). `None` when the client went away.
async fn read_packet(rd: &mut OwnedReadHalf) -> Option<(u8, Vec<u8>)> {
    let first = rd.read_u8().await.ok()?;
    let mut len = 0usize;
    for shift in [0, 7, 14, 21] {
        let b = rd.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    rd.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

fn reframe(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len > 0 { b | 0x80 } else { b });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

async fn serve(stream: TcpStream, subscribers: Subscribers) {
    let (mut rd, mut wr) = stream.into_split();
    let (out, mut outbox) = mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Some(frame) = outbox.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let mut v5 = false;
    while let Some((first, body)) = read_packet(&mut rd).await {
        match first >> 4 {
            1 => {
                v5 = body[6] == 5;
                let connack = if v5 {
                    vec![0x20, 3, 0, 0, 0]
                } else {
                    vec![0x20, 2, 0, 0]
                };
                out.send(connack).await.unwrap();
            }
            8 => {
                let mut suback = vec![0x90, 3, body[0], body[1], *body.last().unwrap() & 3];
                if v5 {
                    suback = vec![0x90, 4, body[0], body[1], 0, *body.last().unwrap() & 3];
                }
                out.send(suback).await.unwrap();
                subscribers.lock().await.push(out.clone());
            }
            3 => {
                let qos = (first >> 1) & 3;
                let frame = reframe(first, &body);
                let targets = subscribers.lock().await.clone();
                for target in targets {
                    let _ = target.send(frame.clone()).await;
                }
                if qos == 1 {
                    let at = 2 + usize::from(u16::from_be_bytes([body[0], body[1]]));
                    out.send(vec![0x40, 2, body[at], body[at + 1]])
                        .await
                        .unwrap();
                }
            }
            14 => break,
            _ => {}
        }
    }
}

fn config(port: u16, publishers: usize, subscribers: usize, qos: u8) -> FanoutConfig {
    FanoutConfig {
        publishers,
        subscribers,
        qos,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        // Drain ends as soon as the full fan-out has arrived; the quiet period only
        // matters if deliveries go missing, so it is generous.
        drain_quiet: Duration::from_secs(4),
        ..FanoutConfig::new("127.0.0.1", port)
    }
}

#[tokio::test]
async fn qos0_one_to_one_counts_every_delivery() {
    let port = start_fake_broker().await;
    let report = run_fanout(&config(port, 1, 1, 0)).await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_messages);
    assert!(report.published_total > 0);
    assert_eq!(report.delivered_total, report.published_total);
    assert_eq!(report.delivered_ratio, 1.0);
    assert_eq!(report.foreign_total, 0);
    assert!(report.delivered_per_sec > 0.0 && report.published_per_sec > 0.0);
    assert!(report.window_secs >= 1.0);
    assert!(
        report.latency.is_some(),
        "latency samples are kept in the window"
    );
}

#[tokio::test]
async fn qos1_v5_fans_out_to_every_subscriber_and_counts_acks() {
    let port = start_fake_broker().await;
    let cfg = FanoutConfig {
        version: MqttVersion::V5,
        inflight: 8,
        ..config(port, 2, 3, 1)
    };
    let report = run_fanout(&cfg).await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_messages);
    assert!(report.published_total > 0);
    assert_eq!(report.delivered_total, 3 * report.published_total);
    assert_eq!(report.delivered_ratio, 1.0);
    assert!(report.acked_per_sec > 0.0);
    let per_sub = report.delivered_per_sec_min_subscriber;
    assert!(per_sub > 0.0 && per_sub <= report.delivered_per_sec_max_subscriber);
}

#[tokio::test]
async fn reports_broker_rss_and_cpu_when_given_a_pid() {
    let port = start_fake_broker().await;
    let cfg = FanoutConfig {
        broker_pids: vec![std::process::id()],
        ..config(port, 1, 1, 0)
    };
    let report = run_fanout(&cfg).await.unwrap();
    assert!(report.broker_rss_max_mib.is_some_and(|mib| mib > 0.0));
    assert!(report.broker_cpu_percent.is_some());
}

#[tokio::test]
async fn refuses_non_loopback_host_without_connecting() {
    let cfg = FanoutConfig::new("192.0.2.1", 1883);
    let err = run_fanout(&cfg).await.unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err:#}");
}

#[tokio::test]
async fn fails_setup_when_nothing_listens() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    assert!(run_fanout(&config(port, 1, 1, 0)).await.is_err());
}

#[tokio::test]
async fn publishers_and_subscribers_spread_over_nodes() {
    let subscribers: Subscribers = Arc::default();
    let accepted: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let mut ports = Vec::new();
    for count in &accepted {
        ports.push(start_node(subscribers.clone(), count.clone()).await);
    }
    let node = |i: usize| Endpoint::new("127.0.0.1", ports[i]);
    let cfg = FanoutConfig {
        pub_hosts: vec![node(0)],
        sub_hosts: vec![node(1), node(2)],
        ..config(ports[0], 2, 5, 1)
    };
    let report = run_fanout(&cfg).await.unwrap();
    assert_eq!(report.errors, 0, "{:?}", report.error_messages);
    let seen: Vec<usize> = accepted.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    assert_eq!(
        seen,
        vec![2, 3, 2],
        "publishers on node 0, subscribers round-robin on 1, 2"
    );
    assert!(report.published_total > 0);
    assert_eq!(report.delivered_total, 5 * report.published_total);
    assert_eq!(report.sub_endpoints.len(), 2);
}

#[tokio::test]
async fn rate_limited_publishers_hold_the_offered_load() {
    let port = start_fake_broker().await;
    for qos in [0, 1] {
        let cfg = FanoutConfig {
            rate: Some(2_000.0),
            sample_every: 1,
            ..config(port, 4, 2, qos)
        };
        let report = run_fanout(&cfg).await.unwrap();
        assert_eq!(report.errors, 0, "{:?}", report.error_messages);
        let rate = report.published_per_sec;
        assert!(
            (1_600.0..=2_400.0).contains(&rate),
            "QoS {qos}: {rate} msg/s"
        );
        assert_eq!(report.delivered_total, 2 * report.published_total);
        let samples = report.latency.as_ref().map_or(0, |l| l.samples) as f64;
        let in_window = report.delivered_per_sec * report.window_secs;
        assert!(samples > 0.8 * in_window, "QoS {qos}: {samples} samples");
        assert_eq!(report.offered_per_sec, Some(2_000.0));
    }
}
