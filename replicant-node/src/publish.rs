//! The message path after a PUBLISH is accepted: retained update (a table transaction),
//! matching against local subscriptions, pushing into each target session's mailbox, then
//! forwarding once to each other replicant with a matching route.
//! Used for client publishes, wills and `$SYS` alike.

use std::sync::Arc;

use meshmq_shared::metrics as m;

use crate::cluster;
use crate::ctx::Ctx;
use crate::mailbox::Mailbox;
use crate::message::Message;
use crate::peer::Congested;

/// What a publisher should wait for before reading on.
pub enum Backpressure {
    /// A subscriber queue past its high-water mark.
    Mailbox(Arc<Mailbox>),
    /// A peer link's queue past half its capacity.
    Peer(Congested),
}

/// Publishes `msg`; returns what was found congested (a subscriber mailbox or a peer link),
/// if anything, so a publishing connection can apply back-pressure. A message that matched
/// nobody here and went to no other node is counted as dropped (`no_subscribers`).
pub async fn publish(ctx: &Arc<Ctx>, msg: Arc<Message>) -> Option<Backpressure> {
    if msg.retain {
        // Boxed: a table transaction is a large future, and this one sits inside every
        // publishing connection's task.
        Box::pin(cluster::retain(ctx, &msg)).await;
    }
    deliver(ctx, msg)
}

/// [`publish`] without storing a retained message (its RETAIN flag still goes to
/// subscribers that asked for Retain As Published): for a retained PUBLISH refused by the
/// retained quota whose client cannot be told (QoS 0, MQTT 3.1.1).
pub fn deliver(ctx: &Arc<Ctx>, msg: Arc<Message>) -> Option<Backpressure> {
    deliver_reach(ctx, msg).0
}

/// [`deliver`], also telling whether the message matched a local subscriber or went to
/// another node (the REST API's publish answers "no matching subscribers" otherwise).
pub fn deliver_reach(ctx: &Arc<Ctx>, msg: Arc<Message>) -> (Option<Backpressure>, bool) {
    let mut targets = Vec::new();
    let (mut remote, mut peer) = (0, None);
    if ctx.cluster.peers.is_some() {
        // Shared groups are picked cluster-wide by the publishing node.
        ctx.local.router.route_plain(&msg, &mut targets);
        (remote, peer) = crate::shared_pick::pick(ctx, &msg, &mut targets);
    } else {
        ctx.local.router.route(&msg, &mut targets);
    }
    let local = push(targets);
    let (forwarded, congested) = crate::forward::to_peers(ctx, &msg);
    remote += forwarded;
    let reached = local.matched || remote > 0;
    if !reached {
        count_unmatched();
    }
    let backpressure = local
        .congested
        .map(Backpressure::Mailbox)
        .or(congested.or(peer).map(Backpressure::Peer));
    (backpressure, reached)
}

/// What local delivery did.
pub struct Local {
    /// At least one local session matched.
    pub matched: bool,
    /// A subscriber queue found congested (publisher back-pressure).
    pub congested: Option<Arc<Mailbox>>,
}

/// Counts a message that reached no subscriber anywhere.
pub fn count_unmatched() {
    metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "no_subscribers").increment(1);
}

/// Delivers a message forwarded by a peer to the local plain subscribers whose
/// subscriptions match (it is never forwarded again; shared members were picked by the
/// publishing node). Counts nothing: the caller knows whether it was expected here.
pub fn route(ctx: &Ctx, msg: &Arc<Message>) -> Local {
    let mut targets = Vec::new();
    ctx.local.router.route_plain(msg, &mut targets);
    push(targets)
}

/// Pushes each delivery into its mailbox.
pub fn push(targets: Vec<crate::router::Target>) -> Local {
    let matched = !targets.is_empty();
    let mut congested = None;
    for (mailbox, delivery) in targets {
        if mailbox.push(delivery).is_congested() && congested.is_none() {
            congested = Some(mailbox);
        }
    }
    Local { matched, congested }
}
