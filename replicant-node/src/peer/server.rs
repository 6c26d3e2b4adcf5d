//! The incoming side of the peer endpoint: accepts connections from other replicants
//! (mutual TLS against the cluster CA, ALPN `meshmq-peer/1`, both enforced by the endpoint's
//! TLS configuration) and reads their unidirectional streams.
//!
//! Every stream must start with a `PeerHello` (within [`HELLO_TIMEOUT`]), then carries
//! `PeerBatch` frames whose messages go, in order, to the [`Deliver`] callback; then the
//! batch's acks are recorded and its barriers answered (see [`super::barrier`]: answering
//! never blocks this loop), so everything sent before a barrier is delivered before the
//! barrier's ack leaves. A malformed
//! frame (undecodable, over the size limit, cut short, or a hello without a node name) is
//! counted in `meshmq_peer_malformed_total{reason}` and ends that stream only; the
//! connection and every other stream keep being served. A hello naming another inter-node
//! protocol major (or none) is refused: counted in `meshmq_wire_protocol_refused_total`,
//! logged (one line per 10 s), and the stream stopped with [`STOP_WIRE_REFUSED`].
//!
//! Waiting on the network is bounded by QUIC's idle timeout (keep-alive 1 s, idle 5 s, from
//! `quic::endpoint::transport()`): a peer that died or became unreachable ends its
//! connection, and with it every read here, within 5 s. A live peer with nothing to send
//! keeps its stream open on purpose: that is an idle link, and it costs one task.
//!
//! One task per connection and one per stream (at most [`MAX_CONNECTIONS`] connections, and
//! the transport caps uni streams per connection). It never writes to a peer itself (acks
//! go out on this node's own link to the sender), never panics on what a peer sends, and
//! never interprets a message (the callback does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meshmq_proto::peer::{PeerBatch, PeerHello};
use meshmq_shared::log_gate::LogGate;
use meshmq_shared::metrics as m;
use meshmq_shared::quic::CLOSE_SHUTDOWN;
use meshmq_shared::quic::frame::{self, FrameError, MAX_FRAME};
use meshmq_shared::wire_version::{self, WireVersion};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use super::api_call::{self, Inbound};
use super::barrier::{Barriers, StreamBarriers};
use super::link::Dialer;
use super::{Deliver, OnSession};

/// Most incoming peer connections at once (the cluster's replicants, with room to spare);
/// more are refused.
pub const MAX_CONNECTIONS: usize = 1_024;
/// A stream must deliver its hello within this long.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest hello frame accepted.
const MAX_HELLO: usize = 4_096;
/// Application code sent with `STOP_SENDING` on a stream dropped for a malformed frame.
const STOP_MALFORMED: u32 = 1;
/// Application code sent with `STOP_SENDING` on a stream whose hello names another
/// inter-node protocol major (or none).
pub const STOP_WIRE_REFUSED: u32 = 2;
/// How long shutdown waits for closed connections to drain before freeing the port.
const DRAIN_WAIT: Duration = Duration::from_secs(3);

/// Counters of the incoming side (see [`super::PeerStats`]).
#[derive(Debug, Default)]
pub(super) struct ServerCounters {
    /// Messages passed to the callback.
    pub(super) received: AtomicU64,
    /// Streams dropped for a malformed frame.
    pub(super) malformed: AtomicU64,
    /// Connections whose handshake failed.
    pub(super) handshake_failures: AtomicU64,
    /// Connections accepted (a permit taken).
    pub(super) accepted: AtomicU64,
}

/// What the accept loop and its tasks share.
pub(super) struct ServerCtx {
    /// Where received messages go.
    deliver: Deliver,
    /// Where received session hand-over items go (dropped, counted, when unset).
    on_session: Option<OnSession>,
    /// Counters, shared with [`super::Peers::stats`].
    counters: Arc<ServerCounters>,
    /// Where acks are recorded and barriers answered.
    barriers: Arc<Barriers>,
    /// The node's shutdown.
    shutdown: CancellationToken,
    /// Caps concurrent connections.
    connections: Arc<Semaphore>,
    /// Serves REST API calls from peers (bidirectional streams).
    api: Arc<Inbound>,
    /// The inter-node protocol version this node speaks; hellos of another major are refused.
    wire: WireVersion,
    /// Gates the refusal warning (one line per 10 s).
    wire_gate: LogGate,
}

impl ServerCtx {
    /// The context of an accept loop.
    pub(super) fn new(
        deliver: Deliver,
        on_session: Option<OnSession>,
        counters: Arc<ServerCounters>,
        barriers: Arc<Barriers>,
        shutdown: CancellationToken,
        api: Arc<Inbound>,
        wire: WireVersion,
    ) -> Arc<Self> {
        Arc::new(Self {
            deliver,
            on_session,
            counters,
            barriers,
            shutdown,
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            api,
            wire,
            wire_gate: LogGate::new(Duration::from_secs(10)),
        })
    }

    /// Refuses a hello of another protocol major (or none): counted, logged (gated); the
    /// sender is told to stop with [`STOP_WIRE_REFUSED`].
    fn wire_refused(&self, hello: &PeerHello) -> bool {
        let theirs = WireVersion::from_proto(hello.wire.as_ref());
        if wire_version::check(self.wire, theirs).is_ok() {
            return false;
        }
        let who = format!("replicant {}", hello.node);
        let text = wire_version::refusal(&who, theirs, "replicant", self.wire);
        metrics::counter!(m::WIRE_PROTOCOL_REFUSED_TOTAL, "peer" => "replicant").increment(1);
        if let Some(held) = self.wire_gate.pass() {
            warn!(refused = %text, held_back = held, "peer stream refused: another inter-node protocol major");
        }
        true
    }

    /// Counts a malformed frame.
    fn malformed(&self, reason: &'static str) {
        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::PEER_MALFORMED_TOTAL, "reason" => reason).increment(1);
    }
}

/// Accepts connections until shutdown, then closes the endpoint (with
/// [`CLOSE_SHUTDOWN`]) and waits, bounded, for its connections to drain so the port is
/// free again.
pub(super) async fn accept_loop(ep: quinn::Endpoint, dialer: Arc<Dialer>, ctx: Arc<ServerCtx>) {
    loop {
        let incoming = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            i = ep.accept() => i,
        };
        let Some(incoming) = incoming else { break };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            warn!(remote = %incoming.remote_address(), "too many peer connections; refused");
            incoming.refuse();
            continue;
        };
        ctx.counters.accepted.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::PEER_CONNECTIONS_ACCEPTED_TOTAL).increment(1);
        tokio::spawn(connection(ctx.clone(), incoming, permit));
    }
    dialer.close();
    ep.close(CLOSE_SHUTDOWN.into(), b"shutdown");
    let _ = tokio::time::timeout(DRAIN_WAIT, ep.wait_idle()).await;
}

/// Completes the handshake and spawns a reader per unidirectional stream.
async fn connection(ctx: Arc<ServerCtx>, incoming: quinn::Incoming, _permit: OwnedSemaphorePermit) {
    let _open = OpenGauge::new();
    let remote = incoming.remote_address();
    // The handshake is bounded by the idle timeout.
    let conn = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return,
        c = incoming => c,
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            ctx.counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::PEER_HANDSHAKE_FAILURES_TOTAL).increment(1);
            warn!(%remote, error = %e, "peer handshake failed");
            return;
        }
    };
    // The name the cluster CA certified for this peer (its certificate's common name): API
    // calls are checked against it, never against the name the caller states.
    let certified = meshmq_shared::quic::endpoint::certified_name(&conn);
    loop {
        let stream = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            s = conn.accept_uni() => s.map(Stream::Uni),
            s = conn.accept_bi() => s.map(Stream::Bi),
        };
        match stream {
            Ok(Stream::Uni(recv)) => {
                tokio::spawn(read_stream(ctx.clone(), recv, remote));
            }
            Ok(Stream::Bi((send, recv))) => {
                let caller = api_call::Caller {
                    remote,
                    certified: certified.clone(),
                };
                tokio::spawn(api_call::serve(ctx.api.clone(), send, recv, caller));
            }
            Err(e) => {
                debug!(%remote, error = %e, "peer connection ended");
                return;
            }
        }
    }
}

/// Counts an incoming connection in `meshmq_peer_connections` while it lives.
struct OpenGauge;

impl OpenGauge {
    fn new() -> Self {
        metrics::gauge!(m::PEER_CONNECTIONS).increment(1.0);
        OpenGauge
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        metrics::gauge!(m::PEER_CONNECTIONS).decrement(1.0);
    }
}

/// A stream a peer opened: forwarding (unidirectional) or an API call (bidirectional).
enum Stream {
    /// Hello, then batches.
    Uni(quinn::RecvStream),
    /// One `ApiCall`, answered with one `ApiReply`.
    Bi((quinn::SendStream, quinn::RecvStream)),
}

/// Reads the hello, then batches until the stream ends, breaks or is malformed.
async fn read_stream(ctx: Arc<ServerCtx>, mut recv: quinn::RecvStream, remote: SocketAddr) {
    let read_hello = frame::read_msg::<PeerHello>(&mut recv, MAX_HELLO);
    let hello = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return,
        h = tokio::time::timeout(HELLO_TIMEOUT, read_hello) => h,
    };
    let hello = match hello {
        Ok(Ok(Some(h))) if !h.node.is_empty() => h,
        Ok(Ok(Some(_))) => return drop_stream(&ctx, &mut recv, remote, "bad_hello"),
        Ok(Ok(None)) => return,
        Ok(Err(e)) if is_malformed(&e) => return drop_stream(&ctx, &mut recv, remote, e.label()),
        Ok(Err(e)) => {
            debug!(%remote, error = %e, "peer stream ended before its hello");
            return;
        }
        Err(_) => return drop_stream(&ctx, &mut recv, remote, "hello_timeout"),
    };
    if ctx.wire_refused(&hello) {
        let _ = recv.stop(STOP_WIRE_REFUSED.into());
        return;
    }
    let span = tracing::info_span!("peer_in", from = %hello.node, incarnation = hello.incarnation);
    let mut answers = ctx.barriers.stream(&hello, ctx.shutdown.clone());
    read_batches(&ctx, &mut recv, remote, &hello.node, &mut answers)
        .instrument(span)
        .await;
}

/// Reads `PeerBatch` frames: delivers their messages in order, then hands their session
/// items over (in order), then records their acks and answers their barriers.
async fn read_batches(
    ctx: &ServerCtx,
    recv: &mut quinn::RecvStream,
    remote: SocketAddr,
    from: &str,
    answers: &mut StreamBarriers,
) {
    loop {
        // Bounded by the QUIC idle timeout when the peer is gone (see the module doc).
        let read = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            r = frame::read_msg::<PeerBatch>(recv, MAX_FRAME) => r,
        };
        match read {
            Ok(Some(batch)) => {
                let n = batch.messages.len() as u64;
                for msg in batch.messages {
                    (ctx.deliver)(msg);
                }
                ctx.counters.received.fetch_add(n, Ordering::Relaxed);
                for item in batch.sessions {
                    match &ctx.on_session {
                        Some(f) => f(from, item),
                        None => metrics::counter!(m::PEER_MALFORMED_TOTAL, "reason" => "unexpected_session_item").increment(1),
                    }
                }
                answers.acks(&batch.acks);
                answers.barriers(&batch.barriers);
            }
            Ok(None) => {
                debug!(%remote, "peer stream finished");
                return;
            }
            Err(e) if is_malformed(&e) => return drop_stream(ctx, recv, remote, e.label()),
            Err(e) => {
                debug!(%remote, error = %e, "peer stream ended");
                return;
            }
        }
    }
}

/// Counts a malformed frame and tells the sender to stop (the connection stays).
fn drop_stream(
    ctx: &ServerCtx,
    recv: &mut quinn::RecvStream,
    remote: SocketAddr,
    reason: &'static str,
) {
    ctx.malformed(reason);
    let _ = recv.stop(STOP_MALFORMED.into());
    warn!(%remote, reason, "malformed frame from peer; stream dropped");
}

/// True for read errors caused by the bytes the peer sent (not by the connection).
fn is_malformed(e: &FrameError) -> bool {
    matches!(
        e,
        FrameError::Decode(..) | FrameError::TooLarge { .. } | FrameError::Truncated
    )
}
