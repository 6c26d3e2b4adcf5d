//! `GET /api/v5/stats` and `/api/v5/metrics` through the cluster fan-out: per-node stats
//! follow each node's own clients (two on r1, one on r2), `aggregate=true` sums them and
//! takes the cluster's tables once, `node=` keeps one node, bad input is refused. Metrics
//! come from the process-wide recorder (both replicants run in this process), so only
//! their shape and aggregation are checked, never a per-node value.

use serde_json::Value;

use crate::common::api_client::Api;
use crate::common::raw::RawClient;
use crate::common::{unique, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};
use meshmq_shared::codec::ProtocolVersion;

const KEY: &str = "stats-api-test-key";

/// The object of `node` in a per-node list.
fn entry<'a>(list: &'a Value, node: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == node))
        .unwrap_or_else(|| panic!("{node} not in {list}"))
}

/// GETs `path` until `until` holds of the 200 answer (within [`WAIT`]); the last answer.
async fn get_until(api: &Api, path: &str, until: impl Fn(&Value) -> bool) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let (seen, until) = (&last, &until);
    let held = wait_until_async(WAIT, move || async move {
        let (status, body) = api.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let ok = until(&body);
        *seen.lock().expect("last answer") = body;
        ok
    })
    .await;
    let body = last.into_inner().expect("last answer");
    assert!(held, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_per_node_aggregated_and_filtered() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    let _a = RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("s1")).await;
    let _b = RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("s1")).await;
    let _c = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("s2")).await;
    let api = Api::new(r2.http_addr().expect("r2 http")).with_key(Some(KEY));

    // Per node (the default): each node's own connections, asked through r2.
    let list = get_until(&api, "/api/v5/stats", |l| {
        l.as_array().is_some_and(|a| a.len() == 2)
            && entry(l, "r1")["connections.count"] == 2
            && entry(l, "r2")["connections.count"] == 1
    })
    .await;
    let r1e = entry(&list, "r1");
    for k in ["live_connections.count", "sessions.count", "channels.count"] {
        assert_eq!(r1e[k], 2, "{k}: {r1e}");
    }
    assert!(r1e["connections.max"].as_u64() >= Some(2), "{r1e}");
    for k in [
        "subscriptions.count",
        "topics.count",
        "retained.count",
        "routes.max",
    ] {
        assert!(r1e[k].is_u64(), "{k} missing: {r1e}");
    }

    // Aggregated: per-node keys summed, the cluster's tables once.
    let agg = get_until(&api, "/api/v5/stats?aggregate=true", |v| {
        v["connections.count"] == 3
    })
    .await;
    assert!(agg.get("node").is_none(), "{agg}");
    assert_eq!(agg["sessions.count"], 3, "{agg}");
    assert_eq!(agg["retained.count"], entry(&list, "r1")["retained.count"]);

    // One node; unknown node; bad input; no key.
    let (status, one) = api.get("/api/v5/stats?node=r1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["node"], "r1");
    assert_eq!(one[0]["connections.count"], 2);
    let (status, one) = api.get("/api/v5/stats?node=r1&aggregate=true").await;
    assert_eq!(
        (status, &one["connections.count"]),
        (200, &Value::from(2)),
        "{one}"
    );
    let (status, body) = api.get("/api/v5/stats?node=no-such-node").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.get("/api/v5/stats?aggregate=yes").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("aggregate")),
        "{body}"
    );
    let (status, body) = api.get("/api/v5/metrics?nodes=r1").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.get("/api/v5/nodes/r1/stats").await;
    assert_eq!(
        (status, &body["connections.count"]),
        (200, &Value::from(2)),
        "{body}"
    );
    let bare = api.with_key(None);
    for path in ["/api/v5/stats", "/api/v5/metrics", "/api/v5/nodes/r2/stats"] {
        let (status, _) = bare.get(path).await;
        assert_eq!(status, 401, "{path}");
    }

    // r2 stops: r1 still answers; r2 is listed as unreachable, or gone from the replicants.
    r2.shutdown().await;
    let api1 = Api::new(r1.http_addr().expect("r1 http")).with_key(Some(KEY));
    get_until(&api1, "/api/v5/stats", |l| {
        let a = l.as_array().expect("a list");
        a.iter()
            .all(|n| n["node"] != "r2" || n["node_status"] == "unreachable")
            && entry(l, "r1")["connections.count"] == 2
    })
    .await;
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_emqx_keys_per_node_and_aggregated() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    let _a = RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("m1")).await;
    let api = Api::new(r1.http_addr().expect("r1 http")).with_key(Some(KEY));

    let list = get_until(&api, "/api/v5/metrics", |l| {
        l.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let keys = [
        "messages.received",
        "messages.sent",
        "messages.dropped",
        "packets.connect.received",
        "packets.connack.sent",
        "client.connected",
        "client.disconnected",
        "bytes.received",
        "packets.publish.received",
        "authentication.success",
    ];
    for node in ["r1", "r2"] {
        let e = entry(&list, node);
        for k in keys {
            assert!(e[k].is_u64(), "{node} {k}: {e}");
        }
        // One CONNECT was answered in this process: the process-wide count shows it.
        assert!(e["client.connected"].as_u64() >= Some(1), "{e}");
    }
    // Aggregated: each key is the sum of the nodes' values (read together, so compare
    // with a fresh per-node list taken around it: counters only grow).
    let (status, agg) = api.get("/api/v5/metrics?aggregate=true").await;
    assert_eq!(status, 200, "{agg}");
    assert!(
        agg.get("node").is_none() && agg.get("failed_nodes").is_none(),
        "{agg}"
    );
    let sum = |l: &Value, k: &str| -> u64 {
        ["r1", "r2"]
            .iter()
            .map(|n| entry(l, n)[k].as_u64().unwrap_or(0))
            .sum()
    };
    let (_, after) = api.get("/api/v5/metrics").await;
    for k in keys {
        let v = agg[k].as_u64().unwrap_or_else(|| panic!("{k}: {agg}"));
        assert!(
            sum(&list, k) <= v && v <= sum(&after, k),
            "{k}: {v} {list} {after}"
        );
    }
    let (status, one) = api.get("/api/v5/metrics?node=r2").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one[0]["node"], "r2");
    r2.shutdown().await;
    r1.shutdown().await;
    cluster.stop().await;
}
