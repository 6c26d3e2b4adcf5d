//! The `authz_rules` table: the built-in authorization database (EMQX's
//! `built_in_database` authorization source), rules per username, per client id and for
//! all clients, plus the authorization cache epoch.
//!
//! Owns the rows, their validation (at most [`MAX_RULES`] per key, each rule readable by
//! [`crate::auth::acl::from_row`], so a row that applies can always be used) and the epoch:
//! every rule change and every `AuthzCacheClear` bumps it, and connections drop their cached
//! decisions when it moves. Apply is pure and cheap.

use imbl::OrdMap;
use meshmq_proto::tables::{AuthzRules, AuthzRulesKind, Rejected};

use super::invalid;
use crate::auth::acl::{self, Who};

/// Most rules per username / client id / the all list (EMQX's `max_rules`).
pub const MAX_RULES: usize = 100;
/// Longest username or client id key.
pub const MAX_KEY_LEN: usize = 65_535;

/// Rule lists by (kind, key), sorted (stable paging for the API), and the cache epoch (a
/// persistent map: a snapshot clones it in O(1)).
#[derive(Default, Clone)]
pub(super) struct AuthzRulesTable {
    by_key: OrdMap<(i32, String), AuthzRules>,
    pub(super) epoch: u64,
}

/// Checks a row as `AuthzRulesSet` requires.
pub(super) fn check(row: &AuthzRules) -> Result<(), Rejected> {
    let kind = AuthzRulesKind::try_from(row.kind).unwrap_or(AuthzRulesKind::Unspecified);
    match kind {
        AuthzRulesKind::Unspecified => return Err(invalid("AuthzRulesSet: unknown kind")),
        AuthzRulesKind::All if !row.key.is_empty() => {
            return Err(invalid("AuthzRulesSet: the all list has no key"));
        }
        AuthzRulesKind::Username | AuthzRulesKind::Clientid
            if row.key.is_empty() || row.key.len() > MAX_KEY_LEN =>
        {
            return Err(invalid("AuthzRulesSet: key empty or too long"));
        }
        _ => {}
    }
    if row.rules.len() > MAX_RULES {
        return Err(invalid(format!(
            "AuthzRulesSet: more than {MAX_RULES} rules"
        )));
    }
    for (i, r) in row.rules.iter().enumerate() {
        acl::from_row(r, Who::All)
            .map_err(|e| invalid(format!("AuthzRulesSet: rules[{i}]: {e}")))?;
    }
    Ok(())
}

impl AuthzRulesTable {
    pub(super) fn get(&self, kind: AuthzRulesKind, key: &str) -> Option<&AuthzRules> {
        self.by_key.get(&(kind as i32, key.to_owned()))
    }

    /// Number of keys of `kind`.
    pub(super) fn count(&self, kind: AuthzRulesKind) -> usize {
        self.by_key
            .keys()
            .filter(|(k, _)| *k == kind as i32)
            .count()
    }

    /// Up to `limit` rows of `kind` after skipping `skip`, in key order.
    pub(super) fn page(&self, kind: AuthzRulesKind, skip: usize, limit: usize) -> Vec<&AuthzRules> {
        use std::ops::Bound;
        let k = kind as i32;
        self.by_key
            .range((Bound::Included((k, String::new())), Bound::Unbounded))
            .take_while(|((kk, _), _)| *kk == k)
            .skip(skip)
            .take(limit)
            .map(|(_, r)| r)
            .collect()
    }

    /// Up to `limit` rows of every kind after (`kind`, `key`) (from the first when `None`),
    /// in (kind, key) order.
    pub(super) fn page_after(&self, after: Option<(i32, &str)>, limit: usize) -> Vec<AuthzRules> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |(k, key)| {
            Bound::Excluded((k, key.to_owned()))
        });
        self.by_key
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Adds or replaces (after [`check`]); bumps the epoch.
    pub(super) fn set(&mut self, row: &AuthzRules) {
        self.by_key.insert((row.kind, row.key.clone()), row.clone());
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Removes (absent: nothing to remove); bumps the epoch either way.
    pub(super) fn delete(&mut self, kind: i32, key: &str) {
        self.by_key.remove(&(kind, key.to_owned()));
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Bumps the epoch.
    pub(super) fn clear_cache(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    pub(super) fn snapshot_rows(&self) -> Vec<AuthzRules> {
        self.by_key.values().cloned().collect()
    }

    /// Rebuilds from snapshot rows (skipping rows `check` would refuse) and the epoch.
    pub(super) fn restore(&mut self, rows: &[AuthzRules], epoch: u64) {
        for row in rows {
            if check(row).is_ok() {
                self.by_key.insert((row.kind, row.key.clone()), row.clone());
            }
        }
        self.epoch = epoch;
    }
}
