//! `--workers 2` runs the `loadtest` binary as a parent of two worker processes: the
//! parent's summary and `--json` must hold the merged counts (sums, per-subscriber rows of
//! both workers, latency histograms added).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{FakeBroker, Faults, run};

const BIN: &str = env!("CARGO_BIN_EXE_loadtest");

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn loadtest(args: &[&str]) -> (bool, String) {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), child)
        .await
        .expect("loadtest ends in time")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_merge_counts_rows_and_histograms() {
    let broker = FakeBroker::start(Faults::default()).await;
    let port = broker.port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let sub_json = dir.path().join("sub.json");
    let sub = tokio::spawn({
        let port = port.clone();
        let path = sub_json.to_str().unwrap().to_owned();
        async move {
            loadtest(&[
                "sub",
                "--workers",
                "2",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-c",
                "4",
                "-i",
                "0",
                "-t",
                "w/#",
                "-q",
                "1",
                "-L",
                "50",
                "--json",
                &path,
            ])
            .await
        }
    });
    let subscribed = broker
        .wait_for(Duration::from_secs(20), |s| {
            s.subscribed.load(Ordering::Relaxed) == 4
        })
        .await;
    assert!(subscribed);
    let pubs = run(&[
        "pub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "2",
        "-t",
        "w/%i",
        "-q",
        "1",
        "-I",
        "0",
        "-L",
        "25",
    ])
    .await;
    assert_eq!(pubs.published, 50);
    let (ok, text) = sub.await.unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("2 process(es)"), "{text}");
    let report = json(&sub_json);
    let f = &report["figures"];
    assert_eq!(f["processes"], 2, "{text}");
    assert_eq!(f["connected"], 4);
    assert_eq!(f["subscribed"], 4);
    assert_eq!(f["received"], 200);
    assert_eq!(f["lost"], 0);
    let rows = f["subscribers"].as_array().unwrap();
    let clients: Vec<u64> = rows.iter().map(|r| r["client"].as_u64().unwrap()).collect();
    assert_eq!(clients, [0, 1, 2, 3]);
    assert!(rows.iter().all(|r| r["received"] == 50));
    assert_eq!(report["e2e_latency_us"]["count"], 200);
    assert_eq!(report["connect_latency_us"]["count"], 4);

    let pub_json = dir.path().join("pub.json");
    let (ok, text) = loadtest(&[
        "pub",
        "--workers",
        "2",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-c",
        "5",
        "-t",
        "x/%i",
        "-q",
        "1",
        "-I",
        "0",
        "-L",
        "30",
        "--json",
        pub_json.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "{text}");
    let report = json(&pub_json);
    assert_eq!(report["figures"]["published"], 150, "{text}");
    assert_eq!(report["figures"]["acked"], 150);
    assert_eq!(report["figures"]["connected"], 5);
    assert_eq!(broker.stats.published.load(Ordering::Relaxed), 200);
    // Client ids are global indices, split 0..2 and 2..5 between the workers.
    let ids = broker.stats.client_ids.lock().await.clone();
    for i in 0..5 {
        assert!(ids.contains(&format!("loadtest_pub_{i}")), "{ids:?}");
    }
}

#[tokio::test]
async fn unbounded_and_remote_runs_are_refused_by_the_binary() {
    let (ok, text) = loadtest(&["conn", "-c", "1"]).await;
    assert!(!ok && text.contains("--duration"), "{text}");
    let (ok, text) = loadtest(&["sub", "-t", "a", "-h", "10.1.2.3", "--duration", "1"]).await;
    assert!(!ok && text.contains("non-loopback"), "{text}");
    let (ok, text) = loadtest(&["conn", "--help"]).await;
    assert!(ok && text.contains("-h, --host"), "{text}");
}
