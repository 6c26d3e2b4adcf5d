//! The `routes` table: one (filter, node) row per filter per node that has at least one
//! local subscriber to it — not one per client.
//!
//! Owns the rows, a [`Trie`] keyed by filter holding node ids (to find, for a published
//! topic, the nodes to forward to) and a per-node index (to purge a node without scanning).
//! It must never know which clients subscribed: nodes count their local subscribers.

use hashbrown::{HashMap, HashSet};
use meshmq_proto::tables::{Rejected, RouteEntry};

use super::invalid;
use crate::topic::{Trie, validate_topic_filter};

/// Route rows with their indexes.
#[derive(Default)]
pub(super) struct Routes {
    /// Filter → node ids, for matching topics.
    trie: Trie<String>,
    /// Node id → its filters, for purges and snapshots. A node never maps to an empty set.
    by_node: HashMap<String, HashSet<String>>,
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

    /// Adds (filter, node), already checked with [`check`]; no-op if present.
    pub(super) fn add(&mut self, filter: &str, node: &str) {
        if self.trie.insert(filter, node.to_owned()) {
            self.by_node
                .entry_ref(node)
                .or_default()
                .insert(filter.to_owned());
        }
    }

    /// Removes (filter, node) if present.
    pub(super) fn remove(&mut self, filter: &str, node: &str) {
        if !self.trie.remove(filter, &node.to_owned()) {
            return;
        }
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
        for filter in &filters {
            self.trie.remove(filter, &node);
        }
    }

    /// All rows sorted by (filter, node).
    pub(super) fn snapshot_rows(&self) -> Vec<RouteEntry> {
        let mut rows: Vec<RouteEntry> = self
            .by_node
            .iter()
            .flat_map(|(node, filters)| {
                filters.iter().map(move |filter| RouteEntry {
                    filter: filter.clone(),
                    node: node.clone(),
                })
            })
            .collect();
        rows.sort_unstable_by(|a, b| (&a.filter, &a.node).cmp(&(&b.filter, &b.node)));
        rows
    }

    /// Loads snapshot rows, skipping invalid ones.
    pub(super) fn restore(&mut self, rows: &[RouteEntry]) {
        for row in rows {
            if check("RouteEntry", &row.filter, &row.node).is_ok() {
                self.add(&row.filter, &row.node);
            }
        }
    }
}
