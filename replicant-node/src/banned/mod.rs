//! Banned clients on this replicant: the check every CONNECT makes before authentication
//! (against the local replica of the `banned` table), the index of live connections that a
//! new ban is matched against (they are closed, on every replicant, see [`live`]), flapping
//! detection ([`flapping`]) and the `/api/v5/banned` REST routes ([`api`]).
//!
//! Owns no rows: bans are cluster table rows (`meshmq_shared::tables::banned`), committed
//! through the cores and applied here by the replica. It must never hold the replica's lock
//! beyond one lookup, and never wait for the cores on the CONNECT path.

pub mod api;
pub mod flapping;
pub mod live;
pub mod rfc3339;

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use core_node::api::TransactError;
use meshmq_proto::tables::{BannedAdd, BannedAs, BannedRow, op, op_result::Outcome};
use meshmq_shared::tables::rejection;

use crate::cluster;
use crate::ctx::Ctx;

/// What this node keeps for bans: the live connections and the flapping counters.
#[derive(Default)]
pub struct BanState {
    /// Live connections (after CONNECT) with what a ban can match.
    pub live: live::Live,
    /// Disconnect counts per client id (flapping detection).
    pub flapping: parking_lot::Mutex<flapping::Detector>,
    /// Flapping bans being committed now (at most [`flapping::MAX_COMMITS`]).
    pub flapping_commits: std::sync::atomic::AtomicUsize,
}

/// Unix seconds now (0 if the clock is before 1970).
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// EMQX's name of a ban kind (`as`).
pub fn as_label(kind: i32) -> &'static str {
    match BannedAs::try_from(kind) {
        Ok(BannedAs::Clientid) => "clientid",
        Ok(BannedAs::Username) => "username",
        Ok(BannedAs::Peerhost) => "peerhost",
        Ok(BannedAs::PeerhostNet) => "peerhost_net",
        Ok(BannedAs::Unspecified) | Err(_) => "unknown",
    }
}

/// The kind of ban EMQX calls `name`.
pub fn as_from_label(name: &str) -> Option<BannedAs> {
    match name {
        "clientid" => Some(BannedAs::Clientid),
        "username" => Some(BannedAs::Username),
        "peerhost" => Some(BannedAs::Peerhost),
        "peerhost_net" => Some(BannedAs::PeerhostNet),
        _ => None,
    }
}

/// The kind (`as`) of the ban in force that matches this client, if any: one lookup in the
/// local replica (client id, username and address are map lookups; networks are scanned
/// only when there are some).
pub fn check(ctx: &Ctx, client_id: &str, username: Option<&str>, peer: IpAddr) -> Option<i32> {
    let now = now_s();
    ctx.tables.core.read(|t| {
        t.banned_match(client_id, username, peer, now)
            .map(|r| r.kind)
    })
}

/// Why a ban was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// A ban with the same `as` and `who` is in force.
    #[error("already banned")]
    Exists,
    /// The table holds its maximum of bans.
    #[error("the banned table is full")]
    Full,
    /// The table refused the row (it was checked before: a bug or a version skew).
    #[error("refused: {0}")]
    Invalid(String),
    /// The cores did not commit (the outcome of a timeout is unknown).
    #[error("not committed: {0}")]
    Unavailable(#[from] TransactError),
}

/// Commits a `BannedAdd` of `row` through the cores; returns once it is applied here.
pub async fn add(ctx: &Ctx, row: BannedRow) -> Result<(), AddError> {
    use meshmq_proto::tables::RejectReason;
    let op = cluster::op(op::Kind::BannedAdd(BannedAdd {
        row: Some(row),
        now_s: now_s(),
    }));
    let outcomes = cluster::try_transact(&ctx.tables, vec![op]).await?;
    let result = meshmq_proto::tables::OpResult {
        outcome: outcomes.into_iter().next(),
    };
    match rejection(&result) {
        None if matches!(result.outcome, Some(Outcome::Ok(_))) => Ok(()),
        None => Err(AddError::Invalid("no outcome".into())),
        Some((RejectReason::StateConflict, _)) => Err(AddError::Exists),
        Some((RejectReason::QuotaExceeded, _)) => Err(AddError::Full),
        Some((_, detail)) => Err(AddError::Invalid(detail.to_owned())),
    }
}
