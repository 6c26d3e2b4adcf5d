//! UNSUBSCRIBE: the session and router entries go at once, then the `subscriptions` /
//! `shared` rows; UNSUBACK after they committed (and, when a shared membership was removed,
//! after the other replicants applied it, so none of them still picks this client).

use meshmq_shared::codec::{Packet, Properties, ReasonCode, UnsubAck, Unsubscribe};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{self, SubscriptionFilter};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Conn, Exit};
use crate::cluster;
use crate::session::Outgoing;

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) async fn on_unsubscribe(&mut self, u: Unsubscribe) -> Option<Exit> {
        let mut reasons = Vec::with_capacity(u.filters.len());
        let mut ops = Vec::new();
        let mut left_shared = false;
        let persistent = self.slot.inner.lock().expiry_secs > 0;
        for filter in &u.filters {
            let Some(removed) = self.with_session(|s, _, _| s.unsubscribe(filter)) else {
                return self.kicked();
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
