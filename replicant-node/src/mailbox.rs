//! A session's mailbox: the bounded queue that publishers push deliveries into and the
//! session's connection task takes from, as its in-flight window admits them.
//!
//! The mailbox is the session's message queue, online or not: a connection takes only what
//! it can send at once (QoS 0, and QoS 1/2 while the window has room), so the rest waits
//! here, in order. The session's own pending queue (retained replays and handed-over
//! messages beyond the window) is mirrored here ([`Mailbox::set_backlog`]), and ONE bound
//! covers both: `mqtt.max_mqueue_len` messages and `mqtt.max_mqueue_bytes` bytes
//! ([`crate::message::counted_bytes`]). When full, the drop policy picks the victim among
//! what the mailbox holds and the drop is counted (`queue_full`); an empty queue still
//! takes one message, however large. Every mailbox of the node also shares one byte budget
//! ([`NodeBudget`], `mqtt.max_node_mqueue_bytes`, with what connections are writing):
//! past it new deliveries are dropped (`node_queue_full`).
//!
//! While a connection drains it, QoS 0 messages are write buffer rather than session state:
//! one that finds `mqtt.max_write_buffer_bytes` already waiting for the socket (being
//! written, [`Mailbox::set_writing`], or QoS 0 queued here) is dropped (`slow_consumer`).
//!
//! It never blocks a publisher: back-pressure is advisory ([`PushOutcome::is_congested`],
//! past half the bound in messages or bytes), and the publisher decides whether to wait
//! ([`Mailbox::wait_drained`]). Only a queue that a connection drains is ever congested.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use meshmq_shared::codec::QoS;
use meshmq_shared::config::{MqttConfig, QueueDropPolicy};
use meshmq_shared::metrics as m;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::message::Delivery;
pub use crate::node_budget::NodeBudget;

/// What happened to a pushed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Queued, and the queue (drained by a connection) is past its high-water mark: the
    /// publisher should slow down.
    Congested,
    /// A message (this one or the oldest) was dropped by a bound; or the session is offline
    /// and does not keep QoS 0.
    Dropped,
    /// A message was dropped as above while a connection drains the queue and it is past
    /// its high-water mark: the publisher should slow down.
    Full,
}

impl PushOutcome {
    /// True when the publisher should wait for this queue to drain before reading on.
    pub fn is_congested(self) -> bool {
        matches!(self, PushOutcome::Congested | PushOutcome::Full)
    }
}

/// The bounds of one session's queue, from the `[mqtt]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Messages (`mqtt.max_mqueue_len`).
    pub max_len: usize,
    /// Bytes (`mqtt.max_mqueue_bytes`).
    pub max_bytes: usize,
    /// Which message a full queue drops.
    pub policy: QueueDropPolicy,
    /// Whether QoS 0 is queued while no connection is attached.
    pub store_qos0_offline: bool,
    /// Bytes a connection may hold for its socket (`mqtt.max_write_buffer_bytes`).
    pub max_write_bytes: usize,
}

impl QueueLimits {
    /// The limits of the `[mqtt]` section (every bound at least 1).
    pub fn of(c: &MqttConfig) -> QueueLimits {
        QueueLimits {
            max_len: c.max_mqueue_len.max(1),
            max_bytes: c.max_mqueue_bytes.max(1),
            policy: c.mqueue_drop_policy,
            store_qos0_offline: c.mqueue_store_qos0,
            max_write_bytes: c.max_write_buffer_bytes.max(1),
        }
    }
}

/// The deliveries of a mailbox and what they count for.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Delivery>,
    /// Bytes of `items` ([`crate::message::Message::size`]).
    bytes: usize,
    /// Bytes of the QoS 0 deliveries in `items` (the write budget's share of the queue).
    qos0_bytes: usize,
}

impl Queue {
    fn push_back(&mut self, d: Delivery) {
        let size = d.msg.size();
        self.bytes += size;
        if d.qos == QoS::AtMostOnce {
            self.qos0_bytes += size;
        }
        self.items.push_back(d);
    }

    fn pop_front(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        let size = d.msg.size();
        self.bytes -= size;
        if d.qos == QoS::AtMostOnce {
            self.qos0_bytes -= size;
        }
        Some(d)
    }
}

/// Why [`Mailbox::take_admitted`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeStop {
    /// Nothing left.
    Empty,
    /// The next delivery is QoS 1/2 and the window had no more room.
    Window,
    /// The count or byte limit of the call was reached: take again after the write.
    Limit,
}

/// The bounded delivery queue of one session.
#[derive(Debug)]
pub struct Mailbox {
    queue: Mutex<Queue>,
    /// Wakes the connection task when deliveries arrive.
    pub ready: Notify,
    /// Wakes publishers waiting for this queue to drain below its high-water mark.
    pub drained: Notify,
    /// Whether a connection is attached (shared-subscription member choice, QoS 0 offline policy).
    online: AtomicBool,
    /// A connection drains this mailbox (see [`Mailbox::set_backlog`]).
    drainer: AtomicBool,
    /// Deliveries the session holds in its pending queue (beyond its in-flight window).
    backlog: AtomicUsize,
    /// Their bytes.
    backlog_bytes: AtomicUsize,
    /// Bytes the draining connection is writing to its socket now.
    writing: AtomicUsize,
    /// A push reported congestion since publishers were last woken.
    signalled: AtomicBool,
    limits: QueueLimits,
    node: Arc<NodeBudget>,
}

impl Mailbox {
    /// An empty, offline mailbox with these bounds, sharing the node's byte budget.
    pub fn new(limits: QueueLimits, node: Arc<NodeBudget>) -> Mailbox {
        Mailbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            drained: Notify::new(),
            online: AtomicBool::new(false),
            drainer: AtomicBool::new(false),
            backlog: AtomicUsize::new(0),
            backlog_bytes: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            signalled: AtomicBool::new(false),
            limits,
            node,
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
    /// how many deliveries (and bytes) the session queues behind its in-flight window. Wakes
    /// waiting publishers when the queue is back under its high-water mark.
    pub fn set_backlog(&self, n: usize, bytes: usize) {
        self.drainer.store(true, Ordering::Release);
        self.set_pending(n, bytes);
        let (queued, queued_bytes) = self.usage();
        if self.over_high_water(queued, queued_bytes) {
            // A push may have seen the queue lower while deliveries were on their way from
            // the mailbox into the session: make sure the next drop under the mark wakes.
            self.signalled.store(true, Ordering::Release);
        } else {
            self.wake_if_drained(queued, queued_bytes);
        }
    }

    /// Mirrors the session's pending queue (`n` deliveries, `bytes` bytes) without claiming
    /// to drain the mailbox: a hand-over that imported or exported the session's state.
    pub fn set_pending(&self, n: usize, bytes: usize) {
        let old_n = self.backlog.swap(n, Ordering::AcqRel);
        self.node.count_queued(signed(n) - signed(old_n));
        let old = self.backlog_bytes.swap(bytes, Ordering::AcqRel);
        self.node.change(old, bytes);
    }

    /// The draining connection is writing `bytes` to its socket (0: the write finished):
    /// they count toward the write budget of QoS 0 deliveries and the node's budget.
    pub fn set_writing(&self, bytes: usize) {
        let old = self.writing.swap(bytes, Ordering::AcqRel);
        self.node.change(old, bytes);
    }

    /// No connection drains this mailbox any more (closed, kicked, session handed over):
    /// wakes every waiting publisher. The session's backlog still counts toward the bound.
    pub fn release(&self) {
        self.drainer.store(false, Ordering::Release);
        self.signalled.store(false, Ordering::Release);
        self.set_writing(0);
        self.drained.notify_waiters();
    }

    /// True while a connection drains this mailbox and the queue (mailbox plus the
    /// session's backlog) is past half its bound, in messages or bytes: publishers feeding
    /// it should wait ([`Self::wait_drained`]). A mailbox nobody drains (offline, or its
    /// session being handed over) is never congested: waiting for it would hold publishers
    /// for nothing.
    pub fn is_congested(&self) -> bool {
        let (n, bytes) = self.usage();
        self.drainer.load(Ordering::Acquire) && self.over_high_water(n, bytes)
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

    /// Past half the bound, counting the mailbox (`queued`, `bytes`) and the backlog.
    fn over_high_water(&self, queued: usize, bytes: usize) -> bool {
        let n = queued + self.backlog.load(Ordering::Acquire);
        let b = bytes + self.backlog_bytes.load(Ordering::Acquire);
        n * 2 > self.limits.max_len || b * 2 > self.limits.max_bytes
    }

    /// Wakes waiting publishers if a push has reported congestion since the last wake and
    /// the queue (plus the backlog) is back under the high-water mark.
    fn wake_if_drained(&self, queued: usize, bytes: usize) {
        if self.signalled.load(Ordering::Acquire)
            && !self.over_high_water(queued, bytes)
            && self.signalled.swap(false, Ordering::AcqRel)
        {
            self.drained.notify_waiters();
        }
    }

    /// Queues a delivery, applying the write budget (QoS 0 to a draining connection), the
    /// session's bound with its drop policy and the node's budget. Drops are counted.
    pub fn push(&self, d: Delivery) -> PushOutcome {
        let online = self.is_online();
        let qos0 = d.qos == QoS::AtMostOnce;
        if !online && qos0 && !self.limits.store_qos0_offline {
            count_dropped("offline_qos0", 1);
            return PushOutcome::Dropped;
        }
        let draining = self.drainer.load(Ordering::Acquire);
        let size = d.msg.size();
        let mut q = self.queue.lock();
        let refused = if draining && qos0 && self.over_write_budget(&q, size) {
            Some("slow_consumer")
        } else if !self.node.try_take(size) {
            Some("node_queue_full")
        } else {
            None
        };
        let (evicted, accepted) = match refused {
            Some(_) => (0, false),
            None => self.make_room(&mut q, size),
        };
        if accepted {
            q.push_back(d);
        } else if refused.is_none() {
            self.node.give_back(size);
        }
        let (len, bytes) = (q.items.len(), q.bytes);
        drop(q);
        self.node
            .count_queued(isize::from(accepted) - signed(evicted));
        let dropped = evicted > 0 || !accepted;
        match refused {
            Some(reason) => count_dropped(reason, 1),
            None => count_dropped("queue_full", evicted + usize::from(!accepted)),
        }
        if (accepted && len == 1) || evicted > 0 {
            self.ready.notify_one();
        }
        // Only while a connection drains this queue (see `is_congested`).
        let congested = draining && self.over_high_water(len, bytes);
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

    /// A QoS 0 delivery of `size` bytes would pass the write budget: something already
    /// waits for the socket (being written, or QoS 0 here) and this would take it past
    /// `max_write_bytes`.
    fn over_write_budget(&self, q: &Queue, size: usize) -> bool {
        let waiting = q.qos0_bytes + self.writing.load(Ordering::Acquire);
        waiting > 0 && waiting + size > self.limits.max_write_bytes
    }

    /// Makes room for a delivery of `size` bytes under the session's bound (mailbox plus
    /// backlog): drop_oldest evicts from the front of the mailbox (bytes given back to the
    /// node), drop_newest refuses the new one, and so does drop_oldest when the mailbox is
    /// empty and the session's own queue fills the bound. An empty queue takes anything.
    /// Returns (evicted, whether the new one is accepted).
    fn make_room(&self, q: &mut Queue, size: usize) -> (usize, bool) {
        let backlog = self.backlog.load(Ordering::Acquire);
        let backlog_bytes = self.backlog_bytes.load(Ordering::Acquire);
        let full = |q: &Queue| {
            q.items.len() + backlog > 0
                && (q.items.len() + backlog + 1 > self.limits.max_len
                    || q.bytes + backlog_bytes + size > self.limits.max_bytes)
        };
        if !full(q) {
            return (0, true);
        }
        // Evicting the whole mailbox would not make room beside the session's own queue.
        let backlog_full = backlog > 0
            && (backlog + 1 > self.limits.max_len || backlog_bytes + size > self.limits.max_bytes);
        if self.limits.policy == QueueDropPolicy::DropNewest || backlog_full {
            return (0, false);
        }
        let mut evicted = 0;
        while full(q) {
            let Some(old) = q.pop_front() else { break };
            self.node.give_back(old.msg.size());
            evicted += 1;
        }
        (evicted, true)
    }

    /// Takes up to `max` queued deliveries, oldest first, and wakes waiting publishers
    /// (consumers other than the session's own connection: hand-over, forwarding).
    pub fn drain(&self, max: usize, out: &mut Vec<Delivery>) {
        let (left, bytes) = self.take(max, out);
        self.wake_if_drained(left, bytes);
    }

    /// Takes up to `max` queued deliveries, oldest first; returns how many (and bytes) are
    /// left.
    fn take(&self, max: usize, out: &mut Vec<Delivery>) -> (usize, usize) {
        let mut q = self.queue.lock();
        let (mut n, mut bytes) = (0, 0);
        while n < max {
            let Some(d) = q.pop_front() else { break };
            bytes += d.msg.size();
            n += 1;
            out.push(d);
        }
        let left = (q.items.len(), q.bytes);
        drop(q);
        self.node.give_back(bytes);
        self.node.count_queued(-signed(n));
        left
    }

    /// What the draining connection takes for its session: deliveries from the front, in
    /// order, while they can be sent at once (QoS 0 always; QoS 1/2 while `window` slots
    /// are left), at most `max` of them and no more than `max_bytes` (the first one always
    /// goes). Publishers are not woken here: the connection reports its session's backlog
    /// next ([`Self::set_backlog`]), which does.
    pub fn take_admitted(
        &self,
        max: usize,
        max_bytes: usize,
        mut window: usize,
        out: &mut Vec<Delivery>,
    ) -> TakeStop {
        let mut q = self.queue.lock();
        let (mut n, mut bytes) = (0, 0);
        let stop = loop {
            let Some(front) = q.items.front() else {
                break TakeStop::Empty;
            };
            if n >= max || (n > 0 && bytes >= max_bytes) || max_bytes == 0 {
                break TakeStop::Limit;
            }
            if front.qos != QoS::AtMostOnce {
                if window == 0 {
                    break TakeStop::Window;
                }
                window -= 1;
            }
            let Some(d) = q.pop_front() else {
                break TakeStop::Empty;
            };
            bytes += d.msg.size();
            n += 1;
            out.push(d);
        };
        drop(q);
        self.node.give_back(bytes);
        self.node.count_queued(-signed(n));
        stop
    }

    /// Number of queued deliveries and their bytes (the session's backlog not included).
    pub fn usage(&self) -> (usize, usize) {
        let q = self.queue.lock();
        (q.items.len(), q.bytes)
    }

    /// Number of queued deliveries.
    pub fn len(&self) -> usize {
        self.queue.lock().items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().items.is_empty()
    }

    /// Drops everything queued (clean start, session end); returns how many were dropped.
    pub fn clear(&self) -> usize {
        let mut q = self.queue.lock();
        let (n, bytes) = (q.items.len(), q.bytes);
        *q = Queue::default();
        drop(q);
        self.node.give_back(bytes);
        self.node.count_queued(-signed(n));
        self.wake_if_drained(0, 0);
        n
    }
}

impl Drop for Mailbox {
    /// Gives the node back everything this session still counted.
    fn drop(&mut self) {
        let held =
            self.queue.get_mut().bytes + *self.backlog_bytes.get_mut() + *self.writing.get_mut();
        self.node.give_back(held);
        let queued = self.queue.get_mut().items.len() + *self.backlog.get_mut();
        self.node.count_queued(-signed(queued));
    }
}

/// A count as a signed delta (saturating: no queue holds `isize::MAX` messages).
fn signed(n: usize) -> isize {
    isize::try_from(n).unwrap_or(isize::MAX)
}

/// Counts `n` deliveries dropped for `reason`.
fn count_dropped(reason: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => reason).increment(n as u64);
    }
}

#[cfg(test)]
#[path = "mailbox_tests.rs"]
mod tests;
