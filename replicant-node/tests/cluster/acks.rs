//! No acknowledgement claims what did not happen: with the core group's majority gone, a
//! CONNECT whose registry claim cannot commit is refused (5.0 CONNACK 0x88 Server
//! unavailable; 3.1.1 return code 3), a SUBSCRIBE whose table write cannot commit gets 0x80
//! for that filter and leaves nothing behind on the node; and a subscription is live on its
//! own node from the moment its SUBSCRIBE is read, before the SUBACK.

use std::time::{Duration, Instant};

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, Properties, QoS, ReasonCode, Subscribe};

use crate::common::raw::{RawClient, connect_packet, sub_opts};
use crate::common::{QUIET, unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// A persistent v5 session on `addr`.
async fn persistent(addr: std::net::SocketAddr, id: &str) -> RawClient {
    let mut c = connect_packet(V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(300);
    let (client, ack) = RawClient::connect_with(addr, c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_core_majority_connect_is_refused_and_subscribe_fails_cleanly() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster
        .start_replicant_with("r1", |c| c.cluster.transact_timeout_ms = 1_500)
        .await;
    let topic = unique("acks/t");
    let mut sub = persistent(r1.mqtt_addr(), &unique("acks-sub")).await;
    let mut publisher = RawClient::connect(r1.mqtt_addr(), V5, &unique("acks-pub")).await;
    let subs_before = r1.subscriptions();
    cluster.kill(2).await;
    cluster.kill(3).await;

    let asked = Instant::now();
    let ack = sub
        .subscribe_many(
            &[(&topic, sub_opts(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        [ReasonCode::UnspecifiedError],
        "SUBACK {ack:?}"
    );
    assert!(asked.elapsed() < WAIT, "SUBACK after {:?}", asked.elapsed());
    assert_eq!(
        r1.subscriptions(),
        subs_before,
        "the refused filter was rolled back"
    );
    publisher
        .publish(&topic, "refused", QoS::AtLeastOnce, false)
        .await;
    sub.expect_no_publish(QUIET).await;
    // A filter given twice in one refused SUBSCRIBE leaves nothing either.
    let twice = unique("acks/twice");
    let ack = sub
        .subscribe_many(
            &[
                (&twice, sub_opts(QoS::AtMostOnce)),
                (&twice, sub_opts(QoS::AtLeastOnce)),
            ],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        [ReasonCode::UnspecifiedError; 2],
        "SUBACK {ack:?}"
    );
    assert_eq!(r1.subscriptions(), subs_before, "both rolled back");
    publisher
        .publish(&twice, "refused", QoS::AtLeastOnce, false)
        .await;
    sub.expect_no_publish(QUIET).await;

    let mut refused = Vec::new();
    for (v, code) in [
        (V5, ReasonCode::ServerUnavailable),
        (V311, ReasonCode::ServerUnavailable),
    ] {
        let id = unique("acks-new");
        let (mut c, ack) = RawClient::connect_with(r1.mqtt_addr(), connect_packet(v, &id)).await;
        assert_eq!(ack.code, code, "{v:?}: CONNACK {ack:?}");
        c.wait_closed(WAIT).await;
        refused.push(id);
    }
    cluster.restart(2).await;
    cluster.restart(3).await;
    cluster.wait_leader(None).await;
    let ack = sub
        .subscribe_many(
            &[(&topic, sub_opts(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await;
    assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1], "SUBACK {ack:?}");
    publisher
        .publish(&topic, "granted", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&sub.recv_publish().await.payload[..], b"granted");
    RawClient::connect(r1.mqtt_addr(), V311, &unique("acks-back")).await;
    // A refused CONNECT's claim may have committed once the majority came back: its row
    // must not stay saying the client is connected here.
    let closed = wait_until(Duration::from_secs(10), || {
        r1.core().read(|t| {
            refused
                .iter()
                .all(|id| t.registry(id).is_none_or(|row| !row.connected))
        })
    })
    .await;
    assert!(
        closed,
        "a refused client's registry row still says connected"
    );
    cluster.stop().await;
}

/// While the route of a new subscription cannot commit (no majority), the subscription is
/// already live on its node: a message published there before the SUBACK is delivered once
/// the SUBACK went out (MQTT 5.0 3.8.4 lets a server send matching PUBLISHes first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_delivers_on_its_node_before_the_suback() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster
        .start_replicant_with("r1", |c| c.cluster.transact_timeout_ms = 10_000)
        .await;
    let topic = unique("early/t");
    let mut sub = RawClient::connect(r1.mqtt_addr(), V5, &unique("early-sub")).await;
    let mut publisher = RawClient::connect(r1.mqtt_addr(), V5, &unique("early-pub")).await;
    let subs_before = r1.subscriptions();
    cluster.kill(2).await;
    cluster.kill(3).await;
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: 7,
        filters: vec![(topic.clone(), sub_opts(QoS::AtLeastOnce))],
        properties: Properties::default(),
    }))
    .await;
    assert!(
        wait_until(WAIT, || r1.subscriptions() > subs_before).await,
        "the SUBSCRIBE was read and applied on the node"
    );
    publisher
        .publish(&topic, "early", QoS::AtLeastOnce, false)
        .await;
    // No SUBACK yet: the route is still waiting for a majority.
    assert!(matches!(
        sub.recv_timeout(Duration::from_millis(200)).await,
        Err(crate::common::raw::RecvError::Timeout)
    ));
    cluster.restart(2).await;
    cluster.restart(3).await;
    let ack = sub
        .recv_where(WAIT, |p| match p {
            Packet::SubAck(a) => Some(a.clone()),
            _ => None,
        })
        .await
        .expect("SUBACK once the cores are back");
    assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1]);
    assert_eq!(&sub.recv_publish().await.payload[..], b"early");
    cluster.stop().await;
}

/// The peer barrier before a SUBACK: a replicant that cannot confirm (its core link is gone,
/// so it applies nothing new) costs the barrier's 2 s, is counted and named in the log,
/// and the SUBACK still grants (the route is committed). Once its lease has lapsed and the
/// cores purged it, it is not waited for at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_lost_its_lease_is_not_waited_for() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster
        .start_replicant_with("r2", |c| c.cluster.lease_ttl_ms = 4_500)
        .await;
    let mut sub = RawClient::connect(r1.mqtt_addr(), V5, &unique("lease-sub")).await;
    let timeouts = |t: &str| {
        crate::common::metric_sum(t, "meshmq_peer_barrier_timeouts_total", &[]).unwrap_or(0.0)
    };
    let linked = wait_until(WAIT, || r1.peers().is_some_and(|p| p.stats().link("r2").up)).await;
    assert!(linked, "r1's link to r2 is up");
    sub.subscribe(&unique("lease/a"), QoS::AtLeastOnce).await;

    r2.core().link().stop();
    let before = timeouts(&crate::common::metrics_text(&r1).await);
    let asked = Instant::now();
    let ack = sub
        .subscribe_many(
            &[(&unique("lease/b"), sub_opts(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await;
    let took = asked.elapsed();
    assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1]);
    assert!(
        took >= Duration::from_millis(1_900),
        "waited {took:?} for r2"
    );
    let after = timeouts(&crate::common::metrics_text(&r1).await);
    assert!(after > before, "the barrier timeout is counted");

    let purged = wait_until(WAIT, || r1.core().read(|t| t.node("r2").is_none())).await;
    assert!(purged, "r2's lease lapsed and the cores purged it");
    let asked = Instant::now();
    let ack = sub
        .subscribe_many(
            &[(&unique("lease/c"), sub_opts(QoS::AtLeastOnce))],
            Properties::default(),
        )
        .await;
    assert_eq!(ack.reasons, [ReasonCode::GrantedQoS1]);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "a purged replicant is not waited for (SUBACK after {:?})",
        asked.elapsed()
    );
    assert_eq!(
        timeouts(&crate::common::metrics_text(&r1).await),
        after,
        "no barrier timeout once r2 is purged"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
