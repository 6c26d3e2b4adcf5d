//! Housekeeping and `$SYS` topics: every `SYS_INTERVAL` the broker publishes its version,
//! uptime and counts as retained messages under `$SYS/brokers/{node}/...` (wildcard
//! subscriptions starting with `+` or `#` never see them, per MQTT 4.7.2), and purges expired
//! retained messages from the tables.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshmq_proto::tables::{Op, RetainedExpire, op};
use meshmq_shared::codec::{Properties, QoS};

use crate::broker::Ctx;
use crate::cluster;
use crate::message::Message;
use crate::publish;

/// How often `$SYS` topics are refreshed and expired retained messages purged.
pub const SYS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(SYS_INTERVAL);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        publish_sys(&ctx).await;
        let purge = Op {
            kind: Some(op::Kind::RetainedExpire(RetainedExpire {
                now_ms: cluster::now_ms(),
            })),
        };
        cluster::transact(&ctx, vec![purge]).await;
    }
}

async fn publish_sys(ctx: &Arc<Ctx>) {
    let node = ctx.node().to_owned();
    let items = [
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("uptime", ctx.started.elapsed().as_secs().to_string()),
        (
            "clients/connected",
            ctx.connections.load(Ordering::Relaxed).to_string(),
        ),
        ("sessions/count", ctx.sessions.len().to_string()),
        (
            "subscriptions/count",
            ctx.router.subscription_count().to_string(),
        ),
    ];
    for (name, value) in items {
        let topic = format!("$SYS/brokers/{node}/{name}");
        let msg = Message::new(
            Instant::now(),
            topic,
            Bytes::from(value),
            QoS::AtMostOnce,
            true,
            Properties::default(),
        );
        publish::publish(ctx, Arc::new(msg)).await;
    }
}
