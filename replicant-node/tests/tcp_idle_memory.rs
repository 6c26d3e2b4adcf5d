//! An idle MQTT connection on a plain TCP listener stays small with named listeners: its
//! task does not carry the PROXY, TLS or WebSocket steps (they run in a task of their own
//! that ends at the hand-off), and what it holds of its listener is two pointers. Measured
//! as the process's resident memory growth over many idle connections (broker and raw
//! clients in this process), in the second of two rounds (the first warms the allocator
//! up). Its own test binary: other tests would move the process's RSS meanwhile.
//!
//! A debug build's futures are larger than a release build's; the budget is for this
//! test's build, the release figure is `loadtest/bench/compare`'s `idle` scenario.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::time::Duration;

use meshmq_shared::config::Config;
use replicant_node::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const DEADLINE: Duration = Duration::from_secs(30);

/// Connections opened per round.
const N: u64 = 2000;

/// The budget per idle connection, broker and client ends included (debug build). Measured
/// on this box: about 5.2 KiB before named listeners and after (5150 to 5290 B); a task
/// that carried the TLS or PROXY steps would be well over.
const BUDGET_BYTES: u64 = 6 * 1024;

/// This process's resident set size.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 3.1.1 CONNECT for `id` (clean session, keep-alive 600 s), answered by CONNACK 0.
async fn idle_client(addr: SocketAddr, id: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut packet = vec![0x10, (10 + 2 + id.len()) as u8];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0x02, 0x58]);
    packet.extend_from_slice(&(id.len() as u16).to_be_bytes());
    packet.extend_from_slice(id.as_bytes());
    tcp.write_all(&packet).await.unwrap();
    let mut connack = [0u8; 4];
    tcp.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);
    // A PINGREQ answered: the connection is in its main loop.
    tcp.write_all(&[0xc0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    tcp.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, [0xd0, 0x00]);
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_stay_small() {
    let mut config = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listeners.mqtt_bind = any;
    config.listeners.ws_bind = None;
    config.listeners.http_bind = None;
    config.cluster.peer_bind = any;
    let dir = tempfile::tempdir().unwrap();
    config.node.data_dir = dir.path().to_path_buf();
    let broker = Broker::builder(config).start().await.unwrap();
    let addr = broker.mqtt_addr();
    let mut clients = Vec::new();
    let mut per_conn = 0;
    for round in 0..2 {
        let before = rss_kib();
        for i in 0..N {
            let id = format!("idle-{round}-{i}");
            clients.push(timeout(DEADLINE, idle_client(addr, &id)).await.unwrap());
        }
        per_conn = rss_kib().saturating_sub(before) * 1024 / N;
    }
    println!("{per_conn} B per idle TCP connection (both ends, debug build)");
    assert!(
        per_conn <= BUDGET_BYTES,
        "{per_conn} B per idle TCP connection (budget {BUDGET_BYTES} B)"
    );
    drop(clients);
    broker.shutdown().await;
}
