//! This node's stats, named as EMQX names them (`connections.count`, `retained.max`, ...):
//! the values of the periodic `$SYS/brokers/{node}/stats/...` topics (the name with `/`
//! for `.`, `stats/connections/count`) and of `GET /api/v5/stats`.
//!
//! Stats are read from this node's state (connections, sessions, subscriptions) and the
//! local replica (routes, retained messages: cluster-wide tables, the same on every node,
//! see [`CLUSTER_WIDE`]). Each `.max` is the highest value seen by [`Maxima::sample`],
//! which the `$SYS` task calls every second (as EMQX's stats, a high-water mark of samples,
//! not of every change), and by [`stats`] itself.
//!
//! Owns the name mapping and the high-water marks; it never writes anything else. The
//! metrics (running totals) are in [`super::metrics`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ctx::Ctx;

/// Stats that describe the cluster's tables (every node reports the same value): a sum over
/// nodes takes them once, as EMQX's aggregate does.
pub const CLUSTER_WIDE: [&str; 6] = [
    "topics.count",
    "topics.max",
    "routes.count",
    "routes.max",
    "retained.count",
    "retained.max",
];

/// High-water marks of the stats since the node started, shared by the `$SYS` task and the
/// API (lock-free: each is raised with `fetch_max`).
#[derive(Debug, Default)]
pub struct Maxima {
    connections: AtomicU64,
    sessions: AtomicU64,
    subscriptions: AtomicU64,
    routes: AtomicU64,
    retained: AtomicU64,
}

/// The current counts.
struct Counts {
    connections: u64,
    sessions: u64,
    subscriptions: u64,
    routes: u64,
    retained: u64,
}

fn counts(ctx: &Ctx) -> Counts {
    let (routes, retained) = ctx
        .tables
        .core
        .read(|t| (t.route_count() as u64, t.retained_count() as u64));
    Counts {
        connections: ctx.admission.connections.load(Ordering::Relaxed) as u64,
        sessions: ctx.local.sessions.len() as u64,
        subscriptions: ctx.local.router.subscription_count() as u64,
        routes,
        retained,
    }
}

/// The values after raising the marks: (count, max) for each stat.
struct Raised {
    connections: (u64, u64),
    sessions: (u64, u64),
    subscriptions: (u64, u64),
    routes: (u64, u64),
    retained: (u64, u64),
}

impl Maxima {
    /// Raises each high-water mark to the current value.
    pub fn sample(&self, ctx: &Ctx) {
        self.raise(&counts(ctx));
    }

    fn raise(&self, c: &Counts) -> Raised {
        let up = |m: &AtomicU64, v: u64| (v, m.fetch_max(v, Ordering::Relaxed).max(v));
        Raised {
            connections: up(&self.connections, c.connections),
            sessions: up(&self.sessions, c.sessions),
            subscriptions: up(&self.subscriptions, c.subscriptions),
            routes: up(&self.routes, c.routes),
            retained: up(&self.retained, c.retained),
        }
    }
}

/// `(EMQX name, value)` for every stat of this node, the node's maxima raised first.
///
/// `connections.count` and `live_connections.count` are both the MQTT connections open
/// now (a session without a connection is counted in `sessions.count` only);
/// `channels.count` is `sessions.count` and `suboptions.count` is `subscriptions.count`,
/// under EMQX's other names for them.
pub fn stats(ctx: &Ctx) -> Vec<(&'static str, u64)> {
    let r = ctx.stats_max.raise(&counts(ctx));
    let mut out = Vec::with_capacity(20);
    let mut pair = |count: &'static str, max: &'static str, (c, m): (u64, u64)| {
        out.push((count, c));
        out.push((max, m));
    };
    pair("connections.count", "connections.max", r.connections);
    pair(
        "live_connections.count",
        "live_connections.max",
        r.connections,
    );
    pair("sessions.count", "sessions.max", r.sessions);
    pair("channels.count", "channels.max", r.sessions);
    pair("subscriptions.count", "subscriptions.max", r.subscriptions);
    pair("suboptions.count", "suboptions.max", r.subscriptions);
    // EMQX: topics.count equals routes.count (rows of the cluster's route table).
    pair("topics.count", "topics.max", r.routes);
    pair("routes.count", "routes.max", r.routes);
    pair("retained.count", "retained.max", r.retained);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: u64) -> Counts {
        Counts {
            connections: n,
            sessions: n + 1,
            subscriptions: n,
            routes: n,
            retained: n,
        }
    }

    #[test]
    fn maxima_are_high_water_marks() {
        let m = Maxima::default();
        assert_eq!(m.raise(&c(3)).connections, (3, 3));
        assert_eq!(m.raise(&c(1)).connections, (1, 3));
        assert_eq!(m.raise(&c(1)).sessions, (2, 4));
        assert_eq!(m.raise(&c(5)).retained, (5, 5));
    }
}
