//! What the bench reads from the machine and the nodes: RSS and free memory from `/proc`,
//! plain HTTP/1.1 requests to the nodes' admin endpoints, Prometheus samples, and the
//! "raft snapshot built" lines of a core's log. Every network call has a deadline.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes of an HTTP answer the bench reads (a `/metrics` page is well below).
const MAX_ANSWER: u64 = 16 << 20;

/// Resident set size of `pid` in bytes (`VmRSS`).
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the process gone?)"))?;
    kib_field(&status, "VmRSS:").with_context(|| format!("no VmRSS for pid {pid}"))
}

/// `MemAvailable` of the machine in bytes.
pub fn mem_available() -> Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo")?;
    kib_field(&info, "MemAvailable:").context("no MemAvailable in /proc/meminfo")
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// One HTTP/1.1 request (`Connection: close`), bounded by `timeout`: status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{method} http://{addr}{path}: no answer in {timeout:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{method} http://{addr}{path}: malformed answer");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// Joins the chunks of a chunked body (the sizes are dropped).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Sum of every sample of `name` (any labels) in a Prometheus text page.
pub fn metric_sum(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The `bytes=` of the last "raft snapshot built" line in a core's log (colours or not).
pub fn last_snapshot_bytes(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("raft snapshot built"))?;
    let line = strip_ansi(line);
    let at = line.find("bytes=")? + "bytes=".len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `s` without ANSI colour sequences (ESC `[` ... `m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_seq = false;
    for c in s.chars() {
        match (in_seq, c) {
            (false, '\x1b') => in_seq = true,
            (false, c) => out.push(c),
            (true, 'm') => in_seq = false,
            (true, _) => {}
        }
    }
    out
}

/// Whether something accepts TCP connections on `addr`.
pub async fn port_open(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Bytes as MiB with one decimal.
pub fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}
