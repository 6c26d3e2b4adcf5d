//! [`Tables::projection`] and [`SnapshotSource::project`]: what a replicant holds under the
//! registry projection (docs/roles.md): every table whole but `registry` and
//! `subscriptions`; of `registry`, the rows of the node's own clients and of every member of
//! a shared group (the shared-subscription pick reads whether a member is connected); of
//! `subscriptions`, the rows of the node's own clients.
//!
//! Owns the definition of a projection, so that the follow stream that serves one, the
//! projected replica that keeps one (`projected.rs`) and the tests that compare them use
//! the same rule. It must never change the tables.

use hashbrown::HashSet;
use meshmq_proto::tables::Snapshot;

use super::{SnapshotSource, Tables};

impl SnapshotSource {
    /// Cuts the source down to the projection of `node`. Scans the registry, the
    /// subscriptions and the shared groups once (run it off the async runtime at scale);
    /// the node rows keep every node's counts (they are the cores', not recomputed).
    pub fn project(&mut self, node: &str) {
        let members: HashSet<String> = self
            .shared
            .values()
            .flat_map(|filters| filters.values())
            .flat_map(|members| members.iter().map(|(client, _)| client.clone()))
            .collect();
        let mut own: HashSet<String> = HashSet::new();
        self.registry.retain(|client_id, row| {
            if row.node == node {
                own.insert(client_id.to_owned());
                true
            } else {
                members.contains(client_id)
            }
        });
        self.subscriptions
            .retain_clients(|client_id| own.contains(client_id));
    }
}

impl Tables {
    /// The snapshot a replicant named `node` holds under the registry projection: every
    /// table whole (the node rows with every node's counts) except `registry`, of which the
    /// rows owned by `node` and those of shared-group members, and `subscriptions`, of which
    /// only the rows of `node`'s clients. Rows no node owns (the subscriptions of a session
    /// whose node was purged while it was connected) are in no projection: only the cores
    /// hold them. In canonical order, like [`snapshot`](Self::snapshot); cost follows the
    /// whole tables.
    pub fn projection(&self, node: &str) -> Snapshot {
        let mut source = self.snapshot_source();
        source.project(node);
        source.snapshot()
    }
}
