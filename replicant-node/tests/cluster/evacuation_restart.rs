//! Evacuation interrupted by a restart of the evacuated node: a graceful stop
//! finishes the evacuation first (every connection evicted with 0x9C, every offline session
//! migrated with its queue), and the node comes back still evacuating (the plan is in its
//! `nodes` row): 503 and refusals from its first CONNECT.

use std::time::{Duration, Instant};

use replicant_node::BrokerHandle;
use tokio::task::JoinSet;

use crate::common::{http_post, wait_until_async};
use crate::evacuation::{
    API, Kind, REDIRECT, availability, await_evictions, expect_refused, http, loaded, resume,
    status_of, wait_state,
};
use crate::harness::{Cluster, fast_timings, serial};

/// Waits until `node` has evicted at least `n` connections.
async fn wait_evicted(node: &BrokerHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status_of(node).await;
        if st["stats"]["evicted_connections"].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{n} evictions not reached: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 2 000 clients on r1 (1 000 clean, 500 persistent connected, 500 persistent offline with
/// 3 queued QoS 1 messages each); the evacuation evicts at 500/s and r1 is stopped after
/// 500 evictions, then started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuation_survives_a_restart_of_the_evacuated_node() {
    const N: usize = 2_000;
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let (specs, connected) = loaded(r1.mqtt_addr(), "evr", N).await;

    let body = format!(
        r#"{{"wait_health_check": 0, "conn_evict_rate": 500, "redirect_to": "{REDIRECT}",
            "wait_takeover": 60}}"#
    );
    let (code, answer) = http_post(http(&r1), &format!("{API}/r1/evacuation/start"), &body).await;
    assert_eq!(code, 200, "{answer}");
    let targets = [r2.mqtt_addr(), r3.mqtt_addr()];
    let mut clients = await_evictions(connected, targets);
    wait_evicted(&r1, 500).await;
    // Stopping mid-eviction: the rest is evicted and migrated before the process goes.
    r1.shutdown().await;
    while let Some(r) = clients.join_next().await {
        r.expect("every connected client evicted (0x9C), persistent ones resumed elsewhere");
    }

    let r1 = cluster.start_replicant("r1").await;
    assert_eq!(
        availability(&r1).await,
        503,
        "a restarted node is still evacuating from its first request"
    );
    expect_refused(r1.mqtt_addr()).await;
    let done = wait_state(&r1, "prohibiting", Duration::from_secs(60)).await;
    assert_eq!(done["status"], "enabled", "{done}");
    assert_eq!(r1.sessions(), 0);
    let offline: Vec<_> = specs
        .iter()
        .filter(|s| s.kind == Kind::Offline)
        .cloned()
        .collect();
    let mut resumes = JoinSet::new();
    for (i, s) in offline.into_iter().enumerate() {
        let to = targets[i % 2];
        resumes.spawn(async move { resume(to, &s).await });
    }
    while let Some(r) = resumes.join_next().await {
        r.expect("offline session resumed with every queued message");
    }
    let (code, answer) = http_post(http(&r2), &format!("{API}/r1/evacuation/stop"), "").await;
    assert_eq!(code, 200, "{answer}");
    let back = wait_until_async(Duration::from_secs(10), || async {
        availability(&r1).await == 200
    })
    .await;
    assert!(back, "r1 available again after stop");
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}
