//! `loadtest retained-replay` against the real broker (`replicant_node::Broker`, standalone,
//! in this process on loopback port 0), small: every stored retained message must be
//! counted once, every window must have latency samples, and the broker's RSS is read.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;

use loadtest::retained_replay::{RetainedReplayArgs, run};
use meshmq_shared::config::Config;
use replicant_node::Broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_counts_every_retained_message_once_and_times_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.listeners.mqtt_bind = any;
    config.listeners.ws_bind = None;
    config.listeners.http_bind = None;
    config.cluster.peer_bind = any;
    config.node.data_dir = dir.path().to_path_buf();
    let broker = Broker::builder(config).start().await.unwrap();
    let args = RetainedReplayArgs {
        host: "127.0.0.1".into(),
        port: broker.mqtt_addr().port(),
        mqtt_version: 4,
        retained: 2_000,
        size: 100,
        loaders: 4,
        publishers: 2,
        rate: 200.0,
        qos: 1,
        live_retain: false,
        filter: "#".into(),
        sub_qos: 1,
        before: 1.5,
        after: 1.0,
        idle: 5.0,
        max_replay: 60.0,
        timeout: 10.0,
        broker_pid: vec![std::process::id()],
        broker_name: "meshmq".into(),
        json: None,
    };
    let r = run(&args).await.unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!((r.received, r.distinct), (2_000, 2_000), "{}", r.to_text());
    assert!(r.replay_secs > 0.0 && r.replay_rate > 0.0);
    assert!(r.delivery.before.count > 0 && r.delivery.after.count > 0);
    assert!(r.puback.before.count > 0 && r.puback.after.count > 0);
    assert!(r.rss_before_mib.is_some() && r.rss_end_mib.is_some());
    assert!(
        r.to_text()
            .contains("2000 received (2000 distinct, 0 duplicates)")
    );
}
