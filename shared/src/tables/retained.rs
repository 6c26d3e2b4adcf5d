//! The `retained` table: topic → retained message, indexed by topic level (to find the
//! messages a new subscription's filter matches without scanning the store) and by expiry
//! time (to delete expired messages without scanning either).
//!
//! Owns the store and its two indexes. The level tree keeps each level's children sorted by
//! name, so that a walk has a stable order to resume from (the filter-against-stored-names
//! matching, the reverse of the subscription trie, lives in `retained_walk`). It must never
//! read a clock (callers pass `now_ms`) and never recurse per topic level: topic names have
//! no level limit, so every walk, and dropping the tree, uses an explicit stack.

use std::collections::{BTreeMap, BTreeSet};

use meshmq_proto::tables::{Rejected, RetainedMessage};

use super::invalid;
use super::retained_quota::{self, Held, RetainedQuota, message_bytes};
use super::retained_walk::{ChunkBudget, RetainedCursor, walk};
use crate::topic::validate_topic_name;

/// One topic level of the index.
#[derive(Default)]
pub(super) struct Level {
    /// Next levels by name (the empty level included), sorted: the order of a walk.
    pub(super) children: BTreeMap<Box<str>, Level>,
    /// The message retained on the topic that ends here. Boxed: a `Level` is stored inline
    /// in its parent's map nodes (room for 11 entries each, one node even for an only
    /// child), so an inline message (~200 bytes) made every node ~2.7 KB and a store of
    /// short messages cost ~3.2 KB per message.
    pub(super) message: Option<Box<RetainedMessage>>,
}

impl Drop for Level {
    /// Drops the subtree level by level so that a very deep topic cannot overflow the stack.
    fn drop(&mut self) {
        let mut stack: Vec<Level> = std::mem::take(&mut self.children).into_values().collect();
        while let Some(mut level) = stack.pop() {
            stack.extend(std::mem::take(&mut level.children).into_values());
        }
    }
}

/// Retained messages with their indexes.
#[derive(Default)]
pub(super) struct Retained {
    /// The level tree; the root is the empty path and never holds a message.
    root: Level,
    /// Number of stored messages.
    count: usize,
    /// What the quota counts: messages and their bytes ([`message_bytes`]), the broker's
    /// own `$SYS` topics left out ([`retained_quota::counted`]).
    quota: Held,
    /// (expires_at_ms, topic) of every stored message that has an expiry.
    expiry: BTreeSet<(u64, String)>,
}

/// Whether `message` has expired at `now_ms`.
pub(super) fn expired(message: &RetainedMessage, now_ms: u64) -> bool {
    message.expires_at_ms.is_some_and(|at| at <= now_ms)
}

/// Checks the message of a `RetainedSet`.
pub(super) fn check(message: &RetainedMessage) -> Result<(), Rejected> {
    validate_topic_name(&message.topic)
        .map_err(|e| invalid(format!("RetainedSet: topic {:?}: {e}", message.topic)))?;
    if message.qos > 2 {
        return Err(invalid(format!("RetainedSet: qos {}", message.qos)));
    }
    if message.payload_format_indicator.is_some_and(|p| p > 1) {
        return Err(invalid("RetainedSet: payload format indicator above 1"));
    }
    Ok(())
}

impl Retained {
    /// Number of stored messages (expired ones until [`expire`](Self::expire)).
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// Bytes of the stored messages the quota counts ([`message_bytes`]; not `$SYS`).
    pub(super) fn bytes(&self) -> u64 {
        self.quota.bytes
    }

    /// Whether a message of `bytes` bytes on `topic` fits under `max_messages` and
    /// `max_bytes` (0: no limit) beside what is stored (see [`retained_quota::fits`]).
    pub(super) fn fits(
        &self,
        topic: &str,
        bytes: u64,
        max_messages: u64,
        max_bytes: u64,
    ) -> Result<(), RetainedQuota> {
        if !retained_quota::counted(topic) {
            return Ok(());
        }
        let held = Held {
            replaced: self.get(topic).map(message_bytes),
            ..self.quota
        };
        retained_quota::fits(held, bytes, max_messages, max_bytes)
    }

    /// The message of exactly `topic`.
    pub(super) fn get(&self, topic: &str) -> Option<&RetainedMessage> {
        let mut level = &self.root;
        for name in topic.split('/') {
            level = level.children.get(name)?;
        }
        level.message.as_deref()
    }

    /// Stores `message` (already checked with [`check`]), replacing the topic's previous one.
    pub(super) fn set(&mut self, message: RetainedMessage) {
        let expiry_key = message.expires_at_ms.map(|at| (at, message.topic.clone()));
        self.quota.add(&message);
        let mut level = &mut self.root;
        for name in message.topic.split('/') {
            level = level.children.entry(Box::from(name)).or_default();
        }
        match level.message.replace(Box::new(message)) {
            Some(old) => {
                self.quota.remove(&old);
                if let Some(at) = old.expires_at_ms {
                    self.expiry.remove(&(at, old.topic));
                }
            }
            None => self.count += 1,
        }
        if let Some(key) = expiry_key {
            self.expiry.insert(key);
        }
    }

    /// Deletes the message of `topic` if any, pruning levels left empty.
    pub(super) fn delete(&mut self, topic: &str) {
        if let Some(old) = self.take(topic) {
            self.count -= 1;
            self.quota.remove(&old);
            if let Some(at) = old.expires_at_ms {
                self.expiry.remove(&(at, old.topic));
            }
        }
    }

    /// Removes and returns the message of `topic`, pruning, without touching the counters.
    fn take(&mut self, topic: &str) -> Option<RetainedMessage> {
        // Pass 1: find the deepest level on the path that must stay (the root, or a level
        // with a message or another child); the path below it is removed whole.
        let mut level = &self.root;
        let mut cut = 0;
        for (depth, name) in topic.split('/').enumerate() {
            if depth > 0 && (level.message.is_some() || level.children.len() > 1) {
                cut = depth;
            }
            level = level.children.get(name)?;
        }
        level.message.as_ref()?;
        let is_leaf = level.children.is_empty();
        let mut names = topic.split('/');
        let mut level = &mut self.root;
        if !is_leaf {
            for name in names {
                level = level.children.get_mut(name)?;
            }
            return level.message.take().map(|m| *m);
        }
        // Pass 2: detach the subtree below the cut, then take the message out of it.
        for _ in 0..cut {
            level = level.children.get_mut(names.next()?)?;
        }
        let mut removed = level.children.remove(names.next()?)?;
        let mut level = &mut removed;
        for name in names {
            level = level.children.get_mut(name)?;
        }
        level.message.take().map(|m| *m)
    }

    /// Calls `f` for every unexpired message whose topic matches `filter`, in walk order.
    pub(super) fn for_each_match(
        &self,
        filter: &str,
        now_ms: u64,
        f: impl FnMut(&RetainedMessage),
    ) {
        walk(&self.root, filter, now_ms, None, ChunkBudget::UNBOUNDED, f);
    }

    /// One chunk of the walk over the unexpired messages matching `filter`, resumed after
    /// `from` (from the start when `None`); see [`walk`].
    pub(super) fn match_chunk(
        &self,
        filter: &str,
        now_ms: u64,
        from: Option<&RetainedCursor>,
        budget: ChunkBudget,
        f: impl FnMut(&RetainedMessage),
    ) -> Option<RetainedCursor> {
        walk(&self.root, filter, now_ms, from, budget, f)
    }

    /// Deletes every message with `expires_at_ms <= now_ms`; returns how many.
    pub(super) fn expire(&mut self, now_ms: u64) -> usize {
        let due = match now_ms.checked_add(1) {
            Some(after) => {
                let later = self.expiry.split_off(&(after, String::new()));
                std::mem::replace(&mut self.expiry, later)
            }
            None => std::mem::take(&mut self.expiry),
        };
        for (_, topic) in &due {
            if let Some(old) = self.take(topic) {
                self.count -= 1;
                self.quota.remove(&old);
            }
        }
        due.len()
    }

    /// Number of levels below the root (0 when empty): tests check pruning with it.
    #[cfg(test)]
    pub(super) fn level_count(&self) -> usize {
        let mut count = 0;
        for_each_below(&self.root, &mut |_| count += 1);
        count - 1
    }

    /// All messages sorted by topic.
    pub(super) fn snapshot_rows(&self) -> Vec<RetainedMessage> {
        let mut rows = Vec::with_capacity(self.count);
        for_each_below(&self.root, &mut |level| {
            if let Some(message) = &level.message {
                rows.push(RetainedMessage::clone(message));
            }
        });
        rows.sort_unstable_by(|a, b| a.topic.cmp(&b.topic));
        rows
    }

    /// Loads snapshot rows, skipping those `RetainedSet` would reject or that are empty.
    pub(super) fn restore(&mut self, rows: &[RetainedMessage]) {
        for message in rows {
            if check(message).is_ok() && !message.payload.is_empty() {
                self.set(message.clone());
            }
        }
    }
}

/// Calls `f` on `start` and every level below it. Iterative.
fn for_each_below<'a>(start: &'a Level, f: &mut impl FnMut(&'a Level)) {
    let mut stack: Vec<&Level> = vec![start];
    while let Some(level) = stack.pop() {
        f(level);
        stack.extend(level.children.values());
    }
}
