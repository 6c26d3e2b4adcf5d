//! The replicant's link to the core group: it keeps the local [`Replica`] following one
//! core's committed log, keeps this node's lease alive, and sends `Transact`s.
//!
//! [`CoreLink::start`] spawns two tasks: the follow task ([`follow`]) picks a core
//! ([`pick`]), asks it to `Follow` from `applied + 1` and applies every frame; on silence,
//! a gap or any error it backs off and picks again, resuming where the replica is (Raft
//! indexes are global, so any core can continue the stream). The lease task ([`lease`])
//! renews `Lease{node, incarnation, ttl}` every third of the ttl. [`CoreLink::transact`]
//! ([`transact`]) commits a batch and returns only once the replica applied it, which is
//! what lets SUBACK promise the route is visible (invariant 1). [`CoreLink::health`]
//! ([`health`]) says whether it follows a core, lags, or is down.
//!
//! It owns the QUIC connections to cores and the retry policy. It must never build table
//! operations (the callers do), never write the replica other than through the follow
//! stream, never resend a transaction that may have committed, and never panic on what a
//! core sends: malformed frames are counted and cause a reconnect.

mod coalesce;
mod follow;
pub mod health;
mod lease;
pub mod pick;
mod resend;
mod snapshot;
mod transact;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshmq_shared::quic::Identity;
use meshmq_shared::wire_version::WireVersion;
use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::replica::{Replica, ReplicaError};
pub use health::{LinkHealth, LinkState};
use pick::Dialer;

/// How to reach the core group and who this node is.
pub struct CoreLinkConfig {
    /// Core addresses, `host:port` or `dns-name:port` (a name may resolve to several cores);
    /// resolved again each time a core is (re)picked.
    pub cores: Vec<String>,
    /// This node's TLS identity (signed by the cluster CA).
    pub identity: Identity,
    /// This node's name (the `nodes` table key), sent with `Follow` and `Lease`.
    pub node: String,
    /// This node's incarnation (a new one per start), sent with `Lease`.
    pub incarnation: u64,
    /// How long the cores keep this node's rows without a lease renewal; renewed every third.
    pub lease_ttl: Duration,
    /// Bound on one request/response with a core (a `Transact` reply, a `Lease`).
    pub request_timeout: Duration,
    /// Bound on a whole `transact` with its retries, and on [`CoreLink::start`].
    pub transact_deadline: Duration,
    /// Under load, the least time between two `Transact` requests (`cluster.transact_linger_ms`).
    pub transact_linger: Duration,
    /// Largest snapshot (encoded rows) accepted from a core
    /// (`cluster.follow_max_snapshot_bytes`).
    pub max_snapshot_bytes: u64,
    /// Largest follow frame read from a core ([`frame::MAX_FRAME`] but in tests).
    ///
    /// [`frame::MAX_FRAME`]: meshmq_shared::quic::frame::MAX_FRAME
    pub max_frame: usize,
    /// The inter-node protocol version sent to the cores ([`WireVersion::CURRENT`] but in
    /// tests).
    pub wire: WireVersion,
}

impl CoreLinkConfig {
    /// A configuration with the default timings (lease 10 s, request 5 s, deadline 15 s) and
    /// bounds (snapshots up to 16 GiB, frames up to 64 MiB).
    pub fn new(cores: Vec<String>, identity: Identity, node: String, incarnation: u64) -> Self {
        Self {
            cores,
            identity,
            node,
            incarnation,
            lease_ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            transact_deadline: Duration::from_secs(15),
            transact_linger: Duration::from_millis(5),
            max_snapshot_bytes: 16 << 30,
            max_frame: meshmq_shared::quic::frame::MAX_FRAME,
            wire: WireVersion::CURRENT,
        }
    }
}

/// Why the link could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoreLinkError {
    /// The configuration names no core.
    #[error("no core address configured")]
    NoCores,
    /// No core could be reached and asked to `Follow` in time.
    #[error("no core reachable within {timeout:?}: {last}")]
    Unreachable {
        /// The bound that ran out (`transact_deadline`).
        timeout: Duration,
        /// Why the last attempt failed.
        last: String,
    },
    /// A core was reached but the replica did not catch up with its commit index in time.
    #[error("replica did not catch up with the core: {0}")]
    CatchUp(#[from] ReplicaError),
    /// The shutdown token was cancelled while starting.
    #[error("shut down while starting")]
    Shutdown,
}

/// Counters of one link since it started (also exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Follow streams that ended and made the link pick a core again.
    pub core_switches: u64,
    /// Follow frames that could not be read or applied as valid frames.
    pub malformed_frames: u64,
    /// Leases a core confirmed.
    pub leases_ok: u64,
    /// Lease renewals that failed.
    pub lease_failures: u64,
    /// Chunks of streamed snapshots received.
    pub snapshot_chunks: u64,
    /// Streamed snapshots dropped before their end (the replica kept its tables).
    pub snapshots_aborted: u64,
}

/// A handle on the link; cheap to clone (all clones share the tasks and connections).
#[derive(Clone)]
pub struct CoreLink {
    shared: Arc<Shared>,
}

/// What the link's tasks and `transact` share.
pub(crate) struct Shared {
    /// Core addresses, resolved on every pick.
    cores: Vec<String>,
    /// This node's name.
    node: String,
    /// This node's incarnation.
    incarnation: u64,
    /// Lease ttl.
    lease_ttl: Duration,
    /// Bound on one request/response.
    request_timeout: Duration,
    /// Bound on a whole transaction.
    transact_deadline: Duration,
    /// See [`CoreLinkConfig::transact_linger`].
    transact_linger: Duration,
    /// See [`CoreLinkConfig::max_snapshot_bytes`].
    max_snapshot_bytes: u64,
    /// See [`CoreLinkConfig::max_frame`].
    max_frame: usize,
    /// The replica the follow task feeds.
    replica: Replica,
    /// Endpoints and cached connections.
    dialer: Dialer,
    /// The core being followed and its connection (also used for leases and transacts).
    current: Mutex<Option<(SocketAddr, quinn::Connection)>>,
    /// Highest commit index a core reported (for the lag gauge).
    commit_index: AtomicU64,
    /// Why the last follow attempt ended (reported when start fails).
    last_error: Mutex<String>,
    /// The last lease renewal was answered "not the leader" and no core it reached could
    /// name or reach one (set and cleared by the lease task; see [`CoreLink::no_leader`]).
    no_leader: AtomicBool,
    /// See [`LinkStats`].
    core_switches: AtomicU64,
    /// See [`LinkStats`].
    malformed_frames: AtomicU64,
    /// See [`LinkStats`].
    leases_ok: AtomicU64,
    /// See [`LinkStats`].
    lease_failures: AtomicU64,
    /// See [`LinkStats`].
    snapshot_chunks: AtomicU64,
    /// See [`LinkStats`].
    snapshots_aborted: AtomicU64,
    /// Stops the tasks: a child of the caller's token, also cancelled by [`CoreLink::stop`].
    stop: CancellationToken,
    /// Concurrent transactions waiting to share one request.
    coalescer: coalesce::Coalescer,
}

impl CoreLink {
    /// Starts following the core group and renewing the lease.
    ///
    /// Returns once a core is connected and the replica has caught up with that core's
    /// commit index at connect time, or an error when that does not happen within
    /// `transact_deadline` (the tasks are then stopped). The tasks end when `shutdown` is
    /// cancelled or [`stop`](Self::stop) is called.
    pub async fn start(
        cfg: CoreLinkConfig,
        replica: Replica,
        shutdown: CancellationToken,
    ) -> Result<CoreLink, CoreLinkError> {
        if cfg.cores.is_empty() {
            return Err(CoreLinkError::NoCores);
        }
        let bound = cfg.transact_deadline;
        let link = CoreLink {
            shared: Arc::new(Shared::new(cfg, replica, shutdown.child_token())),
        };
        let started = Instant::now();
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(follow::run(link.shared.clone(), first_tx));
        let commit = match tokio::time::timeout(bound, first_rx).await {
            Ok(Ok(commit)) => commit,
            Ok(Err(_)) => {
                link.stop();
                return Err(CoreLinkError::Shutdown);
            }
            Err(_) => {
                link.stop();
                let last = link.shared.last_error.lock().clone();
                return Err(CoreLinkError::Unreachable {
                    timeout: bound,
                    last,
                });
            }
        };
        let left = bound.saturating_sub(started.elapsed());
        if let Err(e) = link.shared.replica.wait_applied(commit, left).await {
            link.stop();
            return Err(e.into());
        }
        tokio::spawn(lease::run(link.shared.clone()));
        Ok(link)
    }

    /// The replica this link feeds.
    pub fn replica(&self) -> &Replica {
        &self.shared.replica
    }

    /// The core being followed now, if any.
    pub fn current_core(&self) -> Option<SocketAddr> {
        self.shared.current.lock().as_ref().map(|(a, _)| *a)
    }

    /// Highest commit index any core reported to this link.
    pub fn commit_index(&self) -> u64 {
        self.shared.commit_index.load(Ordering::Relaxed)
    }

    /// Following, lagging or down, with the core and the indexes (for `/health`), and why
    /// the cores refuse this node's protocol version while they do.
    pub fn health(&self) -> LinkHealth {
        let mut health = LinkHealth::judge(
            self.current_core(),
            self.shared.replica.applied_index(),
            self.commit_index(),
        );
        health.wire_refused = self.wire_refused();
        health
    }

    /// The inter-node protocol version this link speaks.
    pub fn wire_version(&self) -> WireVersion {
        self.shared.dialer.wire.version()
    }

    /// Why the cores refuse this node's inter-node protocol version, while they do (the
    /// node is then not ready: see the availability check).
    pub fn wire_refused(&self) -> Option<String> {
        self.shared.dialer.wire.refused()
    }

    /// True while the core group has no leader as far as this link can tell: the last lease
    /// renewal was answered "not the leader" by the core it asked (and by the leader that
    /// core named, if any). Cleared by the next renewal a leader accepts. What a replicant
    /// knows of Raft comes only through its link: with the link down this stays as it was.
    pub fn no_leader(&self) -> bool {
        self.shared.no_leader.load(Ordering::Relaxed)
    }

    /// Counters since start.
    pub fn stats(&self) -> LinkStats {
        let s = &self.shared;
        LinkStats {
            core_switches: s.core_switches.load(Ordering::Relaxed),
            malformed_frames: s.malformed_frames.load(Ordering::Relaxed),
            leases_ok: s.leases_ok.load(Ordering::Relaxed),
            lease_failures: s.lease_failures.load(Ordering::Relaxed),
            snapshot_chunks: s.snapshot_chunks.load(Ordering::Relaxed),
            snapshots_aborted: s.snapshots_aborted.load(Ordering::Relaxed),
        }
    }

    /// Stops the follow and lease tasks and closes the connections; `transact` fails
    /// afterwards.
    pub fn stop(&self) {
        self.shared.stop.cancel();
        self.shared.current.lock().take();
        self.shared.dialer.close_all();
    }
}

impl Shared {
    /// The shared state for `cfg`.
    fn new(cfg: CoreLinkConfig, replica: Replica, stop: CancellationToken) -> Self {
        Self {
            cores: cfg.cores,
            node: cfg.node,
            incarnation: cfg.incarnation,
            lease_ttl: cfg.lease_ttl,
            request_timeout: cfg.request_timeout,
            transact_deadline: cfg.transact_deadline,
            transact_linger: cfg.transact_linger,
            max_snapshot_bytes: cfg.max_snapshot_bytes,
            max_frame: cfg.max_frame,
            replica,
            dialer: Dialer::new(cfg.identity, cfg.wire),
            current: Mutex::new(None),
            commit_index: AtomicU64::new(0),
            last_error: Mutex::new("no attempt yet".into()),
            no_leader: AtomicBool::new(false),
            core_switches: AtomicU64::new(0),
            malformed_frames: AtomicU64::new(0),
            leases_ok: AtomicU64::new(0),
            lease_failures: AtomicU64::new(0),
            snapshot_chunks: AtomicU64::new(0),
            snapshots_aborted: AtomicU64::new(0),
            stop,
            coalescer: coalesce::Coalescer::default(),
        }
    }

    /// The followed core's connection, if it is still open.
    fn current_conn(&self) -> Option<(SocketAddr, quinn::Connection)> {
        self.current
            .lock()
            .as_ref()
            .filter(|(_, c)| c.close_reason().is_none())
            .cloned()
    }

    /// A connection to the core at `addr` (`host:port`, resolved now).
    async fn conn_to(&self, addr: &str) -> Result<(SocketAddr, quinn::Connection), String> {
        let sock = pick::resolve(addr)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| format!("resolve {addr}: no address"))?;
        let conn = self.dialer.connect(sock, self.request_timeout).await?;
        Ok((sock, conn))
    }
}

/// Exponential back-off with jitter between attempts: 100 ms doubling to 2 s; each delay
/// is drawn from `[d/2, d]`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// The next delay's upper bound.
    next: Duration,
}

impl Backoff {
    /// First delay bound.
    const MIN: Duration = Duration::from_millis(100);
    /// Largest delay bound.
    const MAX: Duration = Duration::from_secs(2);

    /// A back-off at its shortest delay.
    pub(crate) fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// The delay before the next attempt; doubles the bound for the one after.
    pub(crate) fn delay(&mut self) -> Duration {
        let bound = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let half = bound / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// Back to the shortest delay (after an attempt that made progress).
    pub(crate) fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let mut bounds = Vec::new();
        for _ in 0..8 {
            let bound = b.next;
            let d = b.delay();
            assert!(
                d >= bound / 2 && d <= bound,
                "{d:?} not in [{:?}, {bound:?}]",
                bound / 2
            );
            bounds.push(bound.as_millis());
        }
        assert_eq!(bounds, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert!(b.delay() <= Backoff::MIN);
    }
}
