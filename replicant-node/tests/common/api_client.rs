//! A raw HTTP/1.1 client for the REST API tests: any method, an optional API key (`Bearer`),
//! a content type (or any headers, `Host` included) and a byte body, a multipart upload as
//! EMQX's `curl -F` sends it; chunked answers decoded, JSON answers parsed. One connection
//! per request (`Connection: close`), every step under [`API_WAIT`].

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Deadline of one request (long enough for a 100 000-user import on a busy machine).
pub const API_WAIT: Duration = Duration::from_secs(120);

/// A node's REST API.
#[derive(Debug, Clone)]
pub struct Api {
    /// The node's HTTP listener.
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub key: Option<String>,
}

impl Api {
    /// The API of the node listening on `addr`, without a key.
    pub fn new(addr: SocketAddr) -> Api {
        Api { addr, key: None }
    }

    /// The same API with `key` (or none).
    pub fn with_key(&self, key: Option<&str>) -> Api {
        Api {
            addr: self.addr,
            key: key.map(str::to_owned),
        }
    }

    /// Sends one request; (status, body bytes).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let host = self.addr.to_string();
        let mut headers = vec![("Host", host.as_str())];
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct));
        }
        self.send(method, path, &headers, body).await
    }

    /// Sends one request with exactly `headers` (plus `Connection`, `Content-Length` and the
    /// key): a test chooses its own `Host` (or none), `Origin`, `Content-Type`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut s = tokio::time::timeout(API_WAIT, TcpStream::connect(self.addr))
            .await
            .expect("api connect in time")
            .expect("api connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(key) = &self.key {
            head.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        head.push_str("\r\n");
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        tokio::time::timeout(API_WAIT, s.write_all(&req))
            .await
            .expect("api write in time")
            .expect("api write");
        let mut buf = Vec::new();
        tokio::time::timeout(API_WAIT, s.read_to_end(&mut buf))
            .await
            .expect("api answer in time")
            .expect("api read");
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("http head");
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let body = buf[end + 4..].to_vec();
        if head.contains("transfer-encoding: chunked") {
            (status, dechunk(&body))
        } else {
            (status, body)
        }
    }

    /// A request with a JSON answer (`Value::Null` when the body is empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let (status, body) = self.raw(method, path, content_type, body).await;
        if body.is_empty() {
            return (status, Value::Null);
        }
        let v = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{method} {path}: answer {status} is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, v)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, b"").await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None, b"").await
    }

    /// `method path` with a JSON body.
    pub async fn json(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json body");
        self.call(method, path, Some("application/json"), &bytes)
            .await
    }

    /// `POST path` as `curl -F 'filename=@<file_name>'` sends it.
    pub async fn upload(&self, path: &str, file_name: &str, data: &[u8]) -> (u16, Value) {
        let boundary = "meshmq-test-boundary-7d1f";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; \
             filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        self.call("POST", path, Some(&ct), &body).await
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let Some(n) = std::str::from_utf8(&rest[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        if n == 0 || rest.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + n]);
        rest = &rest[i + 2 + n..];
        rest = rest.strip_prefix(b"\r\n").unwrap_or(rest);
    }
    out
}
