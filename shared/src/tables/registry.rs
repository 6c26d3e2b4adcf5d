//! The `registry` table: client id → owner node, incarnation, generation, session state.
//!
//! Owns the claim / disconnect / remove rules: a claim always wins and bumps the
//! generation (unless it names an expected owner the row no longer matches: adoption of a
//! session from an evacuating node); a disconnect or remove naming another generation is stale and rejected, so a
//! late message of an old connection can never end the session of the new one. Keeps the
//! per-owner counts ([`OwnerCounts`]) in step with every row it inserts, changes or drops.
//! It must never touch the `subscriptions` table itself: it reports whether the claim must
//! clear them and `apply` does it in the same op.

use std::sync::Arc;

use imbl::HashMap;
use meshmq_proto::tables::{
    Claimed, PreviousOwner, RegistryClaim, RegistryDisconnect, RegistryEntry, RegistryRemove,
    RegistryRow, RejectReason, Rejected,
};

use super::node_counts::{Held, OwnerCounts};
use super::{invalid, reject};

/// `session_expiry_secs` meaning "never expires" (MQTT 5.0 3.1.2.11.2).
pub(super) const NEVER_EXPIRES: u32 = u32::MAX;

/// MQTT protocol levels a claim may carry: 3.1 (3), 3.1.1 (4), 5.0 (5).
const PROTOCOL_LEVELS: [u32; 3] = [3, 4, 5];

/// What a claim decided.
pub(super) struct ClaimOutcome {
    /// The reply for the claiming node.
    pub(super) claimed: Claimed,
    /// The client's stored subscriptions belong to no live session any more.
    pub(super) clear_subscriptions: bool,
}

/// Registry rows by client id (a persistent map: a snapshot clones it in O(1)).
#[derive(Default, Clone)]
pub(super) struct Registry {
    /// Client id → row. The row is behind an `Arc`: the map's nodes hold a pointer, not the
    /// row, which keeps a registry row within 1.25× the memory of a plain hash map's.
    rows: HashMap<String, Arc<RegistryRow>>,
    /// Owner node → rows it holds (connected, all); follows `rows` on every change.
    owners: OwnerCounts,
}

/// Whether the session of `row` still exists at `now_ms`.
fn session_alive(row: &RegistryRow, now_ms: u64) -> bool {
    if row.connected || row.session_expiry_secs == NEVER_EXPIRES {
        return true;
    }
    let expiry_ms = u64::from(row.session_expiry_secs).saturating_mul(1000);
    now_ms < row.disconnected_at_ms.saturating_add(expiry_ms)
}

/// The row a claim at `generation` leaves.
pub(super) fn claimed_row(op: &RegistryClaim, generation: u64) -> RegistryRow {
    RegistryRow {
        node: op.node.clone(),
        incarnation: op.incarnation,
        generation,
        connected: true,
        session_expiry_secs: op.session_expiry_secs,
        protocol_level: op.protocol_level,
        connected_at_ms: op.now_ms,
        disconnected_at_ms: 0,
    }
}

/// Whether a claim may carry this protocol level.
fn valid_protocol_level(level: u32) -> bool {
    PROTOCOL_LEVELS.contains(&level)
}

impl Registry {
    /// The row of `client_id`.
    pub(super) fn get(&self, client_id: &str) -> Option<&RegistryRow> {
        self.rows.get(client_id).map(Arc::as_ref)
    }

    /// What `node` holds: its connected rows and all its rows (O(1), no scan).
    pub(super) fn held(&self, node: &str) -> Held {
        self.owners.get(node)
    }

    /// Per node, what it holds, counted by scanning every row: the reference the
    /// incremental counts are tested against.
    #[cfg(test)]
    pub(super) fn scan_held(&self) -> hashbrown::HashMap<String, Held> {
        let mut out: hashbrown::HashMap<String, Held> = hashbrown::HashMap::new();
        for row in self.rows.values() {
            let held = out.entry(row.node.clone()).or_default();
            held.connected += u64::from(row.connected);
            held.sessions += 1;
        }
        out
    }

    /// Number of rows.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Checks a claim without changing anything.
    pub(super) fn check_claim(&self, op: &RegistryClaim) -> Result<(), Rejected> {
        if op.client_id.is_empty() {
            return Err(invalid("RegistryClaim: empty client id"));
        }
        if op.node.is_empty() {
            return Err(invalid("RegistryClaim: empty node id"));
        }
        if !valid_protocol_level(op.protocol_level) {
            return Err(invalid(format!(
                "RegistryClaim: invalid protocol level {}",
                op.protocol_level
            )));
        }
        if self
            .rows
            .get(&op.client_id)
            .is_some_and(|row| row.generation == u64::MAX)
        {
            return Err(invalid("RegistryClaim: generation overflow"));
        }
        self.check_expectation(op)
    }

    /// The condition of a claim naming an expected owner (`expect_node`, adoption): the
    /// row exists, is owned by that node and, with `expect_disconnected`, is not connected.
    /// A claim without one (a CONNECT, and every entry written before the field) passes.
    fn check_expectation(&self, op: &RegistryClaim) -> Result<(), Rejected> {
        if op.expect_node.is_empty() {
            return Ok(());
        }
        let client = &op.client_id;
        let expected = &op.expect_node;
        let conflict = |detail: String| reject(RejectReason::StateConflict, detail);
        let Some(row) = self.rows.get(client) else {
            return Err(conflict(format!(
                "RegistryClaim: client {client:?} has no row, expected one owned by {expected:?}"
            )));
        };
        if row.node != *expected {
            return Err(conflict(format!(
                "RegistryClaim: client {client:?} is owned by {:?}, expected {expected:?}",
                row.node
            )));
        }
        if op.expect_disconnected && row.connected {
            return Err(conflict(format!(
                "RegistryClaim: client {client:?} is connected at {expected:?}, expected disconnected"
            )));
        }
        Ok(())
    }

    /// Applies a claim already accepted by [`check_claim`](Self::check_claim).
    ///
    /// `has_subscriptions`: the client has stored subscriptions. Without a row they are an
    /// orphaned persistent session (its node was purged), which counts as existing.
    /// `first_generation`: the generation of a client that has no row (see `apply::OpPos`).
    pub(super) fn claim(
        &mut self,
        op: &RegistryClaim,
        has_subscriptions: bool,
        first_generation: u64,
    ) -> ClaimOutcome {
        let previous = self.rows.get(&op.client_id);
        let (generation, previous, existed, expired) = match previous {
            Some(row) => {
                let alive = session_alive(row, op.now_ms);
                let owner = PreviousOwner {
                    node: row.node.clone(),
                    generation: row.generation,
                    connected: row.connected,
                    session_expiry_secs: row.session_expiry_secs,
                    disconnected_at_ms: row.disconnected_at_ms,
                    incarnation: row.incarnation,
                };
                (row.generation.saturating_add(1), Some(owner), alive, !alive)
            }
            None => (first_generation, None, has_subscriptions, false),
        };
        let row = claimed_row(op, generation);
        self.owners.add(&row);
        if let Some(old) = self.rows.insert(op.client_id.clone(), Arc::new(row)) {
            self.owners.sub(&old);
        }
        ClaimOutcome {
            claimed: Claimed {
                generation,
                previous,
                session_existed: existed,
            },
            clear_subscriptions: op.clean_start || expired,
        }
    }

    /// The row of `client_id` if `generation` is its current one.
    fn current_mut(
        &mut self,
        what: &str,
        client_id: &str,
        generation: u64,
    ) -> Result<&mut RegistryRow, Rejected> {
        let unknown = || {
            reject(
                RejectReason::UnknownClient,
                format!("{what}: unknown client {client_id:?}"),
            )
        };
        let row = self.rows.get(client_id).ok_or_else(unknown)?;
        if row.generation != generation {
            return Err(reject(
                RejectReason::StaleGeneration,
                format!(
                    "{what}: client {client_id:?} is at generation {}, op names {generation}",
                    row.generation
                ),
            ));
        }
        // Copies the row only while a snapshot source still shares it.
        let row = self.rows.get_mut(client_id).ok_or_else(unknown)?;
        Ok(Arc::make_mut(row))
    }

    /// Applies `RegistryDisconnect`: the row stays, disconnected since `now_ms`. Returns
    /// the row's owner node (what it holds changed).
    pub(super) fn disconnect(&mut self, op: &RegistryDisconnect) -> Result<String, Rejected> {
        let row = self.current_mut("RegistryDisconnect", &op.client_id, op.generation)?;
        let was_connected = row.connected;
        row.connected = false;
        row.disconnected_at_ms = op.now_ms;
        row.session_expiry_secs = op.session_expiry_secs;
        let node = row.node.clone();
        if was_connected {
            self.owners.disconnected(&node);
        }
        Ok(node)
    }

    /// Applies `RegistryRemove` (the caller clears the subscriptions); returns the removed
    /// row.
    pub(super) fn remove(&mut self, op: &RegistryRemove) -> Result<RegistryRow, Rejected> {
        self.current_mut("RegistryRemove", &op.client_id, op.generation)?;
        let row = self
            .rows
            .remove(&op.client_id)
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default();
        self.owners.sub(&row);
        Ok(row)
    }

    /// Drops the connected rows owned by `node` with an incarnation at most `incarnation`
    /// (their connections died with that process). Disconnected rows stay: they hold the
    /// session's expiry clock (`disconnected_at_ms`, `session_expiry_secs`), so a later claim
    /// still sees whether the session expired while the node was down or dead.
    /// Scans the whole table: purges are rare (a node died or restarted).
    pub(super) fn purge_node(&mut self, node: &str, incarnation: u64) {
        let owners = &mut self.owners;
        self.rows.retain(|_, row| {
            let dead = row.connected && row.node == node && row.incarnation <= incarnation;
            if dead {
                owners.sub(row);
            }
            !dead
        });
    }

    /// Stores `row` for `client_id` as it is (a row the cores decided: a projected replica,
    /// `projected.rs`), replacing any row there.
    pub(super) fn put(&mut self, client_id: &str, row: RegistryRow) {
        self.owners.add(&row);
        if let Some(old) = self.rows.insert(client_id.to_owned(), Arc::new(row)) {
            self.owners.sub(&old);
        }
    }

    /// Drops the row of `client_id`, if any, whatever its generation.
    pub(super) fn drop_row(&mut self, client_id: &str) {
        if let Some(old) = self.rows.remove(client_id) {
            self.owners.sub(&old);
        }
    }

    /// Keeps the rows for which `keep(client_id, row)` holds. Scans every row.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str, &RegistryRow) -> bool) {
        let owners = &mut self.owners;
        self.rows.retain(|client_id, row| {
            let stays = keep(client_id, row);
            if !stays {
                owners.sub(row);
            }
            stays
        });
    }

    /// All rows sorted by client id.
    pub(super) fn snapshot_rows(&self) -> Vec<RegistryEntry> {
        let mut rows: Vec<RegistryEntry> = self
            .rows
            .iter()
            .map(|(client_id, row)| RegistryEntry {
                client_id: client_id.clone(),
                row: Some(RegistryRow::clone(row)),
            })
            .collect();
        rows.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
        rows
    }

    /// Loads snapshot rows, skipping those without a client id, row or node.
    pub(super) fn restore(&mut self, entries: &[RegistryEntry]) {
        for entry in entries {
            match &entry.row {
                Some(row) if !entry.client_id.is_empty() && !row.node.is_empty() => {
                    self.owners.add(row);
                    if let Some(old) = self
                        .rows
                        .insert(entry.client_id.clone(), Arc::new(row.clone()))
                    {
                        self.owners.sub(&old);
                    }
                }
                _ => {}
            }
        }
    }
}
