//! A session's mailbox: the bounded queue that publishers push deliveries into and the
//! session's connection task drains.
//!
//! While the client is offline the mailbox *is* the session's message queue. It is bounded
//! (`mqtt.max_mqueue_len`); when full, the configured drop policy picks the victim and the drop
//! is counted. It never blocks a publisher: back-pressure is advisory
//! ([`PushOutcome::is_congested`]), and the publisher decides whether to wait
//! ([`Mailbox::wait_drained`]). Only a queue that a connection drains is ever congested.
//!
//! While a connection is attached it drains the mailbox into the session, which queues what its
//! in-flight window does not admit yet (the session's pending queue). That backlog counts
//! toward the high-water mark ([`Mailbox::set_backlog`]): for a QoS 1/2 subscriber that acks
//! slower than publishers publish, the mailbox itself stays nearly empty while the session's
//! queue is full and dropping, and publishers must still be held back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use meshmq_shared::codec::QoS;
use meshmq_shared::config::QueueDropPolicy;
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::message::Delivery;

/// What happened to a pushed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Queued, and the queue (drained by a connection) is past its high-water mark: the
    /// publisher should slow down.
    Congested,
    /// The queue was full and a message (this one or the oldest) was dropped; or the session
    /// is offline and does not keep QoS 0.
    Dropped,
    /// The queue was full while a connection drains it: a message was dropped as above, and
    /// the publisher should slow down (a full queue is the most congested one).
    Full,
}

impl PushOutcome {
    /// True when the publisher should wait for this queue to drain before reading on.
    pub fn is_congested(self) -> bool {
        matches!(self, PushOutcome::Congested | PushOutcome::Full)
    }
}

/// The bounded delivery queue of one session.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<VecDeque<Delivery>>,
    /// Wakes the connection task when deliveries arrive.
    pub ready: Notify,
    /// Wakes publishers waiting for this queue to drain below its high-water mark.
    pub drained: Notify,
    /// Whether a connection is attached (shared-subscription member choice, QoS 0 offline policy).
    online: AtomicBool,
    /// A connection drains this mailbox into its session (see [`Mailbox::set_backlog`]).
    drainer: AtomicBool,
    /// Deliveries the draining connection's session holds behind its in-flight window.
    backlog: AtomicUsize,
    /// A push reported congestion since publishers were last woken.
    signalled: AtomicBool,
    cap: usize,
    policy: QueueDropPolicy,
    store_qos0_offline: bool,
}

impl Mailbox {
    /// An empty, offline mailbox holding at most `cap` deliveries.
    pub fn new(cap: usize, policy: QueueDropPolicy, store_qos0_offline: bool) -> Mailbox {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            drained: Notify::new(),
            online: AtomicBool::new(false),
            drainer: AtomicBool::new(false),
            backlog: AtomicUsize::new(0),
            signalled: AtomicBool::new(false),
            cap: cap.max(1),
            policy,
            store_qos0_offline,
        }
    }

    /// Marks the session as having (or not having) a live connection. Going offline also
    /// [releases](Self::release) the queue.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
        if !online {
            self.release();
        }
    }

    /// True while a connection is attached.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Called by the connection that drains this mailbox, after each change to its session:
    /// how many deliveries the session queues behind its in-flight window. Wakes waiting
    /// publishers when the queue is back under its high-water mark.
    pub fn set_backlog(&self, n: usize) {
        self.drainer.store(true, Ordering::Release);
        self.backlog.store(n, Ordering::Release);
        let queued = self.len();
        if self.over_high_water(queued) {
            // A push may have seen the queue lower while deliveries were on their way from
            // the mailbox into the session: make sure the next drop under the mark wakes.
            self.signalled.store(true, Ordering::Release);
        } else {
            self.wake_if_drained(queued);
        }
    }

    /// No connection drains this mailbox any more (closed, kicked, session handed over):
    /// forgets the session's backlog and wakes every waiting publisher.
    pub fn release(&self) {
        self.drainer.store(false, Ordering::Release);
        self.backlog.store(0, Ordering::Release);
        self.signalled.store(false, Ordering::Release);
        self.drained.notify_waiters();
    }

    /// True while a connection drains this mailbox and the queue (mailbox plus the
    /// session's backlog) is past half its bound: publishers feeding it should wait
    /// ([`Self::wait_drained`]). A mailbox nobody drains (offline, or its session being
    /// handed over) is never congested: waiting for it would hold publishers for nothing.
    pub fn is_congested(&self) -> bool {
        self.drainer.load(Ordering::Acquire) && self.over_high_water(self.len())
    }

    /// Publisher side of back-pressure: waits until the queue is back under its high-water
    /// mark, at most `max`; returns false if it was not congested (no wait).
    pub async fn wait_drained(&self, max: std::time::Duration) -> bool {
        let drained = self.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        // Registered: the next drop under the mark must wake us, whoever cleared the flag.
        self.signalled.store(true, Ordering::Release);
        if !self.is_congested() {
            return false;
        }
        let _ = tokio::time::timeout(max, drained).await;
        true
    }

    fn over_high_water(&self, queued: usize) -> bool {
        (queued + self.backlog.load(Ordering::Acquire)) * 2 > self.cap
    }

    /// Wakes waiting publishers if a push has reported congestion since the last wake and
    /// `queued` (plus the backlog) is back under the high-water mark.
    fn wake_if_drained(&self, queued: usize) {
        if self.signalled.load(Ordering::Acquire)
            && !self.over_high_water(queued)
            && self.signalled.swap(false, Ordering::AcqRel)
        {
            self.drained.notify_waiters();
        }
    }

    /// Queues a delivery, applying the bound and the drop policy.
    pub fn push(&self, d: Delivery) -> PushOutcome {
        let online = self.is_online();
        if !online && d.qos == QoS::AtMostOnce && !self.store_qos0_offline {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "offline_qos0").increment(1);
            return PushOutcome::Dropped;
        }
        let (len, dropped) = {
            let mut q = self.queue.lock();
            if q.len() >= self.cap {
                if self.policy == QueueDropPolicy::DropOldest {
                    q.pop_front();
                    q.push_back(d);
                }
                (q.len(), true)
            } else {
                q.push_back(d);
                (q.len(), false)
            }
        };
        if dropped {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "queue_full").increment(1);
        }
        if len == 1 || dropped {
            self.ready.notify_one();
        }
        // Only while a connection drains this queue (see `is_congested`).
        let congested = self.drainer.load(Ordering::Acquire) && self.over_high_water(len);
        let outcome = match (congested, dropped) {
            (true, true) => PushOutcome::Full,
            (false, true) => PushOutcome::Dropped,
            (true, false) => PushOutcome::Congested,
            (false, false) => PushOutcome::Queued,
        };
        if outcome.is_congested() {
            self.signalled.store(true, Ordering::Release);
        }
        outcome
    }

    /// Takes up to `max` queued deliveries, oldest first, and wakes waiting publishers
    /// (consumers other than the session's own connection: hand-over, forwarding).
    pub fn drain(&self, max: usize, out: &mut Vec<Delivery>) {
        let left = self.take(max, out);
        self.wake_if_drained(left);
    }

    /// Takes up to `max` queued deliveries, oldest first; returns how many are left. The
    /// connection draining into its session uses this and then [`Self::set_backlog`], so
    /// publishers are not woken while the taken deliveries are merely moved to the session.
    pub fn take(&self, max: usize, out: &mut Vec<Delivery>) -> usize {
        let mut q = self.queue.lock();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        q.len()
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().is_empty()
    }

    /// Drops everything queued (clean start, session end); returns how many were dropped.
    pub fn clear(&self) -> usize {
        let mut q = self.queue.lock();
        let n = q.len();
        q.clear();
        drop(q);
        self.wake_if_drained(0);
        n
    }
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;
