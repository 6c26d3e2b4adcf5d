//! The gauges a replicant reads from its own state when `/metrics` is scraped, instead of
//! adjusting them on every event: per-listener connections
//! (`meshmq_listener_connections{listener}`, from each listener's live count, which its
//! connections' slots keep exact on every close path), each listener's own cap
//! (`meshmq_listener_max_connections{listener}`) and the messages queued in this node's
//! sessions (`meshmq_messages_queued`, kept by the node's queue budget).
//!
//! Owns reading those figures into the recorder; it must never take a session's lock or
//! wait on anything (a scrape must not contend with the message path).

use meshmq_shared::metrics as m;

use crate::ctx::Ctx;

/// Sets the scrape-time gauges from `ctx` (called by the `/metrics` handler, before
/// rendering). A listener that is not running has no series.
pub fn refresh(ctx: &Ctx) {
    metrics::gauge!(m::MESSAGES_QUEUED).set(ctx.local.queue_budget.queued() as f64);
    for l in ctx.admission.listeners.all() {
        if !l.running() {
            continue;
        }
        metrics::gauge!(m::LISTENER_CONNECTIONS, "listener" => l.id.clone())
            .set(l.current_connections() as f64);
        if let Some(max) = l.spec.config.max_connections {
            metrics::gauge!(m::LISTENER_MAX_CONNECTIONS, "listener" => l.id.clone())
                .set(max as f64);
        }
    }
}
