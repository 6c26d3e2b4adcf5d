//! The two pieces a rolling upgrade stands on, against real nodes:
//!
//! - `replicant-node ctl rebalance start --evacuation --wait-done SECS` (the real binary)
//!   returns once the evacuated node has moved every connection and session, while its
//!   clients are evicted and resume elsewhere; a second call is fine (idempotent); a wait
//!   that runs out exits 1 with the state it saw.
//! - `loadtest` (the library, in this process) counts what a client of an evacuated node
//!   lives through: each persistent subscriber disconnected once, following the Server
//!   Reference, its session found on the other node, no QoS 1 message lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use loadtest::cli::{Cli, Command};
use loadtest::figures::Figures;
use loadtest::live::Live;
use serde_json::Value;

use crate::common::{http_get, http_post, unique, wait_until, wait_until_async};
use crate::evacuation::{API, REDIRECT, await_evictions, http, loaded, status_of, wait_state};
use crate::harness::{Cluster, fast_timings, serial};

/// Runs `replicant-node ctl --api API ARGS...` without a key: (success, stdout, stderr,
/// seconds it took).
async fn ctl(api: SocketAddr, args: &[&str]) -> (bool, String, String, f64) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_replicant-node"));
    // Without a backtrace request the error is one line (shared/src/startup.rs).
    for var in ["MESHMQ_CTL_API_KEY", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
        cmd.env_remove(var);
    }
    cmd.arg("ctl").arg("--api").arg(api.to_string()).args(args);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run replicant-node ctl"))
        .await
        .expect("ctl task");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let took = started.elapsed().as_secs_f64();
    (
        out.status.success(),
        text(out.stdout),
        text(out.stderr),
        took,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_wait_done_returns_once_everything_moved() {
    const N: usize = 40;
    let _serial = serial().await;
    let cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let (_specs, connected) = loaded(r1.mqtt_addr(), "wd", N).await;
    let settled = wait_until_async(Duration::from_secs(10), || async { r1.sessions() == N }).await;
    assert!(settled, "every session on r1: {}", r1.sessions());
    // The clients wait for their eviction and the persistent ones resume on r2.
    let mut clients = await_evictions(connected, [r2.mqtt_addr(), r2.mqtt_addr()]);
    let start = [
        "rebalance",
        "start",
        "--evacuation",
        "--node",
        "r1",
        "--wait-health-check",
        "0",
        "--wait-takeover",
        "3",
        "--redirect-to",
        REDIRECT,
        "--migrate-to",
        "r2",
        "--wait-done",
        "60",
    ];
    // Through r2's API: the wait follows r1 in the cluster's global status.
    let (ok, out, err, took) = ctl(http(&r2), &start).await;
    assert!(ok, "ctl --wait-done: {out} {err}");
    let done: Value = serde_json::from_str(out.trim()).expect("the last status as JSON");
    assert_eq!(done["node"], "r1", "{done}");
    assert_eq!(done["state"], "prohibiting", "{done}");
    // Done means done: nothing is left on r1 when the command returns.
    let status = status_of(&r1).await;
    assert_eq!(status["state"], "prohibiting", "{status}");
    assert_eq!(r1.sessions(), 0, "every session left r1");
    assert_eq!(r1.connections(), 0, "every connection left r1");
    while let Some(r) = clients.join_next().await {
        r.expect("evicted client, persistent ones resumed on r2");
    }
    println!("ctl --wait-done returned after {took:.2} s");

    // Idempotent: the same command on a node already evacuated succeeds at once.
    let (ok, out, err, again) = ctl(http(&r1), &start).await;
    assert!(ok, "a second ctl --wait-done: {out} {err}");
    assert!(again < 10.0, "the second call took {again:.2} s");

    // A wait that runs out: r2's own evacuation (to r3) holds its health-check wait for a
    // minute; a 1 s --wait-done exits 1 naming the state, and the evacuation goes on.
    let _r3 = cluster.start_replicant("r3").await;
    let up = wait_until_async(Duration::from_secs(10), || async {
        let (_, body) = http_get(http(&r2), "/api/v5/nodes").await;
        body.contains(r#""node":"r3""#)
    })
    .await;
    assert!(up, "r3 is in the nodes table");
    let (ok, out, err, took) = ctl(
        http(&r2),
        &[
            "rebalance",
            "start",
            "--evacuation",
            "--wait-health-check",
            "60",
        ]
        .into_iter()
        .chain(["--migrate-to", "r3", "--wait-done", "1"])
        .collect::<Vec<_>>(),
    )
    .await;
    assert!(!ok, "must fail: {out}");
    assert!(
        err.contains("evacuation of r2 not done after 1 s (state: waiting_health_check)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(took < 10.0, "gave up after {took:.2} s");
    assert_eq!(status_of(&r2).await["state"], "waiting_health_check");
    let (code, body) = http_post(http(&r2), &format!("{API}/r2/evacuation/stop"), "").await;
    assert_eq!(code, 200, "{body}");
    cluster.stop().await;
}

/// `loadtest ARGS...` planned and started in this process: its counters and the task
/// that ends with its figures. The run stops when `stop` fires (or by itself).
fn start_loadtest(
    args: &[&str],
    stop: loadtest::counters::Stop,
) -> (Arc<Live>, tokio::task::JoinHandle<Figures>) {
    let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let plan = match cli.command {
        Command::Sub(a) => a.plan(),
        Command::Pub(a) => a.plan(),
        other => panic!("not sub or pub: {other:?}"),
    }
    .unwrap_or_else(|e| panic!("{args:?}: {e:#}"));
    let live = Arc::new(Live::new());
    let task = tokio::spawn(loadtest::runner::run_plan(
        Arc::new(plan),
        live.clone(),
        stop,
    ));
    let task = tokio::spawn(async move { task.await.expect("loadtest task").expect("run") });
    (live, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_counts_one_disconnect_per_client_of_an_evacuated_node() {
    const SUBS: u64 = 10;
    const PUBS: u64 = 2;
    const EACH: u64 = 150;
    let _serial = serial().await;
    let cluster = Cluster::start(1, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let run = unique("lt");
    let (r1_mqtt, r2_mqtt) = (r1.mqtt_addr().to_string(), r2.mqtt_addr().to_string());
    let filter = format!("{run}/#");
    let topic = format!("{run}/%i");
    let (subs, pubs) = (SUBS.to_string(), PUBS.to_string());
    let persistent = ["-q", "1", "-C", "false", "-x", "600", "--timeout", "10"];
    let mut sub_args = vec!["sub", "-h", &r1_mqtt, "-c", &subs, "-t", &filter];
    sub_args.extend(persistent);
    sub_args.extend(["--prefix", &run, "--duration", "120"]);
    let (sub_trigger, sub_stop) = loadtest::counters::stop_signal();
    let (sub_live, sub_task) = start_loadtest(&sub_args, sub_stop);
    let subscribed = wait_until(Duration::from_secs(20), || {
        sub_live.subscribed.load(Ordering::Relaxed) >= SUBS
    })
    .await;
    assert!(subscribed, "the subscribers subscribed");

    // Publishers on r2 (they stay put), every 20 ms.
    let each = EACH.to_string();
    let mut pub_args = vec!["pub", "-h", &r2_mqtt, "-c", &pubs, "-t", &topic];
    pub_args.extend(persistent);
    pub_args.extend(["-I", "20", "-L", &each, "-F", "8", "--prefix", &run]);
    let (_pub_trigger, pub_stop) = loadtest::counters::stop_signal();
    let (pub_live, pub_task) = start_loadtest(&pub_args, pub_stop);
    let flowing = wait_until(Duration::from_secs(20), || {
        pub_live.acked.load(Ordering::Relaxed) >= 20
    })
    .await;
    assert!(flowing, "messages flow before the evacuation");

    // Evacuate r1: its subscribers are sent to r2 by the Server Reference.
    let body = format!(
        r#"{{"wait_health_check": 0, "wait_takeover": 10, "conn_evict_rate": 20,
            "redirect_to": "{r2_mqtt}", "migrate_to": ["r2"]}}"#
    );
    let (code, answer) = http_post(http(&r2), &format!("{API}/r1/evacuation/start"), &body).await;
    assert_eq!(code, 200, "{answer}");
    wait_state(&r1, "prohibiting", Duration::from_secs(60)).await;
    let p = tokio::time::timeout(Duration::from_secs(60), pub_task)
        .await
        .expect("the publishers finish")
        .expect("publishers");
    assert_eq!(p.acked, PUBS * EACH, "every message acknowledged: {p:?}");
    // Every subscriber session on r2, nothing in flight or queued: all delivered and acked.
    let drained = wait_until_async(Duration::from_secs(30), || async {
        let (_, body) = http_get(
            http(&r2),
            &format!("/api/v5/clients?like_clientid={run}_sub&limit=100"),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let rows = v["data"].as_array().cloned().unwrap_or_default();
        rows.len() as u64 == SUBS
            && rows.iter().all(|c| {
                c["node"] == "r2"
                    && c["connected"] == true
                    && c["inflight_cnt"] == 0
                    && c["mqueue_len"] == 0
            })
    })
    .await;
    assert!(drained, "every subscriber on r2 with nothing in flight");
    sub_trigger.fire();
    let s = tokio::time::timeout(Duration::from_secs(30), sub_task)
        .await
        .expect("the subscribers stop")
        .expect("subscribers");
    println!(
        "subscribers: disconnects {} (max {} per client, {:?}), sessions lost {}, received {}, lost {}, duplicated {}",
        s.disconnects,
        s.max_disconnects_per_client,
        s.clients_by_disconnects,
        s.sessions_lost,
        s.received,
        s.lost,
        s.duplicated
    );
    assert_eq!(s.disconnects, SUBS, "{s:?}");
    assert_eq!(s.max_disconnects_per_client, 1);
    assert_eq!(s.clients_by_disconnects["0"], 0);
    assert_eq!(s.clients_by_disconnects["1"], SUBS);
    assert_eq!(s.clients_by_disconnects["2+"], 0);
    assert_eq!(s.sessions_lost, 0, "every session found on r2");
    assert!(
        s.redirects >= SUBS,
        "the Server Reference was followed: {}",
        s.redirects
    );
    assert_eq!(s.lost, 0);
    for row in &s.subscribers {
        assert_eq!(row.received - row.duplicated, PUBS * EACH, "{row:?}");
    }
    assert_eq!(
        (p.disconnects, p.sessions_lost),
        (0, 0),
        "the publishers stayed on r2"
    );
    assert_eq!(p.clients_by_disconnects["0"], PUBS);
    cluster.stop().await;
}
