//! The outgoing link to one remote node: the task that drains its [`Queue`].
//!
//! The task dials the node (1 s bound), opens ONE unidirectional stream, writes a
//! `PeerHello` and then, at every wake-up, takes everything queued (see [`super::queue`]:
//! messages, barriers and acks) and writes it as ONE `PeerBatch` frame, so a burst costs one
//! write and order is kept. Going up clears the node's ack record and going down wakes the
//! barriers waiting on it (see [`super::barrier`]).
//! When the connection breaks it counts what it loses, backs off (100 ms doubling to 2 s,
//! jittered) and dials again. The queue only takes messages while the link is connected: a
//! down peer costs its callers nothing but a counter.
//!
//! It owns the link's connection and stream. It never resends a message, never blocks a
//! caller of [`Link::push`], and never touches another node's link.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meshmq_proto::peer::{PeerHello, PeerMessage, SessionItem};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::frame::{self, FrameError, MAX_FRAME};
use meshmq_shared::quic::{ALPN_PEER, CLOSE_SHUTDOWN, Identity, endpoint};
use meshmq_shared::wire_version::WireVersion;
use parking_lot::Mutex;
use prost::Message as _;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::barrier::Barriers;
use super::queue::{Control, Queue};
use super::{Congested, DropReason, LinkCounters};
use crate::core_link::Backoff;
use crate::core_link::pick::resolve;

/// Bound on one dial: resolving the address, then the QUIC handshake; also on opening the
/// stream and writing the hello.
const DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest message accepted: one alone in a batch still fits in [`MAX_FRAME`] (the field
/// tag and length prefix take at most 6 bytes).
const MAX_MESSAGE: usize = MAX_FRAME - 16;
/// A connection that stayed up this long resets the back-off; one refused right after the
/// handshake (e.g. our certificate was refused: TLS 1.3 tells the client late) does not.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// The endpoints links dial from: the peer endpoint itself when it can reach the address
/// (same family; a loopback-bound endpoint only reaches loopback), else a client endpoint
/// made on first use.
pub(super) struct Dialer {
    /// Presented by client endpoints.
    identity: Identity,
    /// The bound peer endpoint; `None` once closed.
    bound: Mutex<Option<quinn::Endpoint>>,
    /// Where it is bound.
    bound_addr: SocketAddr,
    /// Client endpoints `[IPv4, IPv6]`, made on first use.
    clients: Mutex<[Option<quinn::Endpoint>; 2]>,
}

impl Dialer {
    /// A dialer using `bound` (at `bound_addr`) where it can.
    pub(super) fn new(identity: Identity, bound: quinn::Endpoint, bound_addr: SocketAddr) -> Self {
        Self {
            identity,
            bound: Mutex::new(Some(bound)),
            bound_addr,
            clients: Mutex::new([None, None]),
        }
    }

    /// The endpoint to dial `target` from.
    pub(super) fn endpoint_for(&self, target: SocketAddr) -> Result<quinn::Endpoint, String> {
        let bound = self.bound.lock().clone().ok_or("peer endpoint closed")?;
        let same_family = self.bound_addr.is_ipv6() == target.is_ipv6();
        if same_family && (!self.bound_addr.ip().is_loopback() || target.ip().is_loopback()) {
            return Ok(bound);
        }
        let slot = usize::from(target.is_ipv6());
        let mut clients = self.clients.lock();
        if let Some(ep) = &clients[slot] {
            return Ok(ep.clone());
        }
        let ep = endpoint::client(&self.identity, ALPN_PEER, target)
            .map_err(|e| format!("client endpoint: {e}"))?;
        clients[slot] = Some(ep.clone());
        Ok(ep)
    }

    /// Drops the bound endpoint (the accept loop closes it) and closes the client ones; any
    /// later dial fails.
    pub(super) fn close(&self) {
        self.bound.lock().take();
        for ep in self.clients.lock().iter_mut().filter_map(Option::take) {
            ep.close(CLOSE_SHUTDOWN.into(), b"shutdown");
        }
    }
}

/// A handle on one node's link; clones share the queue and the task.
#[derive(Clone)]
pub(super) struct Link {
    /// The address the task dials.
    addr: Arc<str>,
    /// Its queue.
    queue: Arc<Queue>,
    /// The node's counters.
    counters: Arc<LinkCounters>,
    /// Woken when the link stops.
    barriers: Arc<Barriers>,
    /// Stops the task.
    stop: CancellationToken,
}

impl Link {
    /// The address this link dials.
    pub(super) fn addr(&self) -> &str {
        &self.addr
    }

    /// Queues `msg`, or drops and counts it; returns the queue when it is past half its
    /// capacity, full included (publisher back-pressure). Never waits.
    pub(super) fn push(&self, msg: PeerMessage) -> Option<Congested> {
        let len = msg.encoded_len();
        if len > MAX_MESSAGE {
            self.counters.dropped(DropReason::TooLarge, 1);
            return None;
        }
        match self.queue.push(len, msg) {
            Ok(true) => Some(Congested(self.queue.clone())),
            Ok(false) => None,
            Err(reason) => {
                self.counters.dropped(reason, 1);
                (reason == DropReason::QueueFull).then(|| Congested(self.queue.clone()))
            }
        }
    }

    /// Queues a barrier or an ack (never bounded by the message cap); returns the
    /// connection it was queued on. Refused while the link is down. Never waits.
    pub(super) fn push_control(&self, control: Control) -> Result<u64, DropReason> {
        self.queue.push_control(control)
    }

    /// Queues a session hand-over item (never bounded by the message cap). Refused while
    /// the link is down. Never waits.
    pub(super) fn push_session(&self, item: SessionItem) -> Result<(), DropReason> {
        let len = item.encoded_len();
        if len > MAX_MESSAGE {
            return Err(DropReason::TooLarge);
        }
        self.queue.push_session(len, item)
    }

    /// Tests only: holds (or releases) what is queued on this link (see [`Queue::hold`]).
    pub(super) fn hold(&self, held: bool) {
        self.queue.hold(held);
    }

    /// The current connection's number while the link is up, `None` while it is down.
    pub(super) fn session(&self) -> Option<u64> {
        self.queue.session()
    }

    /// Stops the task; what was queued is dropped and counted now.
    pub(super) fn stop(&self) {
        self.stop.cancel();
        self.counters
            .dropped(DropReason::Stopped, self.queue.close());
        self.barriers.changed();
    }
}

/// Everything a new link needs.
pub(super) struct LinkSpec<'a> {
    /// The remote node's name.
    pub node: String,
    /// Its address, `host:port`, resolved at every dial.
    pub addr: String,
    /// Our hello.
    pub hello: PeerHello,
    /// Queue capacity in messages.
    pub queue_len: usize,
    /// Queue capacity in bytes.
    pub queue_bytes: usize,
    /// The node's counters.
    pub counters: Arc<LinkCounters>,
    /// The node's barrier state.
    pub barriers: Arc<Barriers>,
    /// Endpoints to dial from.
    pub dialer: Arc<Dialer>,
    /// Stops the task (a child of the node's shutdown token).
    pub stop: CancellationToken,
    /// Where to spawn the task.
    pub runtime: &'a Handle,
}

/// Creates the link and spawns its task.
pub(super) fn spawn(spec: LinkSpec<'_>) -> Link {
    let link = Link {
        addr: Arc::from(spec.addr.as_str()),
        queue: Arc::new(Queue::new(spec.queue_len, spec.queue_bytes)),
        counters: spec.counters,
        barriers: spec.barriers,
        stop: spec.stop,
    };
    let span = tracing::info_span!("peer_link", node = %spec.node, addr = %spec.addr);
    let task = LinkTask {
        node: spec.node,
        addr: spec.addr,
        hello: spec.hello,
        dialer: spec.dialer,
        link: link.clone(),
    };
    spec.runtime.spawn(task.run().instrument(span));
    link
}

/// The task side of a link.
struct LinkTask {
    /// The remote node's name.
    node: String,
    /// Where to dial.
    addr: String,
    /// Written first on every stream.
    hello: PeerHello,
    /// Endpoints to dial from.
    dialer: Arc<Dialer>,
    /// The queue, counters and stop token shared with the handle.
    link: Link,
}

/// How a connected session ended.
enum SessionEnd {
    /// The link was stopped.
    Stopped,
    /// The connection or the stream broke (or never carried a hello).
    Broken {
        /// What happened.
        detail: String,
        /// The link had been up (the hello was written).
        was_up: bool,
        /// How long the connection lasted.
        lasted: Duration,
    },
}

impl LinkTask {
    /// Dials, runs sessions and backs off until the link is stopped.
    async fn run(self) {
        let mut backoff = Backoff::new();
        let mut was_up_before = false;
        let stop = self.link.stop.clone();
        loop {
            let dialed = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                d = self.dial() => d,
            };
            match dialed {
                Ok(conn) => match self.session(conn, was_up_before).await {
                    SessionEnd::Stopped => break,
                    SessionEnd::Broken {
                        detail,
                        was_up,
                        lasted,
                    } => {
                        was_up_before |= was_up;
                        if lasted >= STABLE_AFTER {
                            backoff.reset();
                        }
                        warn!(detail, "peer link down");
                    }
                },
                Err(e) => debug!(error = %e, "peer dial failed"),
            }
            let delay = backoff.delay();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        self.link
            .counters
            .dropped(DropReason::Stopped, self.link.queue.close());
        self.link.barriers.changed();
    }

    /// Resolves the address and connects, all within [`DIAL_TIMEOUT`].
    async fn dial(&self) -> Result<quinn::Connection, String> {
        let started = tokio::time::Instant::now();
        let target = resolve(&self.addr)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.addr))?;
        let ep = self.dialer.endpoint_for(target)?;
        let left = DIAL_TIMEOUT.saturating_sub(started.elapsed());
        endpoint::connect(&ep, target, left)
            .await
            .map_err(|e| e.to_string())
    }

    /// One connection: open the stream, write the hello, mark the link up and pump batches
    /// until it breaks or the link stops; then mark it down and count what was lost.
    async fn session(&self, conn: quinn::Connection, was_up_before: bool) -> SessionEnd {
        let started = Instant::now();
        let opened = tokio::time::timeout(DIAL_TIMEOUT, self.open(&conn))
            .await
            .unwrap_or(Err(FrameError::Timeout));
        let mut send = match opened {
            Ok(send) => send,
            Err(e) => {
                return SessionEnd::Broken {
                    detail: format!("opening the stream: {e}"),
                    was_up: false,
                    lasted: started.elapsed(),
                };
            }
        };
        let counters = &self.link.counters;
        self.link.barriers.link_up(&self.node);
        if !self.link.queue.set_up() {
            conn.close(CLOSE_SHUTDOWN.into(), b"link stopped");
            return SessionEnd::Stopped;
        }
        counters.up.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(m::PEER_LINKS_UP).increment(1.0);
        if was_up_before {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::PEER_RECONNECTS_TOTAL).increment(1);
        }
        info!(remote = %conn.remote_address(), "peer link up");
        let ended = self.pump(&conn, &mut send).await;
        counters.up.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::PEER_LINKS_UP).decrement(1.0);
        match ended {
            Err(()) => {
                counters.dropped(DropReason::Stopped, self.link.queue.close());
                self.link.barriers.changed();
                let _ = send.finish();
                conn.close(CLOSE_SHUTDOWN.into(), b"link stopped");
                SessionEnd::Stopped
            }
            Ok(detail) => {
                counters.dropped(DropReason::LinkBroken, self.link.queue.set_down());
                self.link.barriers.changed();
                SessionEnd::Broken {
                    detail,
                    was_up: true,
                    lasted: started.elapsed(),
                }
            }
        }
    }

    /// Why the peer stopped the stream: a refusal of this node's protocol version (code
    /// `STOP_WIRE_REFUSED`: counted, said), or another stop.
    fn stopped_by_peer(
        &self,
        stopped: Result<Option<quinn::VarInt>, quinn::StoppedError>,
    ) -> String {
        match stopped {
            Ok(Some(code)) if code.into_inner() == u64::from(super::server::STOP_WIRE_REFUSED) => {
                metrics::counter!(m::WIRE_PROTOCOL_REFUSED_TOTAL, "peer" => "replicant")
                    .increment(1);
                let ours = WireVersion::from_proto(self.hello.wire.as_ref());
                format!("the peer refused this node's inter-node protocol {ours} (another major)")
            }
            Ok(Some(code)) => format!("the peer stopped the stream (code {code})"),
            Ok(None) => "the stream was closed".into(),
            Err(e) => format!("the stream ended: {e}"),
        }
    }

    /// Opens the stream and writes the hello.
    async fn open(&self, conn: &quinn::Connection) -> Result<quinn::SendStream, FrameError> {
        let mut send = conn.open_uni().await?;
        frame::write_msg(&mut send, &self.hello).await?;
        Ok(send)
    }

    /// Writes one batch per wake-up (`sent` counts its messages; barriers and acks are not
    /// messages). `Ok(why)` when the connection broke, `Err(())` when
    /// the link was stopped.
    async fn pump(
        &self,
        conn: &quinn::Connection,
        send: &mut quinn::SendStream,
    ) -> Result<String, ()> {
        let Link {
            queue,
            counters,
            stop,
            ..
        } = &self.link;
        loop {
            let batch = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(()),
                e = conn.closed() => return Ok(format!("connection closed: {e}")),
                stopped = send.stopped() => return Ok(self.stopped_by_peer(stopped)),
                b = queue.next_batch() => b,
            };
            let n = batch.messages.len();
            let wrote = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    counters.dropped(DropReason::Stopped, n);
                    return Err(());
                }
                w = frame::write_msg(send, &batch) => w,
            };
            if let Err(e) = wrote {
                counters.dropped(DropReason::LinkBroken, n);
                if let FrameError::Write(quinn::WriteError::Stopped(code)) = e {
                    return Ok(self.stopped_by_peer(Ok(Some(code))));
                }
                return Ok(format!("writing a batch: {e}"));
            }
            counters.sent.fetch_add(n as u64, Ordering::Relaxed);
            counters.batches.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::PEER_MESSAGES_SENT_TOTAL).increment(n as u64);
            metrics::counter!(m::PEER_BATCHES_SENT_TOTAL).increment(1);
        }
    }
}
