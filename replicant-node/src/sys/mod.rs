//! The broker's own `$SYS` topics, under `$SYS/brokers/{node}/` (`sys_topics` settings,
//! EMQX's names), and the table housekeeping that shares its start ([`housekeeping`]):
//!
//! - at start, `version` and `sysdescr`, retained (one table transaction);
//! - every `sys_heartbeat_interval`, `uptime` (seconds) and `datetime` (RFC 3339, UTC);
//! - every `sys_msg_interval`, `stats/...` and `metrics/...` ([`stats`], [`metrics`]);
//! - on client connect and disconnect, `clients/{clientid}/connected|disconnected`
//!   ([`events`]).
//!
//! All QoS 0; all but `version` and `sysdescr` are not retained. Each goes to this node's
//! matching subscribers and to every other replicant with a matching route
//! ([`publish_sys`]; client publications into `$SYS` are refused by authorization and never
//! forwarded). Wildcards starting with `+` or `#` never match them (MQTT 4.7.2); who may
//! subscribe is authorization's decision, as for any filter. Nobody subscribed is normal:
//! never counted as a drop. It never blocks a connection: events are built and pushed
//! in the caller, periodic topics in their own task.

pub mod events;
pub mod housekeeping;
pub mod metrics;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshmq_shared::codec::{Properties, QoS};
use tokio::time::{Interval, MissedTickBehavior};

use crate::cluster;
use crate::ctx::Ctx;
use crate::message::Message;

/// How often the stats' high-water marks are sampled.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Topics that earlier versions kept retained in the cluster tables; deleted at start so
/// that stale values do not outlive the upgrade.
const OLD_RETAINED: [&str; 4] = [
    "uptime",
    "clients/connected",
    "sessions/count",
    "subscriptions/count",
];

/// Runs the periodic `$SYS` topics and the housekeeping until shutdown.
pub async fn run(ctx: Arc<Ctx>) {
    tokio::join!(housekeeping::run(ctx.clone()), periodic(ctx));
}

/// `version` and `sysdescr` once, then the heartbeat and the stats on their intervals.
async fn periodic(ctx: Arc<Ctx>) {
    publish_static(&ctx).await;
    let cfg = &ctx.config.sys_topics;
    let mut heartbeat = cfg.heartbeat_interval().map(every);
    let mut msgs = cfg.msg_interval().map(every);
    let mut sample = every(SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            _ = ctx.admission.shutdown.cancelled() => return,
            _ = tick(&mut heartbeat) => publish_heartbeat(&ctx),
            _ = tick(&mut msgs) => publish_stats(&ctx),
            _ = sample.tick() => ctx.stats_max.sample(&ctx),
        }
    }
}

/// Ticks every `period`, the first one period from now.
fn every(period: Duration) -> Interval {
    let mut i = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// The next tick of `i`; never, when it is disabled.
async fn tick(i: &mut Option<Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The retained `version` and `sysdescr` (and the deletion of topics earlier versions
/// retained), as one table transaction, then delivered.
async fn publish_static(ctx: &Ctx) {
    let items = [
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("sysdescr", "meshmq MQTT broker".to_owned()),
    ];
    let mut ops = Vec::new();
    let mut msgs = Vec::new();
    for (name, value) in items {
        let msg = sys_message(ctx, name, value.into(), true);
        ops.push(cluster::retain_op(&msg, cluster::RetainLimits::NONE));
        msgs.push(msg);
    }
    for name in OLD_RETAINED {
        let old = sys_message(ctx, name, Bytes::new(), true);
        if ctx.tables.core.read(|t| t.retained(&old.topic).is_some()) {
            ops.push(cluster::retain_op(&old, cluster::RetainLimits::NONE));
        }
    }
    cluster::transact(&ctx.tables, ops).await;
    for msg in msgs {
        publish_sys(ctx, &msg);
    }
}

/// `uptime` in seconds and `datetime` now.
fn publish_heartbeat(ctx: &Ctx) {
    let uptime = ctx.admission.started.elapsed().as_secs().to_string();
    publish_sys(ctx, &sys_message(ctx, "uptime", uptime.into(), false));
    let now = time::OffsetDateTime::now_utc();
    let datetime = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    publish_sys(ctx, &sys_message(ctx, "datetime", datetime.into(), false));
}

/// Every `stats/...` and `metrics/...` topic (EMQX's names with `/` for `.`).
fn publish_stats(ctx: &Ctx) {
    for (name, v) in stats::stats(ctx) {
        let topic = format!("stats/{}", name.replace('.', "/"));
        publish_sys(ctx, &sys_message(ctx, &topic, v.to_string().into(), false));
    }
    let text = crate::http::prometheus_handle().render();
    for (name, v) in metrics::metrics(&text) {
        let topic = format!("metrics/{}", name.replace('.', "/"));
        publish_sys(ctx, &sys_message(ctx, &topic, v.to_string().into(), false));
    }
}

/// A QoS 0 message on `$SYS/brokers/{node}/{name}`.
fn sys_message(ctx: &Ctx, name: &str, payload: Bytes, retain: bool) -> Arc<Message> {
    Arc::new(Message::new(
        Instant::now(),
        format!("$SYS/brokers/{}/{name}", ctx.node()),
        payload,
        QoS::AtMostOnce,
        retain,
        Properties::default(),
    ))
}

/// Delivers one of the broker's own `$SYS` messages to this node's matching subscribers and
/// forwards it to every other replicant with a matching route. Nobody matching is normal.
pub fn publish_sys(ctx: &Ctx, msg: &Arc<Message>) {
    crate::publish::route(ctx, msg);
    crate::forward::sys_to_peers(ctx, msg);
}
