//! The part of SUBSCRIBE that does not depend on who asked: checking a filter against the
//! node's rules, the subscription quota, applying accepted filters to a session and its
//! router entries, committing their table rows and undoing what the tables did not take.
//! A client's SUBSCRIBE (`super::subscribe`) and a subscription made on a client's behalf
//! through the REST API (`crate::api`) both go through here, so the two cannot drift.
//!
//! Order and guarantees are those of `super::subscribe`'s module doc (steps 2 to 4): filters
//! enter the session and the router under the slot lock; their rows commit while this
//! node's route decisions commit; then the other replicants confirm (the peer barrier). A
//! filter whose rows or route did not commit is rolled back on this node, and rows of
//! unknown outcome are taken back. It never decides authorization (the caller does) and
//! never answers anyone.

use meshmq_proto::tables::Op;
use meshmq_shared::codec::ReasonCode;
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{self, SubscriptionFilter};
use tracing::warn;

use super::table_writes::commit_in_chunks;
use crate::cluster;
use crate::ctx::Ctx;
use crate::session::SubOpts;
use crate::sessions::{ConnId, Leaving, SessionId, SessionSlot};

/// A filter applied on this node, waiting for its table rows.
pub(crate) struct Applied {
    /// Position of the filter in the request (its SUBACK reason).
    pub(crate) index: usize,
    /// The filter, `$share/{group}/` included.
    pub(crate) filter: String,
    /// Its options.
    pub(crate) opts: SubOpts,
    /// The session's options for this filter before (a re-subscription replaces them).
    pub(crate) old: Option<SubOpts>,
    /// A shared subscription.
    pub(crate) shared: bool,
    /// The table ops this filter needs (`shared`, `subscriptions` rows).
    ops: Vec<Op>,
}

/// Why a filter was not accepted.
pub(crate) enum FilterVerdict {
    /// Refuse this filter with a SUBACK failure code.
    Refuse(ReasonCode),
    /// Close the connection (protocol error).
    Close(ReasonCode),
}

/// Checks one filter against the node's rules (syntax, shared and wildcard subscriptions
/// enabled, No Local on a shared subscription in 5.0); authorization is the caller's.
pub(crate) fn check_rules<'f>(
    ctx: &Ctx,
    filter: &'f str,
    opts: &SubOpts,
    v5: bool,
) -> Result<(SubscriptionFilter<'f>, &'f str), FilterVerdict> {
    let cfg = &ctx.config.mqtt;
    let parsed = topic::parse_subscription(filter)
        .map_err(|_| FilterVerdict::Refuse(ReasonCode::TopicFilterInvalid))?;
    let inner = match parsed {
        SubscriptionFilter::Plain(f) => f,
        SubscriptionFilter::Shared { filter: f, .. } => {
            if !cfg.shared_subscription {
                return Err(FilterVerdict::Refuse(
                    ReasonCode::SharedSubscriptionsNotSupported,
                ));
            }
            if opts.no_local && v5 {
                // MQTT 5.0 3.8.3.1: No Local on a shared subscription is a Protocol Error.
                return Err(FilterVerdict::Close(ReasonCode::ProtocolError));
            }
            f
        }
    };
    if topic::validate_topic_filter(inner).is_err() {
        return Err(FilterVerdict::Refuse(ReasonCode::TopicFilterInvalid));
    }
    if topic::is_wildcard(inner) && !cfg.wildcard_subscription {
        return Err(FilterVerdict::Refuse(
            ReasonCode::WildcardSubscriptionsNotSupported,
        ));
    }
    Ok((parsed, inner))
}

/// Applies `valid` filters (request position, filter, options) to `slot`'s session and the
/// local router, all under the slot lock (a takeover sees all of them or none). With
/// `owner`, only while that connection owns the session; without, while the session lives
/// here (not ended, not leaving). `None` when that does not hold (nothing applied).
pub(crate) fn apply(
    ctx: &Ctx,
    slot: &SessionSlot,
    owner: Option<ConnId>,
    valid: Vec<(usize, &str, SubOpts)>,
) -> Option<Vec<Applied>> {
    let mut inner = slot.inner.lock();
    let here = match owner {
        Some(id) => inner.owner == Some(id),
        None => !inner.ended && inner.leaving == Leaving::No,
    };
    if !here {
        return None;
    }
    let persistent = inner.expiry_secs > 0;
    let mut applied = Vec::with_capacity(valid.len());
    for (index, filter, opts) in valid {
        let Ok(parsed) = topic::parse_subscription(filter) else {
            continue; // validated by the caller
        };
        let old = inner.session.subscriptions.get(filter).copied();
        inner.session.subscribe(filter, opts);
        let mut ops = Vec::new();
        let shared = install(ctx, slot.id, &slot.client_id, &parsed, old, opts, &mut ops);
        if persistent {
            ops.push(cluster::subscription_set(&slot.client_id, filter, &opts));
        }
        applied.push(Applied {
            index,
            filter: filter.to_owned(),
            opts,
            old,
            shared,
            ops,
        });
    }
    Some(applied)
}

/// Commits the rows of `applied` while this node's route decisions commit, then waits for
/// the other replicants (every request waits for the route decisions, even one that added
/// no route: another local subscriber's route may be on its way). Returns the filters that
/// hold and the request positions of those rolled back.
pub(crate) async fn commit(
    ctx: &Ctx,
    slot: &SessionSlot,
    applied: Vec<Applied>,
) -> (Vec<Applied>, Vec<usize>) {
    let mut applied = applied;
    let (mut failed, routes_ok) = tokio::join!(
        commit_rows(ctx, slot, &mut applied),
        cluster::routes_committed(ctx)
    );
    if !routes_ok {
        let (plain, rest): (Vec<_>, Vec<_>) = applied.into_iter().partition(|a| !a.shared);
        applied = rest;
        fail(ctx, slot, plain, "route_commit", &mut failed).await;
    }
    cluster::barrier(ctx).await;
    metrics::gauge!(m::SUBSCRIPTIONS).set(ctx.local.router.subscription_count() as f64);
    (applied, failed)
}

/// Commits the table rows of `applied` (see `table_writes`). Filters whose rows did not
/// commit are rolled back (and, when the outcome is unknown, the rows they may have
/// written are taken back) and removed from `applied`; returns their positions.
async fn commit_rows(ctx: &Ctx, slot: &SessionSlot, applied: &mut Vec<Applied>) -> Vec<usize> {
    let items = std::mem::take(applied);
    let written = commit_in_chunks(ctx, items, |a| &a.ops).await;
    *applied = written.ok;
    let mut failed = Vec::new();
    if !written.unknown.is_empty() {
        compensate(ctx, slot, &written.unknown).await;
    }
    let mut bad = written.failed;
    bad.extend(written.unknown);
    fail(ctx, slot, bad, "table_write", &mut failed).await;
    failed
}

/// Rolls `filters` back on this node, counts them under `reason` and records their
/// positions in `failed`.
async fn fail(
    ctx: &Ctx,
    slot: &SessionSlot,
    filters: Vec<Applied>,
    reason: &'static str,
    failed: &mut Vec<usize>,
) {
    if filters.is_empty() {
        return;
    }
    metrics::counter!(m::SUBSCRIBE_FAILURES_TOTAL, "reason" => reason)
        .increment(filters.len() as u64);
    warn!(client_id = %slot.client_id, filters = filters.len(), reason, "subscription not taken by the cluster tables; refused");
    if reason == "route_commit" {
        // The rows of these filters committed: take them back.
        compensate(ctx, slot, &filters).await;
    }
    // Last applied first: a filter given twice in one request gets back what it had.
    let mut filters = filters;
    filters.sort_unstable_by_key(|a| std::cmp::Reverse(a.index));
    for a in filters {
        rollback(ctx, slot, &a);
        failed.push(a.index);
    }
}

/// Undoes a filter on this node: the session and the router hold what they held before.
/// Done under the slot lock whoever owns the session now (a takeover on this node keeps
/// the session, and must not keep a filter the tables do not hold); nothing to do once
/// the session ended (its end removed every router entry of its subscriptions).
fn rollback(ctx: &Ctx, slot: &SessionSlot, a: &Applied) {
    let sid = slot.id;
    let router = &ctx.local.router;
    let mut inner = slot.inner.lock();
    if inner.ended {
        return;
    }
    match a.old {
        Some(old) => {
            inner.session.subscribe(&a.filter, old);
        }
        None => {
            inner.session.unsubscribe(&a.filter);
        }
    }
    match topic::parse_subscription(&a.filter) {
        Ok(SubscriptionFilter::Plain(f)) => {
            router.unsubscribe(sid, f, a.opts);
            if let Some(old) = a.old {
                router.subscribe(sid, f, old);
            }
        }
        Ok(SubscriptionFilter::Shared { group, filter }) => match a.old {
            Some(old) => router.subscribe_shared(sid, group, filter, old),
            None => {
                router.unsubscribe_shared(sid, group, filter);
            }
        },
        Err(_) => {}
    }
}

/// Removes (or restores) the rows that `filters`' ops may have written; logged when that
/// too cannot commit.
async fn compensate(ctx: &Ctx, slot: &SessionSlot, filters: &[Applied]) {
    let (persistent, generation) = {
        let inner = slot.inner.lock();
        (inner.expiry_secs > 0, inner.generation)
    };
    let client_id = &slot.client_id;
    let mut ops = Vec::new();
    for a in filters {
        if persistent {
            ops.push(match a.old {
                Some(old) => cluster::subscription_set(client_id, &a.filter, &old),
                None => cluster::subscription_remove(client_id, &a.filter),
            });
        }
        if let (Ok(SubscriptionFilter::Shared { group, filter }), None) =
            (topic::parse_subscription(&a.filter), a.old)
        {
            ops.push(cluster::shared_remove(group, filter, client_id, generation));
        }
    }
    if cluster::try_transact(&ctx.tables, ops).await.is_err() {
        warn!(client_id = %client_id, "rows of refused subscriptions could not be removed");
    }
}

/// Puts a subscription of session `sid` in the router (replacing an earlier one of the same
/// filter with other options; the router queues the `routes` decision for the route writer)
/// and adds the `shared` operation it needs for this node. Returns true for a shared
/// subscription.
///
/// The caller has already put it in the session's subscription map, and writes the
/// `subscriptions` row itself if it must (SUBSCRIBE of a persistent session; never when a
/// session is restored from those rows).
pub(crate) fn install(
    ctx: &Ctx,
    sid: SessionId,
    client_id: &str,
    parsed: &SubscriptionFilter<'_>,
    old: Option<SubOpts>,
    opts: SubOpts,
    ops: &mut Vec<Op>,
) -> bool {
    match *parsed {
        SubscriptionFilter::Plain(f) => {
            if let Some(old) = old {
                ctx.local.router.unsubscribe(sid, f, old);
            }
            // A first local subscriber queues a `RouteAdd` for the route writer.
            ctx.local.router.subscribe(sid, f, opts);
            false
        }
        SubscriptionFilter::Shared { group, filter } => {
            ctx.local.router.subscribe_shared(sid, group, filter, opts);
            ops.push(cluster::shared_add(ctx.node(), group, filter, client_id));
            true
        }
    }
}

/// `mqtt.max_subscriptions` for one request: the session's subscriptions when it began,
/// plus the filters of the request accepted so far that are new to the session.
pub(crate) struct SubscriptionQuota {
    /// The bound (0: no limit).
    max: usize,
    /// Subscriptions the session held when the request began.
    held: usize,
    /// Filters of this request new to the session (a filter repeated in the request, or
    /// already held, is a re-subscription and does not count again).
    new: hashbrown::HashSet<String>,
}

impl SubscriptionQuota {
    /// The quota of `slot`'s session now.
    pub(crate) fn of(ctx: &Ctx, slot: &SessionSlot) -> SubscriptionQuota {
        SubscriptionQuota {
            max: ctx.runtime.current().config.mqtt.max_subscriptions,
            held: slot.inner.lock().session.subscriptions.len(),
            new: hashbrown::HashSet::new(),
        }
    }

    /// Whether `filter` fits in `slot`'s session (and, when new, counts it).
    pub(crate) fn admits(&mut self, slot: &SessionSlot, filter: &str) -> bool {
        if self.max == 0 || self.new.contains(filter) {
            return true;
        }
        if slot.inner.lock().session.subscriptions.contains_key(filter) {
            return true;
        }
        if self.held + self.new.len() >= self.max {
            metrics::counter!(m::QUOTA_EXCEEDED_TOTAL, "quota" => "subscriptions").increment(1);
            return false;
        }
        self.new.insert(filter.to_owned());
        true
    }
}
