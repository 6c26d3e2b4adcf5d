//! Cluster load rebalance: 3 000 clients all on r1, r2 and r3 empty; a rebalance
//! coordinated by r2 makes r1 the donor, which evicts connections (MQTT 5: DISCONNECT 0x9C,
//! no Server Reference) down to the average while its clients reconnect to r2/r3 (as their
//! load balancer would send them, r1 answering 503); it ends within the thresholds and r1
//! serves again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshmq_shared::codec::{Packet, ProtocolVersion, ReasonCode};
use tokio::task::JoinSet;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{http_post, unique, wait_until, wait_until_async};
use crate::evacuation::{API, availability, http};
use crate::harness::{Cluster, fast_timings, serial};

const N: usize = 3_000;
const ABS: u64 = 100;
const REL: f64 = 1.1;

/// Waits for the eviction, checks what came before the close, reconnects through `to` and
/// keeps the connection (returned, so that it stays open).
async fn evicted_then_moved(
    c: RawClient,
    version: ProtocolVersion,
    id: String,
    to: SocketAddr,
) -> RawClient {
    let mut c = c;
    let seen = c.wait_closed(Duration::from_secs(120)).await;
    if version.is_v5() {
        match seen.as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason, ReasonCode::UseAnotherServer, "{id}");
                assert_eq!(d.properties.server_reference, None, "{id}");
            }
            other => panic!("{id}: expected one DISCONNECT 0x9C, got {other:?}"),
        }
    } else {
        assert!(seen.is_empty(), "{id}: {seen:?}");
    }
    RawClient::connect(to, version, &id).await
}

/// (connected clients, sessions) in `node`'s row of a replica.
fn node_counts(t: &meshmq_shared::tables::Tables, node: &str) -> (u64, u64) {
    t.node(node)
        .map_or((0, 0), |r| (r.connected_clients, r.sessions))
}

fn within_thresholds(conns: &[u64]) -> bool {
    let avg = conns.iter().sum::<u64>() as f64 / conns.len() as f64;
    conns
        .iter()
        .all(|&c| !(c as f64 > avg + ABS as f64 && c as f64 > avg * REL))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_moves_3000_clients_from_r1_until_within_thresholds() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let run = unique("rb");
    let mut clients = Vec::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(100) {
        let mut set = JoinSet::new();
        for &i in chunk {
            let version = if i % 2 == 0 {
                ProtocolVersion::V5
            } else {
                ProtocolVersion::V311
            };
            let id = format!("{run}-{i}");
            let addr = r1.mqtt_addr();
            set.spawn(async move {
                let (c, ack) = RawClient::connect_with(addr, connect_packet(version, &id)).await;
                assert_eq!(ack.code, ReasonCode::Success);
                (c, version, id)
            });
        }
        while let Some(r) = set.join_next().await {
            clients.push(r.expect("client connected"));
        }
    }
    assert_eq!(r1.connections(), N);
    // The counts the planner reads: r1's row on r2's replica counts r1's clients, which
    // r2 does not hold (its replica keeps the projection of the registry: its own clients).
    let counted = wait_until(Duration::from_secs(30), || {
        r2.core().read(|t| node_counts(t, "r1")) == (N as u64, N as u64)
    })
    .await;
    assert_eq!(
        r2.core().read(|t| t.registry_count()),
        0,
        "r2 holds none of r1's rows"
    );
    assert!(counted, "{:?}", r2.core().read(|t| node_counts(t, "r1")));

    let (code, answer) = http_post(http(&r1), &format!("{API}/r2/stop"), "").await;
    assert_eq!(code, 400, "nothing to stop yet: {answer}");
    let body = format!(
        r#"{{"wait_health_check": 0, "conn_evict_rate": 1000, "wait_takeover": 1,
            "abs_conn_threshold": {ABS}, "rel_conn_threshold": {REL},
            "abs_sess_threshold": {ABS}, "rel_sess_threshold": {REL}}}"#
    );
    let bad = r#"{"rel_conn_threshold": 1.0}"#;
    let (code, answer) = http_post(http(&r2), &format!("{API}/r2/start"), bad).await;
    assert_eq!(code, 400, "rel threshold must be > 1: {answer}");
    let (code, answer) = http_post(http(&r2), &format!("{API}/r2/start"), &body).await;
    assert_eq!(code, 200, "{answer}");
    let plan: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    assert_eq!(plan["donors"], serde_json::json!(["r1"]), "{plan}");
    assert_eq!(plan["connection_goal"], N / 3, "{plan}");

    let moved = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    let targets = [r2.mqtt_addr(), r3.mqtt_addr()];
    for (i, (c, version, id)) in clients.into_iter().enumerate() {
        let (to, moved) = (targets[i % 2], moved.clone());
        tasks.spawn(async move {
            let c = evicted_then_moved(c, version, id, to).await;
            moved.fetch_add(1, Ordering::Relaxed);
            c
        });
    }
    let unavailable = wait_until_async(Duration::from_secs(10), || async {
        availability(&r1).await == 503
    })
    .await;
    assert!(unavailable, "the donor answers 503 while it gives");
    let back = wait_until_async(Duration::from_secs(90), || async {
        availability(&r1).await == 200
    })
    .await;
    assert!(back, "the donor serves again once within its goal");
    let all_moved = wait_until(Duration::from_secs(60), || {
        moved.load(Ordering::Relaxed) == N - N / 3
    })
    .await;
    assert!(
        all_moved,
        "moved {} of {}",
        moved.load(Ordering::Relaxed),
        N - N / 3
    );
    let conns = [r1.connections(), r2.connections(), r3.connections()].map(|c| c as u64);
    println!(
        "after the rebalance: r1 {} r2 {} r3 {}",
        conns[0], conns[1], conns[2]
    );
    assert_eq!(conns[0], (N / 3) as u64, "r1 evicted down to the average");
    assert!(within_thresholds(&conns), "{conns:?}");
    // Every replica's node rows agree with the nodes' own connection counts.
    let connected_rows = |r: &replicant_node::BrokerHandle| {
        r.core()
            .read(|t| ["r1", "r2", "r3"].map(|n| node_counts(t, n).0))
    };
    let agree = wait_until(Duration::from_secs(30), || {
        [&r1, &r2, &r3].iter().all(|r| connected_rows(r) == conns)
    })
    .await;
    assert!(agree, "{conns:?} vs {:?}", connected_rows(&r3));
    let (code, answer) = http_post(http(&r3), &format!("{API}/r3/start"), &body).await;
    assert_eq!(code, 400, "balanced now: {answer}");
    assert!(answer.contains("nothing to balance"), "{answer}");
    RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &unique("rb-back")).await;

    tasks.abort_all();
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}
