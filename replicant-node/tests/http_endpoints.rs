//! The HTTP endpoint served on 127.0.0.1:0 and queried with raw HTTP/1.1 over a TcpStream:
//! status lines and bodies of `/health`, `/metrics` and `/api/v5/status`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use meshmq_shared::metrics as m;
use replicant_node::http::{self, HttpState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(node: &str, connections: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = HttpState::new(node, Arc::new(AtomicUsize::new(connections)));
    let shutdown = CancellationToken::new();
    let api = axum::Router::new();
    let task = tokio::spawn(http::serve(listener, state, api, shutdown.clone()));
    Server {
        addr,
        shutdown,
        task,
    }
}

/// Sends `GET path` and returns (status line, headers, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    timeout(DEADLINE, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_string(),
        headers.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[tokio::test]
async fn health_is_ok_while_running() {
    let srv = start("n-health", 0).await;
    let (status, headers, body) = get(srv.addr, "/health").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    assert_eq!(body, r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn metrics_show_recorded_values_in_prometheus_format() {
    let srv = start("n-metrics", 0).await;
    // HttpState::new installed the process-wide recorder: these reach it.
    metrics::counter!(m::TAKEOVERS_TOTAL).increment(3);
    metrics::counter!(m::CONNACK_TOTAL, "reason" => "http_test").increment(2);
    metrics::gauge!(m::RETAINED_MESSAGES).set(42.0);
    metrics::histogram!(m::TABLE_TRANSACTION_SECONDS).record(0.0003);

    let (status, headers, body) = get(srv.addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(
        body.contains("# TYPE meshmq_takeovers_total counter"),
        "{body}"
    );
    assert!(body.contains("# HELP meshmq_takeovers_total"), "{body}");
    assert!(
        body.contains("meshmq_connack_total{reason=\"http_test\"} 2"),
        "{body}"
    );
    assert!(body.contains("meshmq_retained_messages 42"), "{body}");
    // The process figures are read for every scrape.
    for name in m::PROCESS {
        assert!(
            body.contains(&format!("\n{name} ")),
            "{name} missing: {body}"
        );
    }
    // Histogram, with our buckets (0.0003 s falls in le="0.0005" and above, not le="0.00025").
    assert!(
        body.contains("# TYPE meshmq_table_transaction_seconds histogram"),
        "{body}"
    );
    assert!(
        body.contains("meshmq_table_transaction_seconds_bucket{le=\"0.00025\"}"),
        "{body}"
    );
    assert!(
        body.contains("meshmq_table_transaction_seconds_bucket{le=\"+Inf\"}"),
        "{body}"
    );
}

#[tokio::test]
async fn two_servers_in_one_process_share_the_recorder() {
    let a = start("n-a", 0).await;
    let b = start("n-b", 0).await;
    metrics::counter!(m::WILL_MESSAGES_SENT_TOTAL).increment(1);
    for srv in [&a, &b] {
        let (status, _, body) = get(srv.addr, "/metrics").await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("meshmq_will_messages_sent_total"), "{body}");
    }
}

#[tokio::test]
async fn status_reports_node_version_and_connections() {
    let srv = start("meshmq@10.0.0.9", 5).await;
    let (status, _, body) = get(srv.addr, "/api/v5/status").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"], "meshmq@10.0.0.9");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["connections"], 5);
    assert!(v["uptime_secs"].is_u64(), "{body}");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let srv = start("n-404", 0).await;
    let (status, _, _) = get(srv.addr, "/nope").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let srv = start("n-stop", 0).await;
    let (status, _, _) = get(srv.addr, "/health").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    srv.shutdown.cancel();
    timeout(DEADLINE, srv.task).await.unwrap().unwrap().unwrap();
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "listener is closed"
    );
}
