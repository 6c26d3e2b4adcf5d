//! Housekeeping and `$SYS` topics: every `SYS_INTERVAL` the broker publishes its version,
//! uptime and counts as retained messages under `$SYS/brokers/{node}/...` (wildcard
//! subscriptions starting with `+` or `#` never see them, per MQTT 4.7.2), and purges expired
//! retained messages and ended bans from the tables.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshmq_proto::tables::{BannedPurge, Op, RetainedExpire, op};
use meshmq_shared::codec::{Properties, QoS};

use crate::cluster;
use crate::ctx::Ctx;
use crate::message::Message;
use crate::publish;

/// How often `$SYS` topics are refreshed and expired retained messages purged.
pub const SYS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(SYS_INTERVAL);
    // Last value written per `$SYS` topic: unchanged values are not written again.
    let mut last: HashMap<&'static str, String> = HashMap::new();
    loop {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        refresh(&ctx, &mut last).await;
    }
}

/// One tick: the changed `$SYS` values and the expiry purge as ONE table transaction (one
/// Raft entry per tick per node, not one per topic), then local delivery of the values.
async fn refresh(ctx: &Arc<Ctx>, last: &mut HashMap<&'static str, String>) {
    let node = ctx.node().to_owned();
    let items = [
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        (
            "uptime",
            ctx.admission.started.elapsed().as_secs().to_string(),
        ),
        (
            "clients/connected",
            ctx.admission
                .connections
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        ("sessions/count", ctx.local.sessions.len().to_string()),
        (
            "subscriptions/count",
            ctx.local.router.subscription_count().to_string(),
        ),
    ];
    let mut ops = Vec::with_capacity(items.len() + 1);
    let mut msgs = Vec::with_capacity(items.len());
    for (name, value) in items {
        if last.get(name) == Some(&value) {
            continue;
        }
        let msg = Arc::new(Message::new(
            Instant::now(),
            format!("$SYS/brokers/{node}/{name}"),
            Bytes::from(value.clone()),
            QoS::AtMostOnce,
            true,
            Properties::default(),
        ));
        ops.push(cluster::retain_op(&msg, cluster::RetainLimits::NONE));
        msgs.push(msg);
        last.insert(name, value);
    }
    ops.push(Op {
        kind: Some(op::Kind::RetainedExpire(RetainedExpire {
            now_ms: cluster::now_ms(),
        })),
    });
    // Ended bans are never matched; the purge only frees their rows (idempotent, so every
    // replicant may send it).
    let now_s = crate::banned::now_s();
    if ctx.tables.core.read(|t| t.banned_any_ended(now_s)) {
        ops.push(cluster::op(op::Kind::BannedPurge(BannedPurge { now_s })));
    }
    cluster::transact(&ctx.tables, ops).await;
    for msg in msgs {
        // Nobody subscribed to $SYS is normal: not counted as a drop.
        publish::route(ctx, &msg);
    }
}
