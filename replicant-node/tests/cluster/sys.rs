//! `$SYS` across replicants: a watcher on r1 receives r2's client events (named after r2)
//! and r2's periodic stats; a client that moves from r2 to r1 gives a `connected` event from
//! r1 and a `disconnected` event with reason `takenover` from r2. Client publications into
//! `$SYS` still never cross nodes (tests/mqtt/sys_publish.rs refuses them at the source).

use std::collections::HashMap;
use std::time::Instant;

use meshmq_shared::codec::{ProtocolVersion::V5, QoS};
use serde_json::Value;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::unique;
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// PUBLISHes on `sub` by topic until `want` topics arrived; panics at the deadline.
async fn topics(sub: &mut RawClient, want: usize) -> HashMap<String, Vec<u8>> {
    let end = Instant::now() + WAIT;
    let mut seen = HashMap::new();
    while seen.len() < want {
        let left = end.saturating_duration_since(Instant::now());
        match sub.try_recv_publish(left).await {
            Ok(p) => {
                seen.insert(p.topic.clone(), p.payload.to_vec());
            }
            Err(e) => panic!("{e:?} after {:?}", seen.keys().collect::<Vec<_>>()),
        }
    }
    seen
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON payload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_stats_of_one_replicant_reach_a_watcher_on_another() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster
        .start_replicant_with("r2", |c| c.sys_topics.sys_msg_interval = "1s".into())
        .await;
    let id = unique("sys-mover");
    let mut w = RawClient::connect(r1.mqtt_addr(), V5, &unique("sys-watch")).await;
    w.subscribe(&format!("$SYS/brokers/+/clients/{id}/+"), QoS::AtMostOnce)
        .await;

    let mut persistent = connect_packet(V5, &id);
    persistent.clean_start = false;
    persistent.properties.session_expiry_interval = Some(60);
    let (_on_r2, _) = RawClient::connect_with(r2.mqtt_addr(), persistent.clone()).await;
    let seen = topics(&mut w, 1).await;
    let on_r2 = format!("$SYS/brokers/r2/clients/{id}/connected");
    let v = json(seen.get(&on_r2).expect("r2's connected event on r1"));
    assert_eq!(
        (v["clientid"].as_str(), v["clean_start"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
    assert_eq!(v["expiry_interval"], 60);

    // The client moves to r1: r1 says connected, r2 says disconnected (taken over).
    let (_on_r1, _) = RawClient::connect_with(r1.mqtt_addr(), persistent).await;
    let seen = topics(&mut w, 2).await;
    assert!(
        seen.contains_key(&format!("$SYS/brokers/r1/clients/{id}/connected")),
        "{seen:?}"
    );
    let gone = format!("$SYS/brokers/r2/clients/{id}/disconnected");
    let v = json(seen.get(&gone).expect("r2's disconnected event on r1"));
    assert_eq!(v["reason"], "takenover");

    // r2's periodic stats (1 s) reach r1 too; r1's own (default 1 min) do not come yet.
    w.subscribe("$SYS/brokers/+/stats/connections/count", QoS::AtMostOnce)
        .await;
    // Until it counts 0: r2's connection ends (and is uncounted) just after its event.
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let p = w
            .try_recv_publish(left)
            .await
            .expect("r2's stats on r1, down to 0");
        assert_eq!(p.topic, "$SYS/brokers/r2/stats/connections/count");
        let n: u64 = std::str::from_utf8(&p.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("a count");
        assert!(n <= 1, "r2 had one client: {n}");
        if n == 0 {
            break;
        }
    }
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
