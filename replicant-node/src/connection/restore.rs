//! Rebuilding a persistent session from the `subscriptions` table, for a CONNECT with clean
//! start = 0 whose session existed cluster-wide (the registry claim said so) but is held by
//! no live session in this process: this node restarted, or the session lived on a
//! replicant that died. A replicant failure loses only what that replicant alone held: the
//! stored subscriptions survive it, so the session resumes on any node (docs/architecture.md,
//! invariant 6).
//!
//! Owns turning stored rows back into the session's subscription map, router entries,
//! shared-group memberships and this node's `routes` / `shared` rows, through the same
//! [`install`] path a SUBSCRIBE takes. It must never write the `subscriptions` rows (they
//! are what it reads) and never send retained messages (MQTT sends them on SUBSCRIBE only).
//! Messages that were queued only in the lost process's memory are gone; nothing here can
//! know how many.

use meshmq_proto::tables::SubOptions;
use meshmq_shared::codec::QoS;
use meshmq_shared::metrics as m;
use meshmq_shared::topic::parse_subscription;
use tracing::{debug, warn};

use super::subscribe::install;
use crate::cluster;
use crate::ctx::Ctx;
use crate::session::SubOpts;
use crate::sessions::SessionSlot;

/// Installs every stored subscription of `slot`'s client in the session and the router,
/// commits the `routes` / `shared` rows this node now needs, and counts the session as
/// restored. Returns how many subscriptions were installed (`None` if the slot ended
/// meanwhile, e.g. a concurrent CONNECT replaced it: then nothing was installed).
///
/// Rows that cannot be turned back into a subscription (unparsable filter, QoS or Retain
/// Handling out of range: only a corrupt table could hold them) are logged and skipped.
pub(super) async fn restore(ctx: &Ctx, slot: &SessionSlot) -> Option<usize> {
    let rows: Vec<(String, SubOptions)> = ctx.tables.core.read(|t| {
        t.subscriptions(&slot.client_id)
            .map(|(filter, o)| (filter.to_owned(), *o))
            .collect()
    });
    let mut ops = Vec::new();
    let mut installed = 0;
    {
        // Under the slot lock: an `end_session` either ran before (we see `ended` and stop)
        // or runs after and removes from the router everything installed here.
        let mut inner = slot.inner.lock();
        if inner.ended {
            return None;
        }
        for (filter, stored) in &rows {
            let (Some(opts), Ok(parsed)) = (sub_opts(stored), parse_subscription(filter)) else {
                warn!(client_id = %slot.client_id, %filter, ?stored, "unusable stored subscription skipped");
                continue;
            };
            let old = inner.session.subscriptions.get(filter.as_str()).copied();
            inner.session.subscribe(filter, opts);
            install(ctx, slot.id, &slot.client_id, &parsed, old, opts, &mut ops);
            installed += 1;
        }
    }
    cluster::transact_chunked(&ctx.tables, ops).await;
    // As for SUBACK: the restored routes are known on every replicant before CONNACK. A
    // route commit that times out is logged and counted, and the session is resumed anyway:
    // its subscriptions are live on this node at once and the route writer keeps retrying;
    // refusing the CONNECT would not make the routes commit sooner.
    cluster::routes_committed(ctx).await;
    cluster::barrier(ctx).await;
    metrics::counter!(m::SESSIONS_RESTORED_TOTAL).increment(1);
    metrics::gauge!(m::SUBSCRIPTIONS).set(ctx.local.router.subscription_count() as f64);
    debug!(client_id = %slot.client_id, installed, "session restored from the tables");
    Some(installed)
}

/// The session's options from a stored row; `None` when a field is out of range.
fn sub_opts(o: &SubOptions) -> Option<SubOpts> {
    Some(SubOpts {
        qos: QoS::from_u8(u8::try_from(o.qos).ok()?)?,
        no_local: o.no_local,
        retain_as_published: o.retain_as_published,
        retain_handling: u8::try_from(o.retain_handling).ok().filter(|&h| h <= 2)?,
        subscription_id: o.subscription_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_options_convert_and_out_of_range_ones_are_refused() {
        let stored = SubOptions {
            qos: 1,
            no_local: true,
            retain_as_published: true,
            retain_handling: 2,
            subscription_id: Some(7),
        };
        assert_eq!(
            sub_opts(&stored),
            Some(SubOpts {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
                subscription_id: Some(7),
            })
        );
        let bad_qos = SubOptions { qos: 3, ..stored };
        let bad_rh = SubOptions {
            retain_handling: 3,
            ..stored
        };
        let huge = SubOptions { qos: 257, ..stored };
        assert_eq!(sub_opts(&bad_qos), None);
        assert_eq!(sub_opts(&bad_rh), None);
        assert_eq!(sub_opts(&huge), None);
    }
}
