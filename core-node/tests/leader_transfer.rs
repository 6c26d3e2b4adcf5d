//! `POST /api/v5/cluster/leader/transfer` on three real cores in one process (port 0): the
//! leader hands over to a named follower, which then leads while the old leader follows and
//! writes keep committing; asked of a follower it is 409 `NOT_LEADER` naming the leader; an
//! unknown id or a bad body is 400; without the key it is 401; without a target the most
//! up-to-date follower takes over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::sync::Arc;

use core_node::http::auth::ApiKey;
use core_node::http::{self, HttpConfig};
use core_node::node::CoreNode;
use meshmq_proto::tables::{Op, RetainedMessage, RetainedSet, op};

#[path = "common/admin.rs"]
mod admin;
use admin::{free_ports, http, start, voters, wait_until};

const KEY: &str = "transfer-test-key";
const BEARER: &str = "Bearer transfer-test-key";
const PATH: &str = "/api/v5/cluster/leader/transfer";

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

async fn three_cores(dir: &std::path::Path) -> Vec<Arc<CoreNode>> {
    let names: Vec<String> = (1..=3).map(|i| format!("core-{i}")).collect();
    meshmq_shared::quic::certs::generate(&dir.join("certs"), &names).unwrap();
    let ports = free_ports(3);
    let members: Vec<(u64, String)> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", ports[i as usize - 1])))
        .collect();
    let mut cores = Vec::new();
    for (id, _) in &members {
        cores.push(start(*id, ports[*id as usize - 1], &members, dir).await);
    }
    wait_until("a leader all agree on", || {
        let l = cores[0].leader().map(|(id, _)| id);
        l.is_some() && cores.iter().all(|c| c.leader().map(|(id, _)| id) == l)
    })
    .await;
    wait_until("three voters", || voters(&cores[0]).len() == 3).await;
    cores
}

fn leader_of(cores: &[Arc<CoreNode>]) -> Arc<CoreNode> {
    cores
        .iter()
        .find(|c| c.is_leader())
        .cloned()
        .expect("a leader")
}

async fn api_of(core: &Arc<CoreNode>) -> std::net::SocketAddr {
    let cfg = HttpConfig {
        api_key: Some(ApiKey::new(KEY).unwrap()),
        ..HttpConfig::plain("127.0.0.1:0".parse().unwrap())
    };
    http::serve(core.clone(), cfg).await.unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_hands_over_to_a_named_follower_and_writes_keep_working() {
    let _ = core_node::prometheus::prometheus_handle();
    let dir = tempfile::tempdir().unwrap();
    let cores = three_cores(dir.path()).await;
    let old = leader_of(&cores);
    let follower = cores.iter().find(|c| c.id != old.id).cloned().unwrap();
    let target = cores
        .iter()
        .find(|c| c.id != old.id && c.id != follower.id)
        .cloned()
        .unwrap();
    old.transact(vec![retained("before")])
        .await
        .expect("a write before");
    let (old_api, follower_api) = (api_of(&old).await, api_of(&follower).await);
    let auth = [("authorization", BEARER)];
    let to = format!(r#"{{"to": {}}}"#, target.id);

    // Without the key: 401, nothing happens.
    let (code, body) = http(old_api, "POST", PATH, &[], &to).await;
    assert_eq!(code, 401, "{body}");
    // On a follower: 409 NOT_LEADER, naming the leader.
    let (code, body) = http(follower_api, "POST", PATH, &auth, &to).await;
    assert_eq!(code, 409, "{body}");
    let v = json(&body);
    assert_eq!(v["code"], "NOT_LEADER", "{body}");
    assert_eq!(v["leader"], old.id, "{body}");
    // Unknown id, this core, a bad body: 400 with a message.
    for bad in [
        r#"{"to": 9}"#.to_owned(),
        format!(r#"{{"to": {}}}"#, old.id),
        r#"{"to": 0}"#.to_owned(),
        r#"{"to": "x"}"#.to_owned(),
        r#"{"too": 2}"#.to_owned(),
        "not json".to_owned(),
    ] {
        let (code, body) = http(old_api, "POST", PATH, &auth, &bad).await;
        assert_eq!(code, 400, "{bad}: {body}");
        let v = json(&body);
        assert_eq!(v["code"], "BAD_REQUEST", "{body}");
        assert!(
            !v["message"].as_str().unwrap_or_default().is_empty(),
            "{body}"
        );
    }
    assert!(old.is_leader(), "refused requests changed nothing");

    // To the named follower: 200 once it leads; the old leader follows it.
    let (code, body) = http(old_api, "POST", PATH, &auth, &to).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["leader"], target.id, "{body}");
    wait_until("every core follows the new leader", || {
        cores
            .iter()
            .all(|c| c.leader().map(|(id, _)| id) == Some(target.id))
    })
    .await;
    assert!(!old.is_leader());
    // Writes keep working, through the old leader (forwarded) and the new one.
    old.transact(vec![retained("after/old")])
        .await
        .expect("a write via the old leader");
    let c = target
        .transact(vec![retained("after/new")])
        .await
        .expect("a write on the new leader");
    wait_until("the old leader applied it", || {
        old.sm.applied_index() >= c.index
    })
    .await;

    // Without a body: the most up-to-date follower takes over from the new leader.
    let new_api = api_of(&target).await;
    let (code, body) = http(new_api, "POST", PATH, &auth, "").await;
    assert_eq!(code, 200, "{body}");
    let leader = json(&body)["leader"].as_u64().unwrap();
    assert_ne!(leader, target.id, "{body}");
    wait_until("the chosen core leads", || {
        cores.iter().any(|c| c.id == leader && c.is_leader())
    })
    .await;
    for c in &cores {
        c.shutdown().await;
    }
}

/// A transfer whose caller goes away (its HTTP client hung up mid-transfer, the handler's
/// future dropped) leaves the leader taking writes and able to campaign again, and a later
/// transfer is not refused as busy. Only the leader's own certificate makes a core campaign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transfer_leaves_the_leader_working_and_elect_needs_the_leader() {
    let _ = core_node::prometheus::prometheus_handle();
    let dir = tempfile::tempdir().unwrap();
    let cores = three_cores(dir.path()).await;
    let old = leader_of(&cores);
    let target = cores.iter().find(|c| c.id != old.id).cloned().unwrap();
    // The leader waits out at least one lease before it asks the target: 20 ms is mid-way.
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(20),
        old.transfer_leader(Some(target.id), std::time::Duration::from_secs(10)),
    )
    .await;
    assert!(cut.is_err(), "the transfer was still running when dropped");
    assert!(old.is_leader());
    old.transact(vec![retained("after/dropped")])
        .await
        .expect("the leader takes writes again");

    // Elect from anything but the leader's certificate, or naming a core that is not the
    // leader, starts nothing.
    for (from, cert) in [
        (old.id, Some("r1")),
        (old.id, None),
        (old.id, Some(format!("core-{}", target.id)).as_deref()),
        (target.id, Some(format!("core-{}", target.id)).as_deref()),
    ] {
        let r = target.elect_now(from, cert).await;
        assert!(!r.started, "{from} {cert:?} started an election");
    }
    assert!(old.is_leader(), "no refused election moved the leadership");

    // The flag was put back: a new transfer runs and succeeds.
    let leader = old
        .transfer_leader(Some(target.id), std::time::Duration::from_secs(10))
        .await
        .expect("a transfer after the dropped one");
    assert_eq!(leader, target.id);
}
