//! The clients and subscriptions REST API across two replicants (through the cluster
//! fan-out): r1's API lists, pages and filters the clients of both nodes (counts first, then
//! only the node holding the page), reads, subscribes on behalf of and kicks a client
//! connected to r2; a message published through r1's API then reaches it; r2 shows what r1
//! did. Node-local routes answer for their own node only.

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Packet, QoS, ReasonCode};
use serde_json::{Value, json};

use super::api_messages::call;
use crate::common::raw::RawClient;
use crate::common::{unique, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// The client ids of a list answer, in order.
fn ids(v: &Value) -> Vec<String> {
    let items = v["data"].as_array().expect("data");
    items
        .iter()
        .map(|c| c["clientid"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_r2_are_listed_paged_subscribed_and_kicked_through_r1() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let (h1, h2) = (
        r1.http_addr().expect("r1 http"),
        r2.http_addr().expect("r2 http"),
    );
    let p = unique("cw");
    // Two clients on r1, three on r2: ids chosen so that node order and id order differ.
    let mut on_r1 = Vec::new();
    for s in ["b", "d"] {
        on_r1.push(RawClient::connect(r1.mqtt_addr(), V5, &format!("{p}-{s}")).await);
    }
    let mut on_r2 = Vec::new();
    for s in ["a", "c", "e"] {
        on_r2.push(RawClient::connect(r2.mqtt_addr(), V5, &format!("{p}-{s}")).await);
    }
    let (status, v) = call(h1, "GET", "/api/v5/clients?limit=2", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["count"], 5, "{v}");
    assert_eq!(v["meta"]["failed_nodes"], json!([]));
    assert_eq!(
        ids(&v),
        [format!("{p}-b"), format!("{p}-d")],
        "r1's first (node order)"
    );
    let (_, v) = call(h1, "GET", "/api/v5/clients?limit=2&page=2", Value::Null).await;
    assert_eq!(ids(&v), [format!("{p}-a"), format!("{p}-c")], "{v}");
    assert_eq!(v["meta"]["hasnext"], true);
    let (_, v) = call(h1, "GET", "/api/v5/clients?limit=2&page=3", Value::Null).await;
    assert_eq!(
        (ids(&v), v["meta"]["hasnext"].as_bool()),
        (vec![format!("{p}-e")], Some(false))
    );
    // A page that spans both nodes, and the filters travel to r2.
    let (_, v) = call(h1, "GET", "/api/v5/clients?limit=3&page=1", Value::Null).await;
    assert_eq!(ids(&v).len(), 3, "{v}");
    assert_eq!(v["data"][2]["node"], "r2");
    let (_, v) = call(
        h1,
        "GET",
        &format!("/api/v5/clients?like_clientid={p}-c"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (v["meta"]["count"].as_u64(), ids(&v)),
        (Some(1), vec![format!("{p}-c")])
    );
    let (_, v) = call(h1, "GET", "/api/v5/clients?node=r2", Value::Null).await;
    assert_eq!(v["meta"]["count"], 3, "{v}");
    // One client of r2, read, subscribed and published to through r1.
    let target = format!("{p}-c");
    let (status, v) = call(h1, "GET", &format!("/api/v5/clients/{target}"), Value::Null).await;
    assert_eq!((status, &v["node"]), (200, &json!("r2")), "{v}");
    let body = json!({"topic": "cw/behalf", "qos": 1});
    let (status, v) = call(
        h1,
        "POST",
        &format!("/api/v5/clients/{target}/subscribe"),
        body,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["node"], "r2");
    let (status, v) = call(
        h1,
        "POST",
        "/api/v5/publish",
        json!({"topic": "cw/behalf", "payload": "x"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let got = on_r2[1].recv_publish().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("cw/behalf", &b"x"[..])
    );
    let (_, v) = call(
        h1,
        "GET",
        "/api/v5/subscriptions?topic=cw%2Fbehalf",
        Value::Null,
    )
    .await;
    assert_eq!(
        (v["meta"]["count"].as_u64(), &v["data"][0]["clientid"]),
        (Some(1), &json!(target))
    );
    let (_, v) = call(
        h1,
        "GET",
        &format!("/api/v5/clients/{target}/subscriptions"),
        Value::Null,
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    // Node-local routes answer for their own node only.
    let (status, _) = call(h1, "GET", "/api/v5/nodes/r1/clients?limit=0", Value::Null).await;
    assert_eq!(status, 200);
    let (status, v) = call(h2, "GET", "/api/v5/nodes/r2/clients?limit=0", Value::Null).await;
    assert_eq!((status, &v["meta"]["count"]), (200, &json!(3)));
    // Kicked through r1.
    let (status, _) = call(
        h1,
        "DELETE",
        &format!("/api/v5/clients/{target}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let seen = on_r2[1].wait_closed(WAIT).await;
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
        "DISCONNECT 0x98, got {seen:?}"
    );
    let gone = wait_until_async(WAIT, || async {
        call(h2, "GET", &format!("/api/v5/clients/{target}"), Value::Null)
            .await
            .0
            == 404
    })
    .await;
    assert!(gone, "r2 no longer has it");
    let (status, v) = call(h1, "GET", "/api/v5/clients/nobody", Value::Null).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("CLIENTID_NOT_FOUND"))
    );
    let (status, _) = call(h1, "DELETE", "/api/v5/clients/nobody", Value::Null).await;
    assert_eq!(status, 404);
    let _ = QoS::AtMostOnce;
    drop((on_r1, on_r2));
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
