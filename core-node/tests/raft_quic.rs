//! A real three-core Raft group in one process over QUIC with mutual TLS: redb stores in
//! tempdirs, `raft::network::Network` dialing, and a small accept loop serving
//! `raft::rpc_server::handle`. Checks that writes commit and apply on every core, that a new
//! leader is elected when the leader stops, and that the network maps unreachable peers,
//! silent peers and malformed replies to the right openraft errors without panicking.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use core_node::raft::network::Network;
use core_node::raft::rpc_server;
use core_node::raft::store::{self, StateMachineStore};
use core_node::raft::types::{EntryData, Node, NodeId, Raft};
use meshmq_proto::core::{Request, Response, request, response};
use meshmq_proto::tables::{Batch, NodeRole, NodeUp, Op, op::Kind};
use meshmq_shared::quic::{ALPN_CORE, certs, endpoint, frame, tls::Identity};
use meshmq_shared::wire_version::WireVersion;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{Config, Vote};
use prost::Message;
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// Deadline for elections, replication and applies.
const WAIT: Duration = Duration::from_secs(20);

/// One core: its store, Raft handle, QUIC endpoint and accept loop.
struct Core {
    id: NodeId,
    addr: SocketAddr,
    raft: Raft,
    sm: StateMachineStore,
    endpoint: quinn::Endpoint,
    accept: JoinHandle<()>,
    _data: TempDir,
}

impl Core {
    async fn stop(self) {
        self.raft.shutdown().await.expect("raft shutdown");
        self.endpoint.close(0u32.into(), b"stopped");
        self.accept.abort();
    }
}

/// The process-wide metrics recorder of this test binary (installed once).
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install recorder")
    })
}

/// Whether the scrape has a `meshmq_raft_rpc_total` series for `rpc` and `result`.
fn rpc_counted(rpc: &str, result: &str) -> bool {
    recorder().render().lines().any(|line| {
        line.starts_with("meshmq_raft_rpc_total{")
            && line.contains(&format!("rpc=\"{rpc}\""))
            && line.contains(&format!("result=\"{result}\""))
    })
}

fn raft_config() -> Arc<Config> {
    let config = Config {
        cluster_name: "raft-quic-test".to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        ..Default::default()
    };
    Arc::new(config.validate().expect("valid raft config"))
}

fn identity(certs_dir: &Path, name: &str) -> Identity {
    Identity::load(&certs::CertPaths::in_dir(certs_dir, name)).expect("load identity")
}

/// Binds a core endpoint on 127.0.0.1:0 with `name`'s certificate.
fn bind(certs_dir: &Path, name: &str) -> quinn::Endpoint {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    endpoint::bind(addr, &identity(certs_dir, name), ALPN_CORE).expect("bind")
}

async fn start_core(id: NodeId, certs_dir: &Path) -> Core {
    let data = tempfile::tempdir().expect("tempdir");
    let (log, sm) = store::open(data.path()).expect("open store");
    let endpoint = bind(certs_dir, &format!("c{id}"));
    let addr = endpoint.local_addr().expect("local addr");
    let network = Network::new(id, endpoint.clone());
    let raft = Raft::new(id, raft_config(), network, log, sm.clone())
        .await
        .expect("raft");
    let accept = tokio::spawn(serve(endpoint.clone(), raft.clone()));
    Core {
        id,
        addr,
        raft,
        sm,
        endpoint,
        accept,
        _data: data,
    }
}

/// The test's core server: every bidi stream carries one Raft RPC.
async fn serve(endpoint: quinn::Endpoint, raft: Raft) {
    let receipt = std::sync::Arc::new(rpc_server::SnapshotReceipt::default());
    while let Some(incoming) = endpoint.accept().await {
        let raft = raft.clone();
        let receipt = std::sync::Arc::clone(&receipt);
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let raft = raft.clone();
                let receipt = std::sync::Arc::clone(&receipt);
                tokio::spawn(async move {
                    let Ok(Some(req)) =
                        frame::read_msg::<Request>(&mut recv, frame::MAX_FRAME).await
                    else {
                        return;
                    };
                    let Some(kind) = req.kind else { return };
                    let resp = rpc_server::handle(&raft, &receipt, kind).await;
                    if frame::write_msg(&mut send, &resp).await.is_ok() {
                        let _ = send.finish();
                    }
                });
            }
        });
    }
}

/// One NodeUp op for replicant `r{i}`, encoded as an entry.
fn node_up(i: u64) -> EntryData {
    let batch = Batch {
        ops: vec![Op {
            kind: Some(Kind::NodeUp(NodeUp {
                node: format!("r{i}"),
                addr: format!("10.0.0.{}:1883", i % 250),
                role: NodeRole::Replicant as i32,
                incarnation: i,
                peer_addr: String::new(),
                wire: None,
            })),
        }],
    };
    EntryData {
        batch: batch.encode_to_vec(),
    }
}

/// Waits until `core` applied at least `index`, then returns how many nodes its tables hold.
async fn applied_nodes(core: &Core, index: u64) -> usize {
    core.raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), format!("core {} applies {index}", core.id))
        .await
        .expect("applied in time");
    assert!(core.sm.applied_index() >= index, "core {}", core.id);
    core.sm.read(|t| t.nodes().count())
}

/// Waits until `core` knows a leader other than `not`, and returns it.
async fn leader_seen_by(core: &Core, not: Option<NodeId>) -> NodeId {
    let m = core
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader.is_some_and(|l| Some(l) != not),
            format!("core {} sees a leader", core.id),
        )
        .await
        .expect("leader elected in time");
    m.current_leader.expect("leader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_cores_replicate_and_survive_leader_loss() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (1..=3).map(|i| format!("c{i}")).collect();
    certs::generate(certs_dir.path(), &names).expect("certs");
    let mut cores = Vec::new();
    for id in 1..=3 {
        cores.push(start_core(id, certs_dir.path()).await);
    }
    let members: BTreeMap<NodeId, Node> = cores
        .iter()
        .map(|c| (c.id, Node::new(c.addr.to_string())))
        .collect();
    cores[0].raft.initialize(members).await.expect("initialize");

    let leader_id = leader_seen_by(&cores[0], None).await;
    let leader = &cores[(leader_id - 1) as usize];
    let mut last = 0;
    for i in 0..100 {
        let resp = leader.raft.client_write(node_up(i)).await.expect("write");
        assert_eq!(resp.data.results.len(), 1, "one result per op");
        last = resp.log_id.index;
    }
    for core in &cores {
        assert_eq!(applied_nodes(core, last).await, 100, "core {}", core.id);
    }

    let pos = (leader_id - 1) as usize;
    cores.remove(pos).stop().await;
    let new_leader = leader_seen_by(&cores[0], Some(leader_id)).await;
    assert_eq!(leader_seen_by(&cores[1], Some(leader_id)).await, new_leader);
    let leader = cores
        .iter()
        .find(|c| c.id == new_leader)
        .expect("new leader is a survivor");
    let resp = leader
        .raft
        .client_write(node_up(100))
        .await
        .expect("write after failover");
    for core in &cores {
        assert_eq!(
            applied_nodes(core, resp.log_id.index).await,
            101,
            "core {}",
            core.id
        );
    }
    for core in cores {
        core.stop().await;
    }
}

/// A fake peer: answers every stream's request with `answer` (None: read it, never answer).
fn fake_peer(endpoint: quinn::Endpoint, answer: Option<Vec<u8>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let _ = frame::read_msg::<Request>(&mut recv, frame::MAX_FRAME).await;
                match &answer {
                    Some(bytes) => {
                        let _ = send.write_all(bytes).await;
                        let _ = send.finish();
                    }
                    None => held.push(send),
                }
            }
        }
    })
}

fn framed(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

async fn vote_to(
    net: &mut Network,
    addr: SocketAddr,
    ttl: Duration,
) -> Result<(), RPCError<NodeId, Node, openraft::error::RaftError<NodeId>>> {
    let mut client = net.new_client(2, &Node::new(addr.to_string())).await;
    let rpc = VoteRequest::new(Vote::new(1, 1), None);
    client.vote(rpc, RPCOption::new(ttl)).await.map(|_| ())
}

#[tokio::test]
async fn transport_failures_map_to_openraft_errors() {
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = ["c1", "c2"].iter().map(|s| s.to_string()).collect();
    certs::generate(certs_dir.path(), &names).expect("certs");
    recorder();
    let mut net = Network::new(1, bind(certs_dir.path(), "c1"));
    let ttl = Duration::from_millis(500);

    // Nobody listens: unreachable.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let dead = free.local_addr().expect("addr");
    drop(free);
    let err = vote_to(&mut net, dead, ttl).await.expect_err("dead peer");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    // Each fake peer answers badly in its own way.
    let error_reply = Response {
        kind: Some(response::Kind::Error(meshmq_proto::core::Error {
            message: "no raft here".to_owned(),
        })),
        wire: Some(WireVersion::CURRENT.to_proto()),
    };
    let wrong_kind = Response {
        kind: Some(response::Kind::Status(Default::default())),
        wire: Some(WireVersion::CURRENT.to_proto()),
    };
    let vote_without_vote = Response {
        kind: Some(response::Kind::Vote(Default::default())),
        wire: Some(WireVersion::CURRENT.to_proto()),
    };
    // A vote answer of another protocol major: refused, whatever it says.
    let other_major = Response {
        kind: Some(response::Kind::Vote(Default::default())),
        wire: Some(WireVersion::new(WireVersion::CURRENT.major + 1, 0).to_proto()),
    };
    let no_version = Response {
        kind: Some(response::Kind::Vote(Default::default())),
        wire: None,
    };
    let cases = [
        (Some(framed(&error_reply)), "no raft here"),
        (Some(framed(&wrong_kind)), "status"),
        (Some(framed(&vote_without_vote)), "malformed"),
        (Some(vec![0, 0, 0, 3, 0xff, 0xff, 0xff]), ""),
        (
            Some(framed(&Response {
                kind: None,
                wire: Some(WireVersion::CURRENT.to_proto()),
            })),
            "empty",
        ),
        (
            Some(framed(&other_major)),
            "speaks meshmq inter-node protocol",
        ),
        (
            Some(framed(&no_version)),
            "sent no meshmq inter-node protocol version",
        ),
    ];
    for (answer, says) in cases {
        let peer = bind(certs_dir.path(), "c2");
        let addr = peer.local_addr().expect("addr");
        let task = fake_peer(peer.clone(), answer);
        let err = vote_to(&mut net, addr, ttl).await.expect_err("bad reply");
        assert!(matches!(err, RPCError::Network(_)), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
        peer.close(0u32.into(), b"done");
        task.abort();
    }

    // A peer that never answers: timeout.
    let peer = bind(certs_dir.path(), "c2");
    let addr = peer.local_addr().expect("addr");
    let task = fake_peer(peer.clone(), None);
    let err = vote_to(&mut net, addr, ttl).await.expect_err("silent peer");
    assert!(matches!(err, RPCError::Timeout(_)), "{err:?}");

    // The peer closes: the cached connection is dropped and the next call is unreachable.
    peer.close(0u32.into(), b"gone");
    task.abort();
    let err = vote_to(&mut net, addr, ttl).await.expect_err("closed peer");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");

    for result in [
        "unreachable",
        "timeout",
        "remote_error",
        "malformed",
        "network",
        "wire_refused",
    ] {
        assert!(rpc_counted("vote", result), "no vote/{result} count");
    }
}

#[tokio::test]
async fn non_raft_requests_get_an_error_response() {
    let data = tempfile::tempdir().expect("tempdir");
    let certs_dir = tempfile::tempdir().expect("tempdir");
    certs::generate(certs_dir.path(), &["c1".to_owned()]).expect("certs");
    let (log, sm) = store::open(data.path()).expect("open store");
    let net = Network::new(1, bind(certs_dir.path(), "c1"));
    let raft = Raft::new(1, raft_config(), net, log, sm)
        .await
        .expect("raft");
    let status = request::Kind::Status(Default::default());
    let receipt = rpc_server::SnapshotReceipt::default();
    let resp = rpc_server::handle(&raft, &receipt, status).await;
    let Some(response::Kind::Error(e)) = resp.kind else {
        panic!("expected an error, got {resp:?}");
    };
    assert!(e.message.contains("not a raft rpc"), "{}", e.message);
    let bad_vote = request::Kind::Vote(Default::default());
    let resp = rpc_server::handle(&raft, &receipt, bad_vote).await;
    assert!(
        matches!(resp.kind, Some(response::Kind::Error(_))),
        "{resp:?}"
    );
    raft.shutdown().await.expect("shutdown");
}
