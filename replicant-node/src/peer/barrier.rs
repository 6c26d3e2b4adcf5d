//! Applied-index barriers over the peer links: "has every other replicant applied log index
//! I?", asked before a SUBACK so that a PUBLISH on any replicant afterwards sees the route
//! (docs/architecture.md, invariant 1: subscribe, then publish anywhere).
//!
//! Asking ([`Peers::barrier`]): a `barrier I` is queued on every link that is up, behind
//! whatever was already queued there, and the caller waits until each of those nodes acked
//! an index ≥ I, or the timeout. Acks are kept per node as the highest index acked (per
//! incarnation of that node), so concurrent barriers share them; the record is cleared when
//! the link to the node connects again or a newer incarnation of it says hello. A node whose
//! link is down is not waited for (it cannot receive forwarded PUBLISHes, and it re-follows
//! the log before it serves again); one whose link breaks during the wait stops being waited
//! for and is reported missing.
//!
//! Answering ([`StreamBarriers`]): a `barrier n` read on the stream from node X is answered
//! with `ack n` on this node's own link to X once the local replica has applied n, within
//! [`ANSWER_WITHIN`]; the reading loop never waits for it (one waiter task per stream, with
//! a bounded backlog). No link up to X, or no progress in time: the barrier is dropped and
//! counted, and the asker times out.
//!
//! It owns the ack records and the waiters. It never blocks a reader or a forwarder, never
//! waits for a node whose link is down, and never claims an ack a node did not send.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshmq_proto::peer::PeerHello;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::link::Link;
use super::queue::Control;
use super::{DropReason, Links, Peers};

/// How long a received barrier may wait for the local replica before it is dropped.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// Barriers of one incoming stream waiting for the local replica at once; more are dropped.
const MAX_WAITING_PER_STREAM: usize = 4_096;

/// What [`Peers::barrier`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BarrierReport {
    /// Nodes whose link was up when the barrier started, sorted: the ones waited for.
    pub waited_for: Vec<String>,
    /// Of those, the ones that did not ack in time, sorted (timeout, too many barriers
    /// queued for them, or their link broke during the wait).
    pub missing: Vec<String>,
}

/// The highest index a node acked, and which incarnation of it did.
#[derive(Debug, Default, Clone, Copy)]
struct Acked {
    /// Highest incarnation heard from (acks from older ones are ignored).
    incarnation: u64,
    /// Highest index it acked since the record was last cleared.
    index: u64,
}

/// The barrier state of a node, shared by [`Peers`], the links and the incoming streams.
pub(super) struct Barriers {
    /// Per node: the highest index acked.
    acked: Mutex<HashMap<String, Acked>>,
    /// Bumped when an ack raises a record or a link goes down: wakes waiting barriers.
    progress: watch::Sender<u64>,
    /// The local replica's applied index.
    applied: watch::Receiver<u64>,
    /// Every outgoing link, to send acks on.
    links: Links,
    /// Barriers that gave up at their timeout (see [`super::PeerStats::barrier_timeouts`]).
    pub(super) timeouts: AtomicU64,
    /// Barrier entries read from peers.
    pub(super) received: AtomicU64,
    /// Barriers from peers not answered (see [`super::PeerStats::barriers_unanswered`]).
    pub(super) unanswered: AtomicU64,
}

impl Barriers {
    /// Barrier state answering from `applied` and acking over `links`.
    pub(super) fn new(applied: watch::Receiver<u64>, links: Links) -> Self {
        Self {
            acked: Mutex::new(HashMap::new()),
            progress: watch::Sender::new(0),
            applied,
            links,
            timeouts: AtomicU64::new(0),
            received: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
        }
    }

    /// The highest index `node` acked (0: none since its record was cleared).
    fn acked(&self, node: &str) -> u64 {
        self.acked.lock().get(node).map_or(0, |a| a.index)
    }

    /// Records an ack of `index` from `incarnation` of `node`.
    fn record(&self, node: &str, incarnation: u64, index: u64) {
        let raised = {
            let mut acked = self.acked.lock();
            let a = acked.entry(node.to_owned()).or_default();
            if incarnation < a.incarnation {
                false
            } else if incarnation > a.incarnation || index > a.index {
                *a = Acked { incarnation, index };
                true
            } else {
                false
            }
        };
        if raised {
            self.changed();
        }
    }

    /// A stream from `incarnation` of `node` began: a newer incarnation clears the record
    /// (what an older one applied says nothing about the new replica).
    fn hello(&self, node: &str, incarnation: u64) {
        let mut acked = self.acked.lock();
        let a = acked.entry(node.to_owned()).or_default();
        if incarnation > a.incarnation {
            *a = Acked {
                incarnation,
                index: 0,
            };
        }
    }

    /// The link to `node` is about to accept items on a new connection: clears its record,
    /// which may come from a node that restarted since.
    pub(super) fn link_up(&self, node: &str) {
        if let Some(a) = self.acked.lock().get_mut(node) {
            a.index = 0;
        }
    }

    /// A link went down or stopped: waiting barriers re-check their links.
    pub(super) fn changed(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Queues `ack index` on the link to `node`; counts it when that cannot be done.
    fn ack(&self, node: &str, index: u64) {
        let queued = self
            .links
            .read()
            .get(node)
            .map(|link| link.push_control(Control::Ack(index)));
        if !matches!(queued, Some(Ok(_))) {
            self.unanswered.fetch_add(1, Ordering::Relaxed);
            debug!(
                node,
                index, "barrier not answered: no link up to its sender"
            );
        }
    }

    /// The barrier side of a stream that said `hello`; `stop` ends its waiter.
    pub(super) fn stream(
        self: &Arc<Self>,
        hello: &PeerHello,
        stop: CancellationToken,
    ) -> StreamBarriers {
        self.hello(&hello.node, hello.incarnation);
        StreamBarriers {
            node: hello.node.clone(),
            incarnation: hello.incarnation,
            barriers: self.clone(),
            waiter: None,
            stop,
        }
    }
}

/// A barrier queued on one link, waiting for its ack.
struct Waiting {
    /// The node asked.
    node: String,
    /// Its link.
    link: Link,
    /// The connection the barrier was queued on; if it ends, the barrier is lost.
    session: u64,
}

impl Peers {
    /// Waits until every other replicant whose link is up now has applied log `index` to
    /// its replica, at most `timeout`. Returns at once when no link is up.
    ///
    /// Nodes whose link is down are not waited for. Whatever was queued for a node before
    /// the barrier is delivered there before the node answers it, unless that node had
    /// already acked an index ≥ `index` (then nothing is queued or waited for).
    pub async fn barrier(&self, index: u64, timeout: Duration) -> BarrierReport {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let b = &self.shared.barriers;
        let mut progress = b.progress.subscribe();
        let (mut report, mut waiting) = self.queue_barrier(index);
        if report.waited_for.is_empty() {
            return report;
        }
        let timed_out = loop {
            progress.borrow_and_update();
            waiting.retain(|w| {
                if b.acked(&w.node) >= index {
                    return false;
                }
                let lost = w.link.session() != Some(w.session);
                if lost {
                    report.missing.push(w.node.clone());
                }
                !lost
            });
            if waiting.is_empty() {
                break false;
            }
            // The sender lives in `b`: `changed` cannot fail while we hold it.
            if !matches!(
                tokio::time::timeout_at(deadline, progress.changed()).await,
                Ok(Ok(()))
            ) {
                break true;
            }
        };
        if timed_out {
            report.missing.extend(waiting.into_iter().map(|w| w.node));
            b.timeouts.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::PEER_BARRIER_TIMEOUTS_TOTAL).increment(1);
            debug!(index, missing = ?report.missing, "peer barrier timed out");
        }
        report.missing.sort_unstable();
        metrics::histogram!(m::PEER_BARRIER_SECONDS).record(started.elapsed().as_secs_f64());
        report
    }

    /// Queues `barrier index` on every link that is up and has not acked `index` yet.
    fn queue_barrier(&self, index: u64) -> (BarrierReport, Vec<Waiting>) {
        let b = &self.shared.barriers;
        let links: Vec<(String, Link)> = self
            .shared
            .links
            .read()
            .iter()
            .map(|(node, link)| (node.clone(), link.clone()))
            .collect();
        let mut report = BarrierReport::default();
        let mut waiting = Vec::new();
        for (node, link) in links {
            if b.acked(&node) >= index {
                if link.session().is_some() {
                    report.waited_for.push(node);
                }
                continue;
            }
            match link.push_control(Control::Barrier(index)) {
                Ok(session) => {
                    report.waited_for.push(node.clone());
                    waiting.push(Waiting {
                        node,
                        link,
                        session,
                    });
                }
                Err(DropReason::PeerDown) => {}
                Err(_) => {
                    report.waited_for.push(node.clone());
                    report.missing.push(node);
                }
            }
        }
        report.waited_for.sort_unstable();
        (report, waiting)
    }
}

/// The barrier side of one incoming stream: records the acks it carries and answers its
/// barriers, never blocking the reader.
pub(super) struct StreamBarriers {
    /// The sender, from its hello.
    node: String,
    /// Its incarnation, from its hello.
    incarnation: u64,
    /// The node's barrier state.
    barriers: Arc<Barriers>,
    /// Hands barriers not yet applied to this stream's waiter task (spawned on first use;
    /// it ends with this value).
    waiter: Option<mpsc::Sender<u64>>,
    /// The node's shutdown.
    stop: CancellationToken,
}

impl StreamBarriers {
    /// Records the acks of one batch.
    pub(super) fn acks(&self, acks: &[u64]) {
        if let Some(&highest) = acks.iter().max() {
            self.barriers.record(&self.node, self.incarnation, highest);
        }
    }

    /// Answers the barriers of one batch: at once those already applied (one ack for all),
    /// the others from the waiter task.
    pub(super) fn barriers(&mut self, barriers: &[u64]) {
        if barriers.is_empty() {
            return;
        }
        let b = &self.barriers;
        b.received
            .fetch_add(barriers.len() as u64, Ordering::Relaxed);
        let applied = *b.applied.borrow();
        if let Some(&ready) = barriers.iter().filter(|&&n| n <= applied).max() {
            b.ack(&self.node, ready);
        }
        for &n in barriers.iter().filter(|&&n| n > applied) {
            let waiter = self.waiter.get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel(MAX_WAITING_PER_STREAM);
                let task = answer_later(b.clone(), self.node.clone(), rx, self.stop.clone());
                tokio::spawn(task);
                tx
            });
            if waiter.try_send(n).is_err() {
                b.unanswered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Answers barriers from `node` as the local replica reaches them; drops (and counts) those
/// still waiting after [`ANSWER_WITHIN`] or when the stream ends.
async fn answer_later(
    b: Arc<Barriers>,
    node: String,
    mut rx: mpsc::Receiver<u64>,
    stop: CancellationToken,
) {
    let mut applied = b.applied.clone();
    // Barrier index → when it gives up.
    let mut pending: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
    loop {
        let now_applied = *applied.borrow_and_update();
        let later = match now_applied.checked_add(1) {
            Some(next) => pending.split_off(&next),
            None => BTreeMap::new(),
        };
        let ready = std::mem::replace(&mut pending, later);
        if let Some((&n, _)) = ready.last_key_value() {
            b.ack(&node, n);
        }
        let now = tokio::time::Instant::now();
        let before = pending.len();
        pending.retain(|_, give_up| *give_up > now);
        let expired = (before - pending.len()) as u64;
        b.unanswered.fetch_add(expired, Ordering::Relaxed);
        let next = pending.values().min().copied();
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            n = rx.recv() => match n {
                Some(n) => {
                    pending.entry(n).or_insert(now + ANSWER_WITHIN);
                }
                None => break,
            },
            changed = applied.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(next.unwrap_or(now)), if next.is_some() => {}
        }
    }
    b.unanswered
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barriers() -> (watch::Sender<u64>, Barriers) {
        let (tx, rx) = watch::channel(0);
        (tx, Barriers::new(rx, Links::default()))
    }

    #[test]
    fn acks_keep_the_highest_index_of_the_newest_incarnation() {
        let (_applied, b) = barriers();
        b.record("b", 1, 10);
        b.record("b", 1, 7);
        assert_eq!(b.acked("b"), 10, "an ack means at least");
        b.record("b", 0, 50);
        assert_eq!(b.acked("b"), 10, "an older incarnation is ignored");
        b.hello("b", 2);
        assert_eq!(b.acked("b"), 0, "a new incarnation starts over");
        b.record("b", 2, 3);
        b.record("b", 1, 40);
        assert_eq!(b.acked("b"), 3);
        b.link_up("b");
        assert_eq!(b.acked("b"), 0, "a new connection starts over");
        assert_eq!(b.acked("c"), 0);
    }

    #[test]
    fn raising_a_record_wakes_waiters() {
        let (_applied, b) = barriers();
        let mut rx = b.progress.subscribe();
        rx.borrow_and_update();
        b.record("b", 1, 5);
        assert!(rx.has_changed().unwrap_or(false));
        rx.borrow_and_update();
        b.record("b", 1, 5);
        assert!(!rx.has_changed().unwrap_or(true), "no raise, no wake-up");
    }
}
