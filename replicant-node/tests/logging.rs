//! The real `replicant-node` binary's log: with `MESHMQ_LOG__FORMAT=json` every stdout line
//! is one JSON object with an RFC 3339 UTC timestamp, the node's name and the level; and
//! `PUT /api/v5/log/level` changes the filter at run time: a debug event (a connection
//! closing) is absent before the change and present after it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// `PUT /api/v5/log/level` with `body`; the status.
/// The node's static API key (the binary's standalone default requires a key).
const KEY: &str = "logging-test-static-key";

fn put_level(http: SocketAddr, body: &str) -> u16 {
    let mut s = TcpStream::connect(http).expect("http connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let req = format!(
        "PUT /api/v5/log/level HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\
         Authorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// An address in a `Some(127.0.0.1:1234)` or `127.0.0.1:1234` field.
fn addr_field(v: &Value) -> SocketAddr {
    let s = v.as_str().expect("address field");
    let s = s
        .strip_prefix("Some(")
        .map_or(s, |s| s.trim_end_matches(')'));
    s.parse().unwrap_or_else(|_| panic!("address {s}"))
}

#[test]
fn json_lines_and_a_level_changed_at_run_time() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    cmd.args(["--data-dir", data.path().to_str().expect("utf-8")])
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
    let mqtt = addr_field(&started["fields"]["mqtt_addr"]);
    let http = addr_field(&started["fields"]["http_addr"]);
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
