//! Writing a checked import [`Plan`] through the cores: rows in batches of at most
//! [`BATCH_OPS`] ops and [`BATCH_BYTES`] encoded bytes (a row's ops never split), at most
//! [`IN_FLIGHT`] batches committing at once (the bounds of `import_users`). Rows of a plan
//! have distinct keys, so batches may commit in any order.
//!
//! A row the tables refuse at commit (only what the cluster already holds can cause it: a
//! full table) is reported, the others written. When the cores cannot commit, no further
//! batch starts and the answer says how many rows were written. One import runs at a time
//! per process ([`Turn`]), as the document and its plan are held in memory.
//!
//! Owns the batching, the counts and the log line; it never logs a row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use core_node::api::op_bytes;
use meshmq_proto::tables::{Op, op_result::Outcome};
use meshmq_shared::metrics as m;
use serde::Serialize;
use tokio::task::JoinSet;

use super::plan::{Item, Plan};
use super::{DataError, TABLES};
use crate::authn::transfer::{BATCH_BYTES, IN_FLIGHT};
use crate::cluster;
use crate::ctx::Ctx;

/// Most ops in one import batch.
pub const BATCH_OPS: usize = 1000;
/// Most commit refusals listed in the answer (all are counted).
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Whether an import is running in this process.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The right to run the one import of this process; released on drop.
#[derive(Debug)]
pub struct Turn(());

impl Turn {
    /// The turn, or `None` while another import runs.
    pub fn take() -> Option<Turn> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Turn(()))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// A row the tables refused at commit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// Where it is in the document (`retained[12]`).
    pub at: String,
    /// The table's reason.
    pub message: String,
}

/// The answer of an import: rows written per table, rows left out on purpose, refusals.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Users written.
    pub auth_users: usize,
    /// Rule lists written.
    pub authz_rules: usize,
    /// Bans written.
    pub banned: usize,
    /// Retained messages written.
    pub retained: usize,
    /// Settings written.
    pub settings: usize,
    /// Rows left out per table: bans that have ended, retained messages that have expired
    /// or are on `$SYS` topics.
    #[schema(value_type = Object)]
    pub skipped: serde_json::Map<String, serde_json::Value>,
    /// Rows the tables refused at commit (at most [`MAX_REPORTED_ERRORS`]).
    pub errors: Vec<RowError>,
    /// Number of rows refused at commit.
    pub failed: usize,
}

impl Report {
    fn written(&mut self, table: usize) {
        match table {
            0 => self.auth_users += 1,
            1 => self.authz_rules += 1,
            2 => self.banned += 1,
            3 => self.retained += 1,
            _ => self.settings += 1,
        }
    }

    fn total(&self) -> usize {
        self.auth_users + self.authz_rules + self.banned + self.retained + self.settings
    }

    /// Rows written of table `t` (as [`TABLES`]).
    fn of(&self, t: usize) -> usize {
        [
            self.auth_users,
            self.authz_rules,
            self.banned,
            self.retained,
            self.settings,
        ][t]
    }
}

/// One batch: its ops and, per row, its place and how many ops it has.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    rows: Vec<(usize, String, usize)>,
    bytes: usize,
}

type Done = (Batch, Result<Vec<Outcome>, String>);

/// Writes `plan`; the report, or [`DataError::Unavailable`] when the cores stopped
/// committing. Logs and counts the outcome.
pub async fn run(ctx: &Arc<Ctx>, plan: Plan) -> Result<Report, DataError> {
    let started = std::time::Instant::now();
    let mut report = Report::default();
    for (t, name) in TABLES.iter().enumerate() {
        if plan.skipped[t] > 0 {
            report
                .skipped
                .insert((*name).into(), plan.skipped[t].into());
        }
    }
    let has_config = plan.has_config;
    let stopped = commit(ctx, plan.items, &mut report).await;
    if has_config {
        crate::configs::refresh(ctx);
    }
    for (t, name) in TABLES.iter().enumerate() {
        metrics::counter!(m::DATA_IMPORT_ROWS_TOTAL, "table" => *name)
            .increment(report.of(t) as u64);
    }
    tracing::info!(
        auth_users = report.auth_users,
        authz_rules = report.authz_rules,
        banned = report.banned,
        retained = report.retained,
        settings = report.settings,
        failed = report.failed,
        stopped = stopped.is_some(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "data import"
    );
    match stopped {
        Some(reason) => Err(DataError::Unavailable {
            reason,
            written: report.total(),
        }),
        None => Ok(report),
    }
}

/// Commits the items in batches; why it stopped, if it did.
async fn commit(ctx: &Arc<Ctx>, items: Vec<Item>, report: &mut Report) -> Option<String> {
    let mut stopped: Option<String> = None;
    let mut running: JoinSet<Done> = JoinSet::new();
    let mut batch = Batch::default();
    let mut items = items.into_iter();
    loop {
        let next = items.next();
        let len = next
            .as_ref()
            .map_or(0, |i| i.ops.iter().map(op_bytes).sum::<usize>());
        let full = !batch.ops.is_empty()
            && match &next {
                Some(i) => {
                    batch.ops.len() + i.ops.len() > BATCH_OPS || batch.bytes + len > BATCH_BYTES
                }
                None => true,
            };
        if full {
            while running.len() >= IN_FLIGHT {
                if let Some(done) = running.join_next().await {
                    settle(done, report, &mut stopped);
                }
            }
            if stopped.is_some() {
                break;
            }
            let b = std::mem::take(&mut batch);
            let ctx = ctx.clone();
            running.spawn(async move {
                let result = cluster::try_transact(&ctx.tables, b.ops.clone())
                    .await
                    .map_err(|e| e.to_string());
                (b, result)
            });
        }
        let Some(item) = next else { break };
        batch.bytes += len;
        batch.rows.push((item.table, item.at, item.ops.len()));
        batch.ops.extend(item.ops);
    }
    while let Some(done) = running.join_next().await {
        settle(done, report, &mut stopped);
    }
    stopped
}

/// Counts a finished batch: a row is written when every one of its ops applied.
fn settle(
    done: Result<Done, tokio::task::JoinError>,
    report: &mut Report,
    stopped: &mut Option<String>,
) {
    let (batch, result) = match done {
        Ok(d) => d,
        Err(e) => {
            stopped.get_or_insert_with(|| format!("a commit task failed: {e}"));
            return;
        }
    };
    let outcomes = match result {
        Ok(o) => o,
        Err(e) => {
            stopped.get_or_insert(e);
            return;
        }
    };
    let mut outcomes = outcomes.into_iter();
    for (table, at, n) in batch.rows {
        let row: Vec<Outcome> = outcomes.by_ref().take(n).collect();
        let refused = row.into_iter().find_map(|o| match o {
            Outcome::Rejected(r) => Some(r.detail),
            _ => None,
        });
        match refused {
            None => report.written(table),
            Some(message) => {
                report.failed += 1;
                if report.errors.len() < MAX_REPORTED_ERRORS {
                    report.errors.push(RowError { at, message });
                }
            }
        }
    }
}
