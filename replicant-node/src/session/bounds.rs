//! The session's byte and count bounds: its pending queue (what it accepted beyond the
//! in-flight window: retained replays, handed-over messages), which counts its bytes; the
//! inbound topic aliases, which count their topics' bytes (`mqtt.max_topic_alias_bytes`);
//! and the fitting of the pending queue into the ONE bound it shares with the session's
//! mailbox (`mqtt.max_mqueue_len`, `mqtt.max_mqueue_bytes`).
//!
//! Pure like the rest of the session: the caller says what the mailbox holds
//! ([`Session::fit_queue`]). It never decides what is sent.

use std::collections::VecDeque;
use std::collections::vec_deque;
use std::ops::RangeFull;

use hashbrown::HashMap;
use meshmq_shared::config::QueueDropPolicy;

use super::{Session, SessionError};
use crate::message::Delivery;

/// A FIFO of deliveries that knows its bytes ([`crate::message::Message::size`]); the
/// `VecDeque` methods the session uses, with the same signatures.
#[derive(Debug, Default)]
pub(super) struct Pending {
    items: VecDeque<Delivery>,
    bytes: usize,
}

impl Pending {
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of the deliveries held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn push_back(&mut self, d: Delivery) {
        self.bytes += d.msg.size();
        self.items.push_back(d);
    }

    pub(super) fn pop_front(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        self.bytes -= d.msg.size();
        Some(d)
    }

    pub(super) fn pop_back(&mut self) -> Option<Delivery> {
        let d = self.items.pop_back()?;
        self.bytes -= d.msg.size();
        Some(d)
    }

    /// Takes everything, in order.
    pub(super) fn drain(&mut self, all: RangeFull) -> vec_deque::Drain<'_, Delivery> {
        self.bytes = 0;
        self.items.drain(all)
    }
}

/// The client's topic aliases (alias → topic) and the bytes of their topics.
#[derive(Debug, Default)]
pub(super) struct InAliases {
    topics: HashMap<u16, String>,
    bytes: usize,
}

impl InAliases {
    pub(super) fn get(&self, alias: &u16) -> Option<&String> {
        self.topics.get(alias)
    }

    /// Records `alias → topic` unless the topics' bytes would pass `max_bytes`.
    pub(super) fn insert_within(
        &mut self,
        alias: u16,
        topic: String,
        max_bytes: usize,
    ) -> Result<(), SessionError> {
        let old = self.topics.get(&alias).map_or(0, String::len);
        let bytes = self.bytes - old + topic.len();
        if bytes > max_bytes {
            return Err(SessionError::TopicAliasQuotaExceeded);
        }
        self.bytes = bytes;
        self.topics.insert(alias, topic);
        Ok(())
    }

    pub(super) fn clear(&mut self) {
        self.topics.clear();
        self.bytes = 0;
    }
}

impl Session {
    /// Bytes of the deliveries in the pending queue.
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes()
    }

    /// How many more QoS 1/2 deliveries could be sent at once: 0 while the pending queue
    /// holds any (they go first) or the window is full. What the connection may take from
    /// the mailbox ([`Session::deliver`] still queues what it cannot send).
    pub fn window_room(&self) -> usize {
        // Re-sends waiting for the window (after a reconnect with a smaller Receive Maximum)
        // go first, as queued deliveries do.
        if !self.pending.is_empty() || self.unsent > 0 {
            return 0;
        }
        let window = usize::from(self.conn.receive_maximum.min(self.limits.max_inflight));
        window.saturating_sub(self.inflight.len())
    }

    /// Makes room in the pending queue for a delivery of `size` bytes under the session's
    /// bound; false when the drop policy drops the new one. Drops are counted.
    pub(super) fn make_room(&mut self, size: usize) -> bool {
        let (max_len, max_bytes) = (self.limits.max_queue, self.limits.max_queue_bytes);
        let full =
            |p: &Pending| !p.is_empty() && (p.len() + 1 > max_len || p.bytes() + size > max_bytes);
        while full(&self.pending) {
            self.drops.queue_full += 1;
            if self.limits.drop_policy == QueueDropPolicy::DropNewest {
                return false;
            }
            self.pending.pop_front();
        }
        true
    }

    /// Fits the pending queue into the bound it shares with the mailbox, which holds
    /// `mailbox_len` deliveries of `mailbox_bytes` bytes: drop_oldest drops from the front
    /// of the pending queue (the oldest the session holds), drop_newest from its back (what
    /// it accepted last). Counted. One delivery alone is always kept.
    pub fn fit_queue(&mut self, mailbox_len: usize, mailbox_bytes: usize) {
        let (max_len, max_bytes) = (self.limits.max_queue, self.limits.max_queue_bytes);
        while !self.pending.is_empty()
            && self.pending.len() + mailbox_len > 1
            && (self.pending.len() + mailbox_len > max_len
                || self.pending.bytes() + mailbox_bytes > max_bytes)
        {
            self.drops.queue_full += 1;
            match self.limits.drop_policy {
                QueueDropPolicy::DropOldest => self.pending.pop_front(),
                QueueDropPolicy::DropNewest => self.pending.pop_back(),
            };
        }
    }
}
