//! The replicant's side of the cluster tables: builds table operations, commits them through
//! the core holder (the embedded core in standalone mode) and reads the replica.
//!
//! Every protobuf op the replicant writes is built here, so the rest of the node speaks in
//! MQTT terms. A failed transaction is logged and counted, never a panic: the local router
//! stays the source of truth for delivery on this node.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use meshmq_proto::tables::{
    NodeRole, NodeUp, Op, PreviousOwner, RegistryClaim, RegistryDisconnect, RegistryRemove,
    RetainedDelete, RetainedMessage, RetainedSet, RouteAdd, RouteRemove, SharedAdd, SharedRemove,
    SubOptions, SubscriptionRemove, SubscriptionSet, op, op_result,
};
use meshmq_shared::codec::{Properties, ProtocolVersion, QoS};
use meshmq_shared::metrics as m;
use meshmq_shared::tables::{ChunkBudget, RetainedCursor};
use tracing::warn;

use crate::broker::Ctx;
use crate::message::Message;
use crate::session::SubOpts;

/// Wall-clock milliseconds since the Unix epoch (table timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn op(kind: op::Kind) -> Op {
    Op { kind: Some(kind) }
}

/// Commits `ops` as one entry; failures are logged and counted.
pub async fn transact(ctx: &Ctx, ops: Vec<Op>) -> Vec<op_result::Outcome> {
    if ops.is_empty() {
        return Vec::new();
    }
    let started = Instant::now();
    let result = ctx.core.transact(ops).await;
    metrics::histogram!(m::TABLE_TRANSACTION_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(committed) => {
            metrics::counter!(m::TABLE_TRANSACTIONS_TOTAL, "result" => "ok").increment(1);
            committed
                .results
                .into_iter()
                .filter_map(|r| r.outcome)
                .collect()
        }
        Err(e) => {
            metrics::counter!(m::TABLE_TRANSACTIONS_TOTAL, "result" => "error").increment(1);
            warn!(error = %e, "table transaction failed");
            Vec::new()
        }
    }
}

/// Waits (at most [`BARRIER_TIMEOUT`]) until every other connected replicant has applied
/// this node's replica index, so that a route this node just committed is known wherever a
/// client may publish next (invariant 1: SUBACK, then publish anywhere). A node that does not
/// answer in time is logged and counted; the caller goes on (availability first).
pub async fn barrier(ctx: &Ctx) {
    let Some(peers) = &ctx.peers else { return };
    let index = ctx.core.applied_index();
    let report = peers.barrier(index, BARRIER_TIMEOUT).await;
    if !report.missing.is_empty() {
        warn!(index, missing = ?report.missing, "replicants did not confirm the route in time");
    }
}

/// Waits (bounded) until every route decision this node's router made so far is committed
/// by the route writer and applied here (`crate::route_writer`).
pub async fn routes_committed(ctx: &Ctx) {
    let seq = ctx.router.decided_seq();
    if !ctx.route_writer.wait(seq).await {
        warn!(seq, "route decisions not committed in time");
    }
}

/// The longest a SUBACK waits for the other replicants to confirm a route.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

/// Announces this node in the `nodes` table (a new incarnation per start).
pub async fn announce_node(ctx: &Ctx) {
    let up = NodeUp {
        node: ctx.node().to_owned(),
        addr: ctx.config.listeners.mqtt_bind.to_string(),
        role: NodeRole::Replicant as i32,
        incarnation: ctx.incarnation,
        peer_addr: ctx
            .peers
            .as_ref()
            .map(|p| p.local_addr().to_string())
            .unwrap_or_default(),
    };
    transact(ctx, vec![op(op::Kind::NodeUp(up))]).await;
}

/// What a committed `RegistryClaim` told this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The new registry generation (0 if the transaction failed, which the session
    /// tolerates: its later registry ops are then rejected as stale, never applied wrongly).
    pub generation: u64,
    /// The registry row before this claim, if there was one (the node to take over from).
    pub previous: Option<PreviousOwner>,
    /// Session state existed cluster-wide (connected, or disconnected and not expired, or
    /// orphaned `subscriptions` rows). False when the transaction failed.
    pub session_existed: bool,
}

/// Claims `client_id` for this node; returns the new generation and what existed before.
pub async fn claim(
    ctx: &Ctx,
    client_id: &str,
    clean_start: bool,
    expiry: u32,
    version: ProtocolVersion,
) -> Claim {
    let claim = RegistryClaim {
        client_id: client_id.to_owned(),
        node: ctx.node().to_owned(),
        incarnation: ctx.incarnation,
        clean_start,
        session_expiry_secs: expiry,
        protocol_level: u32::from(version.level()),
        now_ms: now_ms(),
    };
    let results = transact(ctx, vec![op(op::Kind::RegistryClaim(claim))]).await;
    match results.into_iter().next() {
        Some(op_result::Outcome::Claimed(c)) => Claim {
            generation: c.generation,
            previous: c.previous,
            session_existed: c.session_existed,
        },
        _ => Claim::default(),
    }
}

/// Records that the connection of `generation` closed; the session stays `expiry` seconds.
pub async fn disconnected(ctx: &Ctx, client_id: &str, generation: u64, expiry: u32) {
    let d = RegistryDisconnect {
        client_id: client_id.to_owned(),
        generation,
        session_expiry_secs: expiry,
        now_ms: now_ms(),
    };
    transact(ctx, vec![op(op::Kind::RegistryDisconnect(d))]).await;
}

/// Removes the registry row (and persistent subscriptions) of an ended session.
pub fn registry_remove(client_id: &str, generation: u64) -> Op {
    op(op::Kind::RegistryRemove(RegistryRemove {
        client_id: client_id.to_owned(),
        generation,
    }))
}

/// This node now has a local subscriber to `filter` (`seq`: the router's decision order).
pub fn route_add(ctx: &Ctx, filter: &str, seq: u64) -> Op {
    op(op::Kind::RouteAdd(RouteAdd {
        filter: filter.to_owned(),
        node: ctx.node().to_owned(),
        seq,
    }))
}

/// This node no longer has a local subscriber to `filter` (`seq` as for [`route_add`]).
pub fn route_remove(ctx: &Ctx, filter: &str, seq: u64) -> Op {
    op(op::Kind::RouteRemove(RouteRemove {
        filter: filter.to_owned(),
        node: ctx.node().to_owned(),
        seq,
    }))
}

/// `client_id` on this node joins a shared group.
pub fn shared_add(ctx: &Ctx, group: &str, filter: &str, client_id: &str) -> Op {
    op(op::Kind::SharedAdd(SharedAdd {
        group: group.to_owned(),
        filter: filter.to_owned(),
        client_id: client_id.to_owned(),
        node: ctx.node().to_owned(),
    }))
}

/// `client_id` leaves a shared group.
pub fn shared_remove(group: &str, filter: &str, client_id: &str, generation: u64) -> Op {
    op(op::Kind::SharedRemove(SharedRemove {
        group: group.to_owned(),
        filter: filter.to_owned(),
        client_id: client_id.to_owned(),
        generation,
    }))
}

/// A persistent session's subscription.
pub fn subscription_set(client_id: &str, filter: &str, o: &SubOpts) -> Op {
    op(op::Kind::SubscriptionSet(SubscriptionSet {
        client_id: client_id.to_owned(),
        filter: filter.to_owned(),
        options: Some(SubOptions {
            qos: o.qos as u32,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            retain_handling: u32::from(o.retain_handling),
            subscription_id: o.subscription_id,
        }),
    }))
}

/// Removes a persistent session's subscription.
pub fn subscription_remove(client_id: &str, filter: &str) -> Op {
    op(op::Kind::SubscriptionRemove(SubscriptionRemove {
        client_id: client_id.to_owned(),
        filter: filter.to_owned(),
    }))
}

/// The op that stores (or with an empty payload, clears) the retained message of `msg.topic`.
pub fn retain_op(msg: &Message) -> Op {
    if msg.payload.is_empty() {
        op(op::Kind::RetainedDelete(RetainedDelete {
            topic: msg.topic.clone(),
        }))
    } else {
        op(op::Kind::RetainedSet(RetainedSet {
            message: Some(to_retained(msg)),
        }))
    }
}

/// Stores (or with an empty payload, clears) the retained message of `msg.topic`.
pub async fn retain(ctx: &Ctx, msg: &Message) {
    transact(ctx, vec![retain_op(msg)]).await;
    let count = ctx.core.read(|t| t.retained_count());
    metrics::gauge!(m::RETAINED_MESSAGES).set(count as f64);
}

fn to_retained(msg: &Message) -> RetainedMessage {
    let now = now_ms();
    let p = &msg.properties;
    RetainedMessage {
        topic: msg.topic.clone(),
        payload: msg.payload.clone(),
        qos: msg.qos as u32,
        payload_format_indicator: p.payload_format_indicator.map(u32::from),
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: crate::message::user_properties_to_wire(p),
        expires_at_ms: msg
            .expires_at
            .map(|t| now + t.saturating_duration_since(Instant::now()).as_millis() as u64),
        published_at_ms: now,
    }
}

/// One chunk of the retained messages matching `filter` (expired ones skipped), as routable
/// messages appended to `out`: those after `from` (from the first when `None`), up to
/// `budget`, under one short read of the replica. Returns the cursor to resume from, `None`
/// when the walk is complete (see `connection::replay`).
pub fn retained_chunk(
    ctx: &Ctx,
    filter: &str,
    from: Option<&RetainedCursor>,
    budget: ChunkBudget,
    out: &mut std::collections::VecDeque<Arc<Message>>,
) -> Option<RetainedCursor> {
    let now = now_ms();
    let now_i = Instant::now();
    ctx.core.read(|t| {
        t.retained_matching_chunk(filter, now, from, budget, |r| {
            out.push_back(Arc::new(from_retained(r, now, now_i)))
        })
    })
}

fn from_retained(r: &RetainedMessage, now_ms: u64, now: Instant) -> Message {
    let remaining = r.expires_at_ms.map(|e| e.saturating_sub(now_ms));
    let properties = Properties {
        payload_format_indicator: r.payload_format_indicator.map(|v| v as u8),
        message_expiry_interval: remaining.map(|ms| ms.div_ceil(1000).max(1) as u32),
        content_type: r.content_type.clone(),
        response_topic: r.response_topic.clone(),
        correlation_data: r.correlation_data.clone(),
        user_properties: crate::message::user_properties_from_wire(&r.user_properties),
        ..Properties::default()
    };
    let qos = QoS::from_u8(r.qos as u8).unwrap_or(QoS::AtMostOnce);
    let mut msg = Message::new(
        now,
        r.topic.clone(),
        r.payload.clone(),
        qos,
        true,
        properties,
    );
    if let Some(ms) = remaining {
        msg.expires_at = Some(now + Duration::from_millis(ms));
    }
    msg
}
