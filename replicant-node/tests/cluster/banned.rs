//! Bans are cluster rows: a ban added through r1's API refuses the client on r2 (5.0 0x8A,
//! 3.1.1 code 5) and closes its live connections there (5.0 DISCONNECT 0x98), with no
//! restart; deleting it on r2 lets the client back on r1.

use meshmq_shared::codec::{Packet, ProtocolVersion, ReasonCode};
use meshmq_shared::tables::BannedAs;
use serde_json::json;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{http_call, unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_added_on_r1_refuses_and_kicks_the_client_on_r2() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let id = unique("banned-on-r1");
    let mut live5 = RawClient::connect(r2.mqtt_addr(), ProtocolVersion::V5, &id).await;
    let other = unique("other");
    let mut live3 = {
        let mut c = connect_packet(ProtocolVersion::V311, &other);
        c.username = Some(id.clone());
        let (client, ack) = RawClient::connect_with(r2.mqtt_addr(), c).await;
        assert_eq!(ack.code, ReasonCode::Success);
        client
    };
    let http1 = r1.http_addr().expect("r1 http");
    for (r#as, who) in [("clientid", &id), ("username", &id)] {
        let body = json!({ "as": r#as, "who": who }).to_string();
        let (status, answer) = http_call(http1, "POST", "/api/v5/banned", &body, None).await;
        assert_eq!(status, 200, "{answer}");
    }
    // Kicked live on r2, without any call to r2.
    let seen = live5.wait_closed(WAIT).await;
    assert!(
        matches!(seen.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
        "5.0: DISCONNECT 0x98, got {seen:?}"
    );
    assert!(live3.wait_closed(WAIT).await.is_empty(), "3.1.1: closed");
    // Refused on r2 in both versions.
    for v in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let (_c, ack) = RawClient::connect_with(r2.mqtt_addr(), connect_packet(v, &id)).await;
        let want = if v.is_v5() {
            ReasonCode::Banned
        } else {
            ReasonCode::NotAuthorized
        };
        assert_eq!(ack.code, want, "{v:?}");
    }
    // Lifted through r2's API: the client is back on r1.
    let http2 = r2.http_addr().expect("r2 http");
    for path in ["/api/v5/banned/clientid/", "/api/v5/banned/username/"] {
        let (status, _) = http_call(http2, "DELETE", &format!("{path}{id}"), "", None).await;
        assert_eq!(status, 204);
    }
    let lifted = wait_until(WAIT, || {
        r1.core()
            .read(|t| t.banned(BannedAs::Clientid, &id).is_none() && t.banned_count() == 0)
    })
    .await;
    assert!(lifted);
    RawClient::connect(r1.mqtt_addr(), ProtocolVersion::V5, &id).await;
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}
