//! The cluster tables (nodes, registry, subscriptions, routes, shared groups, retained
//! messages, built-in authentication users, built-in authorization rules, banned clients,
//! generic settings) and the one function that changes them, [`Tables::apply`].
//!
//! This module owns the rows and their indexes, the rules of every [`Op`] and the canonical
//! [`Snapshot`] of all rows. The row maps are persistent (`imbl`): a [`SnapshotSource`] of
//! them is taken in O(number of tables), and the snapshot built from it later, elsewhere. Apply is pure, deterministic and total: the same ops in the same
//! order give the same state and the same [`OpResult`]s on every node, and an op that cannot
//! apply gives a typed [`Rejected`](meshmq_proto::tables::Rejected) and leaves the state as
//! it was.
//!
//! It must never read a clock, a random source or anything outside its arguments (ops carry
//! `now_ms`), never let hash-map iteration order reach a result or a snapshot, never panic or
//! recurse per topic level on data from the network, and never do I/O: the holder (the
//! embedded core today, a Raft state machine later) owns storage, ordering and waiting.

mod apply;
pub mod auth_users;
#[cfg(test)]
mod auth_users_tests;
pub mod authz_rules;
#[cfg(test)]
mod authz_rules_tests;
pub mod banned;
#[cfg(test)]
mod banned_tests;
#[cfg(test)]
mod cluster_tests;
mod node_counts;
#[cfg(test)]
mod node_counts_tests;
mod nodes;
pub mod notes;
mod projected;
#[cfg(test)]
mod projected_tests;
mod projection;
#[cfg(test)]
mod projection_tests;
mod registry;
mod retained;
pub mod retained_quota;
#[cfg(test)]
mod retained_quota_tests;
#[cfg(test)]
mod retained_tests;
mod retained_walk;
#[cfg(test)]
mod retained_walk_tests;
mod routes;
pub mod settings;
#[cfg(test)]
mod settings_tests;
mod shared_groups;
mod source;
#[cfg(test)]
mod source_tests;
mod subscriptions;
#[cfg(test)]
mod tests;
mod views;

use meshmq_proto::tables::{
    Applied, NodeRow, OpResult, RejectReason, Rejected, Snapshot, op_result::Outcome,
};
pub use meshmq_proto::tables::{
    AuthUser, AuthzRule, AuthzRules, AuthzRulesKind, BannedAs, BannedRow, Batch, Op, RegistryRow,
    RetainedMessage, SettingRow, SubOptions,
};
pub use node_counts::Held;
pub use projected::NotesError;
pub use retained_walk::{ChunkBudget, RetainedCursor};
pub use source::{SnapshotSource, Table};
pub use views::{RetainedView, RoutesView};

/// All cluster tables with their indexes; see the module doc.
///
/// Equality compares the canonical snapshots (all rows, not the hash-map layout).
pub struct Tables {
    /// Highest log index applied so far (0 before the first op).
    applied_index: u64,
    /// Node id → node row.
    nodes: nodes::Nodes,
    /// Client id → owner, generation, session state.
    registry: registry::Registry,
    /// Client id → subscriptions of sessions that outlive the connection.
    subscriptions: subscriptions::Subscriptions,
    /// (filter, node) rows with a trie to find the nodes interested in a topic.
    routes: routes::Routes,
    /// (group, filter) → members in join order, with a trie over the filters.
    shared: shared_groups::SharedGroups,
    /// Topic → retained message, indexed by topic level and by expiry.
    retained: retained::Retained,
    /// User id → built-in authentication user.
    auth_users: auth_users::AuthUsers,
    /// (as, who) → ban.
    banned: banned::Banned,
    /// (kind, key) → built-in authorization rules, and the authorization cache epoch.
    authz_rules: authz_rules::AuthzRulesTable,
    /// (ns, key) → generic setting.
    settings: settings::Settings,
    /// The node whose registry projection these tables hold (`projected.rs`); `None`: every
    /// row (a core, or a replica of every row).
    projected_for: Option<String>,
    /// While an entry is applied by [`apply_batch_noted`](Self::apply_batch_noted): what
    /// its notes need.
    recorder: Option<Box<notes::Recorder>>,
}

impl Tables {
    /// Empty tables (log index 0).
    pub fn new() -> Self {
        Self {
            applied_index: 0,
            nodes: nodes::Nodes::default(),
            registry: registry::Registry::default(),
            subscriptions: subscriptions::Subscriptions::default(),
            routes: routes::Routes::default(),
            shared: shared_groups::SharedGroups::default(),
            retained: retained::Retained::default(),
            auth_users: auth_users::AuthUsers::default(),
            banned: banned::Banned::default(),
            authz_rules: authz_rules::AuthzRulesTable::default(),
            settings: settings::Settings::default(),
            projected_for: None,
            recorder: None,
        }
    }

    /// Highest log index given to [`apply`](Self::apply) so far (0 before the first op).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The node row of `node`.
    pub fn node(&self, node: &str) -> Option<&NodeRow> {
        self.nodes.get(node)
    }

    /// The built-in authentication user `user_id`.
    pub fn auth_user(&self, user_id: &str) -> Option<&AuthUser> {
        self.auth_users.get(user_id)
    }

    /// Number of built-in authentication users.
    pub fn auth_user_count(&self) -> usize {
        self.auth_users.len()
    }

    /// Up to `limit` built-in authentication users with ids after `after`, in id order.
    pub fn auth_users_page(&self, after: Option<&str>, limit: usize) -> Vec<&AuthUser> {
        self.auth_users.page(after, limit)
    }

    /// The first ban in force at `now_s` (unix seconds) that matches a client: by client
    /// id, username, address, then network. Cheap: exact keys are map lookups, the network
    /// list is scanned only when it is not empty.
    pub fn banned_match(
        &self,
        client_id: &str,
        username: Option<&str>,
        peer: std::net::IpAddr,
        now_s: u64,
    ) -> Option<&BannedRow> {
        self.banned.find(client_id, username, peer, now_s)
    }

    /// The ban `(kind, who)`, in force or not.
    pub fn banned(&self, kind: BannedAs, who: &str) -> Option<&BannedRow> {
        self.banned.get(kind, who)
    }

    /// Number of bans (ended ones included until purged).
    pub fn banned_count(&self) -> usize {
        self.banned.len()
    }

    /// Up to `limit` bans after the first `skip`, in (as, who) order.
    pub fn banned_page(&self, skip: usize, limit: usize) -> Vec<&BannedRow> {
        self.banned.page(skip, limit)
    }

    /// Whether a ban has ended at `now_s` and waits for a `BannedPurge`.
    pub fn banned_any_ended(&self, now_s: u64) -> bool {
        self.banned.any_ended(now_s)
    }

    /// The built-in authorization rules of (`kind`, `key`) (`key` empty for the all list).
    pub fn authz_rules(&self, kind: AuthzRulesKind, key: &str) -> Option<&AuthzRules> {
        self.authz_rules.get(kind, key)
    }

    /// Number of rule lists of `kind` (cost follows the table size: for the API).
    pub fn authz_rules_count(&self, kind: AuthzRulesKind) -> usize {
        self.authz_rules.count(kind)
    }

    /// Up to `limit` rule lists of `kind` after the first `skip`, in key order.
    pub fn authz_rules_page(
        &self,
        kind: AuthzRulesKind,
        skip: usize,
        limit: usize,
    ) -> Vec<&AuthzRules> {
        self.authz_rules.page(kind, skip, limit)
    }

    /// The authorization cache epoch: it moves on every rule change and cache clear.
    pub fn authz_epoch(&self) -> u64 {
        self.authz_rules.epoch
    }

    /// The setting (`ns`, `key`).
    pub fn setting(&self, ns: &str, key: &str) -> Option<&SettingRow> {
        self.settings.get(ns, key)
    }

    /// The settings of namespace `ns`, in key order.
    pub fn settings_in<'a>(&'a self, ns: &str) -> impl Iterator<Item = &'a SettingRow> + 'a {
        self.settings.in_ns(ns)
    }

    /// Up to `limit` settings of `ns` with keys after `after` (from the first when `None`),
    /// in key order.
    pub fn settings_page(&self, ns: &str, after: Option<&str>, limit: usize) -> Vec<&SettingRow> {
        self.settings.page(ns, after, limit)
    }

    /// Number of settings, every namespace.
    pub fn settings_count(&self) -> usize {
        self.settings.len()
    }

    /// Bytes of the settings' namespaces, keys and values (what
    /// [`settings::MAX_SETTINGS_BYTES`] bounds).
    pub fn settings_bytes(&self) -> u64 {
        self.settings.bytes()
    }

    /// Every node row, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRow> {
        self.nodes.iter()
    }

    /// The registry row of `client_id`.
    pub fn registry(&self, client_id: &str) -> Option<&RegistryRow> {
        self.registry.get(client_id)
    }

    /// What `node` holds in the registry: connected rows and all rows (O(1)). The same
    /// figures as its node row's `connected_clients` and `sessions`, but also for an owner
    /// that has no node row (a purged node's disconnected sessions).
    pub fn held_by(&self, node: &str) -> Held {
        self.registry.held(node)
    }

    /// Number of registry rows.
    pub fn registry_count(&self) -> usize {
        self.registry.len()
    }

    /// The stored subscriptions of `client_id` as (filter, options), sorted by filter.
    pub fn subscriptions(&self, client_id: &str) -> impl Iterator<Item = (&str, &SubOptions)> {
        self.subscriptions.of(client_id)
    }

    /// Calls `f` once per retained message whose topic matches `filter` (MQTT 4.7, with the
    /// `$` rule) and that has not expired at `now_ms`. Walks the topic-level index: cost
    /// follows the matching part of the tree, not the store size. In walk order (topic
    /// levels compared name by name, a topic before those below it).
    pub fn retained_matching(&self, filter: &str, now_ms: u64, f: impl FnMut(&RetainedMessage)) {
        self.retained.for_each_match(filter, now_ms, f);
    }

    /// One chunk of [`retained_matching`](Self::retained_matching): calls `f` for the
    /// matching messages after `from` (from the first when `None`) until `budget` is spent.
    /// Returns the cursor to resume from, or `None` when the walk is complete. Resuming
    /// across changes to the table sees each topic at most once, and every message that was
    /// stored before the first chunk and left alone until the walk completed exactly once
    /// (see [`RetainedCursor`]'s module for the rest).
    pub fn retained_matching_chunk(
        &self,
        filter: &str,
        now_ms: u64,
        from: Option<&RetainedCursor>,
        budget: ChunkBudget,
        f: impl FnMut(&RetainedMessage),
    ) -> Option<RetainedCursor> {
        self.retained.match_chunk(filter, now_ms, from, budget, f)
    }

    /// The retained message of exactly `topic`, expired or not.
    pub fn retained(&self, topic: &str) -> Option<&RetainedMessage> {
        self.retained.get(topic)
    }

    /// Number of retained messages stored (expired ones included until `RetainedExpire`).
    pub fn retained_count(&self) -> usize {
        self.retained.len()
    }

    /// Bytes of the retained messages stored, as their quota counts them
    /// ([`retained_quota::message_bytes`]; not the broker's own `$SYS` topics; expired ones
    /// included until `RetainedExpire`).
    pub fn retained_bytes(&self) -> u64 {
        self.retained.bytes()
    }

    /// Whether a retained message of `bytes` bytes on `topic` would be stored under these
    /// limits (0: none) now: the check a `RetainedSet` carrying them passes on apply, for a
    /// replicant to answer its client before submitting (another node's write may still
    /// change the answer by the time the op applies).
    pub fn retained_fits(
        &self,
        topic: &str,
        bytes: u64,
        max_messages: u64,
        max_bytes: u64,
    ) -> Result<(), retained_quota::RetainedQuota> {
        self.retained.fits(topic, bytes, max_messages, max_bytes)
    }

    /// Calls `f` once per node that has a route whose filter matches `topic`.
    pub fn route_nodes_matching(&self, topic: &str, f: impl FnMut(&str)) {
        self.routes.nodes_matching(topic, f);
    }

    /// Number of (filter, node) route rows.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// Members (client id, node) of shared group `group` for `filter`, in join order; empty
    /// if there is no such group.
    pub fn shared_members(&self, group: &str, filter: &str) -> &[(String, String)] {
        self.shared.members(group, filter)
    }

    /// Calls `f(group, filter, members)` for every shared group whose filter matches
    /// `topic` (MQTT 4.7 with the `$` rule). Order of groups unspecified; members in join
    /// order.
    pub fn shared_groups_matching(
        &self,
        topic: &str,
        f: impl FnMut(&str, &str, &[(String, String)]),
    ) {
        self.shared.groups_matching(topic, f);
    }

    /// Every row in canonical order: equal states give equal (and byte-equal encoded)
    /// snapshots on every node. Cost follows the number of rows; a holder that must not
    /// stop applying meanwhile takes a [`snapshot_source`](Self::snapshot_source) instead.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_source().snapshot()
    }

    /// The rows as they are now, in O(number of tables): the row maps are persistent, so
    /// the source shares them and later applies do not change it. Its
    /// [`snapshot`](SnapshotSource::snapshot) equals what [`snapshot`](Self::snapshot)
    /// returns now, and can be built later, elsewhere, while these tables move on.
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource::capture(self)
    }

    /// Rebuilds the tables and their indexes from a snapshot; `from_snapshot(&t.snapshot())`
    /// equals `t`. The snapshot comes from another node: rows that apply could never have
    /// stored (empty ids, invalid topics or filters, out-of-range values) are skipped, never
    /// a panic, and the node rows' counts are recomputed from the registry rows kept (the
    /// snapshot's figures are ignored).
    pub fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut tables = Self::new();
        tables.applied_index = snapshot.applied_index;
        tables.nodes.restore(&snapshot.nodes);
        tables.registry.restore(&snapshot.registry);
        tables.subscriptions.restore(&snapshot.subscriptions);
        tables.routes.restore(&snapshot.routes);
        tables.shared.restore(&snapshot.shared);
        tables.retained.restore(&snapshot.retained);
        tables.auth_users.restore(&snapshot.auth_users);
        tables.banned.restore(&snapshot.banned);
        tables.settings.restore(&snapshot.settings);
        tables
            .authz_rules
            .restore(&snapshot.authz_rules, snapshot.authz_epoch);
        let registry = &tables.registry;
        tables.nodes.set_all_held(|node| registry.held(node));
        tables
    }
}

impl Default for Tables {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Tables {
    fn eq(&self, other: &Self) -> bool {
        self.snapshot() == other.snapshot()
    }
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("applied_index", &self.applied_index)
            .field("nodes", &self.nodes.len())
            .field("registry", &self.registry.len())
            .field("subscriptions", &self.subscriptions.len())
            .field("routes", &self.routes.len())
            .field("shared_groups", &self.shared.len())
            .field("retained", &self.retained.len())
            .field("banned", &self.banned.len())
            .field("settings", &self.settings.len())
            .finish()
    }
}

/// The result of an op that applied with nothing to report.
pub fn ok_result() -> OpResult {
    OpResult {
        outcome: Some(Outcome::Ok(Applied {})),
    }
}

/// The rejection carried by `result`, if it is one: its reason (unknown codes read as
/// [`RejectReason::Unspecified`]) and detail text.
pub fn rejection(result: &OpResult) -> Option<(RejectReason, &str)> {
    match &result.outcome {
        Some(Outcome::Rejected(r)) => Some((
            RejectReason::try_from(r.reason).unwrap_or(RejectReason::Unspecified),
            r.detail.as_str(),
        )),
        _ => None,
    }
}

/// Builds a rejection; used by every table module.
fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason: reason as i32,
        detail: detail.into(),
    }
}

/// Shorthand for an [`RejectReason::Invalid`] rejection.
fn invalid(detail: impl Into<String>) -> Rejected {
    reject(RejectReason::Invalid, detail)
}
