//! UNSUBSCRIBE: the session and router entries go at once (no delivery after the request is
//! read), then the `subscriptions` / `shared` rows, in transactions of at most
//! `MAX_OPS_PER_ENTRY` ops; UNSUBACK after they committed (and, when a shared membership was
//! removed, after the other replicants applied it, so none of them still picks this client).
//!
//! A filter whose rows could not be removed is put back on this node as it was (the tables
//! still hold it, and would restore it with the session) and answered 0x80 in a 5.0
//! UNSUBACK (3.1.1 has no per-filter codes); when the outcome is unknown (a timeout) its
//! rows are written again, so node and tables agree either way.

use meshmq_proto::tables::Op;
use meshmq_shared::codec::{Packet, Properties, ReasonCode, UnsubAck, Unsubscribe};
use meshmq_shared::metrics as m;
use meshmq_shared::topic::{self, SubscriptionFilter};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::table_writes::commit_in_chunks;
use super::{Conn, Exit};
use crate::cluster;
use crate::session::{Outgoing, SubOpts};

/// A filter removed on this node, waiting for its table rows to go.
struct Removed {
    /// Position in the UNSUBSCRIBE (its UNSUBACK reason).
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
        let mut reasons = Vec::with_capacity(u.filters.len());
        let removed = {
            let mut inner = self.slot.inner.lock();
            if inner.owner != Some(self.id) {
                drop(inner);
                return self.kicked();
            }
            let persistent = inner.expiry_secs > 0;
            let generation = inner.generation;
            let mut removed = Vec::new();
            for (index, filter) in u.filters.iter().enumerate() {
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
                        self.ctx.local.router.unsubscribe(self.slot.id, f, opts);
                    }
                    Ok(SubscriptionFilter::Shared { group, filter: f }) => {
                        self.ctx
                            .local
                            .router
                            .unsubscribe_shared(self.slot.id, group, f);
                        ops.push(cluster::shared_remove(
                            group,
                            f,
                            &self.client_id,
                            generation,
                        ));
                        shared = true;
                    }
                    Err(_) => {}
                }
                if persistent {
                    ops.push(cluster::subscription_remove(&self.client_id, filter));
                }
                removed.push(Removed {
                    index,
                    filter: filter.clone(),
                    opts,
                    shared,
                    ops,
                });
            }
            removed
        };
        let left_shared = removed.iter().any(|r| r.shared);
        let written = commit_in_chunks(&self.ctx, removed, |r| &r.ops).await;
        if !written.unknown.is_empty() {
            self.rewrite_rows(&written.unknown).await;
        }
        let mut failed = written.failed;
        failed.extend(written.unknown);
        if !failed.is_empty() {
            metrics::counter!(m::UNSUBSCRIBE_FAILURES_TOTAL).increment(failed.len() as u64);
            warn!(client_id = %self.client_id, filters = failed.len(), "unsubscription not taken by the cluster tables; kept");
        }
        failed.sort_unstable_by_key(|r| std::cmp::Reverse(r.index));
        for r in &failed {
            self.restore_filter(r);
            reasons[r.index] = ReasonCode::UnspecifiedError;
        }
        if left_shared {
            // Publishers on other replicants pick shared members from their replicas: once
            // UNSUBACK is out, none may still pick this client (its copy would be dropped).
            cluster::barrier(&self.ctx).await;
        }
        metrics::gauge!(m::SUBSCRIPTIONS).set(self.ctx.local.router.subscription_count() as f64);
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

    /// Puts a filter whose removal did not commit back on this node (session and router),
    /// unless the session ended meanwhile.
    fn restore_filter(&mut self, r: &Removed) {
        let mut inner = self.slot.inner.lock();
        if inner.ended || inner.session.subscriptions.contains_key(&r.filter) {
            return; // ended, or subscribed again on a takeover: leave it as it is
        }
        inner.session.subscribe(&r.filter, r.opts);
        let mut ops = Vec::new();
        if let Ok(parsed) = topic::parse_subscription(&r.filter) {
            super::subscribe::install(
                &self.ctx,
                self.slot.id,
                &self.client_id,
                &parsed,
                None,
                r.opts,
                &mut ops,
            );
        }
    }

    /// Writes again the rows of filters whose removal has an unknown outcome (they are kept).
    async fn rewrite_rows(&mut self, filters: &[Removed]) {
        let persistent = self.slot.inner.lock().expiry_secs > 0;
        let mut ops = Vec::new();
        for r in filters {
            if let Ok(SubscriptionFilter::Shared { group, filter }) =
                topic::parse_subscription(&r.filter)
            {
                ops.push(cluster::shared_add(
                    self.ctx.node(),
                    group,
                    filter,
                    &self.client_id,
                ));
            }
            if persistent {
                ops.push(cluster::subscription_set(
                    &self.client_id,
                    &r.filter,
                    &r.opts,
                ));
            }
        }
        if cluster::try_transact(&self.ctx.tables, ops).await.is_err() {
            warn!(client_id = %self.client_id, "rows of kept subscriptions could not be written again");
        }
    }
}
