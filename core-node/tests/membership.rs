//! Run-time membership through the admin HTTP API, on real `CoreNode`s in one process:
//! a fourth core is added (learner, then voter) and removed again; a follower refuses with
//! 421 and names the leader; a follower forwards a Transact to the leader.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_node::node::{CoreConfig, CoreNode, RaftTimings, batcher::GroupCommit};
use meshmq_shared::quic::certs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::retained;

const WAIT: Duration = Duration::from_secs(20);

fn timings() -> RaftTimings {
    RaftTimings {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        ..RaftTimings::default()
    }
}

async fn start(id: u64, port: u16, members: &[(u64, String)], dir: &Path) -> Arc<CoreNode> {
    CoreNode::start(CoreConfig {
        node_id: id,
        core_bind: SocketAddr::from(([127, 0, 0, 1], port)),
        advertise: None,
        data_dir: dir.join(format!("core-{id}")),
        initial_members: members.to_vec(),
        certs: certs::CertPaths::in_dir(&dir.join("certs"), &format!("core-{id}")),
        timings: timings(),
        group_commit: GroupCommit::default(),
        follow: core_node::node::follow::FollowLimits::default(),
    })
    .await
    .expect("core starts")
}

/// Free UDP ports for the initial members (their addresses must be known up front).
fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn plain_http() -> core_node::http::HttpConfig {
    core_node::http::HttpConfig::plain("127.0.0.1:0".parse().unwrap())
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn voters(core: &CoreNode) -> Vec<u64> {
    core.group()
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_is_added_and_removed_at_run_time_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (1..=4).map(|i| format!("core-{i}")).collect();
    certs::generate(&dir.path().join("certs"), &names).unwrap();
    let ports = free_ports(4);
    let members: Vec<(u64, String)> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", ports[i as usize - 1])))
        .collect();
    let mut cores = Vec::new();
    for (i, _) in &members {
        cores.push(start(*i, ports[*i as usize - 1], &members, dir.path()).await);
    }
    // A leader every core agrees on, and has committed in its term (its first entry).
    wait_until("a leader all cores agree on", || {
        let ids: Vec<_> = cores.iter().map(|c| c.leader().map(|(id, _)| id)).collect();
        ids[0].is_some() && ids.iter().all(|i| *i == ids[0])
    })
    .await;
    let leader = cores.iter().find(|c| c.is_leader()).unwrap().clone();
    leader
        .transact(vec![retained("settle")])
        .await
        .expect("the leader commits");
    let follower = cores.iter().find(|c| !c.is_leader()).unwrap().clone();

    // A follower forwards a Transact to the leader (retried like a replicant does, if the
    // leadership moves meanwhile).
    let end = Instant::now() + WAIT;
    let committed = loop {
        match follower.transact(vec![retained("via/follower")]).await {
            Ok(c) => break c,
            Err(e) if e.is_retryable() && Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("forwarded: {e:?}"),
        }
    };
    wait_until("the forwarded write applied on the follower", || {
        follower.sm.applied_index() >= committed.index
    })
    .await;
    assert!(follower.sm.read(|t| t.retained("via/follower").is_some()));

    // The fourth core starts outside the group and waits to be added.
    let fourth = start(4, ports[3], &members, dir.path()).await;
    let leader_http = core_node::http::serve(leader.clone(), plain_http())
        .await
        .unwrap();
    let follower_http = core_node::http::serve(follower.clone(), plain_http())
        .await
        .unwrap();
    let add = format!(r#"{{"id": 4, "addr": "{}"}}"#, fourth.addr);

    let (status, body) = http(follower_http, "POST", "/api/v5/cluster/cores", &add).await;
    assert_eq!(status, 421, "a follower refuses: {body}");
    let current = leader.leader().map(|(_, a)| a).unwrap_or_default();
    assert!(
        body.contains(&current),
        "and names the leader ({current}): {body}"
    );
    let (status, _) = http(
        leader_http,
        "POST",
        "/api/v5/cluster/cores",
        r#"{"id": 0, "addr": ""}"#,
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = http(leader_http, "POST", "/api/v5/cluster/cores", &add).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(voters(&leader), vec![1, 2, 3, 4]);
    let c = leader.transact(vec![retained("after/add")]).await.unwrap();
    wait_until("core 4 applies new writes", || {
        fourth.sm.applied_index() >= c.index
    })
    .await;
    assert!(
        fourth
            .sm
            .read(|t| t.retained("via/follower").is_some() && t.retained("after/add").is_some())
    );
    let (status, body) = http(leader_http, "GET", "/api/v5/cluster", "").await;
    assert_eq!(status, 200);
    assert!(body.contains(&fourth.addr), "{body}");

    let (status, body) = http(leader_http, "DELETE", "/api/v5/cluster/cores/4", "").await;
    assert_eq!(status, 200, "{body}");
    wait_until("core 4 out of the voters", || {
        voters(&leader) == vec![1, 2, 3]
    })
    .await;
    leader
        .transact(vec![retained("after/remove")])
        .await
        .expect("3 voters still commit");

    fourth.shutdown().await;
    for c in cores {
        c.shutdown().await;
    }
}
