//! An idle upgraded WebSocket connection stays small: after the upgrade only the `WsIo`
//! remains (the HTTP connection and its buffers are gone) and the WebSocket library's read
//! buffer is 4 KiB, not its 128 KiB default. Measured as the process's resident memory
//! growth over many idle connections (both ends in this process, raw TCP clients); the
//! 128 KiB default alone would be about 134 KiB per connection here.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshmq_shared::config::WebsocketOptions;
use replicant_node::ws::{self, WsConfig, WsIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

/// Connections opened per measurement.
const N: u64 = 1000;

/// The budget per idle connection, both ends and their tasks included.
const BUDGET_KIB: u64 = 24;

/// This process's resident set size.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Upgrades a raw TCP connection and exchanges one 2-byte message.
async fn idle_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /mqtt HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // A masked binary frame with a PINGREQ; the echo comes back unmasked.
    tcp.write_all(&[0x82, 0x82, 0, 0, 0, 0, 0xc0, 0x00])
        .await
        .unwrap();
    let mut echo = [0u8; 4];
    tcp.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, [0x82, 0x02, 0xc0, 0x00]);
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_connections_stay_small() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Echo one message, then wait for more, as an MQTT connection waits for its next packet.
    let on_conn = move |mut io: WsIo, _peer: SocketAddr| {
        tokio::spawn(async move {
            let mut b = [0u8; 2];
            if io.read_exact(&mut b).await.is_ok() && io.write_all(&b).await.is_ok() {
                let _ = io.flush().await;
                let mut more = [0u8; 1];
                let _ = io.read(&mut more).await;
            }
        });
    };
    let cfg = WsConfig::new(&WebsocketOptions::default(), &[], 1 << 20).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(ws::serve_with(
        listener,
        on_conn,
        shutdown.clone(),
        Arc::new(cfg),
    ));
    let mut clients = Vec::new();
    // A first round warms up the allocator and the runtime; the second is measured.
    let mut per_conn = 0;
    for _ in 0..2 {
        let before = rss_kib();
        for _ in 0..N {
            clients.push(timeout(DEADLINE, idle_client(addr)).await.unwrap());
        }
        per_conn = rss_kib().saturating_sub(before) / N;
    }
    assert!(
        per_conn <= BUDGET_KIB,
        "{per_conn} KiB per idle WebSocket connection (budget {BUDGET_KIB} KiB)"
    );
    shutdown.cancel();
}
