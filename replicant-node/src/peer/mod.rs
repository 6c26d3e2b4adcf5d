//! Replicant-to-replicant peer links: a PUBLISH accepted on this node goes to every other
//! replicant with a matching route over QUIC (mutual TLS, ALPN `meshmq-peer/1`); and
//! applied-index barriers ([`Peers::barrier`], see `barrier`) ride the same links, so a
//! SUBACK can wait until every connected replicant has applied the route.
//!
//! [`Peers::start`] binds one endpoint that both accepts peers (`server`) and dials them
//! (`link`, `queue`). Outgoing, there is one link per remote node: a bounded queue drained
//! by one task that keeps one connection with ONE unidirectional stream, writes a
//! `PeerHello` and then one `PeerBatch` frame per wake-up carrying everything queued
//! (coalescing), so order is kept per node pair; barriers and acks share that order and
//! those batches. Incoming, every stream must start with a `PeerHello`; the messages of its
//! batches go, in order, to the [`Deliver`] callback, then its acks and barriers are handled.
//!
//! Delivery across nodes is **at most once**, whatever the MQTT QoS: a message forwarded
//! while the link is down, one that finds the queue full and a batch lost with its
//! connection are dropped and counted (`meshmq_peer_messages_dropped_total{reason}`), never
//! resent. A batch that quinn accepted before the connection broke may still be lost
//! without being counted as such (it was counted as sent).
//!
//! It owns the peer endpoint, the links and their queues. It must never block the caller of
//! [`Peers::forward`] (a down or slow peer costs its own queue and nothing else), never
//! panic on what a peer sends, never forward a received message again and never interpret a
//! message (the [`Deliver`] callback does).

mod api_call;
mod barrier;
mod link;
mod queue;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use meshmq_proto::peer::{PeerHello, PeerMessage, SessionItem};
use meshmq_shared::metrics as m;
use meshmq_shared::quic::{ALPN_PEER, Identity, QuicError, endpoint};
use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use api_call::{ApiCallError, ApiFuture, ApiHandler, MAX_CALL, MAX_REPLY, forbidden};
use barrier::Barriers;
pub use barrier::{ANSWER_WITHIN, BarrierReport};
use link::{Dialer, Link};
use server::ServerCounters;

/// The outgoing link of every node, shared by [`Peers`] and the incoming side (which sends
/// acks on them).
type Links = Arc<RwLock<HashMap<String, Link>>>;

/// What a node needs to run its peer links.
pub struct PeerConfig {
    /// Where the peer endpoint listens (port 0 picks one: see [`Peers::local_addr`]); it
    /// also dials out from there.
    pub bind: SocketAddr,
    /// This node's TLS identity (signed by the cluster CA), presented both ways.
    pub identity: Identity,
    /// This node's name, sent in every `PeerHello`.
    pub node: String,
    /// This node's incarnation, sent in every `PeerHello`.
    pub incarnation: u64,
    /// Messages each outgoing link may hold before [`Peers::forward`] drops (at least 1).
    pub queue_len: usize,
    /// Bytes of messages (encoded) each outgoing link may hold before [`Peers::forward`]
    /// drops (at least 1; one larger message still goes when none is queued).
    pub queue_bytes: usize,
    /// The local replica's applied index (`Replica::subscribe_applied`): barriers from
    /// peers are answered once it reaches theirs.
    pub applied: watch::Receiver<u64>,
    /// Where session hand-over items from peers go (`None`: they are counted as malformed).
    pub on_session: Option<OnSession>,
    /// The inter-node protocol version sent in every `PeerHello`; incoming hellos of another
    /// major are refused.
    pub wire: meshmq_shared::wire_version::WireVersion,
}

/// Called for every message received from a peer (on the receiving task; must not block).
pub type Deliver = Arc<dyn Fn(PeerMessage) + Send + Sync>;

/// Called for every session hand-over item received from a peer, with the sending node's
/// name (on the receiving task, in stream order; must not block).
pub type OnSession = Arc<dyn Fn(&str, SessionItem) + Send + Sync>;

/// Why the peer links could not start.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// [`Peers::start`] was called outside a tokio runtime.
    #[error("peer links need a tokio runtime")]
    NoRuntime,
    /// `queue_len` or `queue_bytes` is 0: every message would be dropped.
    #[error("peer queue_len and queue_bytes must be at least 1")]
    ZeroQueue,
    /// The endpoint could not be built or bound.
    #[error("peer endpoint: {0}")]
    Quic(#[from] QuicError),
    /// The bound endpoint could not report its address.
    #[error("peer endpoint address: {0}")]
    LocalAddr(#[source] std::io::Error),
}

/// Why a forwarded message was dropped (the `reason` label of
/// `meshmq_peer_messages_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The link was not connected when the message was forwarded.
    PeerDown,
    /// The link's queue held `queue_len` messages or `queue_bytes` bytes.
    QueueFull,
    /// The connection broke while the message was queued or being written.
    LinkBroken,
    /// The message alone is over the largest frame.
    TooLarge,
    /// The link was stopped: the node left ([`Peers::remove`]), its address changed, or
    /// this node shut down.
    Stopped,
}

impl DropReason {
    /// Every reason, in the order of [`LinkCounters::dropped`].
    const ALL: [DropReason; 5] = [
        Self::PeerDown,
        Self::QueueFull,
        Self::LinkBroken,
        Self::TooLarge,
        Self::Stopped,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::PeerDown => "peer_down",
            Self::QueueFull => "queue_full",
            Self::LinkBroken => "link_broken",
            Self::TooLarge => "too_large",
            Self::Stopped => "stopped",
        }
    }
}

/// Counters of the link to one node since this node started (kept across reconnects,
/// address changes and [`Peers::remove`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// The link is connected now (forwarded messages are queued, not dropped).
    pub up: bool,
    /// Messages written to the peer.
    pub sent: u64,
    /// `PeerBatch` frames written (fewer than `sent` when coalescing happened).
    pub batches: u64,
    /// Connections established after an earlier one was lost.
    pub reconnects: u64,
    /// Dropped: link not connected.
    pub dropped_peer_down: u64,
    /// Dropped: queue full.
    pub dropped_queue_full: u64,
    /// Dropped: connection broke with the message queued or in the batch being written.
    pub dropped_link_broken: u64,
    /// Dropped: message over the largest frame.
    pub dropped_too_large: u64,
    /// Dropped: link stopped with the message queued.
    pub dropped_stopped: u64,
}

impl LinkStats {
    /// Every message dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_peer_down
            + self.dropped_queue_full
            + self.dropped_link_broken
            + self.dropped_too_large
            + self.dropped_stopped
    }
}

/// Counters of all links and of the incoming side (also exported as metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Per remote node, every node ever forwarded to.
    pub links: BTreeMap<String, LinkStats>,
    /// Messages received from peers and passed to [`Deliver`].
    pub received: u64,
    /// Incoming streams dropped for a malformed frame.
    pub malformed: u64,
    /// Incoming connections whose handshake failed (certificate refused, wrong ALPN...).
    pub handshake_failures: u64,
    /// Incoming connections accepted (forwarding links and API calls alike).
    pub connections_accepted: u64,
    /// [`Peers::barrier`] calls that gave up at their timeout.
    pub barrier_timeouts: u64,
    /// Barrier entries received from peers.
    pub barriers_received: u64,
    /// Barriers from peers not answered: the local applied index did not reach theirs within
    /// [`ANSWER_WITHIN`], too many were waiting, the stream ended first, or no link to the
    /// asker was up (an ack answering several barriers counts once).
    pub barriers_unanswered: u64,
}

impl PeerStats {
    /// The counters of the link to `node` (all zero if it never had one).
    pub fn link(&self, node: &str) -> LinkStats {
        self.links.get(node).copied().unwrap_or_default()
    }
}

/// The live counters of one link (see [`LinkStats`]).
#[derive(Debug, Default)]
struct LinkCounters {
    /// Connected links of the node: 0 or 1, briefly 2 while a link replaced after an
    /// address change has not yet noticed it was stopped.
    up: AtomicU32,
    /// See [`LinkStats::sent`].
    sent: AtomicU64,
    /// See [`LinkStats::batches`].
    batches: AtomicU64,
    /// See [`LinkStats::reconnects`].
    reconnects: AtomicU64,
    /// Drops, indexed like [`DropReason::ALL`].
    dropped: [AtomicU64; 5],
}

impl LinkCounters {
    /// Counts `n` messages dropped for `reason`, here and in the metric.
    fn dropped(&self, reason: DropReason, n: usize) {
        if n == 0 {
            return;
        }
        let n = n as u64;
        let slot = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[slot].fetch_add(n, Ordering::Relaxed);
        metrics::counter!(m::PEER_MESSAGES_DROPPED_TOTAL, "reason" => reason.label()).increment(n);
    }

    /// A copy of the counters.
    fn snapshot(&self) -> LinkStats {
        let d = |i: usize| self.dropped[i].load(Ordering::Relaxed);
        LinkStats {
            up: self.up.load(Ordering::Relaxed) > 0,
            sent: self.sent.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            dropped_peer_down: d(0),
            dropped_queue_full: d(1),
            dropped_link_broken: d(2),
            dropped_too_large: d(3),
            dropped_stopped: d(4),
        }
    }
}

/// A peer link's queue found past half its capacity by [`Peers::forward`].
pub struct Congested(Arc<queue::Queue>);

impl Congested {
    /// Waits until the queue is back under half its capacity (or the link went down),
    /// at most `max`; returns false if it was no longer congested (no wait).
    pub async fn wait(&self, max: std::time::Duration) -> bool {
        let drained = self.0.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        if !self.0.is_congested() {
            return false;
        }
        let _ = tokio::time::timeout(max, drained).await;
        true
    }
}

/// The peer links of this node; cheap to clone (clones share the endpoint and the links).
#[derive(Clone)]
pub struct Peers {
    shared: Arc<Shared>,
}

/// What every clone of [`Peers`] shares.
struct Shared {
    /// Sent first on every outgoing stream.
    hello: PeerHello,
    /// Capacity of each link's queue, in messages.
    queue_len: usize,
    /// Capacity of each link's queue, in bytes.
    queue_bytes: usize,
    /// Where the endpoint is bound.
    local_addr: SocketAddr,
    /// Endpoints the links dial from.
    dialer: Arc<Dialer>,
    /// The link of every node forwarded to and not removed, with the address it dials.
    links: Links,
    /// Acks received, and what answers barriers from peers.
    barriers: Arc<Barriers>,
    /// Counters per node; an entry outlives its link (a few hundred bytes per node ever
    /// seen), so the stats of a node that left stay readable.
    counters: Mutex<BTreeMap<String, Arc<LinkCounters>>>,
    /// Counters of the incoming side.
    server: Arc<ServerCounters>,
    /// Cancelled when the node shuts down; every link's token is a child of it.
    shutdown: CancellationToken,
    /// Where link tasks are spawned (so `forward` works from any thread without panicking).
    runtime: Handle,
    /// Serves REST API calls from peers once the broker installed its handler.
    api: Arc<api_call::Inbound>,
    /// The outgoing API calls' connections, one per node.
    api_pool: api_call::Pool,
}

impl Peers {
    /// Binds the peer endpoint on `cfg.bind` (port 0 picks one) and spawns the accept loop.
    ///
    /// Must be called inside a tokio runtime. Cancelling `shutdown` stops the accept loop and
    /// every link and closes the endpoint (its port is free again once the connections have
    /// drained, well under a second on a healthy network).
    pub fn start(
        cfg: PeerConfig,
        deliver: Deliver,
        shutdown: CancellationToken,
    ) -> Result<Peers, PeerError> {
        let runtime = Handle::try_current().map_err(|_| PeerError::NoRuntime)?;
        if cfg.queue_len == 0 || cfg.queue_bytes == 0 {
            return Err(PeerError::ZeroQueue);
        }
        let ep = endpoint::bind(cfg.bind, &cfg.identity, ALPN_PEER)?;
        let local_addr = ep.local_addr().map_err(PeerError::LocalAddr)?;
        let dialer = Arc::new(Dialer::new(cfg.identity, ep.clone(), local_addr));
        let server = Arc::new(ServerCounters::default());
        let links = Links::default();
        let barriers = Arc::new(Barriers::new(cfg.applied, links.clone()));
        let api = Arc::new(api_call::Inbound::default());
        let shared = Arc::new(Shared {
            hello: PeerHello {
                node: cfg.node,
                incarnation: cfg.incarnation,
                wire: Some(cfg.wire.to_proto()),
            },
            queue_len: cfg.queue_len,
            queue_bytes: cfg.queue_bytes,
            local_addr,
            dialer: dialer.clone(),
            links,
            barriers: barriers.clone(),
            counters: Mutex::new(BTreeMap::new()),
            server: server.clone(),
            shutdown: shutdown.clone(),
            runtime: runtime.clone(),
            api: api.clone(),
            api_pool: api_call::Pool::default(),
        });
        let ctx = server::ServerCtx::new(
            deliver,
            cfg.on_session,
            server,
            barriers,
            shutdown,
            api,
            cfg.wire,
        );
        runtime.spawn(server::accept_loop(ep, dialer, ctx));
        Ok(Peers { shared })
    }

    /// The address the peer endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Installs what serves REST API calls from peers (the broker's API router); calls that
    /// come before it answer 503. The first handler installed stays.
    pub fn set_api_handler(&self, handler: ApiHandler) {
        self.shared.api.set(handler);
    }

    /// Calls the REST API of the node whose peer endpoint is at `addr` (see `api_call`),
    /// on the connection pooled for it, within `timeout`.
    pub async fn api_call(
        &self,
        addr: SocketAddr,
        call: &meshmq_proto::peer::ApiCall,
        timeout: std::time::Duration,
    ) -> Result<meshmq_proto::peer::ApiReply, ApiCallError> {
        api_call::call(
            &self.shared.dialer,
            &self.shared.api_pool,
            addr,
            call,
            timeout,
        )
        .await
    }

    /// Non-blocking. Queues `msg` for `node` at `addr` ("host:port"), creating that node's
    /// link on first use (and re-creating it if `addr` changed). Never blocks the caller,
    /// never panics.
    ///
    /// The message is dropped and counted when the link is not connected (which includes
    /// the first use, while it dials: see [`connect`](Self::connect)), when its queue is full
    /// and after shutdown. Returns the link's queue when it is past half its capacity: the
    /// publisher should wait a little ([`Congested::wait`]) so that a flood is paced by
    /// what the link can carry rather than dropped.
    pub fn forward(&self, node: &str, addr: &str, msg: PeerMessage) -> Option<Congested> {
        {
            let links = self.shared.links.read();
            if let Some(link) = links.get(node)
                && link.addr() == addr
            {
                return link.push(msg);
            }
        }
        match self.shared.link_to(node, addr) {
            Some(link) => link.push(msg),
            None => {
                self.shared
                    .counters_of(node)
                    .dropped(DropReason::PeerDown, 1);
                None
            }
        }
    }

    /// Creates the link to `node` at `addr` if there is none (or re-creates it if `addr`
    /// changed) without queueing anything, so that it is connected before the first
    /// [`forward`](Self::forward). Non-blocking.
    pub fn connect(&self, node: &str, addr: &str) {
        let exists = self
            .shared
            .links
            .read()
            .get(node)
            .is_some_and(|l| l.addr() == addr);
        if !exists {
            let _ = self.shared.link_to(node, addr);
        }
    }

    /// Queues a session hand-over item for `node` at `addr` (creating the link if needed,
    /// see [`forward`](Self::forward)). Unlike a forwarded message it is never dropped
    /// silently: the error says why it could not be queued (link down, queue full, too
    /// large), and the caller decides. Never blocks.
    pub fn send_session(
        &self,
        node: &str,
        addr: &str,
        item: SessionItem,
    ) -> Result<(), DropReason> {
        let link = {
            let links = self.shared.links.read();
            links.get(node).filter(|l| l.addr() == addr).cloned()
        };
        match link.or_else(|| self.shared.link_to(node, addr)) {
            Some(link) => link.push_session(item),
            None => Err(DropReason::Stopped),
        }
    }

    /// True while the link to `node` is connected.
    pub fn is_up(&self, node: &str) -> bool {
        self.shared
            .links
            .read()
            .get(node)
            .is_some_and(|l| l.session().is_some())
    }

    /// Tests only: while `held`, the link to `node` writes nothing; what is queued (and
    /// queued meanwhile) stays, in order, and goes once released. The link stays up. False
    /// when there is no link to `node`.
    #[doc(hidden)]
    pub fn hold_link(&self, node: &str, held: bool) -> bool {
        let link = self.shared.links.read().get(node).cloned();
        let Some(link) = link else { return false };
        link.hold(held);
        true
    }

    /// The node left the cluster: stop its link, drop (and count) what was queued.
    pub fn remove(&self, node: &str) {
        let link = self.shared.links.write().remove(node);
        if let Some(link) = link {
            link.stop();
            tracing::debug!(node, "peer link removed");
        }
    }

    /// Counters for tests: per node, messages sent / dropped by reason; barriers.
    pub fn stats(&self) -> PeerStats {
        let links = self
            .shared
            .counters
            .lock()
            .iter()
            .map(|(node, c)| (node.clone(), c.snapshot()))
            .collect();
        let server = &self.shared.server;
        let barriers = &self.shared.barriers;
        PeerStats {
            links,
            received: server.received.load(Ordering::Relaxed),
            malformed: server.malformed.load(Ordering::Relaxed),
            handshake_failures: server.handshake_failures.load(Ordering::Relaxed),
            connections_accepted: server.accepted.load(Ordering::Relaxed),
            barrier_timeouts: barriers.timeouts.load(Ordering::Relaxed),
            barriers_received: barriers.received.load(Ordering::Relaxed),
            barriers_unanswered: barriers.unanswered.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    /// The counters of `node`, created on first use.
    fn counters_of(&self, node: &str) -> Arc<LinkCounters> {
        self.counters
            .lock()
            .entry(node.to_owned())
            .or_default()
            .clone()
    }

    /// The link to `node` at `addr`: the existing one, or a new one (a link to another
    /// address is stopped first). `None` after shutdown.
    fn link_to(&self, node: &str, addr: &str) -> Option<Link> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let mut links = self.links.write();
        if let Some(link) = links.get(node) {
            if link.addr() == addr {
                return Some(link.clone());
            }
            tracing::info!(node, old = link.addr(), new = addr, "peer address changed");
            link.stop();
        }
        let link = link::spawn(link::LinkSpec {
            node: node.to_owned(),
            addr: addr.to_owned(),
            hello: self.hello.clone(),
            queue_len: self.queue_len,
            queue_bytes: self.queue_bytes,
            counters: self.counters_of(node),
            barriers: self.barriers.clone(),
            dialer: self.dialer.clone(),
            stop: self.shutdown.child_token(),
            runtime: &self.runtime,
        });
        links.insert(node.to_owned(), link.clone());
        Some(link)
    }
}
