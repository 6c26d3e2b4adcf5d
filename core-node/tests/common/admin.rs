//! Helpers of the admin HTTP tests (`admin_http.rs`, `admin_https.rs`): real cores on port 0,
//! a raw HTTP/1.1 client over any stream (plain TCP or TLS), and waiting with a deadline.
//! Included with `#[path]` by those two test binaries only.

#![allow(dead_code)] // each binary uses its own subset

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_node::node::{CoreConfig, CoreNode, RaftTimings, batcher::GroupCommit};
use meshmq_shared::quic::certs;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Deadline of every wait.
pub const WAIT: Duration = Duration::from_secs(20);

/// Starts core `id` on `port` with fast Raft timings; `members` are the voters of a new group
/// (a core not among them waits to be added). Certificates come from `dir/certs`.
pub async fn start(id: u64, port: u16, members: &[(u64, String)], dir: &Path) -> Arc<CoreNode> {
    CoreNode::start(CoreConfig {
        node_id: id,
        core_bind: SocketAddr::from(([127, 0, 0, 1], port)),
        advertise: None,
        data_dir: dir.join(format!("core-{id}")),
        initial_members: members.to_vec(),
        certs: certs::CertPaths::in_dir(&dir.join("certs"), &format!("core-{id}")),
        timings: RaftTimings {
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            ..RaftTimings::default()
        },
        group_commit: GroupCommit::default(),
        follow: core_node::node::follow::FollowLimits::default(),
    })
    .await
    .expect("core starts")
}

/// A single-voter group (core 1) that has elected itself, with certificates for `names` in
/// `dir/certs`.
pub async fn single_core(dir: &Path, names: &[&str]) -> Arc<CoreNode> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    certs::generate(&dir.join("certs"), &names).expect("certificates");
    let port = free_ports(1)[0];
    let core = start(1, port, &[(1, format!("127.0.0.1:{port}"))], dir).await;
    wait_until("core 1 leads", || core.is_leader()).await;
    core
}

/// Free UDP ports (initial members' addresses must be known up front).
pub fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().expect("addr").port())
        .collect()
}

/// Polls `cond` until it holds; fails the test after [`WAIT`].
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ids of the voters as `core` sees them, sorted.
pub fn voters(core: &CoreNode) -> Vec<u64> {
    let mut v: Vec<u64> = core
        .group()
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    v.sort_unstable();
    v
}

/// The ids of every member (voters and learners) as `core` sees them, sorted.
pub fn members(core: &CoreNode) -> Vec<u64> {
    let mut v: Vec<u64> = core.group().members.iter().map(|m| m.id).collect();
    v.sort_unstable();
    v
}

/// One HTTP/1.1 request (`connection: close`) on `stream`; returns the status and the body.
/// An error is the connection failing before a whole status line came back.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await?;
    stream.flush().await?;
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer in time"))?;
    // A TLS peer may close without close_notify once the answer is out: keep what came.
    if let Err(e) = read
        && out.is_empty()
    {
        return Err(e);
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Ok((status, body))
}

/// [`request`] over a new plain TCP connection to `addr`; panics on a connection failure.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    request(stream, method, path, headers, body)
        .await
        .expect("an HTTP answer")
}

/// The process-wide metrics as `/metrics` renders them.
pub fn metrics_text() -> String {
    core_node::prometheus::prometheus_handle().render()
}

/// The value of the counter line that starts with `series` (0 when absent).
pub fn counter(series: &str) -> u64 {
    metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
