//! 200 clients with persistent sessions reconnecting round-robin across three replicants
//! (as behind a load balancer) while QoS 1 messages flow to each of them from publishers on
//! every replicant: every message published is counted at its subscriber, none may be
//! missing. A client that reconnects through another replicant takes its session along, so
//! nothing queued for it is lost by moving (docs/architecture.md, invariant 3).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshmq_shared::codec::{ProtocolVersion, QoS, ReasonCode};
use tokio::task::JoinSet;

use crate::common::raw::{RawClient, RecvError, connect_packet};
use crate::common::unique;
use crate::harness::{Cluster, fast_timings, serial};

const CLIENTS: usize = 200;
const MESSAGES: u32 = 20;
const ROUNDS: usize = 4;

fn seq_of(payload: &[u8]) -> u32 {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("payload is a sequence number")
}

/// A persistent-session CONNECT (even clients 5.0, odd ones 3.1.1).
fn connect(i: usize, id: &str) -> meshmq_shared::codec::Connect {
    let version = if i.is_multiple_of(2) {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V311
    };
    let mut c = connect_packet(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(600);
    }
    c
}

/// Reads and acknowledges publishes for `window`, counting copies per seq.
async fn read_for(c: &mut RawClient, window: Duration, copies: &mut BTreeMap<u32, u32>) {
    let until = Instant::now() + window;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match c.try_recv_publish(left).await {
            Ok(p) => {
                *copies.entry(seq_of(&p.payload)).or_default() += 1;
                c.ack(&p).await;
            }
            Err(RecvError::Timeout) | Err(RecvError::Closed) => return,
            Err(e) => panic!("subscriber read failed: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_reconnecting_round_robin_lose_no_message() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let nodes = [
        cluster.start_replicant("r1").await,
        cluster.start_replicant("r2").await,
        cluster.start_replicant("r3").await,
    ];
    let addrs: Arc<Vec<_>> = Arc::new(nodes.iter().map(|n| n.mqtt_addr()).collect());
    let run = unique("rr");
    let started = Instant::now();

    // Every client subscribes on its first node, then the publishers start.
    let mut first = Vec::new();
    for i in 0..CLIENTS {
        let id = format!("{run}-c{i}");
        let (mut c, ack) = RawClient::connect_with(addrs[i % 3], connect(i, &id)).await;
        assert_eq!(ack.code, ReasonCode::Success);
        c.subscribe(&format!("{run}/{i}"), QoS::AtLeastOnce).await;
        first.push(c);
    }
    let mut publishers = JoinSet::new();
    for p in 0..3 {
        let (addrs, run) = (addrs.clone(), run.clone());
        publishers.spawn(async move {
            let mut c =
                RawClient::connect(addrs[p], ProtocolVersion::V5, &format!("{run}-p{p}")).await;
            for m in 0..MESSAGES {
                for i in (p..CLIENTS).step_by(3) {
                    let rc = c
                        .publish(
                            &format!("{run}/{i}"),
                            &m.to_string(),
                            QoS::AtLeastOnce,
                            false,
                        )
                        .await;
                    assert_eq!(rc, ReasonCode::Success);
                }
            }
        });
    }
    // Each client: a few rounds of read a while / leave (cleanly or not) / come back on the
    // next replicant, then stay until it has every message.
    let mut clients = JoinSet::new();
    for (i, mut c) in first.into_iter().enumerate() {
        let (addrs, run) = (addrs.clone(), run.clone());
        clients.spawn(async move {
            let id = format!("{run}-c{i}");
            let mut copies: BTreeMap<u32, u32> = BTreeMap::new();
            for round in 1..=ROUNDS {
                let stay = Duration::from_millis(150 + (i as u64 * 37 + round as u64 * 91) % 400);
                read_for(&mut c, stay, &mut copies).await;
                if (i + round) % 2 == 0 {
                    c.disconnect(ReasonCode::Success).await;
                } else {
                    drop(c);
                }
                let (next, ack) =
                    RawClient::connect_with(addrs[(i + round) % 3], connect(i, &id)).await;
                assert_eq!(ack.code, ReasonCode::Success, "client {i} round {round}");
                assert!(
                    ack.session_present,
                    "client {i} round {round}: session present"
                );
                c = next;
            }
            let deadline = Instant::now() + Duration::from_secs(90);
            while (copies.len() as u32) < MESSAGES && Instant::now() < deadline {
                read_for(&mut c, Duration::from_millis(500), &mut copies).await;
            }
            (i, copies)
        });
    }
    while let Some(p) = publishers.join_next().await {
        p.expect("publisher");
    }
    let published_in = started.elapsed();
    let mut missing = Vec::new();
    let (mut received, mut duplicates) = (0u64, 0u64);
    while let Some(done) = clients.join_next().await {
        let (i, copies) = done.expect("client task");
        for m in 0..MESSAGES {
            match copies.get(&m) {
                None => missing.push((i, m)),
                Some(n) => {
                    received += 1;
                    duplicates += u64::from(n - 1);
                }
            }
        }
    }
    println!(
        "round-robin reconnects: {CLIENTS} clients x {ROUNDS} moves, {} messages published in \
         {published_in:?}, {received} received, {duplicates} duplicate copies (QoS 1), {} missing, \
         total {:?}",
        CLIENTS as u32 * MESSAGES,
        missing.len(),
        started.elapsed()
    );
    assert!(missing.is_empty(), "lost (client, seq): {missing:?}");
    for n in nodes {
        n.shutdown().await;
    }
    cluster.stop().await;
}
