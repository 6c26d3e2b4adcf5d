//! The replicant's access to the cluster `settings` table (`meshmq_shared::tables::settings`):
//! a generic key/value store, by namespace and key, that features keep cluster state in
//! (API keys, run-time configuration, traces). Reads come from the local replica, which
//! holds the table whole; writes are committed through the cores.
//!
//! Owns the write helpers' contract: a write returns once it is applied on this node, with
//! the row's new version; a conditional write (`expect_version`) fails with
//! [`SettingsError::Conflict`] when the row moved; [`watch`] tells consumers when to re-read
//! their namespace. It never interprets a value and never logs one (values may be secrets).

use bytes::Bytes;
use core_node::api::TransactError;
use meshmq_proto::tables::{
    OpResult, RejectReason, SettingDelete, SettingRow, SettingSet, op, op_result::Outcome,
};
use meshmq_shared::metrics as m;
use meshmq_shared::tables::rejection;
use meshmq_shared::tables::settings::{check_key, check_ns, check_row};
use tokio::sync::watch;

use crate::cluster;
use crate::ctx::Ctx;
use crate::http::api::{ApiError, bad_request, error, unavailable};

/// How many times an unconditional write re-reads the version and retries when another
/// writer got in between, before it writes without a condition.
const CAS_ATTEMPTS: usize = 8;

/// Why a settings write did not apply.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Namespace, key or value refused (see `tables::settings::check_row`).
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The row is not at the expected version.
    #[error("setting is at version {current}, expected {expected}")]
    Conflict {
        /// The version the write expected (0: absent).
        expected: u64,
        /// The version this node sees now (0: absent).
        current: u64,
    },
    /// The table is at its bound of rows or bytes.
    #[error("settings table full: {0}")]
    Full(String),
    /// The cores did not commit (the outcome of a timeout is unknown).
    #[error("not committed: {0}")]
    Unavailable(#[from] TransactError),
}

impl SettingsError {
    /// A short fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Conflict { .. } => "conflict",
            Self::Full(_) => "full",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

/// Counts a refused write (`meshmq_settings_writes_refused_total{reason}`) and passes it on.
fn counted<T>(result: Result<T, SettingsError>) -> Result<T, SettingsError> {
    if let Err(e) = &result {
        metrics::counter!(m::SETTINGS_WRITES_REFUSED_TOTAL, "reason" => e.label()).increment(1);
    }
    result
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        use axum::http::StatusCode;
        match &e {
            SettingsError::Invalid(_) => bad_request(e.to_string()),
            SettingsError::Conflict { .. } => {
                error(StatusCode::CONFLICT, "CONFLICT", e.to_string())
            }
            SettingsError::Full(_) => {
                error(StatusCode::BAD_REQUEST, "QUOTA_EXCEEDED", e.to_string())
            }
            SettingsError::Unavailable(_) => unavailable(e.to_string()),
        }
    }
}

/// The version of (`ns`, `key`) in the local replica, 0 when absent.
fn local_version(ctx: &Ctx, ns: &str, key: &str) -> u64 {
    ctx.tables
        .core
        .read(|t| t.setting(ns, key).map_or(0, |r| r.version))
}

/// Commits one op; `Ok(true)` if it applied, `Ok(false)` if the version did not match.
async fn commit(ctx: &Ctx, kind: op::Kind) -> Result<bool, SettingsError> {
    let outcomes = cluster::try_transact(&ctx.tables, vec![cluster::op(kind)]).await?;
    let result = OpResult {
        outcome: outcomes.into_iter().next(),
    };
    match rejection(&result) {
        None if matches!(result.outcome, Some(Outcome::Ok(_))) => Ok(true),
        None => Err(SettingsError::Invalid("no outcome for the write".into())),
        Some((RejectReason::StateConflict, _)) => Ok(false),
        Some((RejectReason::QuotaExceeded, detail)) => Err(SettingsError::Full(detail.into())),
        Some((_, detail)) => Err(SettingsError::Invalid(detail.into())),
    }
}

/// Runs `write(expect)` as a compare-and-set: at `expect_version` if given (a mismatch is
/// [`SettingsError::Conflict`]), else at the version this node sees, re-read and retried
/// when another writer got in between (the replica has applied the conflicting entry when
/// the answer comes back), and after [`CAS_ATTEMPTS`] without a condition. Returns the
/// version the write was made at (`None` for the last, unconditional attempt).
async fn cas(
    ctx: &Ctx,
    ns: &str,
    key: &str,
    expect_version: Option<u64>,
    write: impl Fn(Option<u64>) -> op::Kind,
) -> Result<Option<u64>, SettingsError> {
    if let Some(expected) = expect_version {
        if commit(ctx, write(Some(expected))).await? {
            return Ok(Some(expected));
        }
        let current = local_version(ctx, ns, key);
        return Err(SettingsError::Conflict { expected, current });
    }
    for _ in 0..CAS_ATTEMPTS {
        let seen = local_version(ctx, ns, key);
        if commit(ctx, write(Some(seen))).await? {
            return Ok(Some(seen));
        }
    }
    if commit(ctx, write(None)).await? {
        Ok(None)
    } else {
        Err(SettingsError::Invalid("unconditional write refused".into()))
    }
}

/// Stores `value` at (`ns`, `key`) through the cores, if `expect_version` is given only
/// while the row is at that version (0: must not exist). Returns the row's new version,
/// once the write is applied on this node. Refusals are counted.
pub async fn put(
    ctx: &Ctx,
    ns: &str,
    key: &str,
    value: Vec<u8>,
    expect_version: Option<u64>,
) -> Result<u64, SettingsError> {
    counted(put_uncounted(ctx, ns, key, value, expect_version).await)
}

/// [`put`] without the count.
async fn put_uncounted(
    ctx: &Ctx,
    ns: &str,
    key: &str,
    value: Vec<u8>,
    expect_version: Option<u64>,
) -> Result<u64, SettingsError> {
    let row = SettingRow {
        ns: ns.to_owned(),
        key: key.to_owned(),
        value: Bytes::from(value),
        version: 0,
    };
    check_row(&row).map_err(SettingsError::Invalid)?;
    let write = |expect_version| {
        op::Kind::SettingSet(SettingSet {
            row: Some(row.clone()),
            expect_version,
        })
    };
    match cas(ctx, ns, key, expect_version, write).await? {
        Some(at) => Ok(at.saturating_add(1)),
        // Written without a condition: this node has applied it (maybe a later write too).
        None => Ok(local_version(ctx, ns, key)),
    }
}

/// Removes (`ns`, `key`) through the cores, if `expect_version` is given only while the row
/// is at that version. True if a row was removed (false: there was none), once applied on
/// this node. Refusals are counted.
pub async fn delete(
    ctx: &Ctx,
    ns: &str,
    key: &str,
    expect_version: Option<u64>,
) -> Result<bool, SettingsError> {
    counted(delete_uncounted(ctx, ns, key, expect_version).await)
}

/// [`delete`] without the count.
async fn delete_uncounted(
    ctx: &Ctx,
    ns: &str,
    key: &str,
    expect_version: Option<u64>,
) -> Result<bool, SettingsError> {
    check_ns(ns).map_err(SettingsError::Invalid)?;
    check_key(key).map_err(SettingsError::Invalid)?;
    let write = |expect_version| {
        op::Kind::SettingDelete(SettingDelete {
            ns: ns.to_owned(),
            key: key.to_owned(),
            expect_version,
        })
    };
    // Made at version 0: there was no row. Unconditional: there was one a moment ago.
    Ok(cas(ctx, ns, key, expect_version, write)
        .await?
        .is_none_or(|at| at != 0))
}

/// The value and version of (`ns`, `key`) in this node's replica.
pub fn get(ctx: &Ctx, ns: &str, key: &str) -> Option<(Vec<u8>, u64)> {
    ctx.tables
        .core
        .read(|t| t.setting(ns, key).map(|r| (r.value.to_vec(), r.version)))
}

/// Every (key, value, version) of namespace `ns` in this node's replica, in key order.
pub fn list(ctx: &Ctx, ns: &str) -> Vec<(String, Vec<u8>, u64)> {
    ctx.tables.core.read(|t| {
        t.settings_in(ns)
            .map(|r| (r.key.clone(), r.value.to_vec(), r.version))
            .collect()
    })
}

/// The replica's applied index: it moves on every applied entry and snapshot install; a
/// consumer re-reads its namespace when it does.
pub fn watch(ctx: &Ctx) -> watch::Receiver<u64> {
    ctx.tables.core.replica().subscribe_applied()
}
