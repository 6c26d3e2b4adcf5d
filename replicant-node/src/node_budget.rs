//! The node-wide byte budget (`mqtt.max_node_mqueue_bytes`) of what every session holds for
//! its client: the mailboxes, the sessions' pending queues and the writes in progress.
//!
//! Owns one counter and its bound, and the count of messages those queues hold (the
//! `meshmq_messages_queued` gauge, read when `/metrics` is scraped). Mailboxes take bytes for new deliveries
//! ([`NodeBudget::try_take`], refused past the bound) and move or give back what they
//! already hold; it never blocks and never counts a drop (the caller does).

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// The bytes every session of the node holds for its client (queues and writes in
/// progress), against `mqtt.max_node_mqueue_bytes`.
#[derive(Debug)]
pub struct NodeBudget {
    held: AtomicUsize,
    max: usize,
    /// Messages queued in the mailboxes and the sessions' pending queues (signed: a
    /// mailbox's decrement may land before another's increment).
    queued: AtomicIsize,
}

impl NodeBudget {
    /// A budget of `max` bytes, none held.
    pub fn new(max: usize) -> Arc<NodeBudget> {
        Arc::new(NodeBudget {
            held: AtomicUsize::new(0),
            max: max.max(1),
            queued: AtomicIsize::new(0),
        })
    }

    /// Messages queued in this node's sessions now.
    pub fn queued(&self) -> usize {
        usize::try_from(self.queued.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// `n` more messages queued (negative: fewer).
    pub(crate) fn count_queued(&self, n: isize) {
        if n != 0 {
            self.queued.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Takes `n` bytes unless that passes the budget (a node holding nothing still takes
    /// one message, however large).
    pub(crate) fn try_take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held == 0 || held + n <= self.max).then_some(held + n)
            })
            .is_ok()
    }

    /// Moves what is held from `old` to `new` bytes (bytes that already were the node's,
    /// changing place: never refused).
    pub(crate) fn change(&self, old: usize, new: usize) {
        if new > old {
            self.held.fetch_add(new - old, Ordering::AcqRel);
        } else {
            self.give_back(old - new);
        }
    }

    /// Gives back `n` bytes.
    pub(crate) fn give_back(&self, n: usize) {
        // Saturating: a bug in the accounting must not wrap the budget.
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(n))
            });
    }
}
