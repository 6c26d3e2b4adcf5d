//! `GET /health` reports the link to the core group: `core_link.state` is `following` while
//! a core streams the log, `down` once every core is gone (the node still answers 200: it
//! serves its clients, degraded), and `following` again when a core is back. A standalone
//! node reports its embedded core the same way.

use std::time::{Duration, Instant};

use replicant_node::Broker;
use serde_json::Value;

use crate::common::{http_get, test_config};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// `/health` of the node at `addr`: (HTTP status, body as JSON).
async fn health(addr: std::net::SocketAddr) -> (u16, Value) {
    let (status, body) = http_get(addr, "/health").await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

/// Polls `/health` until it shows `core_link.state == state` (at most [`WAIT`]); returns
/// that body. Every answer on the way must be a 200.
async fn wait_state(addr: std::net::SocketAddr, state: &str) -> Value {
    let end = Instant::now() + WAIT;
    loop {
        let (status, body) = health(addr).await;
        assert_eq!(status, 200, "a serving node answers 200: {body}");
        if body["core_link"]["state"] == state {
            return body;
        }
        assert!(Instant::now() < end, "core_link never {state}: last {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicant_health_reports_its_core_link_following_down_and_back() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let http = r1.http_addr().expect("http listener");
    let core = cluster.core_addrs()[0].clone();

    let body = wait_state(http, "following").await;
    assert_eq!(body["status"], "ok");
    let link = &body["core_link"];
    assert_eq!(link["core"], core.as_str(), "{body}");
    assert!(
        link["applied_index"].as_u64().is_some_and(|i| i > 0),
        "{body}"
    );
    assert!(link["lag"].as_u64().is_some(), "{body}");

    cluster.kill(1).await;
    let body = wait_state(http, "down").await;
    assert_eq!(body["status"], "ok", "degraded, still serving: {body}");
    assert!(body["core_link"]["core"].is_null(), "{body}");

    cluster.restart(1).await;
    let body = wait_state(http, "following").await;
    assert_eq!(body["core_link"]["core"], core.as_str(), "{body}");
    drop(r1);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_health_reports_its_embedded_core_link() {
    let b = Broker::builder(test_config())
        .start()
        .await
        .expect("standalone broker starts");
    let embedded = b.core().embedded().expect("standalone").addr.clone();
    let body = wait_state(b.http_addr().expect("http listener"), "following").await;
    assert_eq!(body["core_link"]["core"], embedded.as_str(), "{body}");
    b.shutdown().await;
}
