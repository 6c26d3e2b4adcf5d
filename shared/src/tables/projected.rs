//! A projected replica: [`Tables`] holding the projection of one node (`projection.rs`),
//! kept by [`Tables::apply_projected`] from each entry's ops and the serving core's
//! [`EntryNotes`].
//!
//! Owns the rule by which a replica that lacks most registry rows stays equal to the
//! projection of the cores' tables for its node: an op applies as the core's verdict says
//! (a rejected op changes nothing; a claim gets the core's generation); registry and
//! subscription ops change only the rows the replica holds; the rows entering the
//! projection and the node counts come from the notes; rows that leave are dropped at the
//! end of the entry. It must never decide an op itself where the decision reads a row it
//! may not hold.

use hashbrown::HashSet;
use meshmq_proto::tables::{
    Batch, EntryNotes, NodeRow, OpResult, Snapshot, op::Kind, op_result::Outcome,
};

use super::node_counts::Held;
use super::{Tables, registry, subscriptions};

/// Notes that do not fit the entry they came with: the replica changed nothing and must
/// get the entry (or a snapshot) again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotesError {
    /// Not one result per op.
    #[error("notes carry {results} results for {ops} ops")]
    Count {
        /// Results in the notes.
        results: usize,
        /// Ops in the batch.
        ops: usize,
    },
    /// A claim's result is neither `Claimed` nor `Rejected`.
    #[error("op {0}: a claim without a claim result")]
    Claim(usize),
}

impl Tables {
    /// Empty tables that will hold the projection of `node`.
    pub fn new_projected(node: &str) -> Self {
        let mut tables = Self::new();
        tables.projected_for = Some(node.to_owned());
        tables
    }

    /// Tables holding the projection of `node` from a projected snapshot cut for it. As
    /// [`from_snapshot`](Self::from_snapshot), but the node rows keep the snapshot's counts
    /// (the cores counted every row; this node holds few of them).
    pub fn from_projection(snapshot: &Snapshot, node: &str) -> Self {
        let mut tables = Self::from_snapshot(snapshot);
        tables.projected_for = Some(node.to_owned());
        for row in &snapshot.nodes {
            tables.nodes.set_held(&row.node, counts_of(row));
        }
        // A whole snapshot (from a core that does not cut projections) is cut here.
        tables.keep_projection(node);
        tables
    }

    /// The node whose projection these tables hold (`None`: every row).
    pub fn projected_for(&self) -> Option<&str> {
        self.projected_for.as_deref()
    }

    /// Applies one entry of a projected replica: `batch` with the serving core's `notes`.
    /// Returns the core's verdicts (a claim's generation is the core's; its previous owner
    /// is not sent). Notes that do not fit the batch change nothing.
    pub fn apply_projected(
        &mut self,
        index: u64,
        batch: &Batch,
        notes: &EntryNotes,
    ) -> Result<Vec<OpResult>, NotesError> {
        check(batch, notes)?;
        let me = self.projected_for.clone().unwrap_or_default();
        let mut touched: HashSet<String> = HashSet::new();
        let mut rescan = false;
        for (op, verdict) in batch.ops.iter().zip(&notes.results) {
            self.applied_index = self.applied_index.max(index);
            let Some(kind) = &op.kind else { continue };
            if matches!(verdict.outcome, Some(Outcome::Rejected(_)) | None) {
                continue;
            }
            match kind {
                Kind::RegistryClaim(c) => {
                    let Some(Outcome::Claimed(claimed)) = &verdict.outcome else {
                        continue;
                    };
                    let row = registry::claimed_row(c, claimed.generation);
                    // Its subscriptions, if it keeps any, come with the notes.
                    self.subscriptions.clear(&c.client_id);
                    self.registry.put(&c.client_id, row);
                    touched.insert(c.client_id.clone());
                }
                Kind::RegistryDisconnect(d) => {
                    if self.registry.get(&d.client_id).is_some() {
                        let _ = self.registry.disconnect(d);
                    }
                }
                Kind::RegistryRemove(r) => {
                    if self.registry.get(&r.client_id).is_some() {
                        let _ = self.registry.remove(r);
                    }
                    self.subscriptions.clear(&r.client_id);
                    touched.insert(r.client_id.clone());
                }
                Kind::SubscriptionSet(s) if self.owns(&me, &s.client_id) => {
                    let options = s.options.unwrap_or_default();
                    if subscriptions::check(&s.filter, &options).is_ok() {
                        self.subscriptions.set(&s.client_id, &s.filter, options);
                    }
                }
                Kind::SubscriptionRemove(s) => self.subscriptions.remove(&s.client_id, &s.filter),
                Kind::SubscriptionClear(s) => self.subscriptions.clear(&s.client_id),
                Kind::SubscriptionSet(_) => {}
                Kind::SharedRemove(s) => {
                    self.shared.remove(&s.group, &s.filter, &s.client_id);
                    touched.insert(s.client_id.clone());
                }
                Kind::NodeUp(_) | Kind::NodePurge(_) => {
                    // May drop many rows and memberships: checked all at the end.
                    let _ = self.apply(index, op);
                    rescan = true;
                }
                _ => {
                    // Reads and writes only whole tables: decides as the core did.
                    let _ = self.apply(index, op);
                }
            }
        }
        self.enter(&me, notes);
        if rescan {
            self.keep_projection(&me);
        } else {
            for client_id in &touched {
                self.keep_client(&me, client_id);
            }
        }
        Ok(notes.results.clone())
    }

    /// Whether `client_id`'s row is held here and owned by `me`.
    fn owns(&self, me: &str, client_id: &str) -> bool {
        self.registry.get(client_id).is_some_and(|r| r.node == me)
    }

    /// What the notes bring: rows of clients that joined a shared group, the subscriptions
    /// of this node's claimed clients, and node counts.
    fn enter(&mut self, me: &str, notes: &EntryNotes) {
        for entry in &notes.rows {
            if let Some(row) = &entry.row
                && !entry.client_id.is_empty()
                && !row.node.is_empty()
            {
                self.registry.put(&entry.client_id, row.clone());
                self.keep_client(me, &entry.client_id);
            }
        }
        for claimed in notes.subscriptions.iter().filter(|c| c.node == me) {
            if !self.owns(me, &claimed.client_id) {
                continue;
            }
            self.subscriptions.clear(&claimed.client_id);
            for s in claimed
                .rows
                .iter()
                .filter(|s| s.client_id == claimed.client_id)
            {
                let options = s.options.unwrap_or_default();
                if subscriptions::check(&s.filter, &options).is_ok() {
                    self.subscriptions.set(&s.client_id, &s.filter, options);
                }
            }
        }
        for count in &notes.counts {
            let held = Held {
                connected: count.connected_clients,
                sessions: count.sessions,
            };
            self.nodes.set_held(&count.node, held);
        }
    }

    /// Drops `client_id`'s rows that are outside the projection of `me`.
    fn keep_client(&mut self, me: &str, client_id: &str) {
        let (own, held) = match self.registry.get(client_id) {
            Some(row) => (row.node == me, true),
            None => (false, false),
        };
        if !own {
            self.subscriptions.clear(client_id);
            if held && !self.shared.is_member(client_id) {
                self.registry.drop_row(client_id);
            }
        }
    }

    /// Drops every row outside the projection of `me` (after a purge or restart of a
    /// node). Scans what this replica holds, not the cluster.
    fn keep_projection(&mut self, me: &str) {
        let shared = &self.shared;
        self.registry
            .retain(|client_id, row| row.node == me || shared.is_member(client_id));
        let registry = &self.registry;
        self.subscriptions
            .retain_clients(|client_id| registry.get(client_id).is_some_and(|r| r.node == me));
    }
}

/// The counts a node row carries.
fn counts_of(row: &NodeRow) -> Held {
    Held {
        connected: row.connected_clients,
        sessions: row.sessions,
    }
}

/// Checks that `notes` fit `batch` before anything applies.
fn check(batch: &Batch, notes: &EntryNotes) -> Result<(), NotesError> {
    if notes.results.len() != batch.ops.len() {
        return Err(NotesError::Count {
            results: notes.results.len(),
            ops: batch.ops.len(),
        });
    }
    for (pos, (op, result)) in batch.ops.iter().zip(&notes.results).enumerate() {
        if matches!(op.kind, Some(Kind::RegistryClaim(_)))
            && !matches!(
                result.outcome,
                Some(Outcome::Claimed(_) | Outcome::Rejected(_))
            )
        {
            return Err(NotesError::Claim(pos));
        }
    }
    Ok(())
}
