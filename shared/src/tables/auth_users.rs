//! The `auth_users` table: the built-in authentication database (EMQX's
//! `password_based:built_in_database`, and `scram:built_in_database`'s users: a row is either
//! a password hash or SCRAM credentials), user id → superuser flag and stored password.
//!
//! Owns the rows and their validation (the password's algorithm and parameters must be
//! readable, so a row that applies can always be checked). It never hashes or verifies a
//! password: apply is pure and cheap, the connection path verifies off the runtime.

use imbl::OrdMap;
use meshmq_proto::tables::{AuthUser, Rejected};

use super::invalid;
use crate::auth::{password, scram, stored};

/// Longest user id (an MQTT username or client id is at most 65 535 bytes).
pub const MAX_USER_ID_LEN: usize = 65_535;

/// Users by id, sorted (stable paging for the API; a persistent map: a snapshot clones it
/// in O(1)).
#[derive(Default, Clone)]
pub(super) struct AuthUsers {
    by_id: OrdMap<String, AuthUser>,
}

/// Checks a user row as `AuthUserSet` requires.
pub(super) fn check(user: &AuthUser) -> Result<(), Rejected> {
    if user.user_id.is_empty() || user.user_id.len() > MAX_USER_ID_LEN {
        return Err(invalid("AuthUserSet: user id empty or too long"));
    }
    let Some(password) = &user.password else {
        return Err(invalid("AuthUserSet: no password"));
    };
    if scram::is_row(password) {
        // SCRAM credentials: readable and in range (keys of the hash's length).
        scram::from_row(password).map_err(|e| invalid(format!("AuthUserSet: {e}")))?;
        return Ok(());
    }
    let stored = stored::from_row(password).map_err(|e| invalid(format!("AuthUserSet: {e}")))?;
    // Format and costs too (cheap, no hashing): a row that applies can always be verified.
    password::check_stored(&stored).map_err(|e| invalid(format!("AuthUserSet: {e}")))?;
    Ok(())
}

impl AuthUsers {
    pub(super) fn get(&self, user_id: &str) -> Option<&AuthUser> {
        self.by_id.get(user_id)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Up to `limit` users with ids after `after` (from the first when `None`), in id order.
    pub(super) fn page(&self, after: Option<&str>, limit: usize) -> Vec<&AuthUser> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        self.by_id
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, u)| u)
            .collect()
    }

    /// Adds or replaces (after [`check`]).
    pub(super) fn set(&mut self, user: &AuthUser) {
        self.by_id.insert(user.user_id.clone(), user.clone());
    }

    /// Removes; true if the user existed.
    pub(super) fn delete(&mut self, user_id: &str) -> bool {
        self.by_id.remove(user_id).is_some()
    }

    pub(super) fn snapshot_rows(&self) -> Vec<AuthUser> {
        self.by_id.values().cloned().collect()
    }

    /// Rebuilds from snapshot rows, skipping rows `check` would refuse.
    pub(super) fn restore(&mut self, rows: &[AuthUser]) {
        for row in rows {
            if check(row).is_ok() {
                self.set(row);
            }
        }
    }
}
