//! UNSUBSCRIBE: the session and router entries go at once (no delivery after the request is
//! read), then the `subscriptions` / `shared` rows, in transactions of at most
//! `MAX_OPS_PER_ENTRY` ops; UNSUBACK after they committed (and, when a shared membership was
//! removed, after the other replicants applied it, so none of them still picks this client).
//!
//! A filter whose rows could not be removed is put back on this node as it was (the tables
//! still hold it, and would restore it with the session) and answered 0x80 in a 5.0
//! UNSUBACK (3.1.1 has no per-filter codes); when the outcome is unknown (a timeout) its
//! rows are written again, so node and tables agree either way.
//!
//! [`unsubscribe`] does all of it but the answer: a client's UNSUBSCRIBE and an
//! unsubscription made on a client's behalf through the REST API go through it alike.

use meshmq_proto::tables::Op;
use meshmq_shared::codec::{Packet, Properties, ReasonCode, UnsubAck, Unsubscribe};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{self, SubscriptionFilter};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::table_writes::commit_in_chunks;
use super::{Conn, Exit};
use crate::cluster;
use crate::ctx::Ctx;
use crate::session::{Outgoing, SubOpts};
use crate::sessions::{ConnId, Leaving, SessionSlot};

/// A filter removed on this node, waiting for its table rows to go.
struct Removed {
    /// Position in the request (its UNSUBACK reason).
    index: usize,
    filter: String,
    opts: SubOpts,
    shared: bool,
    ops: Vec<Op>,
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Option<Exit> {
        for filter in &u.filters {
            self.trace(&crate::trace::Event::Unsubscribe { filter });
        }
        let Some(mut reasons) = unsubscribe(&self.ctx, &self.slot, Some(self.id), &u.filters).await
        else {
            return self.kicked();
        };
        if !self.version.is_v5() {
            reasons.clear();
        }
        let ack = UnsubAck {
            packet_id: u.packet_id,
            reasons,
            properties: Properties::default(),
        };
        self.out.push(Outgoing::Packet(Packet::UnsubAck(ack)));
        self.encode_out();
        None
    }
}

/// Removes `filters` from `slot`'s session (with `owner`, only while that connection owns
/// it; without, while the session lives here), then their rows; the reason of each filter
/// (0x00, 0x11 No subscription existed, 0x80 kept). `None` when the session is not (or no
/// longer) this owner's: nothing was removed.
pub(crate) async fn unsubscribe(
    ctx: &Ctx,
    slot: &SessionSlot,
    owner: Option<ConnId>,
    filters: &[String],
) -> Option<Vec<ReasonCode>> {
    let mut reasons = Vec::with_capacity(filters.len());
    let removed = remove_here(ctx, slot, owner, filters, &mut reasons)?;
    let left_shared = removed.iter().any(|r| r.shared);
    let written = commit_in_chunks(ctx, removed, |r| &r.ops).await;
    if !written.unknown.is_empty() {
        rewrite_rows(ctx, slot, &written.unknown).await;
    }
    let mut failed = written.failed;
    failed.extend(written.unknown);
    if !failed.is_empty() {
        metrics::counter!(m::UNSUBSCRIBE_FAILURES_TOTAL).increment(failed.len() as u64);
        warn!(client_id = %slot.client_id, filters = failed.len(), "unsubscription not taken by the cluster tables; kept");
    }
    failed.sort_unstable_by_key(|r| std::cmp::Reverse(r.index));
    for r in &failed {
        restore_filter(ctx, slot, r);
        reasons[r.index] = ReasonCode::UnspecifiedError;
    }
    if left_shared {
        // Publishers on other replicants pick shared members from their replicas: once
        // answered, none may still pick this client (its copy would be dropped).
        cluster::barrier(ctx).await;
    }
    metrics::gauge!(m::SUBSCRIPTIONS).set(ctx.local.router.subscription_count() as f64);
    Some(reasons)
}

/// Takes `filters` out of the session and the router under the slot lock; the rows to
/// remove. Pushes each filter's reason.
fn remove_here(
    ctx: &Ctx,
    slot: &SessionSlot,
    owner: Option<ConnId>,
    filters: &[String],
    reasons: &mut Vec<ReasonCode>,
) -> Option<Vec<Removed>> {
    let mut inner = slot.inner.lock();
    let here = match owner {
        Some(id) => inner.owner == Some(id),
        None => !inner.ended && inner.leaving == Leaving::No,
    };
    if !here {
        return None;
    }
    let persistent = inner.expiry_secs > 0;
    let generation = inner.generation;
    let mut removed = Vec::new();
    for (index, filter) in filters.iter().enumerate() {
        let Some(opts) = inner.session.unsubscribe(filter) else {
            reasons.push(ReasonCode::NoSubscriptionExisted);
            continue;
        };
        reasons.push(ReasonCode::Success);
        let mut ops = Vec::new();
        let mut shared = false;
        match topic::parse_subscription(filter) {
            Ok(SubscriptionFilter::Plain(f)) => {
                // The last local subscriber queues a `RouteRemove` (route writer).
                ctx.local.router.unsubscribe(slot.id, f, opts);
            }
            Ok(SubscriptionFilter::Shared { group, filter: f }) => {
                ctx.local.router.unsubscribe_shared(slot.id, group, f);
                ops.push(cluster::shared_remove(
                    group,
                    f,
                    &slot.client_id,
                    generation,
                ));
                shared = true;
            }
            Err(_) => {}
        }
        if persistent {
            ops.push(cluster::subscription_remove(&slot.client_id, filter));
        }
        removed.push(Removed {
            index,
            filter: filter.clone(),
            opts,
            shared,
            ops,
        });
    }
    Some(removed)
}

/// Puts a filter whose removal did not commit back on this node (session and router),
/// unless the session ended meanwhile.
fn restore_filter(ctx: &Ctx, slot: &SessionSlot, r: &Removed) {
    let mut inner = slot.inner.lock();
    if inner.ended || inner.session.subscriptions.contains_key(&r.filter) {
        return; // ended, or subscribed again on a takeover: leave it as it is
    }
    inner.session.subscribe(&r.filter, r.opts);
    let mut ops = Vec::new();
    if let Ok(parsed) = topic::parse_subscription(&r.filter) {
        super::sub_apply::install(
            ctx,
            slot.id,
            &slot.client_id,
            &parsed,
            None,
            r.opts,
            &mut ops,
        );
    }
}

/// Writes again the rows of filters whose removal has an unknown outcome (they are kept).
async fn rewrite_rows(ctx: &Ctx, slot: &SessionSlot, filters: &[Removed]) {
    let persistent = slot.inner.lock().expiry_secs > 0;
    let mut ops = Vec::new();
    for r in filters {
        if let Ok(SubscriptionFilter::Shared { group, filter }) =
            topic::parse_subscription(&r.filter)
        {
            ops.push(cluster::shared_add(
                ctx.node(),
                group,
                filter,
                &slot.client_id,
            ));
        }
        if persistent {
            ops.push(cluster::subscription_set(
                &slot.client_id,
                &r.filter,
                &r.opts,
            ));
        }
    }
    if cluster::try_transact(&ctx.tables, ops).await.is_err() {
        warn!(client_id = %slot.client_id, "rows of kept subscriptions could not be written again");
    }
}
