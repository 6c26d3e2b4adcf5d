//! A core killed with SIGKILL in the middle of a write storm restarts with every entry it had
//! acknowledged (committed entries are fsynced before the reply) — a real `core-node`
//! process, real QUIC, a replica rebuilt through `Follow` after the restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_node::api::{self, TransactError};
use meshmq_proto::core::{
    FollowFrame, FollowRequest, Request, Response, TransactRequest, follow_frame, request, response,
};
use meshmq_proto::tables::{Batch, Op};
use meshmq_shared::follow_snapshot::Staging;
use meshmq_shared::quic::{self, certs, frame, tls::Identity};
use meshmq_shared::tables::Tables;
use parking_lot::Mutex;

mod common;
use common::retained;

const WAIT: Duration = Duration::from_secs(20);

/// Starts `core-node` on port 0 and reads its bound core address from its first stdout line.
fn spawn_core(data: &Path, certs_dir: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_core-node"))
        .args([
            "--node-id",
            "1",
            "--core-bind",
            "127.0.0.1:0",
            "--http-bind",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--certs-dir")
        .arg(certs_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("core-node starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("core-node prints its endpoints");
    let v: serde_json::Value = serde_json::from_str(&line).expect("endpoints are JSON");
    let addr = v["core"].as_str().unwrap().parse().unwrap();
    (child, addr)
}

async fn transact(conn: &quinn::Connection, ops: Vec<Op>) -> Result<u64, TransactError> {
    let req = Request {
        kind: Some(request::Kind::Transact(TransactRequest {
            batch: Some(Batch { ops }),
            forwarded: false,
        })),
        wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
    };
    let resp: Response = frame::request(conn, &req, frame::MAX_FRAME, Duration::from_secs(5))
        .await
        .map_err(|e| TransactError::Unavailable(e.to_string()))?;
    match resp.kind {
        Some(response::Kind::Transact(t)) => api::from_wire(t).map(|c| c.index),
        other => Err(TransactError::Unavailable(format!("{other:?}"))),
    }
}

/// Connects, retrying until the core accepts and has a leader (itself) — deadline bound.
async fn connect_ready(ep: &quinn::Endpoint, addr: SocketAddr) -> quinn::Connection {
    let end = Instant::now() + WAIT;
    loop {
        if let Ok(c) = quic::endpoint::connect(ep, addr, Duration::from_secs(2)).await
            && transact(&c, vec![retained("crash/ready")]).await.is_ok()
        {
            return c;
        }
        assert!(Instant::now() < end, "core at {addr} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follows the log from index 1 until the replica reaches the core's applied index.
async fn replica_of(conn: &quinn::Connection) -> Tables {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let req = Request {
        kind: Some(request::Kind::Follow(FollowRequest {
            from_index: 1,
            node: "crash-test".into(),
            projected: false,
        })),
        wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
    };
    frame::write_msg(&mut send, &req).await.unwrap();
    let mut tables = Tables::new();
    let mut staging = None;
    let mut applied = 0;
    let end = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < end,
            "replica never caught up (applied {applied})"
        );
        let f: FollowFrame = tokio::time::timeout(
            Duration::from_secs(3),
            frame::read_msg(&mut recv, frame::MAX_FRAME),
        )
        .await
        .expect("a frame (heartbeats come every 500 ms)")
        .unwrap()
        .expect("the stream stays open");
        match f.kind.unwrap() {
            follow_frame::Kind::Snapshot(s) => {
                tables = Tables::from_snapshot(&s.tables.unwrap());
                applied = s.index;
            }
            follow_frame::Kind::SnapshotBegin(b) => {
                staging = Some(Staging::begin(b, u64::MAX).expect("a valid begin"));
            }
            follow_frame::Kind::SnapshotChunk(c) => {
                let st = staging.as_mut().expect("a chunk after a begin");
                st.absorb(c).expect("a consistent chunk");
            }
            follow_frame::Kind::SnapshotEnd(e) => {
                let st = staging.take().expect("an end after a begin");
                let (index, snapshot) = st.finish(e).expect("a complete snapshot");
                tables = Tables::from_snapshot(&snapshot);
                applied = index;
            }
            follow_frame::Kind::Entries(e) => {
                for entry in e.entries {
                    assert_eq!(entry.index, applied + 1, "entries arrive in order, no gap");
                    if let Some(b) = entry.batch {
                        tables.apply_batch(entry.index, &b);
                    }
                    applied = entry.index;
                }
            }
            follow_frame::Kind::Heartbeat(h) if h.commit_index == applied => return tables,
            follow_frame::Kind::Heartbeat(_) => {}
            follow_frame::Kind::Refused(e) => panic!("follow refused: {}", e.message),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    certs::generate(&certs_dir, &["core-1".into(), "client".into()]).unwrap();
    let data = dir.path().join("core");
    let id = Identity::load(&certs::CertPaths::in_dir(&certs_dir, "client")).unwrap();

    let (mut child, addr) = spawn_core(&data, &certs_dir);
    let ep = quic::endpoint::client(&id, quic::ALPN_CORE, addr).unwrap();
    let conn = connect_ready(&ep, addr).await;

    // 8 writers, each a sequence of single-op transactions; record every acknowledged topic.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (conn, acked) = (conn.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let topic = format!("crash/{w}/{i}");
                match transact(&conn, vec![retained(&topic)]).await {
                    Ok(_) => acked.lock().push(topic),
                    Err(_) => return,
                }
            }
        }));
    }
    let end = Instant::now() + WAIT;
    while acked.lock().len() < 400 {
        assert!(
            Instant::now() < end,
            "writes too slow: {} acked",
            acked.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-storm
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().clone();
    eprintln!("{} writes acknowledged before SIGKILL", acked.len());

    let (mut child, addr) = spawn_core(&data, &certs_dir);
    let ep = quic::endpoint::client(&id, quic::ALPN_CORE, addr).unwrap();
    let conn = connect_ready(&ep, addr).await;
    let tables = replica_of(&conn).await;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|t| tables.retained(t).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // And the core still takes writes after the restart.
    assert!(transact(&conn, vec![retained("crash/after")]).await.is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
}
