//! [`Tables::projection`]: what a replicant would hold under the registry projection
//! (docs/architecture.md, "What each role holds"): every table whole but `registry` and
//! `subscriptions`, of which only the rows of the node's own clients.
//!
//! Owns the definition of a projection, so that the follow stream that will serve one and
//! the tests that will compare a replica with it use the same rule. Nothing sends
//! projections yet. It must never change the tables: it reads their canonical snapshot.

use hashbrown::HashSet;
use meshmq_proto::tables::Snapshot;

use super::Tables;

impl Tables {
    /// The snapshot a replicant named `node` would hold under the registry projection:
    /// every table whole (the node rows with every node's counts) except `registry`, of
    /// which only the rows owned by `node`, and `subscriptions`, of which only the rows of
    /// those clients. Rows no node owns (the subscriptions of a session whose node was
    /// purged while it was connected) are in no projection: only the cores hold them. In
    /// canonical order, like [`snapshot`](Self::snapshot); cost follows the whole tables.
    pub fn projection(&self, node: &str) -> Snapshot {
        let mut snapshot = self.snapshot();
        snapshot
            .registry
            .retain(|e| e.row.as_ref().is_some_and(|r| r.node == node));
        let clients: HashSet<&str> = snapshot
            .registry
            .iter()
            .map(|e| e.client_id.as_str())
            .collect();
        snapshot
            .subscriptions
            .retain(|s| clients.contains(s.client_id.as_str()));
        drop(clients);
        snapshot
    }
}
