//! Shared subscriptions across replicants: members of one `$share` group on
//! several nodes get each message exactly once between them, whichever node it was
//! published on; a member that leaves, or whose node dies, stops getting any share; every
//! group gets its own copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meshmq_shared::codec::{ProtocolVersion, QoS, ReasonCode};

use crate::common::raw::{RawClient, RecvError};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

fn seq_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("payload is a sequence number")
}

/// Reads (and acknowledges) publishes until none comes for a second; bounded overall.
async fn drain(c: &mut RawClient) -> Vec<u32> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match c.try_recv_publish(Duration::from_secs(1)).await {
            Ok(p) => {
                got.push(seq_of(&p.payload));
                c.ack(&p).await;
            }
            Err(RecvError::Timeout) => break,
            Err(e) => panic!("member connection failed: {e:?}"),
        }
    }
    got
}

/// Every seq in `range` exactly once over `members`; returns how many each got.
fn exactly_once(what: &str, members: &[&Vec<u32>], range: std::ops::Range<u32>) -> Vec<usize> {
    let mut copies: BTreeMap<u32, u32> = BTreeMap::new();
    for m in members {
        for s in m.iter() {
            *copies.entry(*s).or_default() += 1;
        }
    }
    let missing: Vec<u32> = range.clone().filter(|s| !copies.contains_key(s)).collect();
    let twice: Vec<u32> = copies
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert!(missing.is_empty(), "{what}: never delivered: {missing:?}");
    assert!(
        twice.is_empty(),
        "{what}: delivered more than once: {twice:?}"
    );
    assert_eq!(copies.len(), range.len(), "{what}: only the published seqs");
    members.iter().map(|m| m.len()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_across_replicants_gets_each_message_once() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let mut r3 = Some(cluster.start_replicant("r3").await);
    let id = unique("sh");
    let group_g = format!("$share/g/sh/{id}/#");
    let group_h = format!("$share/h/sh/{id}/#");
    let v5 = ProtocolVersion::V5;
    let mut m1 = RawClient::connect(r1.mqtt_addr(), v5, &unique("m1")).await;
    let mut m2 = RawClient::connect(r2.mqtt_addr(), v5, &unique("m2")).await;
    let r3_addr = r3.as_ref().expect("running").mqtt_addr();
    let mut m3 = RawClient::connect(r3_addr, v5, &unique("m3")).await;
    let mut h1 = RawClient::connect(r2.mqtt_addr(), v5, &unique("h1")).await;
    m1.subscribe(&group_g, QoS::AtLeastOnce).await;
    m2.subscribe(&group_g, QoS::AtLeastOnce).await;
    m3.subscribe(&group_g, QoS::AtLeastOnce).await;
    h1.subscribe(&group_h, QoS::AtLeastOnce).await;
    let mut p1 = RawClient::connect(r1.mqtt_addr(), v5, &unique("sh-p1")).await;
    let mut p3 = RawClient::connect(r3_addr, v5, &unique("sh-p3")).await;

    // 300 messages, published on r1 and on r3 alternately.
    for seq in 0..300u32 {
        let p = if seq % 2 == 0 { &mut p1 } else { &mut p3 };
        let rc = p
            .publish(
                &format!("sh/{id}/x"),
                &seq.to_string(),
                QoS::AtLeastOnce,
                false,
            )
            .await;
        assert_eq!(rc, ReasonCode::Success);
    }
    let (g1, g2, g3, h) = (
        drain(&mut m1).await,
        drain(&mut m2).await,
        drain(&mut m3).await,
        drain(&mut h1).await,
    );
    let spread = exactly_once("group g", &[&g1, &g2, &g3], 0..300);
    assert!(
        spread.iter().all(|n| *n > 0),
        "every member got a share: {spread:?}"
    );
    exactly_once("group h", &[&h], 0..300);
    println!("shared across 3 replicants: shares {spread:?}");

    // m2 leaves the group: the others share everything.
    m2.unsubscribe(&group_g).await;
    for seq in 300..400u32 {
        p1.publish(
            &format!("sh/{id}/x"),
            &seq.to_string(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    let (g1, g2, g3) = (
        drain(&mut m1).await,
        drain(&mut m2).await,
        drain(&mut m3).await,
    );
    assert!(g2.is_empty(), "a member that left gets nothing: {g2:?}");
    exactly_once("after m2 left", &[&g1, &g3], 300..400);

    // r3 dies: its member stops being picked; m1 gets everything.
    r3.take().expect("running").shutdown().await;
    assert!(
        wait_until(WAIT, || !r1.peers().expect("cluster").is_up("r3")).await,
        "r1 saw r3 go"
    );
    for seq in 400..500u32 {
        p1.publish(
            &format!("sh/{id}/x"),
            &seq.to_string(),
            QoS::AtLeastOnce,
            false,
        )
        .await;
    }
    let g1 = drain(&mut m1).await;
    exactly_once("after r3 died", &[&g1], 400..500);
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
