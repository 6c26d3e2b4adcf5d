//! [`SnapshotSource`]: the rows of every table at one moment, captured in O(number of tables)
//! so that a holder can take it under its lock and build the canonical [`Snapshot`] after
//! releasing it, while later ops keep applying.
//!
//! Owns the capture and the canonical order of a snapshot's rows. The row maps of the tables
//! are persistent (`imbl`): cloning one shares its nodes, and a later apply copies only the
//! nodes it changes, so the source keeps seeing the rows as they were. It never holds an
//! index (tries, by-level trees, expiry queues): a snapshot carries rows only.

use meshmq_proto::tables::{AuthUser, AuthzRules, RetainedMessage, Snapshot};
use prost::Message;

use super::{
    Tables, auth_users, authz_rules, banned, nodes, registry, retained, routes, settings,
    shared_groups, subscriptions,
};

/// One table of a snapshot (see [`SnapshotSource::table`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `nodes`.
    Nodes,
    /// `registry`.
    Registry,
    /// `subscriptions`.
    Subscriptions,
    /// `routes`.
    Routes,
    /// `shared`.
    Shared,
    /// `retained`.
    Retained,
    /// `auth_users`.
    AuthUsers,
    /// `banned`.
    Banned,
    /// `authz_rules`.
    AuthzRules,
    /// `settings`.
    Settings,
}

/// Every row of the tables as they were when [`Tables::snapshot_source`] was called; cheap to
/// clone, `Send`, independent of the live tables.
#[derive(Clone)]
pub struct SnapshotSource {
    /// The `applied_index` of the snapshot.
    applied_index: u64,
    nodes: nodes::Nodes,
    pub(super) registry: registry::Registry,
    pub(super) subscriptions: subscriptions::Subscriptions,
    routes: routes::Rows,
    pub(super) shared: shared_groups::Rows,
    retained: retained::Rows,
    auth_users: auth_users::AuthUsers,
    banned: banned::Banned,
    /// Rule lists and the authorization cache epoch.
    authz_rules: authz_rules::AuthzRulesTable,
    settings: settings::Settings,
}

impl SnapshotSource {
    /// Captures the rows of `tables`: O(number of tables), whatever their size.
    pub(super) fn capture(tables: &Tables) -> Self {
        Self {
            applied_index: tables.applied_index,
            nodes: tables.nodes.clone(),
            registry: tables.registry.clone(),
            subscriptions: tables.subscriptions.clone(),
            routes: tables.routes.rows(),
            shared: tables.shared.rows(),
            retained: tables.retained.rows(),
            auth_users: tables.auth_users.clone(),
            banned: tables.banned.clone(),
            authz_rules: tables.authz_rules.clone(),
            settings: tables.settings.clone(),
        }
    }

    /// The `applied_index` the snapshot will carry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Stamps the snapshot with another index: a holder whose log advances without touching
    /// the tables (Raft blank and membership entries) records its own.
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = index;
    }

    /// The authorization cache epoch the snapshot will carry.
    pub fn authz_epoch(&self) -> u64 {
        self.authz_rules.epoch
    }

    /// Number of registry rows (the largest table, for logs).
    pub fn registry_count(&self) -> usize {
        self.registry.len()
    }

    /// Every row in canonical order: the snapshot the tables had at capture, equal (and
    /// byte-equal encoded) to [`Tables::snapshot`] then. Cost follows the number of rows
    /// (clones and sorts them): run it off the async runtime for large tables.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            applied_index: self.applied_index,
            nodes: self.nodes.snapshot_rows(),
            registry: self.registry.snapshot_rows(),
            subscriptions: self.subscriptions.snapshot_rows(),
            routes: routes::snapshot_rows(&self.routes),
            shared: shared_groups::snapshot_rows(&self.shared),
            retained: retained::snapshot_rows(&self.retained),
            auth_users: self.auth_users.snapshot_rows(),
            banned: self.banned.snapshot_rows(),
            authz_rules: self.authz_rules.snapshot_rows(),
            authz_epoch: self.authz_rules.epoch,
            settings: self.settings.snapshot_rows(),
        }
    }
}

impl SnapshotSource {
    /// A snapshot holding the rows of `table` only, in canonical order, and no scalar.
    pub fn table(&self, table: Table) -> Snapshot {
        let mut part = Snapshot::default();
        match table {
            Table::Nodes => part.nodes = self.nodes.snapshot_rows(),
            Table::Registry => part.registry = self.registry.snapshot_rows(),
            Table::Subscriptions => part.subscriptions = self.subscriptions.snapshot_rows(),
            Table::Routes => part.routes = routes::snapshot_rows(&self.routes),
            Table::Shared => part.shared = shared_groups::snapshot_rows(&self.shared),
            Table::Retained => part.retained = retained::snapshot_rows(&self.retained),
            Table::AuthUsers => part.auth_users = self.auth_users.snapshot_rows(),
            Table::Banned => part.banned = self.banned.snapshot_rows(),
            Table::AuthzRules => part.authz_rules = self.authz_rules.snapshot_rows(),
            Table::Settings => part.settings = self.settings.snapshot_rows(),
        }
        part
    }

    /// The encoded [`snapshot`](Self::snapshot), byte for byte, built one table at a time: at
    /// most one table's rows are held besides the bytes. (An encoded message is its fields
    /// in field-number order; the encodings of messages holding one field each, written in
    /// that order, are that message's encoding.)
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let scalars = |applied_index, authz_epoch| Snapshot {
            applied_index,
            authz_epoch,
            ..Snapshot::default()
        };
        scalars(self.applied_index, 0).encode_raw(&mut buf);
        for table in [
            Table::Nodes,
            Table::Registry,
            Table::Subscriptions,
            Table::Routes,
            Table::Shared,
            Table::Retained,
            Table::AuthUsers,
            Table::AuthzRules,
        ] {
            self.table(table).encode_raw(&mut buf);
        }
        scalars(0, self.authz_rules.epoch).encode_raw(&mut buf);
        self.table(Table::Banned).encode_raw(&mut buf);
        self.table(Table::Settings).encode_raw(&mut buf);
        buf
    }
}

/// Pages of the captured rows, for a reader that streams them (a data export): each page
/// is cloned on its own, so at most one page is held besides the capture.
impl SnapshotSource {
    /// Up to `limit` users with ids after `after` (from the first when `None`), in id order.
    pub fn auth_users_page(&self, after: Option<&str>, limit: usize) -> Vec<AuthUser> {
        self.auth_users
            .page(after, limit)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Up to `limit` rule lists after `after` (kind as its number, key), in (kind, key) order.
    pub fn authz_rules_page(&self, after: Option<(i32, &str)>, limit: usize) -> Vec<AuthzRules> {
        self.authz_rules.page_after(after, limit)
    }

    /// Up to `limit` retained messages with topics after `after`, in topic order (expired
    /// ones and the broker's own `$SYS` topics included: the reader decides).
    pub fn retained_page(&self, after: Option<&str>, limit: usize) -> Vec<RetainedMessage> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.retained
            .range::<_, str>((from, Bound::Unbounded))
            .take(limit)
            .map(|m| RetainedMessage::clone(&m.0))
            .collect()
    }
}

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("applied_index", &self.applied_index)
            .field("registry", &self.registry.len())
            .finish_non_exhaustive()
    }
}
