//! QUIC + mutual TLS between real loopback endpoints (port 0), the message framing on real
//! streams, and the certificate files.
//!
//! The server side is a small accept loop that answers a `FollowRequest` (an empty
//! `StatusRequest` decodes as one) with a `StatusResponse` echoing `from_index` and `node`, so
//! concurrent requests can check that each got its own answer.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshmq_proto::core::{FollowRequest, StatusRequest, StatusResponse};
use meshmq_shared::quic::frame::{self, FrameError, MAX_FRAME};
use meshmq_shared::quic::{ALPN_CORE, ALPN_PEER, CertPaths, Identity, certs, endpoint};
use tokio::task::JoinSet;

/// Bound on every network wait of these tests.
const T: Duration = Duration::from_secs(5);
const LOCAL: &str = "127.0.0.1:0";

/// What the test server does with a request.
#[derive(Clone, Copy)]
enum Mode {
    /// Answer with a `StatusResponse`.
    Answer,
    /// Read the request, never answer, keep the stream open until the client gives up.
    Silent,
    /// Read the request, finish the stream without answering.
    FinishEmpty,
}

/// Generates a cluster into `dir` and loads the identities of `nodes`.
fn cluster(dir: &Path, nodes: &[&str]) -> Vec<Identity> {
    let names: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
    certs::generate(dir, &names).unwrap();
    nodes
        .iter()
        .map(|n| Identity::load(&CertPaths::in_dir(dir, n)).unwrap())
        .collect()
}

/// Binds a server endpoint for `id` on loopback and serves it; returns its address and the
/// number of requests answered so far.
fn serve(id: &Identity, alpn: &[u8], node_id: u64, mode: Mode) -> (SocketAddr, Arc<AtomicUsize>) {
    let ep = endpoint::bind(LOCAL.parse().unwrap(), id, alpn).unwrap();
    let addr = ep.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(handle(send, recv, node_id, mode, counter.clone()));
                }
            });
        }
    });
    (addr, served)
}

async fn handle(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    node_id: u64,
    mode: Mode,
    served: Arc<AtomicUsize>,
) {
    let Ok(Some(req)) = frame::read_msg::<FollowRequest>(&mut recv, MAX_FRAME).await else {
        return;
    };
    match mode {
        Mode::Answer => {
            let resp = StatusResponse {
                node_id,
                commit_index: req.from_index,
                leader_addr: req.node,
                ..Default::default()
            };
            if frame::write_msg(&mut send, &resp).await.is_ok() && send.finish().is_ok() {
                served.fetch_add(1, Ordering::SeqCst);
            }
        }
        Mode::Silent => {
            let _ = send.stopped().await;
        }
        Mode::FinishEmpty => {
            let _ = send.finish();
        }
    }
}

async fn status(conn: &quinn::Connection) -> Result<StatusResponse, FrameError> {
    frame::request(conn, &StatusRequest {}, MAX_FRAME, T).await
}

#[tokio::test]
async fn two_nodes_connect_and_round_trip_a_status_request() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "c2"]);
    let (addr, served) = serve(&ids[0], ALPN_CORE, 1, Mode::Answer);
    // c2 dials out from its own server endpoint (bind sets the default client config).
    let c2 = endpoint::bind(LOCAL.parse().unwrap(), &ids[1], ALPN_CORE).unwrap();
    let conn = endpoint::connect(&c2, addr, T).await.unwrap();
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    assert_eq!(alpn.as_deref(), Some(ALPN_CORE));
    let resp = status(&conn).await.unwrap();
    assert_eq!(resp.node_id, 1);
    assert_eq!(served.load(Ordering::SeqCst), 1);
    // And from a client-only endpoint too.
    let client = endpoint::client(&ids[1], ALPN_CORE, addr).unwrap();
    let conn = endpoint::connect(&client, addr, T).await.unwrap();
    assert_eq!(status(&conn).await.unwrap().node_id, 1);
}

#[tokio::test]
async fn many_concurrent_requests_on_one_connection_each_get_their_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "c2"]);
    let (addr, served) = serve(&ids[0], ALPN_CORE, 1, Mode::Answer);
    let client = endpoint::client(&ids[1], ALPN_CORE, addr).unwrap();
    let conn = endpoint::connect(&client, addr, T).await.unwrap();
    let mut set = JoinSet::new();
    for i in 0..500u64 {
        let conn = conn.clone();
        set.spawn(async move {
            let req = FollowRequest {
                from_index: i,
                node: format!("r{i}"),
                projected: false,
            };
            let resp: StatusResponse = frame::request(&conn, &req, MAX_FRAME, T).await?;
            Ok::<_, FrameError>((i, resp))
        });
    }
    let mut seen = 0;
    while let Some(joined) = set.join_next().await {
        let (i, resp) = joined.unwrap().unwrap();
        assert_eq!(resp.commit_index, i);
        assert_eq!(resp.leader_addr, format!("r{i}"));
        seen += 1;
    }
    assert_eq!(seen, 500);
    assert_eq!(served.load(Ordering::SeqCst), 500);
}

#[tokio::test]
async fn a_large_message_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "c2"]);
    let (addr, _) = serve(&ids[0], ALPN_CORE, 1, Mode::Answer);
    let client = endpoint::client(&ids[1], ALPN_CORE, addr).unwrap();
    let conn = endpoint::connect(&client, addr, T).await.unwrap();
    let big = "x".repeat(8 << 20);
    let req = FollowRequest {
        from_index: 9,
        node: big.clone(),
        projected: false,
    };
    let resp: StatusResponse = frame::request(&conn, &req, MAX_FRAME, T * 4).await.unwrap();
    assert_eq!(resp.leader_addr.len(), big.len());
    // The answer is over a 1 MiB maximum: refused, not read.
    let err = frame::request::<_, StatusResponse>(&conn, &req, 1 << 20, T).await;
    assert!(matches!(err, Err(FrameError::TooLarge { max, .. }) if max == 1 << 20));
}

/// Asserts that `ep` cannot get a request served by `addr`: the handshake fails, or the
/// connection is closed at its first use (TLS 1.3 client auth is checked after the client
/// has finished its side of the handshake). A refusal must be an error, not a timeout.
async fn assert_refused(ep: &quinn::Endpoint, addr: SocketAddr, served: &AtomicUsize) {
    match endpoint::connect(ep, addr, T).await {
        Err(e) => assert!(
            matches!(e, endpoint::QuicError::Handshake { .. }),
            "expected a handshake error, got {e}"
        ),
        Ok(conn) => {
            let err = status(&conn)
                .await
                .expect_err("request served to a refused client");
            assert!(!matches!(err, FrameError::Timeout), "refusal timed out");
        }
    }
    assert_eq!(served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let ids = cluster(dir_a.path(), &["c1"]);
    cluster(dir_b.path(), &["intruder"]);
    let (addr, served) = serve(&ids[0], ALPN_CORE, 1, Mode::Answer);
    // The intruder trusts cluster A (so it accepts the server) but its own cert is from B.
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let b = CertPaths::in_dir(dir_b.path(), "intruder");
    let ca_a = read(&dir_a.path().join("ca.pem"));
    let intruder = Identity::from_pem(&ca_a, &read(&b.cert), &read(&b.key)).unwrap();
    assert!(intruder.check().is_err());
    let ep = endpoint::client(&intruder, ALPN_CORE, addr).unwrap();
    assert_refused(&ep, addr, &served).await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1"]);
    let (addr, served) = serve(&ids[0], ALPN_CORE, 1, Mode::Answer);
    let mut roots = rustls::RootCertStore::empty();
    for ca in ids[0].ca() {
        roots.add(ca.clone()).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_CORE.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client(LOCAL.parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    assert_refused(&ep, addr, &served).await;
}

#[tokio::test]
async fn a_client_with_the_wrong_alpn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "r1"]);
    let (addr, served) = serve(&ids[0], ALPN_CORE, 1, Mode::Answer);
    let ep = endpoint::client(&ids[1], ALPN_PEER, addr).unwrap();
    let err = endpoint::connect(&ep, addr, T)
        .await
        .expect_err("wrong ALPN accepted");
    assert!(
        matches!(err, endpoint::QuicError::Handshake { .. }),
        "{err}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn request_times_out_or_reports_a_missing_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "c2"]);
    let (silent, _) = serve(&ids[0], ALPN_CORE, 1, Mode::Silent);
    let (empty, _) = serve(&ids[0], ALPN_CORE, 1, Mode::FinishEmpty);
    let client = endpoint::client(&ids[1], ALPN_CORE, silent).unwrap();
    let conn = endpoint::connect(&client, silent, T).await.unwrap();
    let short = Duration::from_millis(200);
    let err = frame::request::<_, StatusResponse>(&conn, &StatusRequest {}, MAX_FRAME, short)
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::Timeout), "{err}");
    assert_eq!(err.label(), "timeout");
    let conn = endpoint::connect(&client, empty, T).await.unwrap();
    let err = status(&conn).await.unwrap_err();
    assert!(matches!(err, FrameError::Closed), "{err}");
}

/// A connected pair on fresh endpoints: the client's connection, the server's, and both
/// endpoints (kept alive by the caller).
async fn pair(ids: &[Identity]) -> (quinn::Connection, quinn::Connection, [quinn::Endpoint; 2]) {
    let server = endpoint::bind(LOCAL.parse().unwrap(), &ids[0], ALPN_CORE).unwrap();
    let addr = server.local_addr().unwrap();
    let client = endpoint::client(&ids[1], ALPN_CORE, addr).unwrap();
    let (dialed, accepted) = tokio::join!(endpoint::connect(&client, addr, T), async {
        server.accept().await.unwrap().await.unwrap()
    });
    (dialed.unwrap(), accepted, [client, server])
}

/// Writes `raw` on a new stream (finished if `finish`), reads it on the other side with
/// `read_msg(max)`. The stream stays open while reading, so a read of a body that was never
/// sent would time out instead of returning.
async fn read_raw(
    ids: &[Identity],
    raw: &[u8],
    finish: bool,
    max: usize,
) -> Result<Option<StatusResponse>, FrameError> {
    let (client, server, _eps) = pair(ids).await;
    let (mut send, _recv) = client.open_bi().await.unwrap();
    send.write_all(raw).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let (_send, mut recv) = tokio::time::timeout(T, server.accept_bi())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(T, frame::read_msg(&mut recv, max))
        .await
        .expect("read_msg blocked")
}

fn framed(len: u32, body: &[u8]) -> Vec<u8> {
    let mut raw = len.to_be_bytes().to_vec();
    raw.extend_from_slice(body);
    raw
}

#[tokio::test]
async fn frame_errors_are_typed_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "c2"]);
    // Length over max: refused from the header alone (the body never comes).
    let err = read_raw(&ids, &framed(1000, b""), false, 100)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::TooLarge {
                len: 1000,
                max: 100
            }
        ),
        "{err}"
    );
    assert_eq!(err.label(), "too_large");
    // Finished in the middle of a body, or of the length prefix.
    let err = read_raw(&ids, &framed(100, &[0; 10]), true, MAX_FRAME)
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::Truncated), "{err}");
    let err = read_raw(&ids, &[0, 0], true, MAX_FRAME).await.unwrap_err();
    assert!(matches!(err, FrameError::Truncated), "{err}");
    // Garbage body.
    let err = read_raw(&ids, &framed(5, &[0xff; 5]), true, MAX_FRAME)
        .await
        .unwrap_err();
    assert!(matches!(err, FrameError::Decode(_)), "{err}");
    assert_eq!(err.label(), "decode");
    // A clean end before any byte, and a valid frame.
    assert!(
        read_raw(&ids, b"", true, MAX_FRAME)
            .await
            .unwrap()
            .is_none()
    );
    let ok = StatusResponse {
        node_id: 3,
        ..Default::default()
    };
    let body = prost::Message::encode_to_vec(&ok);
    let raw = framed(u32::try_from(body.len()).unwrap(), &body);
    assert_eq!(
        read_raw(&ids, &raw, true, MAX_FRAME).await.unwrap(),
        Some(ok)
    );
}

#[tokio::test]
async fn write_msg_refuses_a_message_over_max_frame() {
    let dir = tempfile::tempdir().unwrap();
    let ids = cluster(dir.path(), &["c1", "c2"]);
    let (client, _server, _eps) = pair(&ids).await;
    let (mut send, _recv) = client.open_bi().await.unwrap();
    let huge = StatusResponse {
        leader_addr: "x".repeat(MAX_FRAME),
        ..Default::default()
    };
    let err = frame::write_msg(&mut send, &huge).await.unwrap_err();
    assert!(
        matches!(err, FrameError::TooLarge { max: MAX_FRAME, .. }),
        "{err}"
    );
}

fn read_all(paths: &CertPaths) -> [Vec<u8>; 3] {
    [&paths.ca, &paths.cert, &paths.key].map(|p| std::fs::read(p).unwrap())
}

#[test]
fn ensure_dev_is_idempotent_and_keys_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let certs_dir = dir.path().join("certs");
    let first = certs::ensure_dev(&certs_dir, "dev").unwrap();
    let before = read_all(&first);
    let mtimes = |p: &CertPaths| {
        [&p.ca, &p.cert, &p.key].map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
    };
    let mtime_before = mtimes(&first);
    let second = certs::ensure_dev(&certs_dir, "dev").unwrap();
    assert_eq!(first, second);
    assert_eq!(read_all(&second), before);
    assert_eq!(mtimes(&second), mtime_before);
    let id = Identity::load(&second).unwrap();
    id.check().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in [&second.key, &certs_dir.join("ca.key")] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
    // A missing node key: the node's files are regenerated, the CA is kept.
    std::fs::remove_file(&second.key).unwrap();
    let third = certs::ensure_dev(&certs_dir, "dev").unwrap();
    let after = read_all(&third);
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    Identity::load(&third).unwrap().check().unwrap();
    // A production node: the CA certificate and its own files from a secret store, never the
    // CA's key. Nothing is generated and nothing is missing.
    std::fs::remove_file(certs_dir.join("ca.key")).unwrap();
    let fourth = certs::ensure_dev(&certs_dir, "dev").unwrap();
    assert_eq!(read_all(&fourth), after);
    assert!(!certs_dir.join("ca.key").exists());
    Identity::load(&fourth).unwrap().check().unwrap();
}

#[tokio::test]
async fn a_node_added_later_is_signed_by_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let old = cluster(dir.path(), &["c1"]);
    let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let c1_before = std::fs::read(dir.path().join("c1.pem")).unwrap();
    let new = cluster(dir.path(), &["c2"]);
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
    assert_eq!(std::fs::read(dir.path().join("c1.pem")).unwrap(), c1_before);
    new[0].check().unwrap();
    certs::generate(dir.path(), &[]).unwrap();
    // Old and new nodes talk both ways.
    let (addr_old, _) = serve(&old[0], ALPN_CORE, 1, Mode::Answer);
    let (addr_new, _) = serve(&new[0], ALPN_CORE, 2, Mode::Answer);
    let from_new = endpoint::client(&new[0], ALPN_CORE, addr_old).unwrap();
    let conn = endpoint::connect(&from_new, addr_old, T).await.unwrap();
    assert_eq!(status(&conn).await.unwrap().node_id, 1);
    let from_old = endpoint::client(&old[0], ALPN_CORE, addr_new).unwrap();
    let conn = endpoint::connect(&from_old, addr_new, T).await.unwrap();
    assert_eq!(status(&conn).await.unwrap().node_id, 2);
}

#[test]
fn certificate_errors_name_the_file_or_node() {
    let dir = tempfile::tempdir().unwrap();
    certs::generate(dir.path(), &["c1".to_owned()]).unwrap();
    let paths = CertPaths::in_dir(dir.path(), "c1");
    // Missing file.
    let missing = CertPaths {
        key: dir.path().join("nope.key"),
        ..paths.clone()
    };
    let err = Identity::load(&missing).unwrap_err().to_string();
    assert!(err.contains("nope.key"), "{err}");
    // A certificate file with no certificate in it.
    std::fs::write(&paths.cert, "not a pem file\n").unwrap();
    let err = Identity::load(&paths).unwrap_err().to_string();
    assert!(err.contains("c1.pem"), "{err}");
    // Invalid node names, an incomplete CA.
    for bad in ["", "../x", "a/b", "ca", "-x", "a_b"] {
        let err = certs::generate(dir.path(), &[bad.to_owned()]).unwrap_err();
        assert!(
            matches!(err, certs::CertError::InvalidNode { .. }),
            "{bad}: {err}"
        );
    }
    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    let err = certs::ensure_dev(dir.path(), "c2").unwrap_err();
    assert!(
        matches!(err, certs::CertError::IncompleteCa { .. }),
        "{err}"
    );
}
