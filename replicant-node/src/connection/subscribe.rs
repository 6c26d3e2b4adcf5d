//! SUBSCRIBE: per-filter validation and authorization, the local router entry, the table
//! writes, the acknowledgement, then retained messages by Retain Handling.
//!
//! Order of work, and why:
//! 1. Every filter is validated first: a protocol error (No Local on a shared subscription)
//!    closes the connection before anything is applied, so no filter is left behind. A
//!    filter new to the session past `mqtt.max_subscriptions` is refused here (0x97 Quota
//!    exceeded; 0x80 in 3.1.1) and counted; a re-subscription never counts twice.
//! 2. Accepted filters enter the session and the local router at once: a message published
//!    on this node from then on reaches the subscriber, even before the SUBACK (MQTT 5.0
//!    3.8.4 allows that).
//! 3. Their table rows (`shared`, and `subscriptions` for a persistent session) are committed
//!    in transactions of at most `MAX_OPS_PER_ENTRY` ops; this node's route decisions are
//!    committed by the route writer; then the other replicants confirm they applied it all
//!    (the peer barrier). SUBACK follows: a message published on any replicant after the
//!    client saw the SUBACK reaches it (docs/architecture.md, invariant 1).
//! 4. A filter whose table write failed or whose route was not committed in time is rolled
//!    back on this node (session and router as before it) and answered with 0x80: a SUBACK
//!    never grants what the tables do not hold. When the write's outcome is unknown (a
//!    timeout: it may still commit) the rows it may have written are removed again.
//!
//! [`install`] (router entry plus `shared` op) is also the path by which `restore`
//! rebuilds a persistent session from the `subscriptions` table.

use meshmq_proto::tables::Op;
use meshmq_shared::codec::{Packet, Properties, ReasonCode, SubAck, Subscribe};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{self, SubscriptionFilter};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::table_writes::commit_in_chunks;
use super::{Conn, Exit};
use crate::cluster;
use crate::ctx::Ctx;
use crate::session::{Outgoing, SubOpts};
use crate::sessions::{SessionId, SessionSlot};
use meshmq_shared::auth::acl::Request;
use meshmq_shared::config::DenyAction;

/// A filter accepted for subscription, with what retained replay needs afterwards.
struct Accepted {
    filter: String,
    opts: SubOpts,
    is_new: bool,
    shared: bool,
}

/// A filter applied on this node, waiting for its table rows.
struct Applied {
    /// Position of the filter in the SUBSCRIBE (its SUBACK reason).
    index: usize,
    filter: String,
    opts: SubOpts,
    /// The session's options for this filter before (a re-subscription replaces them).
    old: Option<SubOpts>,
    shared: bool,
    /// The table ops this filter needs (`shared`, `subscriptions` rows).
    ops: Vec<Op>,
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) async fn on_subscribe(&mut self, sub: Subscribe) -> Option<Exit> {
        let v5 = self.version.is_v5();
        let sub_id = sub.properties.subscription_identifiers.first().copied();
        let persistent = self.slot.inner.lock().expiry_secs > 0;
        // 1. Validate every filter before applying any.
        let mut reasons = Vec::with_capacity(sub.filters.len());
        let mut valid = Vec::new();
        let mut quota = SubscriptionQuota::of(&self.ctx, &self.slot);
        for (index, (filter, o)) in sub.filters.iter().enumerate() {
            self.trace(&crate::trace::Event::Subscribe {
                filter,
                qos: super::traced::qos_num(o.qos),
            });
            let opts = SubOpts {
                qos: o.qos,
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                retain_handling: o.retain_handling,
                subscription_id: sub_id,
            };
            match self.check_filter(filter, &opts).await {
                Err(FilterVerdict::Close(code)) => {
                    self.queue_disconnect(code);
                    return Some(Exit::ServerClose(code));
                }
                Err(FilterVerdict::Refuse(code)) => reasons.push(code),
                Ok(_) if !quota.admits(&self.slot, filter) => {
                    metrics::counter!(m::QUOTA_EXCEEDED_TOTAL, "quota" => "subscriptions")
                        .increment(1);
                    reasons.push(ReasonCode::QuotaExceeded);
                }
                Ok(_) => {
                    reasons.push(ReasonCode::granted(opts.qos));
                    valid.push((index, filter.as_str(), opts));
                }
            }
        }
        // 2. Apply on this node, all filters under the slot lock (a takeover sees all of
        // them or none): local delivery starts now.
        let mut applied = {
            let mut inner = self.slot.inner.lock();
            if inner.owner != Some(self.id) {
                drop(inner);
                return self.kicked();
            }
            let mut applied = Vec::with_capacity(valid.len());
            for (index, filter, opts) in valid {
                let Ok(parsed) = topic::parse_subscription(filter) else {
                    continue; // validated above
                };
                let old = inner.session.subscriptions.get(filter).copied();
                inner.session.subscribe(filter, opts);
                let mut ops = Vec::new();
                let shared = install(
                    &self.ctx,
                    self.slot.id,
                    &self.client_id,
                    &parsed,
                    old,
                    opts,
                    &mut ops,
                );
                if persistent {
                    ops.push(cluster::subscription_set(&self.client_id, filter, &opts));
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
            applied
        };
        // 3. Commit the rows while this node's route decisions commit, then wait for the
        // other replicants. Every SUBSCRIBE (even one that added no route: another local
        // subscriber's route may be on its way) waits for the route decisions.
        let ctx = self.ctx.clone();
        let (mut failed, routes_ok) = tokio::join!(
            self.commit_rows(&mut applied),
            cluster::routes_committed(&ctx)
        );
        if !routes_ok {
            let (plain, rest): (Vec<_>, Vec<_>) = applied.into_iter().partition(|a| !a.shared);
            applied = rest;
            self.fail(plain, "route_commit", &mut failed).await;
        }
        cluster::barrier(&self.ctx).await;
        // 4. Acknowledge what holds.
        for f in &failed {
            reasons[*f] = ReasonCode::UnspecifiedError;
        }
        metrics::gauge!(m::SUBSCRIPTIONS).set(self.ctx.local.router.subscription_count() as f64);
        let mut properties = Properties::default();
        if v5 && self.problem_info && reasons.iter().any(|r| r.is_error()) {
            properties.reason_string = Some("one or more filters were refused".into());
        }
        self.out.push(Outgoing::Packet(Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            reasons,
            properties,
        })));
        self.encode_out();
        for a in applied {
            let accepted = Accepted {
                is_new: a.old.is_none(),
                filter: a.filter,
                opts: a.opts,
                shared: a.shared,
            };
            self.replay_retained(&accepted);
        }
        None
    }

    /// Commits the table rows of `applied` (see `table_writes`). Filters whose rows did not
    /// commit are rolled back (and, when the outcome is unknown, the rows they may have
    /// written are taken back) and removed from `applied`; returns their SUBACK positions.
    async fn commit_rows(&mut self, applied: &mut Vec<Applied>) -> Vec<usize> {
        let items = std::mem::take(applied);
        let written = commit_in_chunks(&self.ctx, items, |a| &a.ops).await;
        *applied = written.ok;
        let mut failed = Vec::new();
        if !written.unknown.is_empty() {
            self.compensate(&written.unknown).await;
        }
        let mut bad = written.failed;
        bad.extend(written.unknown);
        self.fail(bad, "table_write", &mut failed).await;
        failed
    }

    /// Rolls `filters` back on this node, counts them under `reason` and records their
    /// SUBACK positions in `failed`.
    async fn fail(&mut self, filters: Vec<Applied>, reason: &'static str, failed: &mut Vec<usize>) {
        if filters.is_empty() {
            return;
        }
        metrics::counter!(m::SUBSCRIBE_FAILURES_TOTAL, "reason" => reason)
            .increment(filters.len() as u64);
        warn!(client_id = %self.client_id, filters = filters.len(), reason, "subscription not taken by the cluster tables; refused");
        if reason == "route_commit" {
            // The rows of these filters committed: take them back.
            self.compensate(&filters).await;
        }
        // Last applied first: a filter given twice in one SUBSCRIBE gets back what it had.
        let mut filters = filters;
        filters.sort_unstable_by_key(|a| std::cmp::Reverse(a.index));
        for a in filters {
            self.rollback(&a);
            failed.push(a.index);
        }
    }

    /// Undoes a filter on this node: the session and the router hold what they held before.
    /// Done under the slot lock whoever owns the session now (a takeover on this node keeps
    /// the session, and must not keep a filter the tables do not hold); nothing to do once
    /// the session ended (its end removed every router entry of its subscriptions).
    fn rollback(&mut self, a: &Applied) {
        let sid = self.slot.id;
        let mut inner = self.slot.inner.lock();
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
                self.ctx.local.router.unsubscribe(sid, f, a.opts);
                if let Some(old) = a.old {
                    self.ctx.local.router.subscribe(sid, f, old);
                }
            }
            Ok(SubscriptionFilter::Shared { group, filter }) => match a.old {
                Some(old) => self
                    .ctx
                    .local
                    .router
                    .subscribe_shared(sid, group, filter, old),
                None => {
                    self.ctx.local.router.unsubscribe_shared(sid, group, filter);
                }
            },
            Err(_) => {}
        }
    }

    /// Removes (or restores) the rows that `filters`' ops may have written; logged when
    /// that too cannot commit.
    async fn compensate(&mut self, filters: &[Applied]) {
        let (persistent, generation) = {
            let inner = self.slot.inner.lock();
            (inner.expiry_secs > 0, inner.generation)
        };
        let mut ops = Vec::new();
        for a in filters {
            if persistent {
                ops.push(match a.old {
                    Some(old) => cluster::subscription_set(&self.client_id, &a.filter, &old),
                    None => cluster::subscription_remove(&self.client_id, &a.filter),
                });
            }
            if let (Ok(SubscriptionFilter::Shared { group, filter }), None) =
                (topic::parse_subscription(&a.filter), a.old)
            {
                ops.push(cluster::shared_remove(
                    group,
                    filter,
                    &self.client_id,
                    generation,
                ));
            }
        }
        if cluster::try_transact(&self.ctx.tables, ops).await.is_err() {
            warn!(client_id = %self.client_id, "rows of refused subscriptions could not be removed");
        }
    }

    /// Validates and authorizes one filter.
    async fn check_filter<'f>(
        &mut self,
        filter: &'f str,
        opts: &SubOpts,
    ) -> Result<SubscriptionFilter<'f>, FilterVerdict> {
        let cfg = &self.ctx.config.mqtt;
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
                if opts.no_local && self.version.is_v5() {
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
        let req = Request::Subscribe {
            filter: inner,
            full: filter,
            qos: opts.qos as u8,
        };
        let authz = &self.ctx.authz;
        if authz
            .check_async(
                &self.ctx.tables,
                &self.authz,
                self.authz_cache.as_ref(),
                req,
            )
            .await
            .is_err()
        {
            metrics::counter!(m::AUTHZ_DENIED_TOTAL, "action" => "subscribe").increment(1);
            if authz.deny_action == DenyAction::Disconnect {
                return Err(FilterVerdict::Close(ReasonCode::NotAuthorized));
            }
            // 3.1.1 always gets 0x80 (the codec's mapping of any failure code).
            return Err(FilterVerdict::Refuse(authz.subscribe_deny_code));
        }
        Ok(parsed)
    }

    /// Starts the retained replay a new subscription asks for (Retain Handling 0, or 1 when
    /// the subscription is new; never for shared subscriptions): see `super::replay`.
    fn replay_retained(&mut self, a: &Accepted) {
        let wanted = match a.opts.retain_handling {
            0 => true,
            1 => a.is_new,
            _ => false,
        };
        if !a.shared {
            self.replays.subscribed(&a.filter, a.opts, wanted, a.is_new);
        }
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
pub(super) fn install(
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

/// `mqtt.max_subscriptions` for one SUBSCRIBE: the session's subscriptions when it began,
/// plus the filters of the packet accepted so far that are new to the session.
struct SubscriptionQuota {
    /// The bound (0: no limit).
    max: usize,
    /// Subscriptions the session held when the SUBSCRIBE began.
    held: usize,
    /// Filters of this SUBSCRIBE new to the session (a filter repeated in the packet, or
    /// already held, is a re-subscription and does not count again).
    new: hashbrown::HashSet<String>,
}

impl SubscriptionQuota {
    fn of(ctx: &Ctx, slot: &SessionSlot) -> SubscriptionQuota {
        SubscriptionQuota {
            max: ctx.runtime.current().config.mqtt.max_subscriptions,
            held: slot.inner.lock().session.subscriptions.len(),
            new: hashbrown::HashSet::new(),
        }
    }

    /// Whether `filter` fits in `slot`'s session (and, when new, counts it).
    fn admits(&mut self, slot: &SessionSlot, filter: &str) -> bool {
        if self.max == 0 || self.new.contains(filter) {
            return true;
        }
        if slot.inner.lock().session.subscriptions.contains_key(filter) {
            return true;
        }
        if self.held + self.new.len() >= self.max {
            return false;
        }
        self.new.insert(filter.to_owned());
        true
    }
}

/// Why a filter was not accepted.
enum FilterVerdict {
    /// Refuse this filter with a SUBACK failure code.
    Refuse(ReasonCode),
    /// Close the connection (protocol error).
    Close(ReasonCode),
}
