//! `POST /api/v5/cluster/snapshot[?purge=true]` on a real core: it needs the API key; with it
//! the core builds a snapshot covering every applied entry and, when asked, purges its log
//! up to it (what the tables benchmark uses before starting a fresh replicant).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use core_node::http::auth::ApiKey;
use core_node::http::{self, HttpConfig};
use meshmq_proto::tables::{Op, RegistryClaim, op::Kind};

#[path = "common/admin.rs"]
mod admin;
use admin::http;

const BEARER: &str = "Bearer k3y-for-the-admin-api";

fn claim(i: u32) -> Op {
    Op {
        kind: Some(Kind::RegistryClaim(RegistryClaim {
            client_id: format!("c{i}"),
            node: "n1".into(),
            incarnation: 1,
            clean_start: true,
            session_expiry_secs: 0,
            protocol_level: 5,
            now_ms: 1,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_on_demand_builds_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let cfg = HttpConfig {
        api_key: Some(ApiKey::new("k3y-for-the-admin-api").unwrap()),
        ..HttpConfig::plain("127.0.0.1:0".parse().unwrap())
    };
    let api = http::serve(core.clone(), cfg).await.unwrap();
    let mut last = 0;
    for i in 0..20 {
        last = core.transact(vec![claim(i)]).await.unwrap().index;
    }
    assert!(core.raft.metrics().borrow().snapshot.is_none());

    let path = "/api/v5/cluster/snapshot?purge=true";
    let (status, body) = http(api, "POST", path, &[], "").await;
    assert_eq!(status, 401, "{body}");
    let wrong = [("authorization", "Bearer not-the-key-of-this-api")];
    let (status, body) = http(api, "POST", path, &wrong, "").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        core.raft.metrics().borrow().snapshot.is_none(),
        "no key, no snapshot"
    );

    // Without purge: a snapshot, the log stays.
    let auth = [("authorization", BEARER)];
    let (status, body) = http(api, "POST", "/api/v5/cluster/snapshot", &auth, "").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["snapshot_index"].as_u64().unwrap() >= last, "{body}");
    assert!(v["purged_index"].is_null(), "{body}");
    assert!(v["build_seconds"].as_f64().unwrap() >= 0.0, "{body}");
    assert!(core.raft.metrics().borrow().purged.is_none());

    // With purge: the log goes up to the new snapshot.
    last = core.transact(vec![claim(99)]).await.unwrap().index;
    let (status, body) = http(api, "POST", path, &auth, "").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let index = v["snapshot_index"].as_u64().unwrap();
    assert!(index >= last, "{body}");
    assert_eq!(v["purged_index"].as_u64(), Some(index), "{body}");
    let m = core.raft.metrics().borrow().clone();
    assert_eq!(m.snapshot.map(|s| s.index), Some(index));
    assert_eq!(m.purged.map(|p| p.index), Some(index));
    core.shutdown().await;
}

/// One compaction at a time per core: while one runs (its build held by the state machine's
/// build hook), a second request is answered 409 at once instead of queueing another build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_compaction_while_one_runs_is_refused() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, mpsc};

    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    let cfg = HttpConfig {
        api_key: Some(ApiKey::new("k3y-for-the-admin-api").unwrap()),
        ..HttpConfig::plain("127.0.0.1:0".parse().unwrap())
    };
    let api = http::serve(core.clone(), cfg).await.unwrap();
    for i in 0..5 {
        core.transact(vec![claim(i)]).await.unwrap();
    }
    let building = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let started = Arc::clone(&building);
    core.sm.set_build_hook(Some(Arc::new(move || {
        started.store(true, Ordering::SeqCst);
        let _ = release_rx.lock().unwrap().recv_timeout(admin::WAIT);
    })));

    let auth = [("authorization", BEARER)];
    let first =
        tokio::spawn(async move { http(api, "POST", "/api/v5/cluster/snapshot", &auth, "").await });
    admin::wait_until("the first compaction's build starts", || {
        building.load(Ordering::SeqCst)
    })
    .await;
    let (status, body) = http(api, "POST", "/api/v5/cluster/snapshot", &auth, "").await;
    assert_eq!(status, 409, "{body}");
    release_tx.send(()).unwrap();
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    core.sm.set_build_hook(None);
    // Free again once it ended.
    let (status, body) = http(api, "POST", "/api/v5/cluster/snapshot", &auth, "").await;
    assert_eq!(status, 200, "{body}");
    core.shutdown().await;
}

/// A compaction whose caller goes away mid-build (its task dropped) does not leave the core
/// refusing every later compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_abandoned_midway_frees_the_slot() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let core = admin::single_core(dir.path(), &["core-1"]).await;
    core.transact(vec![claim(1)]).await.unwrap();
    let building = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let started = Arc::clone(&building);
    core.sm.set_build_hook(Some(Arc::new(move || {
        started.store(true, Ordering::SeqCst);
        let _ = release_rx.lock().unwrap().recv_timeout(admin::WAIT);
    })));
    let abandoned = {
        let core = core.clone();
        tokio::spawn(async move { core.compact_now(false, Duration::from_secs(60)).await })
    };
    admin::wait_until("the build starts", || building.load(Ordering::SeqCst)).await;
    abandoned.abort();
    let _ = abandoned.await;
    release_tx.send(()).unwrap();
    core.sm.set_build_hook(None);
    core.transact(vec![claim(2)]).await.unwrap();
    let done = core.compact_now(false, Duration::from_secs(60)).await;
    assert!(done.is_ok(), "{done:?}");
    core.shutdown().await;
}
