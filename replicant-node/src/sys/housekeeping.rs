//! Table housekeeping every [`HOUSEKEEPING_INTERVAL`]: expired retained messages are
//! deleted (`RetainedExpire`) and ended bans purged (`BannedPurge`), in ONE table
//! transaction per tick per node.
//!
//! Its own task with its own period: `$SYS` settings (`sys_topics.*`) never change how
//! often it runs, and a slow table write here never delays a `$SYS` publication.

use std::sync::Arc;
use std::time::Duration;

use meshmq_proto::tables::{BannedPurge, Op, RetainedExpire, op};

use crate::cluster;
use crate::ctx::Ctx;

/// How often expired retained messages and ended bans are purged.
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        purge(&ctx).await;
    }
}

/// One tick: the expiry purge, and the ban purge when a ban has ended.
async fn purge(ctx: &Ctx) {
    let mut ops = vec![Op {
        kind: Some(op::Kind::RetainedExpire(RetainedExpire {
            now_ms: cluster::now_ms(),
        })),
    }];
    // Ended bans are never matched; the purge only frees their rows (idempotent, so every
    // replicant may send it).
    let now_s = crate::banned::now_s();
    if ctx.tables.core.read(|t| t.banned_any_ended(now_s)) {
        ops.push(cluster::op(op::Kind::BannedPurge(BannedPurge { now_s })));
    }
    cluster::transact(&ctx.tables, ops).await;
}
