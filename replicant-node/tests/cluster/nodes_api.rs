//! `GET /api/v5/nodes` and `/nodes/{node}` through the cluster fan-out: r1 answers with r2's
//! live figures (asked over the peer link), the cores from the table, a stopped replicant
//! as not answering; the fan-out's marker header cannot be forged by an HTTP client.

use serde_json::Value;

use crate::common::api_client::Api;
use crate::common::raw::RawClient;
use crate::common::{unique, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};
use meshmq_shared::codec::ProtocolVersion;

const KEY: &str = "nodes-api-test-key";

/// The entry of `node` in a `/nodes` answer.
fn entry<'a>(list: &'a Value, node: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|n| n["node"] == node))
        .unwrap_or_else(|| panic!("{node} not in {list}"))
}

/// Asks r1 for `/api/v5/nodes` until `until` holds of the answer (within [`WAIT`]).
async fn nodes_until(api: &Api, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let last = std::sync::Mutex::new(Value::Null);
    let (seen, until) = (&last, &until);
    let held = wait_until_async(WAIT, move || async move {
        let (status, body) = api.get("/api/v5/nodes").await;
        assert_eq!(status, 200, "{body}");
        let ok = until(&body);
        *seen.lock().expect("last answer") = body;
        ok
    })
    .await;
    let body = last.into_inner().expect("last answer");
    assert!(held, "{what}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_lists_every_node_with_the_replicants_live_figures() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let key = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", key).await;
    let r2 = cluster.start_replicant_with("r2", key).await;
    let _a = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("on-r2")).await;
    let _b = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("on-r2")).await;
    let api = Api::new(r1.http_addr().expect("r1 http")).with_key(Some(KEY));

    // r2's live figures, asked through r1.
    let last = nodes_until(&api, "r2's two connections, through r1", |l| {
        entry(l, "r2")["live_connections"] == 2
    })
    .await;
    let r2e = entry(&last, "r2");
    assert_eq!(r2e["role"], "replicant");
    assert_eq!(r2e["node_status"], "running");
    assert_eq!(r2e["version"], env!("CARGO_PKG_VERSION"));
    assert!(r2e["core_link"]["state"].is_string(), "{r2e}");
    assert_eq!(entry(&last, "r1")["live_connections"], 0);
    let cores: Vec<&Value> = last
        .as_array()
        .expect("a list")
        .iter()
        .filter(|n| n["role"] == "core")
        .collect();
    assert_eq!(cores.len(), 3, "{last}");
    let following = cores
        .iter()
        .filter(|c| c["node_status"] == "following")
        .count();
    assert_eq!(following, 1, "r1 follows one core: {last}");

    // One node, forwarded to it.
    let (status, one) = api.get("/api/v5/nodes/r2").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["node"], "r2");
    assert_eq!(one["live_connections"], 2);
    let (status, _) = api.get("/api/v5/nodes/no-such-node").await;
    assert_eq!(status, 404);

    // Without the key: 401, even with a made-up fan-out marker.
    let bare = api.with_key(None);
    let host = bare.addr.to_string();
    let forged = [("Host", host.as_str()), ("x-meshmq-internal", "00")];
    let (status, _) = bare.send("GET", "/api/v5/nodes", &forged, b"").await;
    assert_eq!(status, 401);

    // r2 stops: r1 still answers, listing r2 without its live figures.
    r2.shutdown().await;
    nodes_until(&api, "r2 listed as not answering", |l| {
        let r2e = entry(l, "r2");
        r2e["node_status"] != "running" && r2e.get("live_connections").is_none()
    })
    .await;
    r1.shutdown().await;
    cluster.stop().await;
}
