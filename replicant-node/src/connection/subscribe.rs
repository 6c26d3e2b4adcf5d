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
//! Steps 2 to 4 are [`super::sub_apply`]'s, shared with subscriptions made through the REST
//! API; [`install`] (router entry plus `shared` op) is also the path by which `restore`
//! rebuilds a persistent session from the `subscriptions` table.

use meshmq_shared::codec::{Packet, Properties, ReasonCode, SubAck, Subscribe};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::SubscriptionFilter;
use tokio::io::{AsyncRead, AsyncWrite};

use super::sub_apply::{self, FilterVerdict, SubscriptionQuota};
use super::{Conn, Exit};
use crate::session::{Outgoing, SubOpts};
use meshmq_shared::auth::acl::Request;
use meshmq_shared::config::DenyAction;

pub(super) use super::sub_apply::install;

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
                    reasons.push(ReasonCode::QuotaExceeded);
                }
                Ok(_) => {
                    reasons.push(ReasonCode::granted(opts.qos));
                    valid.push((index, filter.as_str(), opts));
                }
            }
        }
        // 2. Apply on this node: local delivery starts now.
        let Some(applied) = sub_apply::apply(&self.ctx, &self.slot, Some(self.id), valid) else {
            return self.kicked();
        };
        // 3. Commit the rows and the route decisions, then wait for the other replicants.
        let (applied, failed) = sub_apply::commit(&self.ctx, &self.slot, applied).await;
        // 4. Acknowledge what holds.
        for f in &failed {
            reasons[*f] = ReasonCode::UnspecifiedError;
        }
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

    /// Validates and authorizes one filter.
    async fn check_filter<'f>(
        &mut self,
        filter: &'f str,
        opts: &SubOpts,
    ) -> Result<SubscriptionFilter<'f>, FilterVerdict> {
        let (parsed, inner) =
            sub_apply::check_rules(&self.ctx, filter, opts, self.version.is_v5())?;
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
