//! The message path after a PUBLISH is accepted: retained update (a table transaction),
//! matching against local subscriptions, pushing into each target session's mailbox, then
//! forwarding once to each other replicant with a matching route.
//! Used for client publishes, wills and `$SYS` alike.

use std::sync::Arc;

use meshmq_shared::metrics as m;

use crate::broker::Ctx;
use crate::cluster;
use crate::mailbox::{Mailbox, PushOutcome};
use crate::message::Message;

/// Publishes `msg`; returns a congested subscriber mailbox, if any, so a publishing
/// connection can apply back-pressure.
pub async fn publish(ctx: &Arc<Ctx>, msg: Arc<Message>) -> Option<Arc<Mailbox>> {
    if msg.retain {
        cluster::retain(ctx, &msg).await;
    }
    let congested = route(ctx, &msg);
    crate::forward::to_peers(ctx, &msg);
    congested
}

/// Delivers `msg` to the local sessions whose subscriptions match (messages from peers come
/// straight here: they are never forwarded again).
pub fn route(ctx: &Ctx, msg: &Arc<Message>) -> Option<Arc<Mailbox>> {
    let mut targets = Vec::new();
    ctx.router.route(msg, &mut targets);
    if targets.is_empty() {
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "no_subscribers").increment(1);
        return None;
    }
    let mut congested = None;
    for (mailbox, delivery) in targets {
        if mailbox.push(delivery) == PushOutcome::Congested && congested.is_none() {
            congested = Some(mailbox);
        }
    }
    congested
}
