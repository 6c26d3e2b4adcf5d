//! Alarms raised and cleared by real conditions, seen through `/api/v5/alarms`, the
//! webhook (an HTTP server in the test, [`alarm_hook`]), `$SYS/brokers/{node}/alarms/...`
//! and `/metrics`: a listener at its `max_connections` (standalone), the link to the cores
//! down (a cluster whose only core is stopped and restarted), and the API's own rules
//! (auth, paging, the `activated` filter, bad input, deactivation by hand, clearing the
//! history).

use std::net::SocketAddr;

use meshmq_shared::codec::{ProtocolVersion, QoS, ReasonCode};
use meshmq_shared::config::{Config, ListenerConfig};
use replicant_node::{Broker, BrokerHandle};
use serde_json::{Value, json};

use super::alarm_hook::Hook;
use crate::common::api_client::Api;
use crate::common::raw::RawClient;
use crate::common::{metric_sum, metrics_text, test_config, unique, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// The API key of these tests.
const KEY: &str = "alarms-test-key-0123456789";

/// Checks every 50 ms; memory and descriptor checks never fire (100 %).
fn quick(c: &mut Config) {
    c.listeners.api_key = Some(KEY.into());
    c.alarms.check_interval = "50ms".into();
    c.alarms.sysmem_high_watermark = 100.0;
    c.alarms.procmem_high_watermark = 100.0;
    c.alarms.fd_high_watermark = 100.0;
}

fn api(b: &BrokerHandle) -> Api {
    Api::new(b.http_addr().expect("http")).with_key(Some(KEY))
}

/// The alarms listed with `query` (one page of up to 10 000).
async fn listed(api: &Api, query: &str) -> Vec<Value> {
    let (status, body) = api
        .get(&format!("/api/v5/alarms?limit=10000&{query}"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until alarm `name` is listed (`active`) or in the history (`!active`).
async fn wait_listed(api: &Api, name: &str, active: bool) -> Value {
    let query = format!("activated={active}");
    let found = wait_until_async(WAIT, || async {
        listed(api, &query).await.iter().any(|a| a["name"] == name)
    })
    .await;
    let all = listed(api, &query).await;
    assert!(found, "{name} never listed with {query}: {all:?}");
    all.into_iter()
        .find(|a| a["name"] == name)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_at_its_cap_raises_an_alarm_the_webhook_hears_it_and_it_clears() {
    let hook = Hook::start(1).await;
    let mut config = test_config();
    quick(&mut config);
    config.alarms.webhook_urls = vec![hook.url()];
    config.alarms.webhook_headers = [("Authorization".into(), "Bearer hook-token".into())].into();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    config.listeners.tcp.insert(
        "capped".into(),
        ListenerConfig {
            bind: Some(any),
            max_connections: Some(2),
            ..ListenerConfig::default()
        },
    );
    let b = Broker::builder(config)
        .start()
        .await
        .expect("broker starts");
    let api = api(&b);
    let node = "meshmq@127.0.0.1";
    let name = "listener_max_connections:tcp:capped";
    let mut sys = RawClient::connect(b.mqtt_addr(), ProtocolVersion::V5, &unique("sys")).await;
    sys.subscribe(&format!("$SYS/brokers/{node}/alarms/#"), QoS::AtMostOnce)
        .await;
    assert!(
        listed(&api, "").await.is_empty(),
        "no alarm on a quiet node"
    );

    let capped = b.listener_addr("tcp:capped").expect("capped listener");
    let first = RawClient::connect(capped, ProtocolVersion::V5, &unique("cap")).await;
    let _second = RawClient::connect(capped, ProtocolVersion::V5, &unique("cap")).await;
    let alarm = wait_listed(&api, name, true).await;
    assert_eq!(alarm["node"], node);
    assert_eq!(alarm["severity"], "warning");
    assert_eq!(alarm["details"]["max_connections"], 2);
    assert!(alarm.get("deactivate_at").is_none(), "{alarm}");
    // The webhook: a 500 first, then the same body again.
    let body = hook.wait_event("alarm.activated", name, 2).await;
    assert_eq!(body["node"], node);
    assert_eq!(body["severity"], "warning");
    assert_eq!(body["activate_at"], alarm["activate_at"]);
    assert_eq!(body["deactivate_at"], Value::Null);
    assert!(
        hook.received()
            .iter()
            .all(|r| r.0.as_deref() == Some("Bearer hook-token"))
    );
    let p = sys.recv_publish().await;
    assert_eq!(p.topic, format!("$SYS/brokers/{node}/alarms/activate"));
    let payload: Value = serde_json::from_slice(&p.payload).expect("json payload");
    assert_eq!(
        (payload["name"].clone(), payload["activated"].clone()),
        (json!(name), json!(true))
    );
    let labels = [("name", name)];
    assert_eq!(
        metric_sum(&metrics_text(&b).await, "meshmq_alarms_active", &labels),
        Some(1.0)
    );

    // One connection ends: under the cap, the alarm clears into the history.
    first.disconnect(ReasonCode::Success).await;
    let old = wait_listed(&api, name, false).await;
    assert!(old["deactivate_at"].is_string(), "{old}");
    assert!(listed(&api, "activated=true").await.is_empty());
    let body = hook.wait_event("alarm.deactivated", name, 1).await;
    assert_eq!(body["deactivate_at"], old["deactivate_at"]);
    let p = sys.recv_publish().await;
    assert_eq!(p.topic, format!("$SYS/brokers/{node}/alarms/deactivate"));
    assert_eq!(
        metric_sum(&metrics_text(&b).await, "meshmq_alarms_active", &labels),
        Some(0.0)
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alarms_api_checks_auth_input_pages_and_deactivates_by_hand() {
    let mut config = test_config();
    config.listeners.api_key = Some(KEY.into());
    // Watermarks of 0 %: the three resource alarms hold from the first check. One check
    // only (the first runs at start), so an alarm deactivated by hand stays so.
    config.alarms.check_interval = "1h".into();
    config.alarms.sysmem_high_watermark = 0.0;
    config.alarms.procmem_high_watermark = 0.0;
    config.alarms.fd_high_watermark = 0.0;
    config.node.name = "n1".into();
    let b = Broker::builder(config)
        .start()
        .await
        .expect("broker starts");
    let api = api(&b);
    for name in [
        "high_system_memory_usage",
        "high_process_memory_usage",
        "high_fd_usage",
    ] {
        wait_listed(&api, name, true).await;
    }
    let anonymous = api.with_key(None);
    for (method, path) in [
        ("GET", "/api/v5/alarms"),
        ("DELETE", "/api/v5/alarms"),
        ("POST", "/api/v5/alarms/deactivated"),
        ("GET", "/api/v5/nodes/n1/alarms"),
        ("DELETE", "/api/v5/nodes/n1/alarms"),
        ("POST", "/api/v5/nodes/n1/alarms/deactivated"),
    ] {
        let (status, _) = anonymous
            .call(method, path, Some("application/json"), b"{}")
            .await;
        assert_eq!(status, 401, "{method} {path}");
    }
    for bad in ["activated=maybe", "page=0", "limit=10001", "limit=x"] {
        let (status, body) = api.get(&format!("/api/v5/alarms?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "BAD_REQUEST");
    }
    let (_, p1) = api.get("/api/v5/alarms?limit=2&page=1").await;
    assert_eq!(
        p1["meta"],
        json!({"page": 1, "limit": 2, "count": 3, "hasnext": true})
    );
    let (_, p2) = api.get("/api/v5/alarms?limit=2&page=2").await;
    assert_eq!(p2["meta"]["hasnext"], false);
    let mut names: Vec<Value> = [&p1, &p2]
        .iter()
        .flat_map(|p| p["data"].as_array().cloned().unwrap_or_default())
        .map(|a| a["name"].clone())
        .collect();
    names.sort_by_key(|v| v.to_string());
    assert_eq!(
        names,
        [
            json!("high_fd_usage"),
            json!("high_process_memory_usage"),
            json!("high_system_memory_usage")
        ]
    );

    // Deactivation by hand: its input first.
    let path = "/api/v5/alarms/deactivated";
    let (status, _) = api
        .call(
            "POST",
            path,
            Some("text/plain"),
            br#"{"name":"high_fd_usage"}"#,
        )
        .await;
    assert_eq!(status, 415);
    for (body, want) in [
        (json!({"nam": "high_fd_usage"}), 400),
        (json!({"name": ""}), 400),
        (json!({"name": "no_such_alarm"}), 404),
        (json!({"name": "high_fd_usage", "node": "ghost"}), 404),
    ] {
        let (status, answer) = api.json("POST", path, &body).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, gone) = api
        .json("POST", path, &json!({"name": "high_fd_usage"}))
        .await;
    assert_eq!(status, 200, "{gone}");
    assert!(gone["deactivate_at"].is_string(), "{gone}");
    let (status, _) = api
        .json(
            "POST",
            "/api/v5/nodes/n1/alarms/deactivated",
            &json!({"name": "high_process_memory_usage"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .json("POST", path, &json!({"name": "high_fd_usage"}))
        .await;
    assert_eq!(status, 404, "no longer active");
    assert_eq!(listed(&api, "activated=true").await.len(), 1);
    let history = listed(&api, "activated=false").await;
    assert_eq!(history.len(), 2, "{history:?}");

    // Node-local routes answer for this node only.
    let (status, local) = api.get("/api/v5/nodes/n1/alarms?activated=false").await;
    assert_eq!((status, local["meta"]["count"].clone()), (200, json!(2)));
    let (status, _) = api.get("/api/v5/nodes/other/alarms").await;
    assert_eq!(status, 404);

    // Clearing the history.
    let (status, _) = api.delete("/api/v5/alarms").await;
    assert_eq!(status, 204);
    assert!(listed(&api, "activated=false").await.is_empty());
    assert_eq!(
        listed(&api, "activated=true").await.len(),
        1,
        "active ones stay"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_link_down_is_raised_when_the_core_goes_and_cleared_when_it_returns() {
    let _serial = serial().await;
    let hook = Hook::start(0).await;
    let mut cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster
        .start_replicant_with("r1", |c| {
            quick(c);
            c.alarms.webhook_urls = vec![hook.url()];
        })
        .await;
    let api = api(&r1);
    assert!(
        listed(&api, "").await.is_empty(),
        "a linked replicant has no alarm"
    );
    cluster.kill(1).await;
    let alarm = wait_listed(&api, "core_link_down", true).await;
    assert_eq!(
        (alarm["node"].clone(), alarm["severity"].clone()),
        (json!("r1"), json!("critical"))
    );
    hook.wait_event("alarm.activated", "core_link_down", 1)
        .await;
    cluster.restart(1).await;
    let old = wait_listed(&api, "core_link_down", false).await;
    assert!(old["duration"].as_u64().is_some(), "{old}");
    hook.wait_event("alarm.deactivated", "core_link_down", 1)
        .await;
    assert!(listed(&api, "activated=true").await.is_empty());
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raft_leader_is_raised_while_the_cores_lack_a_majority() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster
        .start_replicant_with("r1", |c| {
            quick(c);
            // Renewals every 300 ms: the lease is how a replicant hears of the leader.
            c.cluster.lease_ttl_ms = 900;
        })
        .await;
    let api = api(&r1);
    let leader = cluster.wait_leader(None).await.id;
    // A follower survives; the leader and the other core go: no majority, no leader.
    let survivor = (1..=3).find(|id| *id != leader).expect("a follower");
    for id in (1..=3).filter(|id| *id != survivor) {
        cluster.kill(id).await;
    }
    let alarm = wait_listed(&api, "no_raft_leader", true).await;
    assert_eq!(alarm["severity"], "critical");
    let back = (1..=3).find(|id| *id != survivor).expect("a killed core");
    cluster.restart(back).await;
    wait_listed(&api, "no_raft_leader", false).await;
    let still = listed(&api, "activated=true").await;
    assert!(
        still.iter().all(|a| a["name"] != "no_raft_leader"),
        "{still:?}"
    );
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_link_down_is_raised_and_cleared_when_the_peer_is_back() {
    let _serial = serial().await;
    let cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster.start_replicant_with("r1", quick).await;
    let r2 = cluster.start_replicant("r2").await;
    let api = api(&r1);
    let peers = r1.peers().expect("cluster mode");
    assert!(crate::common::wait_until(WAIT, || peers.is_up("r2")).await);
    // (With checks 50 ms apart, the link's first dial may have raised it already.)
    let quiet = wait_until_async(WAIT, || async { listed(&api, "").await.is_empty() }).await;
    assert!(quiet, "{:?}", listed(&api, "").await);
    // r2 stops without leaving: its row stays until its lease lapses, its link is down.
    r2.shutdown().await;
    let alarm = wait_listed(&api, "peer_link_down:r2", true).await;
    assert_eq!(alarm["details"]["peer"], "r2");
    let r2 = cluster.start_replicant("r2").await;
    wait_listed(&api, "peer_link_down:r2", false).await;
    assert!(listed(&api, "activated=true").await.is_empty());
    r2.shutdown().await;
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_whose_certificate_expires_soon_raises_an_alarm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = meshmq_shared::tls::dev_ca::DevCa::new("alarms-ca").expect("CA");
    // The development CA's server certificates are valid for 365 days.
    let (cert, key) = ca
        .write_server(dir.path(), "server", &["localhost"])
        .expect("server certificate");
    let mut config = test_config();
    quick(&mut config);
    config.alarms.cert_expiry_days = 400;
    config.listeners.ssl.insert(
        "default".into(),
        ListenerConfig {
            bind: Some("127.0.0.1:0".parse().expect("addr")),
            ssl_options: Some(meshmq_shared::config::tls::SslOptions {
                certfile: Some(cert),
                keyfile: Some(key),
                ..Default::default()
            }),
            ..ListenerConfig::default()
        },
    );
    let b = Broker::builder(config)
        .start()
        .await
        .expect("broker starts");
    let api = api(&b);
    let alarm = wait_listed(&api, "certificate_expiring:ssl:default", true).await;
    let days = alarm["details"]["days_left"].as_i64().unwrap_or(-1);
    assert!((363..=365).contains(&days), "{alarm}");
    assert_eq!(alarm["severity"], "warning");
    assert_eq!(
        listed(&api, "activated=true").await.len(),
        1,
        "the tcp listeners have no TLS"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_replicant_lists_deactivates_and_clears_every_replicant_s_alarms() {
    let _serial = serial().await;
    let cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster.start_replicant_with("r1", quick).await;
    // r2's resource alarms hold from its first check (watermarks of 0 %), its only one.
    let r2 = cluster
        .start_replicant_with("r2", |c| {
            quick(c);
            c.alarms.check_interval = "1h".into();
            c.alarms.fd_high_watermark = 0.0;
            c.alarms.procmem_high_watermark = 0.0;
        })
        .await;
    let api1 = api(&r1);
    let peers = r1.peers().expect("cluster mode");
    assert!(crate::common::wait_until(WAIT, || peers.is_up("r2")).await);
    let fd = wait_listed(&api1, "high_fd_usage", true).await;
    assert_eq!(fd["node"], "r2", "listed by r1 from r2: {fd}");
    wait_listed(&api1, "high_process_memory_usage", true).await;
    // r2's node-local list, asked through r1 (forwarded).
    let (status, local) = api1.get("/api/v5/nodes/r2/alarms").await;
    assert_eq!(
        (status, local["meta"]["count"].clone()),
        (200, json!(2)),
        "{local}"
    );
    let (status, mine) = api1.get("/api/v5/nodes/r1/alarms").await;
    assert_eq!(
        (status, mine["meta"]["count"].clone()),
        (200, json!(0)),
        "{mine}"
    );
    // Deactivated by hand on r2, through r1.
    let body = json!({"name": "high_fd_usage", "node": "r2"});
    let (status, gone) = api1.json("POST", "/api/v5/alarms/deactivated", &body).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["node"], "r2");
    let api2 = api(&r2);
    let history = listed(&api2, "activated=false").await;
    assert_eq!(history.len(), 1, "deactivated on r2 itself: {history:?}");
    let (status, _) = api1.json("POST", "/api/v5/alarms/deactivated", &body).await;
    assert_eq!(status, 404, "no longer active on r2");
    // Cleared everywhere from r1.
    let (status, _) = api1.delete("/api/v5/alarms").await;
    assert_eq!(status, 204);
    assert!(listed(&api2, "activated=false").await.is_empty());
    // r2 stops without leaving: r1 still answers, naming it.
    r2.shutdown().await;
    let named = wait_until_async(WAIT, || async {
        let (_, page) = api1.get("/api/v5/alarms").await;
        page["meta"]["failed_nodes"] == json!(["r2"])
    })
    .await;
    assert!(named, "{:?}", api1.get("/api/v5/alarms").await);
    r1.shutdown().await;
    cluster.stop().await;
}
