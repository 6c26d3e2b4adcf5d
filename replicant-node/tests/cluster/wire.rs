//! The inter-node protocol version between replicants and cores (docs/upgrade.md,
//! "Inter-node protocol"): a replicant one minor newer follows, transacts and forwards with
//! 1.0 nodes, and `GET /api/v5/nodes` shows each replicant's version; a replicant of another
//! major is refused by the cores with an error naming both versions; a running replicant
//! whose cores move to another major is not ready (health and availability check say why),
//! counts the refusals, keeps retrying, and is ready again once they speak its major.

use meshmq_proto::tables::{Op, RetainedMessage, RetainedSet, op};
use meshmq_shared::config::Config;
use meshmq_shared::wire_version::WireVersion;
use replicant_node::{Broker, BrokerHandle};
use serde_json::Value;

use crate::common::api_client::Api;
use crate::common::clients::v4::{self, QoS};
use crate::common::{unique, wait_until, wait_until_async};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const KEY: &str = "wire-protocol-test-key";

fn keyed(cluster: &Cluster, name: &str) -> Config {
    let mut config = cluster.replicant_config(name, cluster.core_addrs());
    config.listeners.api_key = Some(KEY.into());
    config
}

async fn start_speaking(config: Config, wire: WireVersion) -> anyhow::Result<BrokerHandle> {
    Broker::builder(config).wire_version(wire).start().await
}

fn refused(peer: &str) -> u64 {
    let text = replicant_node::http::prometheus_handle().render();
    let series = format!("meshmq_wire_protocol_refused_total{{peer=\"{peer}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn retained(topic: &str) -> Op {
    Op {
        kind: Some(op::Kind::RetainedSet(RetainedSet {
            message: Some(RetainedMessage {
                topic: topic.into(),
                payload: b"p".to_vec().into(),
                qos: 1,
                published_at_ms: 1,
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicant_one_minor_newer_follows_transacts_and_forwards() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let ours = WireVersion::CURRENT;
    let newer = WireVersion::new(ours.major, ours.minor + 1);
    let r1 = start_speaking(keyed(&cluster, "r1"), ours)
        .await
        .expect("r1");
    let r2 = start_speaking(keyed(&cluster, "r2"), newer)
        .await
        .expect("r2 starts");
    assert!(
        r2.core().link().current_core().is_some(),
        "r2 follows a core"
    );
    assert_eq!(r2.core().link().wire_refused(), None);
    // A transaction through r2's link commits and is applied on r1.
    let c = r2
        .core()
        .transact(vec![retained("wire-retained/newer")])
        .await
        .expect("r2 transacts");
    assert!(wait_until(WAIT, || r1.core().applied_index() >= c.index).await);
    // Routes written through r2 and messages forwarded between the two versions.
    let mut sub = v4::connect(r2.mqtt_addr(), &unique("wire-sub"), |_| {}).await;
    sub.subscribe("wire/+", QoS::AtLeastOnce).await;
    let mut publisher = v4::connect(r1.mqtt_addr(), &unique("wire-pub"), |_| {}).await;
    publisher
        .publish("wire/x", QoS::AtLeastOnce, false, "across")
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("wire/x", &b"across"[..])
    );

    // Each replicant's version in `GET /api/v5/nodes`, asked of r1.
    let api = Api::new(r1.http_addr().expect("r1 http")).with_key(Some(KEY));
    let entry = |list: &Value, node: &str| -> Value {
        list.as_array()
            .and_then(|a| a.iter().find(|n| n["node"] == node).cloned())
            .unwrap_or(Value::Null)
    };
    let (api, entry) = (&api, &entry);
    let shown = wait_until_async(WAIT, || async move {
        let (status, list) = api.get("/api/v5/nodes").await;
        status == 200
            && entry(&list, "r1")["wire_protocol"] == ours.to_string()
            && entry(&list, "r2")["wire_protocol"] == newer.to_string()
    })
    .await;
    let (_, list) = api.get("/api/v5/nodes").await;
    assert!(shown, "{list}");
    // r2 stopped: its row (from its NodeUp) still says what it spoke.
    r2.shutdown().await;
    let from_row = wait_until_async(WAIT, || async move {
        let (_, list) = api.get("/api/v5/nodes").await;
        let r2 = entry(&list, "r2");
        r2["live_connections"].is_null() && r2["wire_protocol"] == newer.to_string()
    })
    .await;
    let (_, list) = api.get("/api/v5/nodes").await;
    assert!(from_row, "{list}");
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicant_of_another_major_is_refused_by_the_cores() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let ours = WireVersion::CURRENT;
    let other = WireVersion::new(ours.major + 1, 0);
    let (by_core, at_replicant) = (refused("replicant"), refused("core"));
    let mut config = keyed(&cluster, "r9");
    config.cluster.transact_timeout_ms = 2_000;
    let err = match start_speaking(config, other).await {
        Ok(_) => panic!("a replicant of another major must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!(
            "replicant r9 speaks meshmq inter-node protocol {other}; this core speaks {}.x",
            ours.major
        )),
        "{err}"
    );
    // Counted on both ends: by the cores (the other end is a replicant) and by it.
    assert!(refused("replicant") > by_core, "counted by the cores");
    assert!(refused("core") > at_replicant, "counted by the replicant");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cores_of_another_major_make_a_running_replicant_not_ready_until_they_match() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, fast_timings()).await;
    let ours = WireVersion::CURRENT;
    let other = WireVersion::new(ours.major + 1, 0);
    let r1 = start_speaking(keyed(&cluster, "r1"), ours)
        .await
        .expect("r1");
    let http = r1.http_addr().expect("r1 http");
    let open = Api::new(http);
    let (status, _) = open.get("/api/v5/load_rebalance/availability_check").await;
    assert_eq!(status, 200);
    let before = refused("core");

    // Every core moves to another major; the followed one goes away, so r1 picks again.
    for core in cluster.live() {
        core.wire.set_version(other);
    }
    let followed = r1
        .core()
        .link()
        .current_core()
        .expect("following")
        .to_string();
    let id = cluster
        .live()
        .iter()
        .find(|c| c.addr == followed)
        .map(|c| c.id)
        .expect("the followed core");
    cluster.kill(id).await;
    let link = r1.core().link();
    assert!(
        wait_until(WAIT, || link.wire_refused().is_some()
            && link.current_core().is_none())
        .await,
        "r1 sees the refusal"
    );
    let why = link.wire_refused().unwrap_or_default();
    let major = other.major;
    assert!(
        why.contains("inter-node protocol")
            && (why.contains(&format!("{major}.x")) || why.contains(&other.to_string())),
        "{why}"
    );
    assert!(refused("core") > before, "counted");
    // Not ready: the availability check says why; /health shows it in core_link.
    let (status, body) = open.get("/api/v5/load_rebalance/availability_check").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "WIRE_PROTOCOL_REFUSED", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("inter-node protocol"),
        "{body}"
    );
    let (status, health) = open.get("/health").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["core_link"]["state"], "down", "{health}");
    assert!(health["core_link"]["wire_refused"].is_string(), "{health}");

    // It keeps retrying: once the cores speak its major again it follows and is ready.
    for core in cluster.live() {
        core.wire.set_version(ours);
    }
    assert!(
        wait_until(WAIT, || link.wire_refused().is_none()
            && link.current_core().is_some())
        .await,
        "r1 follows again"
    );
    let (status, body) = open.get("/api/v5/load_rebalance/availability_check").await;
    assert_eq!(status, 200, "{body}");
    r1.shutdown().await;
    cluster.stop().await;
}
