//! [`Tables::apply_batch_noted`]: applying an entry on a core and noting what a replica that
//! holds only a projection of the registry (`projected.rs`) cannot compute itself: the
//! result of every op, the registry rows of clients that joined a shared group, the
//! subscriptions of clients claimed, and the counts of the nodes whose counts changed, all
//! as they are at the end of the entry.
//!
//! Owns the recording (what apply reports while an entry is noted) and the notes' content.
//! It must never change what apply does: a noted entry leaves the tables exactly as
//! [`Tables::apply_batch`] would.

use hashbrown::HashSet;
use meshmq_proto::tables::{
    Batch, ClaimedSubscriptions, EntryNotes, NodeCount, OpResult, RegistryEntry, SubscriptionEntry,
    op_result::Outcome,
};

use super::Tables;

/// What apply reports while an entry is noted.
#[derive(Default)]
pub(super) struct Recorder {
    /// Nodes whose counts were recomputed.
    counted: Vec<String>,
    /// (client, claiming node) of every applied claim that kept subscriptions, in order.
    claimed: Vec<(String, String)>,
    /// Clients that joined a shared group.
    joined: Vec<String>,
}

impl Recorder {
    pub(super) fn counted(&mut self, node: &str) {
        // Entries of claims by one node name it over and over.
        if self.counted.last().map(String::as_str) != Some(node) {
            self.counted.push(node.to_owned());
        }
    }

    pub(super) fn claimed(&mut self, client_id: &str, node: &str) {
        self.claimed.push((client_id.to_owned(), node.to_owned()));
    }

    pub(super) fn joined(&mut self, client_id: &str) {
        self.joined.push(client_id.to_owned());
    }
}

/// What a follower needs of `result`: a rejection without its detail text, a claim without
/// its previous owner (a projected replica reads the generation and whether a session
/// existed; the previous owner is for the claiming node, which gets it from `Transact`).
fn verdict(result: &OpResult) -> OpResult {
    match &result.outcome {
        Some(Outcome::Rejected(r)) => OpResult {
            outcome: Some(Outcome::Rejected(meshmq_proto::tables::Rejected {
                reason: r.reason,
                detail: String::new(),
            })),
        },
        Some(Outcome::Claimed(c)) => OpResult {
            outcome: Some(Outcome::Claimed(meshmq_proto::tables::Claimed {
                generation: c.generation,
                previous: None,
                session_existed: c.session_existed,
            })),
        },
        _ => result.clone(),
    }
}

/// The memory `notes` take (their structs and heap strings, not their encoded size, which
/// is far smaller for results): what a holder of many bounds them by.
pub fn heap_bytes(notes: &EntryNotes) -> usize {
    use std::mem::size_of;
    let results = notes.results.len() * size_of::<OpResult>();
    let rows: usize = notes
        .rows
        .iter()
        .map(|e| {
            size_of::<RegistryEntry>()
                + e.client_id.len()
                + e.row.as_ref().map_or(0, |r| r.node.len())
        })
        .sum();
    let subscriptions: usize = notes
        .subscriptions
        .iter()
        .map(|c| {
            size_of::<ClaimedSubscriptions>()
                + c.client_id.len()
                + c.node.len()
                + c.rows
                    .iter()
                    .map(|r| size_of::<SubscriptionEntry>() + r.client_id.len() + r.filter.len())
                    .sum::<usize>()
        })
        .sum();
    let counts: usize = notes
        .counts
        .iter()
        .map(|c| size_of::<NodeCount>() + c.node.len())
        .sum();
    size_of::<EntryNotes>() + results + rows + subscriptions + counts
}

impl Tables {
    /// Applies the ops of one entry as [`apply_batch`](Self::apply_batch) does and returns
    /// their results with the entry's [`EntryNotes`].
    pub fn apply_batch_noted(&mut self, index: u64, batch: &Batch) -> (Vec<OpResult>, EntryNotes) {
        self.recorder = Some(Box::default());
        let results = self.apply_batch(index, batch);
        let recorder = self.recorder.take().map(|r| *r).unwrap_or_default();
        let notes = self.notes(&results, recorder);
        (results, notes)
    }

    /// The notes of an entry just applied.
    fn notes(&self, results: &[OpResult], recorder: Recorder) -> EntryNotes {
        let mut notes = EntryNotes {
            results: results.iter().map(verdict).collect(),
            ..EntryNotes::default()
        };
        let mut seen: HashSet<&str> = HashSet::new();
        for client_id in &recorder.joined {
            if seen.insert(client_id)
                && let Some(row) = self.registry.get(client_id)
            {
                notes.rows.push(RegistryEntry {
                    client_id: client_id.clone(),
                    row: Some(row.clone()),
                });
            }
        }
        // The last claim of a client decides whose subscriptions they are.
        seen.clear();
        for (client_id, node) in recorder.claimed.iter().rev() {
            if !seen.insert(client_id) || !self.subscriptions.has_any(client_id) {
                continue;
            }
            let rows = self
                .subscriptions
                .of(client_id)
                .map(|(filter, options)| SubscriptionEntry {
                    client_id: client_id.clone(),
                    filter: filter.to_owned(),
                    options: Some(*options),
                })
                .collect();
            notes.subscriptions.push(ClaimedSubscriptions {
                client_id: client_id.clone(),
                node: node.clone(),
                rows,
            });
        }
        notes.subscriptions.reverse();
        seen.clear();
        for node in &recorder.counted {
            if seen.insert(node)
                && let Some(row) = self.nodes.get(node)
            {
                notes.counts.push(NodeCount {
                    node: node.clone(),
                    connected_clients: row.connected_clients,
                    sessions: row.sessions,
                });
            }
        }
        notes
    }
}
