//! SUBSCRIBE and UNSUBSCRIBE: per-filter validation and authorization, router and table
//! updates, the acknowledgement, then retained messages by Retain Handling.
//!
//! SUBACK is sent only after the table transaction committed (the route exists), so a
//! message published after the client saw its SUBACK reaches it (ARCHITECTURE invariant 1).
//! [`install`] (router entry plus `routes` / `shared` ops) is also the path by which
//! `restore` rebuilds a persistent session from the `subscriptions` table.

use meshmq_proto::tables::Op;
use meshmq_shared::codec::{
    Packet, Properties, ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{self, SubscriptionFilter};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Conn, Exit};
use crate::authz::AuthzAction;
use crate::broker::Ctx;
use crate::cluster;
use crate::session::{Outgoing, SubOpts};
use crate::sessions::SessionId;

/// A filter accepted for subscription, with what retained replay needs afterwards.
struct Accepted {
    filter: String,
    opts: SubOpts,
    is_new: bool,
    shared: bool,
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) async fn on_subscribe(&mut self, sub: Subscribe) -> Option<Exit> {
        let v5 = self.version.is_v5();
        let sub_id = sub.properties.subscription_identifiers.first().copied();
        let persistent = self.slot.inner.lock().expiry_secs > 0;
        let mut reasons = Vec::with_capacity(sub.filters.len());
        let mut accepted = Vec::new();
        let mut ops = Vec::new();
        for (filter, o) in &sub.filters {
            let opts = SubOpts {
                qos: o.qos,
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
                retain_handling: o.retain_handling,
                subscription_id: sub_id,
            };
            match self.check_filter(filter, &opts) {
                Err(FilterVerdict::Close(code)) => {
                    self.queue_disconnect(code);
                    return Some(Exit::ServerClose(code));
                }
                Err(FilterVerdict::Refuse(code)) => {
                    reasons.push(code);
                    continue;
                }
                Ok(parsed) => {
                    let Some(old) = self.with_session(|s, _, _| {
                        let old = s.subscriptions.get(filter.as_str()).copied();
                        s.subscribe(filter, opts);
                        old
                    }) else {
                        return self.kicked_exit();
                    };
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
                    reasons.push(ReasonCode::granted(opts.qos));
                    accepted.push(Accepted {
                        filter: filter.clone(),
                        opts,
                        is_new: old.is_none(),
                        shared,
                    });
                }
            }
        }
        cluster::transact(&self.ctx, ops).await;
        // Every SUBSCRIBE (even one that added no route: another local subscriber's route
        // may be on its way) waits for this node's route decisions to be committed, then for
        // the other replicants to have applied what this node has, before SUBACK.
        cluster::routes_committed(&self.ctx).await;
        cluster::barrier(&self.ctx).await;
        metrics::gauge!(m::SUBSCRIPTIONS).set(self.ctx.router.subscription_count() as f64);
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
        for a in accepted {
            self.replay_retained(&a);
        }
        None
    }

    fn kicked_exit(&self) -> Option<Exit> {
        Some(Exit::Kicked {
            session_ends: false,
        })
    }

    /// Validates and authorizes one filter.
    fn check_filter<'f>(
        &self,
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
        if !self.ctx.authz.check(
            &self.client_id,
            self.username.as_deref(),
            AuthzAction::Subscribe,
            filter,
        ) {
            metrics::counter!(m::AUTHZ_DENIED_TOTAL, "action" => "subscribe").increment(1);
            return Err(FilterVerdict::Refuse(ReasonCode::NotAuthorized));
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

    pub(super) async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Option<Exit> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut ops = Vec::new();
        let mut left_shared = false;
        let persistent = self.slot.inner.lock().expiry_secs > 0;
        for filter in &u.filters {
            let Some(removed) = self.with_session(|s, _, _| s.unsubscribe(filter)) else {
                return self.kicked_exit();
            };
            let Some(opts) = removed else {
                reasons.push(ReasonCode::NoSubscriptionExisted);
                continue;
            };
            match topic::parse_subscription(filter) {
                Ok(SubscriptionFilter::Plain(f)) => {
                    // The last local subscriber queues a `RouteRemove` (route writer).
                    self.ctx.router.unsubscribe(self.slot.id, f, opts);
                }
                Ok(SubscriptionFilter::Shared { group, filter: f }) => {
                    self.ctx.router.unsubscribe_shared(self.slot.id, group, f);
                    ops.push(cluster::shared_remove(group, f, &self.client_id, 0));
                    left_shared = true;
                }
                Err(_) => {}
            }
            if persistent {
                ops.push(cluster::subscription_remove(&self.client_id, filter));
            }
            reasons.push(ReasonCode::Success);
        }
        cluster::transact(&self.ctx, ops).await;
        if left_shared {
            // Publishers on other replicants pick shared members from their replicas: once
            // UNSUBACK is out, none may still pick this client (its copy would be dropped).
            cluster::barrier(&self.ctx).await;
        }
        metrics::gauge!(m::SUBSCRIPTIONS).set(self.ctx.router.subscription_count() as f64);
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
                ctx.router.unsubscribe(sid, f, old);
            }
            // A first local subscriber queues a `RouteAdd` for the route writer.
            ctx.router.subscribe(sid, f, opts);
            false
        }
        SubscriptionFilter::Shared { group, filter } => {
            ctx.router.subscribe_shared(sid, group, filter, opts);
            ops.push(cluster::shared_add(ctx, group, filter, client_id));
            true
        }
    }
}

/// Why a filter was not accepted.
enum FilterVerdict {
    /// Refuse this filter with a SUBACK failure code.
    Refuse(ReasonCode),
    /// Close the connection (protocol error).
    Close(ReasonCode),
}
