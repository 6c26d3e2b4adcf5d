//! The `routes` table: one (filter, node) row per filter per node that has at least one
//! local subscriber to it — not one per client.
//!
//! Owns the rows, a [`Trie`] keyed by filter holding node ids (to find, for a published
//! topic, the nodes to forward to) and a per-node index (to purge a node without scanning).
//! It must never know which clients subscribed: nodes count their local subscribers.

use imbl::HashMap;
use meshmq_proto::tables::{Rejected, RouteEntry};

use super::invalid;
use crate::topic::{Trie, validate_topic_filter};

/// The rows: node id → filter → seq (persistent maps: a snapshot clones them in O(1)).
pub(super) type Rows = HashMap<String, HashMap<String, u64>>;

/// Route rows with their indexes.
#[derive(Default)]
pub(super) struct Routes {
    /// Filter → node ids, for matching topics.
    trie: Trie<String>,
    /// Node id → its filters with the seq of the op that added each, for purges, snapshots
    /// and ordering (see `RouteAdd.seq`). A node never maps to an empty map.
    by_node: Rows,
}

/// Checks the filter of a route op.
pub(super) fn check(what: &str, filter: &str, node: &str) -> Result<(), Rejected> {
    validate_topic_filter(filter)
        .map_err(|e| invalid(format!("{what}: filter {filter:?}: {e}")))?;
    if node.is_empty() {
        return Err(invalid(format!("{what}: empty node id")));
    }
    Ok(())
}

impl Routes {
    /// Number of (filter, node) rows.
    pub(super) fn len(&self) -> usize {
        self.trie.len()
    }

    /// Calls `f` once per node with a route matching `topic`.
    pub(super) fn nodes_matching(&self, topic: &str, mut f: impl FnMut(&str)) {
        // A node with several matching filters is reported once; the list is as long as the
        // number of distinct nodes, so a linear search beats hashing.
        let mut seen: Vec<&str> = Vec::new();
        self.trie.for_each_match(topic, |node| {
            if !seen.contains(&node.as_str()) {
                seen.push(node.as_str());
                f(node);
            }
        });
    }

    /// The seq stored with (filter, node), if the row exists.
    fn seq(&self, filter: &str, node: &str) -> Option<u64> {
        self.by_node.get(node).and_then(|f| f.get(filter)).copied()
    }

    /// Adds (filter, node), already checked with [`check`], recording `seq`; ignored when the
    /// row holds a newer seq (a later remove-then-add of the node already won).
    pub(super) fn add(&mut self, filter: &str, node: &str, seq: u64) {
        if let Some(stored) = self.by_node.get_mut(node).and_then(|f| f.get_mut(filter)) {
            // Present already: keep the newest seq seen.
            *stored = seq.max(*stored);
            return;
        }
        if self.trie.insert(filter, node.to_owned()) {
            match self.by_node.get_mut(node) {
                Some(filters) => {
                    filters.insert(filter.to_owned(), seq);
                }
                None => {
                    let filters = HashMap::unit(filter.to_owned(), seq);
                    self.by_node.insert(node.to_owned(), filters);
                }
            }
        }
    }

    /// Removes (filter, node) if present, unless the row was added by a newer op than `seq`
    /// (`seq` 0: always).
    pub(super) fn remove(&mut self, filter: &str, node: &str, seq: u64) {
        match self.seq(filter, node) {
            None => return,
            Some(stored) if seq != 0 && seq < stored => return,
            Some(_) => {}
        }
        self.trie.remove(filter, &node.to_owned());
        if let Some(filters) = self.by_node.get_mut(node) {
            filters.remove(filter);
            if filters.is_empty() {
                self.by_node.remove(node);
            }
        }
    }

    /// Removes every route of `node`.
    pub(super) fn purge_node(&mut self, node: &str) {
        let Some(filters) = self.by_node.remove(node) else {
            return;
        };
        let node = node.to_owned();
        for filter in filters.keys() {
            self.trie.remove(filter, &node);
        }
    }

    /// The rows, for a snapshot taken later ([`snapshot_rows`]); O(1).
    pub(super) fn rows(&self) -> Rows {
        self.by_node.clone()
    }

    /// Loads snapshot rows, skipping invalid ones.
    pub(super) fn restore(&mut self, rows: &[RouteEntry]) {
        for row in rows {
            if check("RouteEntry", &row.filter, &row.node).is_ok() {
                self.add(&row.filter, &row.node, row.seq);
            }
        }
    }
}

/// All rows sorted by (filter, node).
pub(super) fn snapshot_rows(by_node: &Rows) -> Vec<RouteEntry> {
    let mut rows: Vec<RouteEntry> = by_node
        .iter()
        .flat_map(|(node, filters)| {
            filters.iter().map(move |(filter, seq)| RouteEntry {
                filter: filter.clone(),
                node: node.clone(),
                seq: *seq,
            })
        })
        .collect();
    rows.sort_unstable_by(|a, b| (&a.filter, &a.node).cmp(&(&b.filter, &b.node)));
    rows
}
