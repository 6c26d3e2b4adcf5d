//! Helpers shared by the broker's integration tests: starting a broker on loopback port 0
//! with a configuration tweak (standalone, or a round-robin proxy over a cluster: see
//! [`topology`]), an in-process core cluster ([`cluster`]), polling a condition with a
//! deadline, reading `/metrics`, and the two kinds of client the tests drive ([`raw`] bytes
//! over TCP, [`clients`] = rumqttc).
//!
//! Owns nothing the broker uses: it must never reach into broker internals beyond the public
//! `BrokerHandle` / `CoreNode` APIs, and never sleep to synchronise (only to prove that
//! something does *not* happen within a bounded window).

#![allow(dead_code)]

pub mod clients;
pub mod cluster;
pub mod proxy;
pub mod raw;
pub mod topology;

pub use topology::{HttpNode, TestBroker};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshmq_shared::config::Config;
use replicant_node::Authorizer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Default deadline for anything that is expected to happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// Window used to prove that something does NOT arrive (after a marker, where possible).
pub const QUIET: Duration = Duration::from_millis(300);

/// A configuration with every listener on 127.0.0.1:0 and a private data directory.
pub fn test_config() -> Config {
    let mut config = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    config.listeners.mqtt_bind = any;
    config.listeners.ws_bind = Some(any);
    config.listeners.http_bind = Some(any);
    config.cluster.peer_bind = any;
    config.node.data_dir = std::env::temp_dir().join(unique("meshmq-itest"));
    config
}

/// Starts a broker with `tweak` applied to [`test_config`], in the topology
/// `MESHMQ_TEST_TOPOLOGY` selects ([`Topology::from_env`]).
pub async fn start_broker(tweak: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::start(tweak, None).await
}

/// Starts a broker with the default configuration.
pub async fn broker() -> TestBroker {
    start_broker(|_| {}).await
}

/// Starts a broker with an authorization hook (on every replicant in rr-cluster mode).
pub async fn start_broker_with_authz(
    tweak: impl FnOnce(&mut Config),
    authz: Arc<dyn Authorizer>,
) -> TestBroker {
    TestBroker::start(tweak, Some(authz)).await
}

/// A name unique within this test process (client ids, topics, directories).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` every 10 ms until it holds; false if `deadline` passes first.
pub async fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`] with an async condition.
pub async fn wait_until_async<F, Fut>(deadline: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET path` over raw HTTP/1.1 (connection: close); returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "").await
}

/// `POST path` with a JSON `body` over raw HTTP/1.1; returns (status, body).
pub async fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    http_request(addr, "POST", path, body).await
}

async fn http_request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_call(addr, method, path, body, None).await
}

/// Any `method` with a JSON `body` and, when given, `Authorization: Bearer <key>`.
pub async fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    api_key: Option<&str>,
) -> (u16, String) {
    let auth = api_key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("http connect in time")
        .expect("http connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("http write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("http response in time")
        .expect("http read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match text.find("\r\n\r\n") {
        Some(i) => text[i + 4..].to_owned(),
        None => String::new(),
    };
    let chunked = text[..text.find("\r\n\r\n").unwrap_or(0)]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(&body) } else { body })
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("\r\n") {
        let Ok(n) = usize::from_str_radix(rest[..i].trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < i + 2 + n {
            break;
        }
        out.push_str(&rest[i + 2..i + 2 + n]);
        rest = rest[i + 2 + n..].trim_start_matches("\r\n");
    }
    out
}

/// The `/metrics` text of a broker.
pub async fn metrics_text(handle: &impl HttpNode) -> String {
    let addr = handle.http_addr().expect("http listener enabled");
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    body
}

/// Sum of every sample of metric `name` whose label set contains all of `labels`
/// (e.g. `&[("reason", "queue_full")]`); `None` when no such sample exists.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue; // another metric whose name starts with `name`
        };
        let wanted = labels.iter().all(|(k, v)| {
            label_part
                .split(',')
                .any(|kv| kv.trim() == format!("{k}=\"{v}\""))
        });
        if !wanted {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Decodes a hex string, ignoring whitespace (`"30 05 00 01"`).
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            u8::from_str_radix(std::str::from_utf8(pair).expect("ascii hex"), 16)
                .expect("hex digit")
        })
        .collect()
}

#[test]
fn metric_sum_parses_prometheus_text() {
    let text = "# TYPE x counter\nmeshmq_x_total{reason=\"a\",node=\"n\"} 3\nmeshmq_x_total{reason=\"b\"} 4\nmeshmq_x_total_other 9\nmeshmq_y 1.5\n";
    assert_eq!(
        metric_sum(text, "meshmq_x_total", &[("reason", "a")]),
        Some(3.0)
    );
    assert_eq!(metric_sum(text, "meshmq_x_total", &[]), Some(7.0));
    assert_eq!(metric_sum(text, "meshmq_y", &[]), Some(1.5));
    assert_eq!(metric_sum(text, "meshmq_z", &[]), None);
    assert_eq!(hex("30 0a ff"), vec![0x30, 0x0a, 0xff]);
}
