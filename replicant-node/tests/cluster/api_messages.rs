//! The topics, publish and retained REST API across replicants: every replica holds the
//! `routes` and `retained` tables whole, so r1's API lists r2's routes, a message published
//! through r1's API reaches a subscriber on r2, and a retained message stored through r2's
//! API is read and deleted through r1's (and gone on r2).

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::QoS;
use serde_json::{Value, json};

use crate::common::raw::RawClient;
use crate::common::{http_call, unique, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// A call to the API on `addr`; the body parsed as JSON (`null` when empty).
pub(crate) async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = http_call(addr, method, path, &body, None).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_publish_and_retained_messages_are_cluster_wide() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let (h1, h2) = (
        r1.http_addr().expect("r1 http"),
        r2.http_addr().expect("r2 http"),
    );
    let mut sub = RawClient::connect(r2.mqtt_addr(), V5, &unique("api-sub")).await;
    sub.subscribe("cw/#", QoS::AtLeastOnce).await;
    // r1 lists r2's route (the SUBACK came after r1 applied it).
    let (status, v) = call(h1, "GET", "/api/v5/topics/cw%2F%23", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!([{"topic": "cw/#", "node": "r2"}]));
    let (_, v) = call(h1, "GET", "/api/v5/topics?node=r2", Value::Null).await;
    assert_eq!(v["meta"]["count"], 1, "{v}");
    // Published through r1, received on r2.
    let body = json!({"topic": "cw/1", "payload": "from-r1", "qos": 1});
    let (status, v) = call(h1, "POST", "/api/v5/publish", body).await;
    assert_eq!(
        status, 200,
        "the route to r2 counts as reaching a subscriber: {v}"
    );
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("cw/1", &b"from-r1"[..])
    );
    sub.ack(&p).await;
    // Retained through r2, read and deleted through r1.
    let body = json!({"topic": "cw/kept", "payload": "kept", "retain": true});
    let (status, _) = call(h2, "POST", "/api/v5/publish", body).await;
    assert_eq!(status, 200);
    let path = "/api/v5/mqtt/retainer/message/cw%2Fkept";
    let seen = wait_until_async(WAIT, || async {
        call(h1, "GET", path, Value::Null).await.0 == 200
    })
    .await;
    assert!(seen, "r1 reads what r2 stored");
    let (status, _) = call(h1, "DELETE", path, Value::Null).await;
    assert_eq!(status, 204);
    let gone = wait_until_async(WAIT, || async {
        call(h2, "GET", path, Value::Null).await.0 == 404
    })
    .await;
    assert!(gone, "deleted on r2 too");
    let (_, v) = call(
        h2,
        "GET",
        "/api/v5/mqtt/retainer/messages?topic=cw%2F%23",
        Value::Null,
    )
    .await;
    assert_eq!(v["meta"]["count"], 0, "{v}");
    drop(sub);
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
