//! Per-owner counts of the registry: for each node id that owns at least one registry row,
//! how many of its rows are connected and how many it holds in all.
//!
//! Owns the counting rule (a row counts for `row.node`; `connected` once more if
//! `row.connected`). The registry calls [`OwnerCounts::add`], [`OwnerCounts::sub`] and
//! [`OwnerCounts::disconnected`] for every row it inserts, drops or disconnects, so the counts follow every op at O(1) instead of
//! a scan. It counts owners whether or not they have a `nodes` row (a purged node's
//! disconnected rows stay in the registry), so that a node row created later starts from
//! the right figures. It must never be iterated into a result or a snapshot: it is keyed by
//! a hash map, and the node rows copy its figures. The map is persistent (like the rows):
//! a snapshot capture clones it in O(1) whatever the number of owners.

use imbl::HashMap;
use meshmq_proto::tables::RegistryRow;

/// What one node holds in the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Rows of this node that are connected.
    pub connected: u64,
    /// Rows of this node, connected or not.
    pub sessions: u64,
}

/// Node id → what it holds; a node holding nothing has no entry.
#[derive(Default, Clone)]
pub(super) struct OwnerCounts {
    by_node: HashMap<String, Held>,
}

impl OwnerCounts {
    /// What `node` holds (zero if nothing).
    pub(super) fn get(&self, node: &str) -> Held {
        self.by_node.get(node).copied().unwrap_or_default()
    }

    /// Counts a row that entered the registry.
    pub(super) fn add(&mut self, row: &RegistryRow) {
        if self.by_node.get(row.node.as_str()).is_none() {
            self.by_node.insert(row.node.clone(), Held::default());
        }
        let Some(held) = self.by_node.get_mut(row.node.as_str()) else {
            return;
        };
        held.sessions = held.sessions.saturating_add(1);
        held.connected = held.connected.saturating_add(u64::from(row.connected));
    }

    /// Counts a connected row of `node` that disconnected (it stays in the registry).
    pub(super) fn disconnected(&mut self, node: &str) {
        if let Some(held) = self.by_node.get_mut(node) {
            held.connected = held.connected.saturating_sub(1);
        }
    }

    /// Uncounts a row that left the registry.
    pub(super) fn sub(&mut self, row: &RegistryRow) {
        let Some(held) = self.by_node.get_mut(row.node.as_str()) else {
            return;
        };
        held.sessions = held.sessions.saturating_sub(1);
        held.connected = held.connected.saturating_sub(u64::from(row.connected));
        if held.sessions == 0 {
            self.by_node.remove(row.node.as_str());
        }
    }
}
