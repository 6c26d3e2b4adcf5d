//! The registry projection (docs/roles.md): a replicant keeps only its own clients'
//! registry and subscription rows and those of shared-group members, yet counts every
//! node's clients, equals the cores' projection for its node at every settled index
//! (invariant 4), resumes a session that moves to it with its subscriptions, and picks a
//! shared-group member on another node.

use meshmq_shared::codec::{ProtocolVersion, QoS};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

fn persistent(id: &str) -> meshmq_shared::codec::Connect {
    let mut c = connect_packet(ProtocolVersion::V5, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// (connected clients, sessions) of `node`'s row in `replicant`'s replica.
fn counts(replicant: &replicant_node::BrokerHandle, node: &str) -> (u64, u64) {
    replicant.core().read(|t| {
        t.node(node)
            .map_or((0, 0), |r| (r.connected_clients, r.sessions))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicant_holds_its_own_clients_and_the_projection_of_the_rest() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    assert_eq!(r1.core().replica().projected_for(), Some("r1"));
    let tag = unique("proj");
    // 20 persistent sessions with a subscription each on r1, 3 on r2; one shared-group
    // member on r1.
    let mut on_r1 = Vec::new();
    for i in 0..20 {
        let id = format!("{tag}-a{i}");
        let (mut c, _) = RawClient::connect_with(r1.mqtt_addr(), persistent(&id)).await;
        c.subscribe(&format!("p/{id}"), QoS::AtLeastOnce).await;
        on_r1.push((id, c));
    }
    let mut on_r2 = Vec::new();
    for i in 0..3 {
        let id = format!("{tag}-b{i}");
        let (c, _) = RawClient::connect_with(r2.mqtt_addr(), persistent(&id)).await;
        on_r2.push(c);
    }
    let member_id = format!("{tag}-m");
    let (mut member, _) = RawClient::connect_with(r1.mqtt_addr(), persistent(&member_id)).await;
    member
        .subscribe(&format!("$share/g/s/{tag}/#"), QoS::AtLeastOnce)
        .await;
    let counted = wait_until(WAIT, || {
        counts(&r2, "r1") == (21, 21) && counts(&r1, "r2") == (3, 3)
    })
    .await;
    assert!(
        counted,
        "r2 sees r1 {:?}, r1 sees r2 {:?}",
        counts(&r2, "r1"),
        counts(&r1, "r2")
    );
    cluster.assert_converged(&[("r1", &r1), ("r2", &r2)]).await;
    // r2 holds its 3 clients and the shared member, not r1's 20 other sessions.
    assert_eq!(r2.core().read(|t| t.registry_count()), 4);
    assert!(r2.core().read(|t| t.registry(&member_id).is_some()));
    assert_eq!(r1.core().read(|t| t.registry_count()), 21);

    // A shared group member on r1 is picked for a message published on r2.
    let mut publisher =
        RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &unique("pub")).await;
    publisher
        .publish(&format!("s/{tag}/x"), "shared", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&member.recv_publish().await.payload[..], b"shared");

    // A session moves from r1 to r2: its subscription comes with the claim's notes.
    let (moved_id, old) = on_r1.pop().expect("a client");
    drop(old);
    let (mut moved, ack) = RawClient::connect_with(r2.mqtt_addr(), persistent(&moved_id)).await;
    assert!(ack.session_present);
    assert_eq!(
        r2.core().read(|t| t.subscriptions(&moved_id).count()),
        1,
        "its subscriptions entered r2's projection"
    );
    let left = wait_until(WAIT, || r1.core().read(|t| t.registry(&moved_id).is_none())).await;
    assert!(left, "its row left r1's projection");
    publisher
        .publish(&format!("p/{moved_id}"), "moved", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&moved.recv_publish().await.payload[..], b"moved");

    // A replicant started now holds the shared member only, and counts everyone.
    let r3 = cluster.start_replicant("r3").await;
    let counted = wait_until(WAIT, || counts(&r3, "r1") == (20, 20)).await;
    assert!(counted, "r3 sees r1 {:?}", counts(&r3, "r1"));
    assert_eq!(r3.core().read(|t| t.registry_count()), 1);
    cluster
        .assert_converged(&[("r1", &r1), ("r2", &r2), ("r3", &r3)])
        .await;
    drop((on_r1, on_r2, moved, member, publisher));
    for r in [r1, r2, r3] {
        r.shutdown().await;
    }
    cluster.stop().await;
}
