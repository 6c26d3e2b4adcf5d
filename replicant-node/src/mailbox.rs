//! A session's mailbox: the bounded queue that publishers push deliveries into and the
//! session's connection task drains.
//!
//! While the client is offline the mailbox *is* the session's message queue. It is bounded
//! (`mqtt.max_mqueue_len`); when full, the configured drop policy picks the victim and the drop
//! is counted. It never blocks a publisher: back-pressure is advisory ([`PushOutcome::Congested`]),
//! and the publisher decides whether to wait on [`Mailbox::drained`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Queued, and the queue is past its high-water mark: the publisher should slow down.
    Congested,
    /// The queue was full and a message (this one or the oldest) was dropped.
    Dropped,
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
            cap: cap.max(1),
            policy,
            store_qos0_offline,
        }
    }

    /// Marks the session as having (or not having) a live connection.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    /// True while a connection is attached.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Queues a delivery, applying the bound and the drop policy.
    pub fn push(&self, d: Delivery) -> PushOutcome {
        let online = self.is_online();
        if !online && d.qos == QoS::AtMostOnce && !self.store_qos0_offline {
            metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "offline_qos0").increment(1);
            return PushOutcome::Dropped;
        }
        let len = {
            let mut q = self.queue.lock();
            if q.len() >= self.cap {
                metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "queue_full").increment(1);
                match self.policy {
                    QueueDropPolicy::DropNewest => return PushOutcome::Dropped,
                    QueueDropPolicy::DropOldest => {
                        q.pop_front();
                        q.push_back(d);
                    }
                }
                drop(q);
                self.ready.notify_one();
                return PushOutcome::Dropped;
            }
            q.push_back(d);
            q.len()
        };
        if len == 1 {
            self.ready.notify_one();
        }
        if online && len * 2 > self.cap {
            PushOutcome::Congested
        } else {
            PushOutcome::Queued
        }
    }

    /// Takes up to `max` queued deliveries, oldest first, and wakes waiting publishers.
    pub fn drain(&self, max: usize, out: &mut Vec<Delivery>) {
        let mut q = self.queue.lock();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        let left = q.len();
        drop(q);
        if left * 2 <= self.cap {
            self.drained.notify_waiters();
        }
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
        n
    }
}
