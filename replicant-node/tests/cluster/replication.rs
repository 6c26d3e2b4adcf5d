//! Writes through either replicant reach every replica and every core: a retained PUBLISH
//! on r1 is served as retained by r2, a transaction through r2 is visible on r1, and a burst
//! of 100 000 ops through both converges to byte-equal tables everywhere.

use std::time::Instant;

use core_node::api::Committed;
use meshmq_proto::tables::Op;
use tokio::task::JoinSet;

use crate::common::clients::v4::{self, QoS};
use crate::common::{unique, wait_until};
use crate::harness::{
    Cluster, WAIT, assert_applied, fast_timings, has_route, retained_op, route_op, serial,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_either_replicant_are_seen_on_both() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;

    // A retained PUBLISH through an MQTT client on r1 ...
    let topic = unique("ret/t");
    let mut publisher = v4::connect(r1.mqtt_addr(), &unique("pub"), |_| {}).await;
    publisher
        .publish(&topic, QoS::AtLeastOnce, true, "kept")
        .await;
    let seen = wait_until(WAIT, || {
        r2.core()
            .read(|t| t.retained(&topic).is_some_and(|m| m.payload == "kept"))
    })
    .await;
    assert!(seen, "retained row of {topic} not in r2's replica");

    // ... is served as retained to a subscriber on r2.
    let mut subscriber = v4::connect(r2.mqtt_addr(), &unique("sub"), |_| {}).await;
    subscriber.subscribe("ret/#", QoS::AtLeastOnce).await;
    let p = subscriber.recv_publish().await;
    assert_eq!(p.topic, topic);
    assert_eq!(&p.payload[..], b"kept");
    assert!(p.retain, "a stored message is delivered with RETAIN set");

    // A transaction through r2 is seen in r1's replica.
    let committed = r2
        .core()
        .transact(vec![route_op("from-r2/#", "r2")])
        .await
        .expect("transact through r2");
    assert_applied(&committed.results);
    assert!(
        has_route(&r2, "from-r2/x", "r2"),
        "r2 applied before returning"
    );
    let seen = wait_until(WAIT, || {
        r1.core().applied_index() >= committed.index && has_route(&r1, "from-r2/x", "r2")
    })
    .await;
    assert!(seen, "route written through r2 not in r1's replica");

    cluster.assert_converged(&[("r1", &r1), ("r2", &r2)]).await;
    drop((publisher, subscriber));
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

/// Concurrent writers in the burst, and transactions of each.
const TASKS: usize = 100;
const BATCHES: usize = 10;
const OPS: usize = 100;

/// The ops of batch `b` of task `t`: routes of r1 for even tasks, retained messages for odd.
fn burst_ops(t: usize, b: usize) -> Vec<Op> {
    (0..OPS)
        .map(|k| {
            let i = (t * BATCHES + b) * OPS + k;
            if t.is_multiple_of(2) {
                route_op(&format!("burst/{i}/#"), "r1")
            } else {
                retained_op(&format!("burst/{i}"), "x")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_100k_ops_through_both_replicants_converges() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;

    let term = || cluster.core(1).raft.metrics().borrow().current_term;
    let term_before = term();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let link = if t % 4 < 2 { &r1 } else { &r2 }.core().link().clone();
        tasks.spawn(async move {
            let mut last: Option<Committed> = None;
            for b in 0..BATCHES {
                let committed = link.transact(burst_ops(t, b)).await;
                let committed = committed.unwrap_or_else(|e| panic!("task {t} batch {b}: {e}"));
                assert_eq!(committed.results.len(), OPS);
                assert_applied(&committed.results);
                last = Some(committed);
            }
            last.map_or(0, |c| c.index)
        });
    }
    let mut highest = 0;
    while let Some(done) = tasks.join_next().await {
        highest = highest.max(done.expect("writer task"));
    }
    let elapsed = started.elapsed();
    let total = TASKS * BATCHES * OPS;
    eprintln!(
        "burst: {total} ops in {} transactions committed in {elapsed:?} ({:.0} ops/s); last entry {highest}",
        TASKS * BATCHES,
        total as f64 / elapsed.as_secs_f64()
    );
    eprintln!(
        "burst: raft term {term_before} -> {}; r1 {:?}; r2 {:?}",
        term(),
        r1.core().link().stats(),
        r2.core().link().stats()
    );

    let index = cluster.assert_converged(&[("r1", &r1), ("r2", &r2)]).await;
    assert!(index >= highest);
    let (routes, retained) = cluster
        .core(1)
        .sm
        .read(|t| (t.route_count(), t.retained_count()));
    assert!(routes >= total / 2, "{routes} routes");
    assert!(retained >= total / 2, "{retained} retained messages");
    eprintln!(
        "burst: converged at index {index} ({} ms after the first write)",
        started.elapsed().as_millis()
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
