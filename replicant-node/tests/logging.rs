//! The real `replicant-node` binary's log: with `MESHMQ_LOG__FORMAT=json` every stdout line
//! is one JSON object with an RFC 3339 UTC timestamp, the node's name and the level; and
//! `PUT /api/v5/log/level` changes the filter at run time: a debug event (a connection
//! closing) is absent before the change and present after it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bound on every wait.
const WAIT: Duration = Duration::from_secs(60);

/// Kills the child when the test ends, however it ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines until one satisfies `f` (every line read is kept in `seen`).
fn line_where(rx: &Receiver<String>, seen: &mut Vec<Value>, f: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no such line ({e}); seen: {seen:#?}"));
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        seen.push(v.clone());
        if f(&v) {
            return v;
        }
    }
}

/// An MQTT 3.1.1 client that connects, disconnects and waits for the server to close.
fn connect_and_disconnect(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).expect("mqtt connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let connect = [
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'a',
    ];
    s.write_all(&connect).expect("CONNECT");
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).expect("CONNACK");
    assert_eq!(ack, [0x20, 2, 0, 0]);
    s.write_all(&[0xE0, 0]).expect("DISCONNECT");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest); // the server closes after handling DISCONNECT
}

/// The node's static API key (the binary's standalone default requires a key).
const KEY: &str = "logging-test-static-key";

/// A request to the node's API with the key; the status and the body.
fn api(http: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(http).expect("http connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\
         Authorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// `PUT /api/v5/log/level` with `body`; the status.
fn put_level(http: SocketAddr, body: &str) -> u16 {
    api(http, "PUT", "/api/v5/log/level", body).0
}

/// The node's filter in force (`GET /api/v5/log/level`): its level.
fn level_in_force(http: SocketAddr) -> String {
    let (status, body) = api(http, "GET", "/api/v5/log/level", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["level"].as_str().unwrap_or_default().to_owned()
}

/// An address in a `Some(127.0.0.1:1234)` or `127.0.0.1:1234` field.
fn addr_field(v: &Value) -> SocketAddr {
    let s = v.as_str().expect("address field");
    let s = s
        .strip_prefix("Some(")
        .map_or(s, |s| s.trim_end_matches(')'));
    s.parse().unwrap_or_else(|_| panic!("address {s}"))
}

/// Starts the binary, standalone, on `data`, JSON lines at info; its stdout lines.
fn start(data: &Path) -> (Kill, Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    cmd.args(["--data-dir", data.to_str().expect("utf-8")])
        .args(["--mqtt-bind", "127.0.0.1:0", "--ws-bind", "127.0.0.1:0"])
        .args(["--http-bind", "127.0.0.1:0", "--node-name", "log-node"])
        .env_remove("RUST_LOG")
        .env("MESHMQ_LOG__FORMAT", "json")
        .env("MESHMQ_LISTENERS__API_KEY", KEY)
        .env("MESHMQ_LOG__LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = Kill(cmd.spawn().expect("spawn replicant-node"));
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The MQTT and HTTP addresses of a `meshmq broker started` line.
fn addrs(started: &Value) -> (SocketAddr, SocketAddr) {
    (
        addr_field(&started["fields"]["mqtt_addr"]),
        addr_field(&started["fields"]["http_addr"]),
    )
}

#[test]
fn json_lines_and_a_level_changed_at_run_time() {
    let data = tempfile::tempdir().expect("tempdir");
    let (_child, rx) = start(data.path());
    let mut seen = Vec::new();
    let started = line_where(&rx, &mut seen, |v| v["message"] == "meshmq broker started");
    for v in &seen {
        assert_eq!(v["node"], "log-node", "{v}");
        let level = v["level"].as_str().expect("level");
        assert!(["INFO", "WARN", "ERROR"].contains(&level), "{v}");
        let ts = v["timestamp"].as_str().expect("timestamp");
        assert!(
            ts.ends_with('Z') && ts.len() >= 20 && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
    }
    let (mqtt, http) = addrs(&started);
    // At info: a connection's end is not logged.
    connect_and_disconnect(mqtt);
    assert_eq!(
        put_level(http, r#"{"level":"loud"}"#),
        400,
        "a bad level is refused"
    );
    assert_eq!(put_level(http, r#"{"level":"debug"}"#), 200);
    line_where(&rx, &mut seen, |v| v["message"] == "log filter changed");
    assert!(
        !seen.iter().any(|v| v["message"] == "connection closing"),
        "no debug line before the change: {seen:#?}"
    );
    connect_and_disconnect(mqtt);
    let closing = line_where(&rx, &mut seen, |v| v["message"] == "connection closing");
    assert_eq!(
        (closing["level"].as_str(), closing["node"].as_str()),
        (Some("DEBUG"), Some("log-node"))
    );
    assert_eq!(
        closing["span"]["client_id"], "a",
        "the connection span's fields: {closing}"
    );
}

/// `log.level` through the configuration API (cluster-wide, stored): in force at once (a
/// debug line appears), over a node-local change made since (`PUT /api/v5/log/level`) only
/// until the next start, and in force again from the start after a restart on the same
/// data (the standalone node's embedded core keeps the table).
#[test]
fn the_configured_log_level_applies_at_once_and_again_after_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let (child, rx) = start(data.path());
    let mut seen = Vec::new();
    let started = line_where(&rx, &mut seen, |v| v["message"] == "meshmq broker started");
    let (mqtt, http) = addrs(&started);
    assert_eq!(level_in_force(http), "info");
    let (status, body) = api(
        http,
        "PUT",
        "/api/v5/configs/log",
        r#"{"directives":"x=loud"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("log.directives"), "{body}");
    let (status, body) = api(http, "PUT", "/api/v5/configs/log", r#"{"level":"debug"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(level_in_force(http), "debug", "applied through the logger");
    connect_and_disconnect(mqtt);
    line_where(&rx, &mut seen, |v| v["message"] == "connection closing");
    // A node-local change holds until the restart.
    assert_eq!(put_level(http, r#"{"level":"warn"}"#), 200);
    assert_eq!(level_in_force(http), "warn");
    drop(child);

    let (_child, rx) = start(data.path());
    let mut seen = Vec::new();
    let started = line_where(&rx, &mut seen, |v| v["message"] == "meshmq broker started");
    let (mqtt, http) = addrs(&started);
    assert_eq!(
        level_in_force(http),
        "debug",
        "the stored level, from the start"
    );
    connect_and_disconnect(mqtt);
    let closing = line_where(&rx, &mut seen, |v| v["message"] == "connection closing");
    assert_eq!(closing["level"], "DEBUG");
}
