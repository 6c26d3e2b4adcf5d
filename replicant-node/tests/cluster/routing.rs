//! Routing between replicants: a PUBLISH on any replicant reaches subscribers on
//! every other one, once, in the publisher's order; the invariant "subscribe, then publish
//! anywhere" holds right after SUBACK; a route goes away with its last local subscriber;
//! a replicant that is down costs only counted drops. Real clients (rumqttc).

use std::time::Duration;

use crate::common::clients::v4::{self, QoS};
use crate::common::clients::v5;
use crate::common::{QUIET, unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, has_route, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_1_subscribe_on_r1_then_publish_on_r2_right_after_suback() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let mut publisher = v4::connect(r2.mqtt_addr(), &unique("inv1-pub"), |_| {}).await;
    // Every round a new filter: SUBACK on r1, then at once a publish on r2 must arrive.
    for round in 0..30 {
        let mut sub = v4::connect(r1.mqtt_addr(), &unique("inv1-sub"), |_| {}).await;
        let topic = format!("inv1/{round}/x");
        sub.subscribe(&format!("inv1/{round}/+"), QoS::AtLeastOnce)
            .await;
        publisher
            .publish(&topic, QoS::AtLeastOnce, false, "after-suback")
            .await;
        let p = sub.recv_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            (topic.as_str(), &b"after-suback"[..]),
            "round {round}"
        );
        sub.kill();
    }
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_across_three_replicants_is_complete_ordered_and_single() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let rs = [
        cluster.start_replicant("r1").await,
        cluster.start_replicant("r2").await,
        cluster.start_replicant("r3").await,
    ];
    let mut subs = Vec::new();
    for r in &rs {
        let mut s = v5::connect(r.mqtt_addr(), &unique("fan-sub"), |_| {}).await;
        // Overlapping filters on one node: still one copy per subscriber.
        s.subscribe("fan/#", v5::QoS::AtLeastOnce).await;
        s.subscribe("fan/+/m", v5::QoS::AtLeastOnce).await;
        subs.push(s);
    }
    let mut publisher = v5::connect(rs[1].mqtt_addr(), &unique("fan-pub"), |_| {}).await;
    const N: usize = 300;
    for i in 0..N {
        publisher
            .publish("fan/a/m", v5::QoS::AtLeastOnce, false, &i.to_string())
            .await;
    }
    for (k, s) in subs.iter_mut().enumerate() {
        for i in 0..N {
            let p = s.recv_publish().await;
            assert_eq!(
                &p.payload[..],
                i.to_string().as_bytes(),
                "subscriber on r{} out of order or lost",
                k + 1
            );
        }
        s.expect_no_publish(QUIET).await;
    }
    for r in rs {
        r.shutdown().await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_goes_with_its_last_local_subscriber() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let mut a = v4::connect(r1.mqtt_addr(), &unique("route-a"), |_| {}).await;
    let mut b = v4::connect(r1.mqtt_addr(), &unique("route-b"), |_| {}).await;
    a.subscribe("gone/+", QoS::AtMostOnce).await;
    b.subscribe("gone/+", QoS::AtMostOnce).await;
    assert!(
        has_route(&r2, "gone/x", "r1"),
        "route visible on r2 after SUBACK"
    );
    a.kill();
    // One subscriber left: the route stays.
    let mut publisher = v4::connect(r2.mqtt_addr(), &unique("route-pub"), |_| {}).await;
    publisher
        .publish("gone/x", QoS::AtLeastOnce, false, "still")
        .await;
    assert_eq!(&b.recv_publish().await.payload[..], b"still");
    b.client.unsubscribe("gone/+").await.expect("unsubscribe");
    assert!(
        wait_until(WAIT, || !has_route(&r2, "gone/x", "r1")).await,
        "the route is removed with the last subscriber"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicant_that_is_down_does_not_block_delivery_to_others() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let r3 = cluster.start_replicant("r3").await;
    let mut on_r1 = v4::connect(r1.mqtt_addr(), &unique("down-r1"), |_| {}).await;
    let mut on_r3 = v4::connect(r3.mqtt_addr(), &unique("down-r3"), |_| {}).await;
    on_r1.subscribe("down/#", QoS::AtLeastOnce).await;
    on_r3.subscribe("down/#", QoS::AtLeastOnce).await;
    let mut publisher = v4::connect(r2.mqtt_addr(), &unique("down-pub"), |_| {}).await;
    publisher
        .publish("down/0", QoS::AtLeastOnce, false, "both")
        .await;
    assert_eq!(&on_r1.recv_publish().await.payload[..], b"both");
    assert_eq!(&on_r3.recv_publish().await.payload[..], b"both");
    on_r3.kill();
    r3.shutdown().await; // its routes stay until its lease lapses: r2 still forwards to it
    let started = std::time::Instant::now();
    for i in 1..=50 {
        publisher
            .publish(&format!("down/{i}"), QoS::AtLeastOnce, false, "r1")
            .await;
    }
    for i in 1..=50 {
        let p = on_r1.recv_publish().await;
        assert_eq!(p.topic, format!("down/{i}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "delivery to r1 was held up by r3"
    );
    let stats = r2.peers().expect("cluster mode has peers").stats();
    assert!(
        crate::harness::peer_drops(&stats, "r3") > 0,
        "messages for the dead r3 are counted as dropped: {stats:?}"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

/// `meshmq_message_delivery_latency_seconds_count{path}` as the process recorder holds it
/// (every replicant of this process shares it).
fn latency_count(path: &str) -> f64 {
    let text = replicant_node::http::prometheus_handle().render();
    let name = "meshmq_message_delivery_latency_seconds_count";
    crate::common::metric_sum(&text, name, &[("path", path)]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_messages_forwarded_to_a_peer_are_measured_as_remote() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let every = |c: &mut meshmq_shared::config::Config| c.metrics.latency_sample_every = 1;
    let r1 = cluster.start_replicant_with("r1", every).await;
    let r2 = cluster.start_replicant_with("r2", every).await;
    let (local, remote) = (latency_count("local"), latency_count("remote"));
    let mut sub = v5::connect(r1.mqtt_addr(), &unique("lat-sub"), |_| {}).await;
    sub.subscribe("lat/x", v5::QoS::AtLeastOnce).await;
    assert!(wait_until(WAIT, || has_route(&r2, "lat/x", "r1")).await);
    let mut publisher = v5::connect(r2.mqtt_addr(), &unique("lat-pub"), |_| {}).await;
    for i in 0..3 {
        publisher
            .publish("lat/x", v5::QoS::AtLeastOnce, false, &i.to_string())
            .await;
    }
    for _ in 0..3 {
        sub.recv_publish().await;
    }
    // Observed once r1's write is done: the subscriber may have read it a moment before.
    let measured = wait_until(WAIT, || latency_count("remote") == remote + 3.0).await;
    assert!(
        measured,
        "remote count {}",
        latency_count("remote") - remote
    );
    assert_eq!(
        latency_count("local"),
        local,
        "no delivery on the publisher's node"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
