//! `replicant-node ctl rebalance start --evacuation --wait-done SECS` (the real binary), the
//! one evacuate-and-wait command of rolling upgrades: it returns once the node reports
//! `prohibiting` (its clients and sessions moved), is not an error on a node that already
//! evacuates, and fails with one line when the node is not done in time.

use std::net::SocketAddr;

use meshmq_shared::codec::ProtocolVersion;

use crate::common::raw::RawClient;
use crate::common::unique;
use crate::evacuation::{availability, http};
use crate::harness::{Cluster, fast_timings, serial};

const KEY: &str = "evacuation-wait-test-key";

/// Runs `replicant-node ctl --api API --api-key KEY ARGS...`: (success, stdout, stderr).
async fn ctl(api: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    cmd.env_remove("MESHMQ_CTL_API_KEY");
    cmd.arg("ctl")
        .arg("--api")
        .arg(api.to_string())
        .arg("--api-key")
        .arg(KEY);
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run replicant-node ctl"))
        .await
        .expect("ctl task");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_done_returns_once_prohibiting_is_idempotent_and_times_out_with_one_line() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let keyed = |c: &mut meshmq_shared::config::Config| c.listeners.api_key = Some(KEY.into());
    let r1 = cluster.start_replicant_with("r1", keyed).await;
    let r2 = cluster.start_replicant_with("r2", keyed).await;
    let r3 = cluster.start_replicant_with("r3", keyed).await;
    let _client = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("ev-w")).await;

    // r2, asked through r2's own API (no --node): done when the command returns.
    let evacuate = [
        "rebalance",
        "start",
        "--evacuation",
        "--wait-health-check",
        "0",
        "--wait-takeover",
        "0",
        "--migrate-to",
        "r1",
        "--wait-done",
        "60",
    ];
    let (ok, out, err) = ctl(http(&r2), &evacuate).await;
    assert!(ok, "{out} {err}");
    assert!(out.contains("\"state\":\"prohibiting\""), "{out}");
    assert!(out.contains("\"node\":\"r2\""), "{out}");
    assert_eq!(availability(&r2).await, 503);
    // Again (a preStop after a lifecycle hook): not an error, done at once.
    let (ok, out, err) = ctl(http(&r2), &evacuate).await;
    assert!(ok, "already evacuated: {out} {err}");
    assert!(out.contains("prohibiting"), "{out}");

    // r3, through r1, with a health-check wait longer than the bound: exit 1, one line.
    let slow = [
        "rebalance",
        "start",
        "--evacuation",
        "--node",
        "r3",
        "--wait-health-check",
        "3600",
        "--wait-done",
        "1",
    ];
    let (ok, out, err) = ctl(http(&r1), &slow).await;
    assert!(!ok, "not done in 1 s: {out}");
    let line = err.lines().find(|l| l.contains("r3")).unwrap_or_default();
    assert!(
        line.contains("not done within 1 s") && line.contains("waiting_health_check"),
        "{err}"
    );
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}
