//! The calls the fan-out makes, and nothing else: the node-local routes that the
//! cluster-wide routes call on each replicant (`/api/v5/nodes/{node}/...`, the trace reads,
//! the configuration read). A call from a peer that is not on this list is refused before it
//! reaches the router, so holding a cluster certificate never opens the rest of the API
//! (API keys, authentication, bans, writes of any kind other than those listed).
//!
//! Owns the list. A new fan-out caller must add its route here (the call fails with
//! `FanoutError::Invalid("route")` otherwise, and its tests with it). It never decodes a
//! value beyond comparing the node segment with this node's name.

use axum::http::Method;

/// One segment of a pattern.
#[derive(Clone, Copy)]
enum Seg {
    /// This exact text.
    Lit(&'static str),
    /// The called node's own name.
    Me,
    /// Any one non-empty segment (a client id, a trace name).
    Any,
}

use Seg::{Any, Lit, Me};

/// `/api/v5/` is checked before; the patterns are what follows it.
const ALLOWED: &[(Method, &[Seg])] = &[
    (Method::GET, &[Lit("nodes"), Me]),
    (Method::GET, &[Lit("nodes"), Me, Lit("clients")]),
    (Method::GET, &[Lit("nodes"), Me, Lit("clients"), Any]),
    (Method::DELETE, &[Lit("nodes"), Me, Lit("clients"), Any]),
    (
        Method::GET,
        &[Lit("nodes"), Me, Lit("clients"), Any, Lit("subscriptions")],
    ),
    (
        Method::POST,
        &[Lit("nodes"), Me, Lit("clients"), Any, Lit("subscribe")],
    ),
    (
        Method::POST,
        &[
            Lit("nodes"),
            Me,
            Lit("clients"),
            Any,
            Lit("subscribe"),
            Lit("bulk"),
        ],
    ),
    (
        Method::POST,
        &[Lit("nodes"), Me, Lit("clients"), Any, Lit("unsubscribe")],
    ),
    (
        Method::POST,
        &[
            Lit("nodes"),
            Me,
            Lit("clients"),
            Any,
            Lit("unsubscribe"),
            Lit("bulk"),
        ],
    ),
    (Method::GET, &[Lit("nodes"), Me, Lit("subscriptions")]),
    (Method::GET, &[Lit("nodes"), Me, Lit("stats")]),
    (Method::GET, &[Lit("nodes"), Me, Lit("metrics")]),
    (Method::GET, &[Lit("nodes"), Me, Lit("alarms")]),
    (Method::DELETE, &[Lit("nodes"), Me, Lit("alarms")]),
    (
        Method::POST,
        &[Lit("nodes"), Me, Lit("alarms"), Lit("deactivated")],
    ),
    (Method::GET, &[Lit("configs")]),
    (Method::GET, &[Lit("trace")]),
    (Method::GET, &[Lit("trace"), Any, Lit("download")]),
    (Method::GET, &[Lit("trace"), Any, Lit("log")]),
];

/// Whether `method path_and_query` is a call the fan-out makes to node `me`.
pub fn allowed(method: &Method, path_and_query: &str, me: &str) -> bool {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let Some(rest) = path.strip_prefix("/api/v5/") else {
        return false;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    ALLOWED.iter().any(|(m, pattern)| {
        m == method
            && pattern.len() == segs.len()
            && pattern.iter().zip(&segs).all(|(p, s)| match p {
                Lit(l) => s == l,
                Me => *s == me || *s == crate::api::nodes::encode(me),
                Any => !s.is_empty(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_node_local_routes_of_the_fan_out_pass() {
        for (m, p) in [
            (Method::GET, "/api/v5/nodes/r2"),
            (Method::GET, "/api/v5/nodes/r2/clients?offset=0&limit=0"),
            (Method::DELETE, "/api/v5/nodes/r2/clients/c%2F1"),
            (Method::POST, "/api/v5/nodes/r2/clients/c1/subscribe/bulk"),
            (
                Method::GET,
                "/api/v5/nodes/r2/alarms?activated=true&limit=10",
            ),
            (Method::POST, "/api/v5/nodes/r2/alarms/deactivated"),
            (Method::GET, "/api/v5/configs"),
            (Method::GET, "/api/v5/trace"),
            (Method::GET, "/api/v5/trace/t1/download?node=r2"),
            (
                Method::GET,
                "/api/v5/trace/t1/log?node=r2&position=0&bytes=10",
            ),
        ] {
            assert!(allowed(&m, p, "r2"), "{m} {p}");
        }
        for (m, p) in [
            (Method::POST, "/api/v5/api_key"),
            (Method::GET, "/api/v5/api_key"),
            (Method::GET, "/api/v5/clients"),
            (Method::GET, "/api/v5/nodes"),
            (Method::GET, "/api/v5/alarms"),
            (Method::PUT, "/api/v5/configs"),
            (Method::POST, "/api/v5/trace"),
            (Method::DELETE, "/api/v5/trace/t1"),
            (Method::GET, "/api/v5/nodes/r3"),
            (Method::GET, "/api/v5/nodes/r3/clients"),
            (Method::GET, "/api/v5/nodes/r2/clients/"),
            (Method::GET, "/api/v5/nodes/r2/"),
            (Method::POST, "/api/v5/banned"),
            (Method::GET, "/metrics"),
        ] {
            assert!(!allowed(&m, p, "r2"), "{m} {p}");
        }
    }
}
