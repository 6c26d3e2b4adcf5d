//! The calling side of the Raft RPCs between cores: openraft's `RaftNetworkFactory` and
//! `RaftNetwork` over QUIC with mutual TLS (ALPN `meshmq-core/1`).
//!
//! One bidirectional stream per RPC on a cached connection per target address: the request is
//! a length-delimited `meshmq.core.v1.Request`, the reply a `Response` of the matching kind or
//! `Error`. This module owns the connection cache (one dial per target at a time, a redial when
//! the cached connection has closed), the RPC deadlines (openraft's `RPCOption::hard_ttl`), the
//! mapping of transport failures to openraft's `RPCError`, and the
//! `meshmq_raft_rpc_total{rpc, result}` counter.
//!
//! Every request is bounded in bytes by the core RPC frame bound ([`RPC_FRAME_BYTES`] unless
//! configured): AppendEntries carry the prefix of their entries that fits (see
//! [`super::append_budget`]), and one that cannot carry even one entry is openraft's
//! `RPCError::PayloadTooLarge`; InstallSnapshot chunks are sized under the bound by the Raft
//! config (`snapshot_max_chunk_size`), and a chunk over it anyway is not sent (a `Network`
//! error saying so). Either is counted as `meshmq_raft_rpc_total{result="payload_too_large"}`.
//!
//! It never accepts connections or serves requests (see [`super::rpc_server`]), never retries
//! on its own (openraft's replication loop decides when to retry and how to back off), and
//! never panics on a malformed or unexpected reply: it is an `RPCError::Network`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshmq_proto::core::{Request, Response, request, response};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::{endpoint, frame};
use openraft::RPCTypes;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;
use tokio::time::Instant;

use super::append_budget;
use super::convert::ConvertError;
use super::network_error::Failure;
pub use super::network_error::TransportError;
use super::rpc_convert as conv;
use super::types::{Node, NodeId, TypeConfig};

/// Upper bound on a QUIC handshake with a peer core, whatever the RPC's own deadline.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default bound on one Raft RPC frame a core sends to another (4 MiB): one entry of
/// `MAX_ENTRY_BYTES` (2 MiB) and its envelope fit, and so does an InstallSnapshot chunk.
/// Under the transport's own frame maximum (`frame::MAX_FRAME`, 64 MiB).
pub const RPC_FRAME_BYTES: usize = 4 << 20;

// One entry at the entry bound always fits a default frame.
const _: () = assert!(
    RPC_FRAME_BYTES
        >= crate::api::MAX_ENTRY_BYTES
            + append_budget::ENVELOPE_BYTES
            + append_budget::ENTRY_OVERHEAD
);
// A default chunk and its envelope fit a default frame.
const _: () = assert!(RPC_FRAME_BYTES >= SNAPSHOT_CHUNK_BYTES + SNAPSHOT_ENVELOPE_BYTES);

/// Default size of one InstallSnapshot chunk's data (2 MiB); capped below the RPC frame
/// bound by [`SNAPSHOT_ENVELOPE_BYTES`].
pub const SNAPSHOT_CHUNK_BYTES: usize = 2 << 20;

/// Room left in a snapshot chunk's frame for its envelope (vote, snapshot meta with the
/// membership).
pub const SNAPSHOT_ENVELOPE_BYTES: usize = 64 << 10;

/// The RPC result of one call, as openraft wants it for RPC kind `E`'s remote errors.
type RpcResult<T, E> = Result<T, RPCError<NodeId, Node, E>>;

/// A connection slot for one target address; the async lock makes concurrent RPCs to that
/// target wait for one dial instead of each dialing.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// openraft's network factory for this core: cheap to clone (an `Arc` inside), shared by every
/// per-target client openraft creates.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

struct Shared {
    /// This node's id: openraft's `Timeout` error names the caller.
    id: NodeId,
    /// The core's QUIC endpoint (server config plus the default client config with this node's
    /// certificate), used to dial peers.
    endpoint: quinn::Endpoint,
    /// One connection slot per target address (`BasicNode::addr`); bounded by the membership.
    peers: parking_lot::Mutex<HashMap<String, Slot>>,
    /// Largest request frame sent to a peer core.
    rpc_bytes: usize,
    /// The inter-node protocol version sent with every RPC and checked in every answer.
    wire: Arc<crate::wire::Wire>,
}

impl Network {
    /// A network for node `id` that dials peers from `endpoint` (made by
    /// `meshmq_shared::quic::endpoint::bind` with ALPN `meshmq-core/1`), with the default
    /// frame bound [`RPC_FRAME_BYTES`].
    pub fn new(id: NodeId, endpoint: quinn::Endpoint) -> Self {
        Self::bounded(id, endpoint, RPC_FRAME_BYTES)
    }

    /// As [`new`](Self::new), sending no request frame over `rpc_bytes` (clamped to
    /// `frame::MAX_FRAME`, which peers read at most).
    pub fn bounded(id: NodeId, endpoint: quinn::Endpoint, rpc_bytes: usize) -> Self {
        Self::speaking(id, endpoint, rpc_bytes, crate::wire::Wire::shared())
    }

    /// As [`bounded`](Self::bounded), speaking the inter-node protocol version of `wire`.
    pub fn speaking(
        id: NodeId,
        endpoint: quinn::Endpoint,
        rpc_bytes: usize,
        wire: Arc<crate::wire::Wire>,
    ) -> Self {
        let rpc_bytes = rpc_bytes.min(frame::MAX_FRAME);
        let peers = parking_lot::Mutex::new(HashMap::new());
        let shared = Shared {
            id,
            endpoint,
            peers,
            rpc_bytes,
            wire,
        };
        Network {
            shared: Arc::new(shared),
        }
    }

    /// The largest request frame this network sends.
    pub fn rpc_bytes(&self) -> usize {
        self.shared.rpc_bytes
    }

    /// The endpoint this network dials from.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.shared.endpoint
    }

    /// The cached connection to `addr` if it is still open, else a new one (the cache keeps
    /// it). Bounded by `deadline` and [`CONNECT_TIMEOUT`].
    async fn connection(
        &self,
        addr: &str,
        deadline: Instant,
    ) -> Result<quinn::Connection, TransportError> {
        let slot = self
            .shared
            .peers
            .lock()
            .entry(addr.to_owned())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref() {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
            tracing::debug!(%addr, "cached core connection closed; redialing");
            *cached = None;
        }
        let target = resolve(addr).await?;
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .min(CONNECT_TIMEOUT);
        let conn = endpoint::connect(&self.shared.endpoint, target, budget)
            .await
            .map_err(|e| TransportError::Connect {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
        *cached = Some(conn.clone());
        Ok(conn)
    }
}

/// Resolves `host:port` (an IP address needs no lookup) to the first socket address.
async fn resolve(addr: &str) -> Result<SocketAddr, TransportError> {
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return Ok(sock);
    }
    let resolve_err = |reason: String| TransportError::Resolve {
        addr: addr.to_owned(),
        reason,
    };
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| resolve_err(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_err("no address".to_owned()))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        PeerClient {
            net: self.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

/// openraft's client for one target core: sends each RPC on a new stream of the cached
/// connection to the target's address.
pub struct PeerClient {
    /// The shared factory: endpoint and connection cache.
    net: Network,
    /// The target's node id (for openraft's errors).
    target: NodeId,
    /// The target's address as in the membership (`host:port`).
    addr: String,
}

impl PeerClient {
    /// Sends `kind`, waits for the reply within `ttl`, and decodes it with `decode` (which
    /// hands back a reply of another kind). Records `meshmq_raft_rpc_total` and gives a failure
    /// openraft's shape.
    async fn send<T, E: std::error::Error>(
        &self,
        rpc: &'static str,
        action: RPCTypes,
        ttl: Duration,
        kind: request::Kind,
        decode: impl FnOnce(response::Kind) -> Result<Result<T, ConvertError>, response::Kind>,
    ) -> RpcResult<T, E> {
        let result = match self.exchange(rpc, kind, ttl).await {
            Ok(reply) => match decode(reply) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(self.malformed(rpc, e)),
                Err(other) => Err(self.unexpected(rpc, other)),
            },
            Err(f) => Err(f),
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(f) => f.label(),
        };
        metrics::counter!(m::RAFT_RPC_TOTAL, "rpc" => rpc, "result" => label).increment(1);
        result.map_err(|f| {
            tracing::debug!(
                target = self.target,
                addr = %self.addr,
                rpc,
                result = label,
                "raft rpc failed"
            );
            self.rpc_error(action, ttl, f)
        })
    }

    /// One request/response exchange with the target within `ttl`: dial (or reuse) the
    /// connection, then send on a new stream. No decoding beyond the `Response` envelope.
    async fn exchange(
        &self,
        rpc: &'static str,
        kind: request::Kind,
        ttl: Duration,
    ) -> Result<response::Kind, Failure> {
        let deadline = Instant::now() + ttl;
        let conn = match tokio::time::timeout_at(
            deadline,
            self.net.connection(&self.addr, deadline),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Failure::Unreachable(e)),
            Err(_elapsed) => {
                return Err(Failure::Unreachable(TransportError::Connect {
                    addr: self.addr.clone(),
                    reason: format!("no handshake within {ttl:?}"),
                }));
            }
        };
        let wire = &self.net.shared.wire;
        let req = Request {
            kind: Some(kind),
            wire: wire.proto(),
        };
        let bytes = req.encoded_len();
        if bytes > self.net.shared.rpc_bytes {
            return Err(Failure::TooLarge(TransportError::TooLarge {
                rpc,
                addr: self.addr.clone(),
                bytes,
                max: self.net.shared.rpc_bytes,
            }));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let sent = frame::request::<Request, Response>(&conn, &req, frame::MAX_FRAME, remaining);
        let resp = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(frame::FrameError::Timeout)) | Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) => return Err(self.stream_failure(rpc, &conn, e.to_string())),
        };
        if let Err(refused) = wire.check_answer(resp.wire.as_ref(), &self.addr) {
            return Err(Failure::Network(TransportError::WireRefused(refused)));
        }
        resp.kind.ok_or_else(|| {
            Failure::Network(TransportError::UnexpectedReply {
                rpc,
                addr: self.addr.clone(),
                got: "an empty response",
            })
        })
    }

    /// A failed exchange: `Unreachable` when the connection itself is gone (the next call
    /// redials), else a `Network` failure of this stream only.
    fn stream_failure(
        &self,
        rpc: &'static str,
        conn: &quinn::Connection,
        reason: String,
    ) -> Failure {
        match conn.close_reason() {
            Some(closed) => Failure::Unreachable(TransportError::ConnectionLost {
                addr: self.addr.clone(),
                reason: format!("{closed}; {reason}"),
            }),
            None => Failure::Network(TransportError::Stream {
                rpc,
                addr: self.addr.clone(),
                reason,
            }),
        }
    }

    /// Gives a failure openraft's shape for the RPC `action`.
    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        ttl: Duration,
        failure: Failure,
    ) -> RPCError<NodeId, Node, E> {
        match failure {
            Failure::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            Failure::Timeout => RPCError::Timeout(Timeout {
                action,
                id: self.net.shared.id,
                target: self.target,
                timeout: ttl,
            }),
            Failure::Network(e) => RPCError::Network(NetworkError::new(&e)),
            // openraft acts on PayloadTooLarge for AppendEntries only (it sends fewer
            // entries); for a snapshot chunk it is a network error that says what it is.
            Failure::TooLarge(e) => match action {
                RPCTypes::AppendEntries => RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(1).with_source_error(&e),
                ),
                _ => RPCError::Network(NetworkError::new(&e)),
            },
        }
    }

    /// An entry that cannot go even alone: counted and logged, reported as openraft's
    /// `PayloadTooLarge`. openraft retries such an error at once with the hint (one entry),
    /// which cannot succeed either, so the answer waits half the RPC's deadline first: the
    /// follower stays behind (it needs a snapshot, or a larger bound) without a busy loop.
    async fn oversized_entry(
        &self,
        over: append_budget::Oversized,
        ttl: Duration,
    ) -> RPCError<NodeId, Node, RaftError<NodeId>> {
        metrics::counter!(m::RAFT_RPC_TOTAL, "rpc" => "append", "result" => "payload_too_large")
            .increment(1);
        tracing::error!(
            target = self.target,
            addr = %self.addr,
            error = %over,
            "log entry too large to replicate to this core"
        );
        tokio::time::sleep(ttl / 2).await;
        RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(1).with_source_error(&over))
    }

    /// The failure for a reply that is not of the expected kind (`Error` included).
    fn unexpected(&self, rpc: &'static str, got: response::Kind) -> Failure {
        let addr = self.addr.clone();
        Failure::Network(match got {
            response::Kind::Error(e) => TransportError::Remote {
                rpc,
                addr,
                message: e.message,
            },
            other => TransportError::UnexpectedReply {
                rpc,
                addr,
                got: kind_name(&other),
            },
        })
    }

    fn malformed(&self, rpc: &'static str, source: ConvertError) -> Failure {
        Failure::Network(TransportError::Malformed {
            rpc,
            addr: self.addr.clone(),
            source,
        })
    }
}

/// Name of a response kind, for error messages.
fn kind_name(kind: &response::Kind) -> &'static str {
    match kind {
        response::Kind::Vote(_) => "vote",
        response::Kind::Append(_) => "append",
        response::Kind::Snapshot(_) => "snapshot",
        response::Kind::Transact(_) => "transact",
        response::Kind::Lease(_) => "lease",
        response::Kind::Status(_) => "status",
        response::Kind::Elect(_) => "elect",
        response::Kind::Error(_) => "error",
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        let ttl = option.hard_ttl();
        let frame_bound = self.net.shared.rpc_bytes;
        let last_sent =
            match append_budget::trim(&mut rpc.entries, append_budget::APPEND_BYTES, frame_bound) {
                Ok(Some((last, bound))) => {
                    metrics::counter!(m::RAFT_APPEND_TRIMMED_TOTAL, "bound" => bound.label())
                        .increment(1);
                    Some(last)
                }
                Ok(None) => None,
                Err(over) => return Err(self.oversized_entry(over, ttl).await),
            };
        let kind = request::Kind::Append(conv::append_request_to_proto(&rpc));
        self.send(
            "append",
            RPCTypes::AppendEntries,
            ttl,
            kind,
            |reply| match reply {
                response::Kind::Append(r) => Ok(conv::append_response_from_proto(&r)),
                other => Err(other),
            },
        )
        .await
        .map(|resp| append_budget::for_trimmed(resp, last_sent))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let kind = request::Kind::Snapshot(conv::snapshot_request_to_proto(&rpc));
        let ttl = option.hard_ttl();
        self.send(
            "snapshot",
            RPCTypes::InstallSnapshot,
            ttl,
            kind,
            |reply| match reply {
                response::Kind::Snapshot(r) => Ok(conv::snapshot_response_from_proto(&r)),
                other => Err(other),
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        let kind = request::Kind::Vote(conv::vote_request_to_proto(&rpc));
        let ttl = option.hard_ttl();
        self.send("vote", RPCTypes::Vote, ttl, kind, |reply| match reply {
            response::Kind::Vote(r) => Ok(conv::vote_response_from_proto(&r)),
            other => Err(other),
        })
        .await
    }
}
