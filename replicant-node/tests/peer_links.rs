//! Peer links between replicants over real QUIC endpoints on 127.0.0.1:0, with certificates
//! generated into a temporary directory: ordering and coalescing, concurrent senders, a
//! peer that goes down and comes back, full queues, removal, a client from another CA,
//! garbage on a stream, and applied-index barriers (waiting, down peers, timeouts,
//! concurrency, order with messages, restarts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshmq_proto::peer::{PeerHello, PeerMessage};
use meshmq_shared::quic::{ALPN_PEER, CertPaths, Identity, certs, endpoint, frame};
use parking_lot::Mutex;
use replicant_node::peer::{BarrierReport, Deliver, PeerConfig, PeerError, PeerStats, Peers};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[path = "peer_links/barriers.rs"]
mod barriers;

/// Bound on every wait for a condition.
const DEADLINE: Duration = Duration::from_secs(15);

/// A running `Peers` with what it received.
struct Node {
    peers: Peers,
    got: Arc<Mutex<Vec<PeerMessage>>>,
    stop: CancellationToken,
    /// Stands for the node's replica: its applied index.
    applied: watch::Sender<u64>,
}

impl Node {
    /// Moves the node's (pretend) replica to `index`.
    fn set_applied(&self, index: u64) {
        self.applied.send_replace(index);
    }

    fn addr(&self) -> String {
        self.peers.local_addr().to_string()
    }

    fn stats(&self) -> PeerStats {
        self.peers.stats()
    }

    /// Sequence numbers received from `sender`, in arrival order.
    fn seqs_from(&self, sender: &str) -> Vec<u64> {
        self.got
            .lock()
            .iter()
            .filter(|m| m.from_client == sender)
            .map(seq_of)
            .collect()
    }

    fn count_from(&self, sender: &str) -> usize {
        self.got
            .lock()
            .iter()
            .filter(|m| m.from_client == sender)
            .count()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A certificate directory with one CA and the given nodes.
fn cert_dir(nodes: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = nodes.iter().map(|n| (*n).to_owned()).collect();
    certs::generate(dir.path(), &names).expect("certificates");
    dir
}

fn identity(dir: &tempfile::TempDir, node: &str) -> Identity {
    Identity::load(&CertPaths::in_dir(dir.path(), node)).expect("identity")
}

fn try_start(
    id: Identity,
    node: &str,
    bind: SocketAddr,
    bounds: (usize, usize),
) -> Result<Node, PeerError> {
    let wire = meshmq_shared::wire_version::WireVersion::CURRENT;
    try_start_speaking(id, node, bind, bounds, wire)
}

/// As [`try_start`], sending `wire` as the protocol version in its hellos.
fn try_start_speaking(
    id: Identity,
    node: &str,
    bind: SocketAddr,
    (queue_len, queue_bytes): (usize, usize),
    wire: meshmq_shared::wire_version::WireVersion,
) -> Result<Node, PeerError> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let deliver: Deliver = Arc::new(move |m| sink.lock().push(m));
    let stop = CancellationToken::new();
    let (applied, applied_rx) = watch::channel(0);
    let cfg = PeerConfig {
        bind,
        identity: id,
        node: node.to_owned(),
        incarnation: 1,
        queue_len,
        queue_bytes,
        applied: applied_rx,
        on_session: None,
        wire,
    };
    let peers = Peers::start(cfg, deliver, stop.clone())?;
    Ok(Node {
        peers,
        got,
        stop,
        applied,
    })
}

/// The default byte bound of a link's queue (`cluster.peer_queue_bytes`).
const QUEUE_BYTES: usize = 64 << 20;

fn start(dir: &tempfile::TempDir, node: &str, queue_len: usize) -> Node {
    start_bounded(dir, node, queue_len, QUEUE_BYTES)
}

fn start_bounded(dir: &tempfile::TempDir, node: &str, queue_len: usize, bytes: usize) -> Node {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    try_start(identity(dir, node), node, any_port, (queue_len, bytes)).expect("peers start")
}

/// Message `seq` from `sender` (the sequence number is the payload).
fn msg(sender: &str, seq: u64) -> PeerMessage {
    PeerMessage {
        topic: format!("t/{sender}"),
        payload: Bytes::copy_from_slice(&seq.to_be_bytes()),
        qos: 1,
        from_client: sender.to_owned(),
        ..PeerMessage::default()
    }
}

fn seq_of(m: &PeerMessage) -> u64 {
    let mut b = [0u8; 8];
    if m.payload.len() == 8 {
        b.copy_from_slice(&m.payload);
    }
    u64::from_be_bytes(b)
}

/// Waits until `cond` holds; panics with `what` after [`DEADLINE`].
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates `from`'s link to `to` and waits until it is connected.
async fn link_up(from: &Node, to_name: &str, to: &Node) {
    from.peers.connect(to_name, &to.addr());
    wait_for(&format!("link to {to_name} up"), || {
        from.stats().link(to_name).up
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_in_order_in_fewer_batches() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 16_384);
    let b = start(&dir, "b", 16);
    link_up(&a, "b", &b).await;

    let to = b.addr();
    for i in 0..10_000 {
        a.peers.forward("b", &to, msg("a", i));
    }
    wait_for("10 000 messages at b", || b.count_from("a") == 10_000).await;

    assert_eq!(b.seqs_from("a"), (0..10_000).collect::<Vec<_>>());
    let s = a.stats().link("b");
    assert_eq!(s.sent, 10_000);
    assert_eq!(s.dropped(), 0, "{s:?}");
    assert!(s.batches < s.sent, "no coalescing: {s:?}");
    assert_eq!(b.stats().received, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_keep_their_own_order() {
    let dir = cert_dir(&["a", "b", "c"]);
    let a = start(&dir, "a", 8_192);
    let b = start(&dir, "b", 16);
    let c = start(&dir, "c", 8_192);
    link_up(&a, "b", &b).await;
    link_up(&c, "b", &b).await;

    let send = |from: Peers, name: &'static str, to: String| async move {
        for i in 0..5_000 {
            from.forward("b", &to, msg(name, i));
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
    };
    let ta = tokio::spawn(send(a.peers.clone(), "a", b.addr()));
    let tc = tokio::spawn(send(c.peers.clone(), "c", b.addr()));
    ta.await.expect("sender a");
    tc.await.expect("sender c");
    wait_for("both senders at b", || {
        b.count_from("a") == 5_000 && b.count_from("c") == 5_000
    })
    .await;

    let all: Vec<u64> = (0..5_000).collect();
    assert_eq!(b.seqs_from("a"), all);
    assert_eq!(b.seqs_from("c"), all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peer_blocks_no_one_and_is_reconnected() {
    let dir = cert_dir(&["a", "b", "c"]);
    let a = start(&dir, "a", 1_024);
    let b = start(&dir, "b", 16);
    let c = start(&dir, "c", 16);
    link_up(&a, "b", &b).await;
    link_up(&a, "c", &c).await;
    let (b_addr, c_addr) = (b.addr(), c.addr());
    let b_sock = b.peers.local_addr();
    for i in 0..100 {
        a.peers.forward("b", &b_addr, msg("a", i));
    }
    wait_for("first messages at b", || b.count_from("a") == 100).await;

    // A node that never existed: its messages are dropped at once.
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let nobody = gone.local_addr().expect("addr").to_string();
    drop(gone);
    let t = Instant::now();
    for i in 0..1_000 {
        a.peers.forward("nobody", &nobody, msg("a", i));
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(a.stats().link("nobody").dropped_peer_down, 1_000);

    // B goes down: A sees it, drops at once, and keeps delivering to C meanwhile.
    drop(b);
    wait_for("link to b down", || !a.stats().link("b").up).await;
    let before = a.stats().link("b").dropped_peer_down;
    let t = Instant::now();
    for i in 100..1_100 {
        a.peers.forward("b", &b_addr, msg("a", i));
    }
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(a.stats().link("b").dropped_peer_down - before, 1_000);
    for i in 0..200 {
        a.peers.forward("c", &c_addr, msg("a", i));
    }
    wait_for("messages at c while b is down", || c.count_from("a") == 200).await;
    assert_eq!(c.seqs_from("a"), (0..200).collect::<Vec<_>>());

    // B comes back on the same port (free once its connections drained).
    let mut b2 = None;
    wait_for("b rebound on its port", || {
        b2 = try_start(identity(&dir, "b"), "b", b_sock, (16, QUEUE_BYTES)).ok();
        b2.is_some()
    })
    .await;
    let b2 = b2.expect("b restarted");
    wait_for("link to b up again", || a.stats().link("b").up).await;
    assert!(
        a.stats().link("b").reconnects >= 1,
        "{:?}",
        a.stats().link("b")
    );
    for i in 2_000..2_100 {
        a.peers.forward("b", &b_addr, msg("a", i));
    }
    wait_for("new messages at the restarted b", || {
        b2.count_from("a") == 100
    })
    .await;
    assert_eq!(b2.seqs_from("a"), (2_000..2_100).collect::<Vec<_>>());
}

// Single-threaded: the link task cannot run while the test forwards without awaiting, which
// pauses the link deterministically.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 10);
    let b = start(&dir, "b", 16);
    link_up(&a, "b", &b).await;

    let to = b.addr();
    for i in 0..100 {
        a.peers.forward("b", &to, msg("a", i));
    }
    let s = a.stats().link("b");
    assert_eq!(s.dropped_queue_full, 90, "{s:?}");
    wait_for("the ten queued messages at b", || b.count_from("a") == 10).await;
    assert_eq!(b.seqs_from("a"), (0..10).collect::<Vec<_>>());
}

/// `cluster.peer_queue_bytes`: 64 KiB messages against a 1 MiB bound on a queue of 1 000
/// messages: what passes the bytes is dropped and counted as `queue_full`, and what was
/// queued arrives in order. (Without the byte bound all 100 were queued: 6.4 MiB.)
#[tokio::test(flavor = "current_thread")]
async fn a_queue_full_in_bytes_drops_and_counts() {
    let dir = cert_dir(&["a", "b"]);
    let a = start_bounded(&dir, "a", 1_000, 1 << 20);
    let b = start(&dir, "b", 16);
    link_up(&a, "b", &b).await;

    let to = b.addr();
    let big = |seq: u64| {
        let mut m = msg("a", seq);
        let mut payload = seq.to_be_bytes().to_vec();
        payload.resize(64 << 10, 0);
        m.payload = Bytes::from(payload);
        m
    };
    for i in 0..100 {
        a.peers.forward("b", &to, big(i));
    }
    let s = a.stats().link("b");
    // 15 messages of 64 KiB (and their encoding) fit in 1 MiB; the 16th does not.
    assert_eq!(s.dropped_queue_full, 85, "{s:?}");
    wait_for("the fifteen queued messages at b", || {
        b.count_from("a") == 15
    })
    .await;
    let got: Vec<u64> = b
        .got
        .lock()
        .iter()
        .map(|m| u64::from_be_bytes(m.payload[..8].try_into().expect("8 bytes")))
        .collect();
    assert_eq!(got, (0..15).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread")]
async fn removing_a_node_stops_its_link_and_counts_its_queue() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 100);
    let b = start(&dir, "b", 16);

    // A wrong address first: the link is re-created when the address changes.
    let gone = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let wrong = gone.local_addr().expect("addr").to_string();
    drop(gone);
    a.peers.connect("b", &wrong);
    link_up(&a, "b", &b).await;

    let to = b.addr();
    for i in 0..10 {
        a.peers.forward("b", &to, msg("a", i));
    }
    a.peers.remove("b");
    let s = a.stats().link("b");
    assert_eq!(s.dropped_stopped, 10, "{s:?}");
    wait_for("link to b down", || !a.stats().link("b").up).await;

    // The next forward creates a new link (dropped while it dials), which comes up.
    a.peers.forward("b", &to, msg("a", 99));
    assert_eq!(a.stats().link("b").dropped_peer_down, 1);
    wait_for("link to b up again", || a.stats().link("b").up).await;
    a.peers.forward("b", &to, msg("a", 100));
    wait_for("message after re-creation", || b.count_from("a") == 1).await;
    assert_eq!(b.seqs_from("a"), vec![100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_another_ca_cannot_deliver() {
    let dir = cert_dir(&["a", "b"]);
    let other = cert_dir(&["x"]);
    let b = start(&dir, "b", 16);
    let a = start(&dir, "a", 16);

    // Trusts the cluster CA (so it accepts b), but presents a certificate b must refuse.
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).expect("pem");
    let ours = CertPaths::in_dir(dir.path(), "x");
    let theirs = CertPaths::in_dir(other.path(), "x");
    let mixed = Identity::from_pem(&read(ours.ca), &read(theirs.cert), &read(theirs.key))
        .expect("identity");
    let x = try_start(
        mixed,
        "x",
        "127.0.0.1:0".parse().expect("addr"),
        (16, QUEUE_BYTES),
    )
    .expect("x");
    x.peers.connect("b", &b.addr());
    wait_for("b refusing x", || b.stats().handshake_failures >= 1).await;
    for i in 0..50 {
        x.peers.forward("b", &b.addr(), msg("x", i));
    }

    link_up(&a, "b", &b).await;
    a.peers.forward("b", &b.addr(), msg("a", 1));
    wait_for("a's message at b", || b.count_from("a") == 1).await;
    assert_eq!(b.count_from("x"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_stream_is_counted_and_the_server_keeps_serving() {
    let dir = cert_dir(&["a", "b", "g"]);
    let a = start(&dir, "a", 1_024);
    let b = start(&dir, "b", 16);
    let b_sock = b.peers.local_addr();

    let id = identity(&dir, "g");
    let ep = endpoint::client(&id, ALPN_PEER, b_sock).expect("client endpoint");
    let conn = endpoint::connect(&ep, b_sock, Duration::from_secs(2))
        .await
        .expect("connect");
    let hello = PeerHello {
        node: "g".into(),
        incarnation: 1,
        wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
    };

    // 1. Garbage instead of a hello.
    let mut s = conn.open_uni().await.expect("stream");
    s.write_all(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    let _ = s.finish();
    wait_for("garbage hello counted", || b.stats().malformed == 1).await;

    // 2. A hello, then a garbage batch.
    let mut s = conn.open_uni().await.expect("stream");
    frame::write_msg(&mut s, &hello).await.expect("hello");
    s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .expect("write");
    let _ = s.finish();
    wait_for("garbage batch counted", || b.stats().malformed == 2).await;

    // 3. A hello, then a length far over the limit.
    let mut s = conn.open_uni().await.expect("stream");
    frame::write_msg(&mut s, &hello).await.expect("hello");
    s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.expect("write");
    wait_for("oversized frame counted", || b.stats().malformed == 3).await;

    // 4. A hello with no node name.
    let mut s = conn.open_uni().await.expect("stream");
    frame::write_msg(&mut s, &PeerHello::default())
        .await
        .expect("hello");
    wait_for("empty hello counted", || b.stats().malformed == 4).await;

    // B still serves others, in order.
    link_up(&a, "b", &b).await;
    for i in 0..100 {
        a.peers.forward("b", &b.addr(), msg("a", i));
    }
    wait_for("a's messages at b", || b.count_from("a") == 100).await;
    assert_eq!(b.seqs_from("a"), (0..100).collect::<Vec<_>>());
    assert_eq!(b.got.lock().len(), 100, "nothing from the garbage streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_of_another_protocol_major_is_refused_and_counted() {
    use meshmq_proto::peer::PeerBatch;
    use meshmq_shared::wire_version::WireVersion;
    let scrape = replicant_node::http::prometheus_handle();
    let refused = || {
        scrape
            .render()
            .lines()
            .find_map(|l| {
                l.strip_prefix("meshmq_wire_protocol_refused_total{peer=\"replicant\"} ")?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0) as u64
    };
    let dir = cert_dir(&["b", "g", "x"]);
    let b = start(&dir, "b", 16);
    let b_sock = b.peers.local_addr();
    let id = identity(&dir, "g");
    let ep = endpoint::client(&id, ALPN_PEER, b_sock).expect("client endpoint");
    let conn = endpoint::connect(&ep, b_sock, Duration::from_secs(2))
        .await
        .expect("connect");
    let ours = WireVersion::CURRENT;
    let before = refused();

    // Another major, and no version at all: the stream is stopped with code 2, nothing of
    // it is delivered, and each refusal is counted.
    for wire in [Some(WireVersion::new(ours.major + 1, 0)), None] {
        let mut s = conn.open_uni().await.expect("stream");
        let hello = PeerHello {
            node: "g".into(),
            incarnation: 1,
            wire: wire.map(WireVersion::to_proto),
        };
        frame::write_msg(&mut s, &hello).await.expect("hello");
        let batch = PeerBatch {
            messages: vec![msg("g", 0)],
            ..Default::default()
        };
        let _ = frame::write_msg(&mut s, &batch).await;
        let stopped = tokio::time::timeout(Duration::from_secs(5), s.stopped())
            .await
            .expect("stopped in time");
        assert_eq!(
            stopped.ok().flatten().map(quinn::VarInt::into_inner),
            Some(2),
            "{wire:?}"
        );
    }
    wait_for("both refusals counted", || refused() >= before + 2).await;
    assert_eq!(
        b.count_from("g"),
        0,
        "nothing delivered from refused streams"
    );

    // A newer minor of the same major is served.
    let mut s = conn.open_uni().await.expect("stream");
    let hello = PeerHello {
        node: "g".into(),
        incarnation: 1,
        wire: Some(WireVersion::new(ours.major, ours.minor + 1).to_proto()),
    };
    frame::write_msg(&mut s, &hello).await.expect("hello");
    let batch = PeerBatch {
        messages: vec![msg("g", 7)],
        ..Default::default()
    };
    frame::write_msg(&mut s, &batch).await.expect("batch");
    wait_for("the newer minor's message delivered", || {
        b.count_from("g") == 1
    })
    .await;

    // A node of another major linking to b: b refuses every stream, the sender sees the
    // refusal (counted on both ends), nothing is delivered.
    let before = refused();
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let other = WireVersion::new(ours.major + 1, 0);
    let x = try_start_speaking(identity(&dir, "x"), "x", any_port, (16, QUEUE_BYTES), other)
        .expect("x starts");
    x.peers.connect("b", &b.addr());
    for i in 0..5 {
        x.peers.forward("b", &b.addr(), msg("x", i));
    }
    wait_for("refused at both ends", || refused() >= before + 2).await;
    assert_eq!(b.count_from("x"), 0);
}
