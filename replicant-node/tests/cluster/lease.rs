//! Invariant 6, a replicant failure loses only what it alone held: while a replicant renews
//! its lease its rows stay; once it goes silent the leader purges its node row, routes and
//! registry rows after the lease TTL, and a persistent session keeps its `subscriptions`
//! rows (it can resume on any replicant).

use std::time::{Duration, Instant};

use crate::common::clients::v4::{self, QoS};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, has_route, ms_since, serial};

/// The silent replicant's lease.
const LEASE_TTL: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_replicant_is_purged_after_its_lease_but_subscriptions_stay() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster
        .start_replicant_with("r1", |c| {
            c.cluster.lease_ttl_ms = LEASE_TTL.as_millis() as u64
        })
        .await;
    let r2 = cluster.start_replicant("r2").await;

    // A persistent session on r1, a clean one on r2.
    let id = unique("persistent");
    let mut p = v4::connect(r1.mqtt_addr(), &id, |o| {
        o.set_clean_session(false);
    })
    .await;
    p.subscribe("lease/#", QoS::AtLeastOnce).await;
    let mut keeper = v4::connect(r2.mqtt_addr(), &unique("keeper"), |_| {}).await;
    keeper.subscribe("keep/#", QoS::AtLeastOnce).await;
    let r1_rows = |t: &meshmq_shared::tables::Tables| {
        t.node("r1").is_some() && t.registry(&id).is_some_and(|row| row.node == "r1")
    };
    // The registry and subscription rows of r1's client are on the cores (r2's replica holds
    // its own clients' only); routes and node rows are in every replica.
    let leader = cluster.wait_leader(None).await;
    let visible = wait_until(WAIT, || {
        leader.sm.read(r1_rows)
            && r2.core().read(|t| t.node("r1").is_some())
            && has_route(&r2, "lease/x", "r1")
    })
    .await;
    assert!(
        visible,
        "r1's rows not on the cores or its node row and route not on r2"
    );

    // Renewals keep the rows for longer than one TTL (4 renewals, one every TTL / 3).
    let renewed = wait_until(WAIT, || r1.core().link().stats().leases_ok >= 4).await;
    assert!(renewed, "{:?}", r1.core().link().stats());
    assert!(
        leader.sm.read(r1_rows),
        "rows purged while r1 renewed its lease"
    );

    // r1 goes silent: no lease, no transaction, and its client drops without DISCONNECT.
    let silent = Instant::now();
    r1.core().link().stop();
    p.kill();
    let purged = wait_until(WAIT, || {
        leader
            .sm
            .read(|t| t.node("r1").is_none() && t.registry(&id).is_none())
            && r2.core().read(|t| t.node("r1").is_none())
            && !has_route(&r2, "lease/x", "r1")
    })
    .await;
    assert!(
        purged,
        "r1's rows still in r2's replica {WAIT:?} after it went silent"
    );
    eprintln!(
        "lease: r1 purged {} ms after it went silent (ttl {LEASE_TTL:?})",
        ms_since(silent)
    );

    let subscriptions: Vec<String> = leader
        .sm
        .read(|t| t.subscriptions(&id).map(|(f, _)| f.to_owned()).collect());
    assert_eq!(
        subscriptions,
        vec!["lease/#".to_owned()],
        "persistent subscriptions stay"
    );
    assert!(
        r2.core().read(|t| t.node("r2").is_some()),
        "r2 keeps its node row"
    );
    assert!(has_route(&r2, "keep/x", "r2"), "r2 keeps its routes");
    cluster.assert_converged(&[("r2", &r2)]).await;

    drop(keeper);
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
