//! The `settings` table: a generic cluster-wide key/value store, keyed by (`ns`, `key`),
//! for features that keep a little cluster state without a table of their own (API keys,
//! run-time configuration, online traces). Every replicant holds it whole.
//!
//! Owns the rows, their validation (namespace and key syntax, bounded value), the versions
//! (apply sets them: the previous version + 1, 1 for a new row), compare-and-set, and the
//! table's bounds ([`MAX_SETTINGS_ROWS`], [`MAX_SETTINGS_BYTES`]). Rows are kept in one
//! persistent ordered map per namespace: a snapshot clones them in O(1), a namespace is
//! listed in key order without a scan of the others. It never interprets a value.

use std::ops::Bound;

use imbl::OrdMap;
use meshmq_proto::tables::{RejectReason, Rejected, SettingDelete, SettingRow, SettingSet};

use super::{invalid, reject};

/// Longest namespace, in bytes.
pub const MAX_NS_LEN: usize = 64;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest value, in bytes (1 MiB).
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Most rows the table holds; a new row past it is refused (`QuotaExceeded`).
pub const MAX_SETTINGS_ROWS: usize = 100_000;
/// Most bytes of namespaces, keys and values the table holds (256 MiB); a write past it is
/// refused (`QuotaExceeded`).
pub const MAX_SETTINGS_BYTES: u64 = 256 << 20;

/// The bounds a write is checked against (the constants above, smaller in tests).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) rows: usize,
    pub(super) bytes: u64,
}

impl Limits {
    /// The table's bounds.
    pub(super) const TABLE: Self = Self {
        rows: MAX_SETTINGS_ROWS,
        bytes: MAX_SETTINGS_BYTES,
    };
}

/// Checks a namespace: 1..=[`MAX_NS_LEN`] bytes of `[a-z0-9_.]`.
pub fn check_ns(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > MAX_NS_LEN {
        return Err(format!("namespace must be 1..={MAX_NS_LEN} bytes"));
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.';
    if !ns.bytes().all(ok) {
        return Err(format!("namespace {ns:?} has a byte outside [a-z0-9_.]"));
    }
    Ok(())
}

/// Checks a key: 1..=[`MAX_KEY_LEN`] bytes, no control character.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("key must be 1..={MAX_KEY_LEN} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("key holds a control character".into());
    }
    Ok(())
}

/// Checks a row as `SettingSet` requires: namespace, key, value of at most
/// [`MAX_VALUE_LEN`] bytes (its `version` is not looked at).
pub fn check_row(row: &SettingRow) -> Result<(), String> {
    check_ns(&row.ns)?;
    check_key(&row.key)?;
    if row.value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "value of {} bytes is over {MAX_VALUE_LEN}",
            row.value.len()
        ));
    }
    Ok(())
}

/// Bytes a row counts against [`MAX_SETTINGS_BYTES`].
fn row_bytes(row: &SettingRow) -> u64 {
    (row.ns.len() + row.key.len() + row.value.len()) as u64
}

/// Namespace → key → row, with the row count and bytes (persistent maps: a snapshot clones
/// them in O(1)).
#[derive(Default, Clone)]
pub(super) struct Settings {
    by_ns: OrdMap<String, OrdMap<String, SettingRow>>,
    rows: usize,
    bytes: u64,
}

impl Settings {
    pub(super) fn get(&self, ns: &str, key: &str) -> Option<&SettingRow> {
        self.by_ns.get(ns)?.get(key)
    }

    pub(super) fn len(&self) -> usize {
        self.rows
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The rows of `ns` in key order.
    pub(super) fn in_ns<'a>(&'a self, ns: &str) -> impl Iterator<Item = &'a SettingRow> + 'a {
        self.by_ns
            .get(ns)
            .into_iter()
            .flat_map(|keys| keys.values())
    }

    /// Up to `limit` rows of `ns` with keys after `after` (from the first when `None`).
    pub(super) fn page(&self, ns: &str, after: Option<&str>, limit: usize) -> Vec<&SettingRow> {
        let Some(keys) = self.by_ns.get(ns) else {
            return Vec::new();
        };
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        keys.range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r)
            .collect()
    }

    /// Every row in (ns, key) order.
    fn iter(&self) -> impl Iterator<Item = &SettingRow> {
        self.by_ns.values().flat_map(|keys| keys.values())
    }

    /// Current version of (`ns`, `key`), 0 when absent.
    fn version(&self, ns: &str, key: &str) -> u64 {
        self.get(ns, key).map_or(0, |r| r.version)
    }

    /// Rejects unless `expect` is absent or the current version.
    fn check_expect(
        &self,
        what: &str,
        ns: &str,
        key: &str,
        expect: Option<u64>,
    ) -> Result<(), Rejected> {
        let current = self.version(ns, key);
        match expect {
            Some(want) if want != current => Err(reject(
                RejectReason::StateConflict,
                format!("{what}: {ns}/{key:?} is at version {current}, expected {want}"),
            )),
            _ => Ok(()),
        }
    }

    /// `SettingSet`: validation, compare-and-set and bounds are checked before any write.
    pub(super) fn set(&mut self, op: &SettingSet, limits: Limits) -> Result<(), Rejected> {
        let row = op
            .row
            .as_ref()
            .ok_or_else(|| invalid("SettingSet: no row"))?;
        check_row(row).map_err(|e| invalid(format!("SettingSet: {e}")))?;
        self.check_expect("SettingSet", &row.ns, &row.key, op.expect_version)?;
        let old = self.get(&row.ns, &row.key);
        let (old_version, old_bytes) = old.map_or((0, 0), |r| (r.version, row_bytes(r)));
        let bytes = self.bytes - old_bytes + row_bytes(row);
        if old.is_none() && self.rows >= limits.rows {
            return Err(reject(
                RejectReason::QuotaExceeded,
                format!("SettingSet: the table holds {} rows", limits.rows),
            ));
        }
        if bytes > limits.bytes && bytes > self.bytes {
            return Err(reject(
                RejectReason::QuotaExceeded,
                format!(
                    "SettingSet: the table would hold {bytes} bytes, over {}",
                    limits.bytes
                ),
            ));
        }
        let stored = SettingRow {
            version: old_version.saturating_add(1),
            ..row.clone()
        };
        if old.is_none() {
            self.rows += 1;
        }
        self.bytes = bytes;
        self.by_ns
            .entry(row.ns.clone())
            .or_default()
            .insert(row.key.clone(), stored);
        Ok(())
    }

    /// `SettingDelete`: compare-and-set checked first; removing an absent row changes
    /// nothing.
    pub(super) fn delete(&mut self, op: &SettingDelete) -> Result<(), Rejected> {
        self.check_expect("SettingDelete", &op.ns, &op.key, op.expect_version)?;
        let Some(keys) = self.by_ns.get_mut(&op.ns) else {
            return Ok(());
        };
        if let Some(old) = keys.remove(&op.key) {
            self.rows -= 1;
            self.bytes -= row_bytes(&old);
        }
        if keys.is_empty() {
            self.by_ns.remove(&op.ns);
        }
        Ok(())
    }

    pub(super) fn snapshot_rows(&self) -> Vec<SettingRow> {
        self.iter().cloned().collect()
    }

    /// Rebuilds from snapshot rows, skipping rows `check_row` refuses, rows of version 0,
    /// duplicates (the first row of a key wins) and rows past the table's bounds.
    pub(super) fn restore(&mut self, rows: &[SettingRow]) {
        for row in rows {
            if row.version == 0 || check_row(row).is_err() || self.get(&row.ns, &row.key).is_some()
            {
                continue;
            }
            let bytes = self.bytes + row_bytes(row);
            if self.rows >= MAX_SETTINGS_ROWS || bytes > MAX_SETTINGS_BYTES {
                continue;
            }
            self.rows += 1;
            self.bytes = bytes;
            self.by_ns
                .entry(row.ns.clone())
                .or_default()
                .insert(row.key.clone(), row.clone());
        }
    }
}
