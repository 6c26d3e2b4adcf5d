//! The replicant's side of the cluster tables: builds table operations, commits them through
//! the core holder (the embedded core in standalone mode) and reads the replica.
//!
//! Every protobuf op the replicant writes is built here, so the rest of the node speaks in
//! MQTT terms. A failed transaction is logged and counted, never a panic: the local router
//! stays the source of truth for delivery on this node.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use core_node::api::TransactError;
use meshmq_proto::tables::{
    NodeRole, NodeUp, Op, PreviousOwner, RegistryClaim, RegistryDisconnect, RegistryRemove,
    RejectReason, RetainedDelete, RetainedMessage, RetainedSet, RouteAdd, RouteRemove, SharedAdd,
    SharedRemove, SubOptions, SubscriptionRemove, SubscriptionSet, op, op_result,
};
use meshmq_shared::codec::{Properties, ProtocolVersion, QoS};
use meshmq_shared::config::MqttConfig;
use meshmq_shared::metrics as m;
use meshmq_shared::tables::retained_quota::RetainedQuota;
use meshmq_shared::tables::{ChunkBudget, RetainedCursor};
use tracing::{debug, warn};

use crate::ctx::{Ctx, TableState};
use crate::message::Message;
use crate::session::SubOpts;

/// Wall-clock milliseconds since the Unix epoch (table timestamps).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An op of `kind`.
pub fn op(kind: op::Kind) -> Op {
    Op { kind: Some(kind) }
}

/// Commits `ops` as one entry; failures are logged and counted (the caller sees an empty
/// result). For callers that must tell a client what happened, see [`try_transact`].
pub async fn transact(tables: &TableState, ops: Vec<Op>) -> Vec<op_result::Outcome> {
    try_transact(tables, ops).await.unwrap_or_default()
}

/// Commits `ops` in as many entries as it takes (at most `MAX_OPS_PER_ENTRY` ops and
/// `MAX_ENTRY_BYTES` bytes each, in order; see `core_node::api::split_entries`); failures are
/// logged and counted. For bookkeeping that may exceed one entry (a session with more shared
/// memberships than one entry takes).
pub async fn transact_chunked(tables: &TableState, ops: Vec<Op>) {
    for run in core_node::api::split_entries(ops) {
        transact(tables, run).await;
    }
}

/// Commits `ops` as one entry and returns one outcome per op, or why it did not commit
/// ([`TransactError::Timeout`]: the outcome is unknown, it may still commit). Failures are
/// logged and counted.
pub async fn try_transact(
    tables: &TableState,
    ops: Vec<Op>,
) -> Result<Vec<op_result::Outcome>, TransactError> {
    if ops.is_empty() {
        return Ok(Vec::new());
    }
    let n = ops.len();
    let started = Instant::now();
    let result = tables.core.transact(ops).await;
    metrics::histogram!(m::TABLE_TRANSACTION_SECONDS).record(started.elapsed().as_secs_f64());
    match result {
        Ok(committed) => {
            metrics::counter!(m::TABLE_TRANSACTIONS_TOTAL, "result" => "ok").increment(1);
            let outcomes: Vec<_> = committed
                .results
                .into_iter()
                .filter_map(|r| r.outcome)
                .collect();
            if outcomes.len() == n {
                Ok(outcomes)
            } else {
                // Only a core that broke the protocol answers fewer outcomes than ops.
                Err(TransactError::Rejected(format!(
                    "{} outcomes for {n} ops",
                    outcomes.len()
                )))
            }
        }
        Err(e) => {
            metrics::counter!(m::TABLE_TRANSACTIONS_TOTAL, "result" => "error").increment(1);
            warn!(error = %e, "table transaction failed");
            Err(e)
        }
    }
}

/// Waits (at most [`BARRIER_TIMEOUT`]) until every other connected replicant has applied
/// this node's replica index, so that a route this node just committed is known wherever a
/// client may publish next (invariant 1: SUBACK, then publish anywhere). A node that does not
/// answer in time is logged and counted; the caller goes on (availability first).
pub async fn barrier(ctx: &Ctx) {
    let Some(peers) = &ctx.cluster.peers else {
        return;
    };
    let index = ctx.tables.core.applied_index();
    let report = peers.barrier(index, BARRIER_TIMEOUT).await;
    if !report.missing.is_empty() {
        warn!(index, missing = ?report.missing, "replicants did not confirm the route in time");
    }
}

/// Waits (bounded by `cluster.transact_timeout_ms`) until every route decision this node's
/// router made so far is committed by the route writer and applied here
/// (`crate::route_writer`). False, logged and counted when that did not happen in time: a
/// caller must then not claim the route exists (SUBACK fails the filters instead).
pub async fn routes_committed(ctx: &Ctx) -> bool {
    let seq = ctx.local.router.decided_seq();
    let ok = ctx.tables.route_writer.wait(seq).await;
    if !ok {
        metrics::counter!(m::ROUTE_WAIT_TIMEOUTS_TOTAL).increment(1);
        warn!(seq, "route decisions not committed in time");
    }
    ok
}

/// The longest a SUBACK waits for the other replicants to confirm a route.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(2);

/// Announces this node in the `nodes` table (a new incarnation per start).
pub async fn announce_node(ctx: &Ctx) {
    let up = NodeUp {
        node: ctx.node().to_owned(),
        addr: ctx.config.listeners.mqtt_bind.to_string(),
        role: NodeRole::Replicant as i32,
        incarnation: ctx.tables.incarnation,
        peer_addr: ctx
            .cluster
            .peers
            .as_ref()
            .map(|p| p.local_addr().to_string())
            .unwrap_or_default(),
        wire: Some(ctx.tables.core.link().wire_version().to_proto()),
    };
    transact(&ctx.tables, vec![op(op::Kind::NodeUp(up))]).await;
}

/// What a committed `RegistryClaim` told this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// The new registry generation (never 0: a claim that did not commit is no `Claim`).
    pub generation: u64,
    /// The registry row before this claim, if there was one (the node to take over from).
    pub previous: Option<PreviousOwner>,
    /// Session state existed cluster-wide (connected, or disconnected and not expired, or
    /// orphaned `subscriptions` rows).
    pub session_existed: bool,
}

/// Claims `client_id` for this node; returns the new generation and what existed before,
/// or `None` when the claim did not commit (core unreachable, timeout: the caller must
/// not act as the client id's owner).
///
/// When the outcome is unknown (a timeout: the claim may still commit), the claim is
/// watched (`crate::unknown_claims`) so that a row it leaves behind is closed again.
pub async fn claim(
    tables: &TableState,
    client_id: &str,
    clean_start: bool,
    expiry: u32,
    version: ProtocolVersion,
) -> Option<Claim> {
    let claim = claim_op(tables, client_id, clean_start, expiry, version);
    commit_claim(tables, claim).await.ok()
}

/// Why a claim gave no [`Claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefused {
    /// The client's row no longer matched what the claim expected (applied by no node,
    /// nothing changed): for an adoption, the normal outcome when its client came back.
    Conflict,
    /// The claim did not commit, or was refused for another reason (logged and counted).
    NotCommitted,
}

/// Claims `client_id` for this node only while `from` holds its session disconnected, a
/// condition apply decides on the cores in the claim's own log position (adoption from an
/// evacuating node: a client that reconnected meanwhile, to `from` or anywhere, is never
/// taken over). Unknown outcomes are watched as in [`claim`].
pub async fn claim_held_offline_by(
    tables: &TableState,
    client_id: &str,
    from: &str,
    expiry: u32,
    version: ProtocolVersion,
) -> Result<Claim, ClaimRefused> {
    let mut claim = claim_op(tables, client_id, false, expiry, version);
    claim.expect_node = from.to_owned();
    claim.expect_disconnected = true;
    commit_claim(tables, claim).await
}

/// An unconditional `RegistryClaim` of `client_id` by this node, stamped now.
fn claim_op(
    tables: &TableState,
    client_id: &str,
    clean_start: bool,
    expiry: u32,
    version: ProtocolVersion,
) -> RegistryClaim {
    RegistryClaim {
        client_id: client_id.to_owned(),
        node: tables.node.to_string(),
        incarnation: tables.incarnation,
        clean_start,
        session_expiry_secs: expiry,
        protocol_level: u32::from(version.level()),
        now_ms: now_ms(),
        expect_node: String::new(),
        expect_disconnected: false,
    }
}

/// Commits `claim`; a timeout has the claim watched (`crate::unknown_claims`). A refusal
/// of its expectation is a [`ClaimRefused::Conflict`], logged at debug only; every other
/// failure is logged and counted.
async fn commit_claim(tables: &TableState, claim: RegistryClaim) -> Result<Claim, ClaimRefused> {
    let (at_ms, expiry) = (claim.now_ms, claim.session_expiry_secs);
    let client_id = claim.client_id.clone();
    let conditional = !claim.expect_node.is_empty();
    let results = try_transact(tables, vec![op(op::Kind::RegistryClaim(claim))]).await;
    let outcome = match results {
        Ok(outcomes) => outcomes.into_iter().next(),
        Err(TransactError::Timeout) => {
            tables.unknown_claims.watch(&client_id, at_ms, expiry);
            None
        }
        Err(_) => None,
    };
    match outcome {
        Some(op_result::Outcome::Claimed(c)) if c.generation > 0 => Ok(Claim {
            generation: c.generation,
            previous: c.previous,
            session_existed: c.session_existed,
        }),
        Some(op_result::Outcome::Rejected(r))
            if conditional && r.reason == RejectReason::StateConflict as i32 =>
        {
            debug!(%client_id, detail = %r.detail, "conditional registry claim refused");
            Err(ClaimRefused::Conflict)
        }
        other => {
            metrics::counter!(m::REGISTRY_CLAIMS_FAILED_TOTAL).increment(1);
            warn!(%client_id, outcome = ?other, "registry claim not committed");
            Err(ClaimRefused::NotCommitted)
        }
    }
}

/// Records that the connection of `generation` closed; the session stays `expiry` seconds.
pub async fn disconnected(tables: &TableState, client_id: &str, generation: u64, expiry: u32) {
    let d = RegistryDisconnect {
        client_id: client_id.to_owned(),
        generation,
        session_expiry_secs: expiry,
        now_ms: now_ms(),
    };
    transact(tables, vec![op(op::Kind::RegistryDisconnect(d))]).await;
}

/// Removes the registry row (and persistent subscriptions) of an ended session.
pub fn registry_remove(client_id: &str, generation: u64) -> Op {
    op(op::Kind::RegistryRemove(RegistryRemove {
        client_id: client_id.to_owned(),
        generation,
    }))
}

/// This node now has a local subscriber to `filter` (`seq`: the router's decision order).
pub fn route_add(node: &str, filter: &str, seq: u64) -> Op {
    op(op::Kind::RouteAdd(RouteAdd {
        filter: filter.to_owned(),
        node: node.to_owned(),
        seq,
    }))
}

/// This node no longer has a local subscriber to `filter` (`seq` as for [`route_add`]).
pub fn route_remove(node: &str, filter: &str, seq: u64) -> Op {
    op(op::Kind::RouteRemove(RouteRemove {
        filter: filter.to_owned(),
        node: node.to_owned(),
        seq,
    }))
}

/// `client_id` on this node joins a shared group.
pub fn shared_add(node: &str, group: &str, filter: &str, client_id: &str) -> Op {
    op(op::Kind::SharedAdd(SharedAdd {
        group: group.to_owned(),
        filter: filter.to_owned(),
        client_id: client_id.to_owned(),
        node: node.to_owned(),
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

/// The limits a retained write carries (see `RetainedSet` in `tables.proto`): every node
/// applies them, whatever its own configuration. 0: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetainLimits {
    /// `mqtt.max_retained_messages`.
    pub max_messages: u64,
    /// `mqtt.max_retained_bytes`.
    pub max_bytes: u64,
}

impl RetainLimits {
    /// No limit: the broker's own `$SYS` messages (a few per node, replaced in place).
    pub const NONE: RetainLimits = RetainLimits {
        max_messages: 0,
        max_bytes: 0,
    };

    /// The limits of this node's `[mqtt]` section.
    pub fn of(c: &MqttConfig) -> RetainLimits {
        RetainLimits {
            max_messages: c.max_retained_messages,
            max_bytes: c.max_retained_bytes,
        }
    }
}

/// The op that stores (or with an empty payload, clears) the retained message of
/// `msg.topic`, under `limits`.
pub fn retain_op(msg: &Message, limits: RetainLimits) -> Op {
    if msg.payload.is_empty() {
        op(op::Kind::RetainedDelete(RetainedDelete {
            topic: msg.topic.clone(),
        }))
    } else {
        op(op::Kind::RetainedSet(RetainedSet {
            message: Some(to_retained(msg)),
            max_messages: limits.max_messages,
            max_bytes: limits.max_bytes,
        }))
    }
}

/// Whether a retained message of `bytes` bytes ([`crate::message::counted_bytes`]) on
/// `topic` fits this node's retained limits in the local replica now. The decision the
/// tables make when the write applies, taken early so that the client can be answered;
/// a write of another node committed in between can still make the apply refuse it.
pub fn retained_fits(ctx: &Ctx, topic: &str, bytes: usize) -> Result<(), RetainedQuota> {
    let l = RetainLimits::of(&ctx.runtime.current().config.mqtt);
    ctx.tables
        .core
        .read(|t| t.retained_fits(topic, bytes as u64, l.max_messages, l.max_bytes))
}

/// Counts a retained message refused for `quota`.
pub fn count_retained_refused(quota: RetainedQuota) {
    metrics::counter!(m::QUOTA_EXCEEDED_TOTAL, "quota" => quota.label()).increment(1);
}

/// Stores (or with an empty payload, clears) the retained message of `msg.topic` under this
/// node's retained limits. A write the tables refuse for a quota is counted (by the quota
/// the replica now sees exceeded) and returns false.
pub async fn retain(ctx: &Ctx, msg: &Message) -> bool {
    let limits = RetainLimits::of(&ctx.runtime.current().config.mqtt);
    let outcomes = transact(&ctx.tables, vec![retain_op(msg, limits)]).await;
    let refused = matches!(
        outcomes.first(),
        Some(op_result::Outcome::Rejected(r)) if r.reason == RejectReason::QuotaExceeded as i32
    );
    if refused {
        let quota = retained_fits(ctx, &msg.topic, msg.size())
            .err()
            .unwrap_or(RetainedQuota::Bytes);
        count_retained_refused(quota);
    }
    let (count, bytes) = ctx
        .tables
        .core
        .read(|t| (t.retained_count(), t.retained_bytes()));
    metrics::gauge!(m::RETAINED_MESSAGES).set(count as f64);
    metrics::gauge!(m::RETAINED_BYTES).set(bytes as f64);
    !refused
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
    ctx.tables.core.read(|t| {
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use meshmq_shared::tables::retained_quota::message_bytes;

    use super::*;

    /// The retained quota and the session queues count a message the same way: a message
    /// that fits a replicant's check fits the apply.
    #[test]
    fn a_retained_message_counts_what_a_queued_one_does() {
        let properties = Properties {
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/to".into()),
            correlation_data: Some(Bytes::from_static(b"cid")),
            user_properties: vec![("k".into(), "value".into())],
            payload_format_indicator: Some(1),
            ..Properties::default()
        };
        let msg = Message::new(
            Instant::now(),
            "a/b".into(),
            Bytes::from_static(b"payload"),
            QoS::AtLeastOnce,
            true,
            properties,
        );
        assert_eq!(msg.size(), 3 + 7 + 10 + 8 + 3 + 6);
        assert_eq!(message_bytes(&to_retained(&msg)), msg.size() as u64);
    }
}
