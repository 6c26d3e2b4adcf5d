//! The peer API (REST calls between replicants over the peer endpoint, mutual TLS against
//! the cluster CA): only the fan-out's node-local routes run, only for a caller whose
//! certificate names a replicant of the node table, and the name it states must be its
//! certificate's; fan-out calls reuse one connection per node instead of one each.

use axum::http::Method;
use bytes::Bytes;
use meshmq_proto::peer::{ApiCall, ApiReply};
use meshmq_shared::quic::certs::CertPaths;
use meshmq_shared::quic::{ALPN_PEER, Identity, endpoint, frame};
use replicant_node::broker::BrokerHandle;
use std::net::SocketAddr;
use std::path::Path;

use crate::common::cluster::core_name;
use crate::common::wait_until_async;
use crate::harness::{Cluster, WAIT, fast_timings, serial};

/// Calls `method path` on the peer endpoint at `addr` with the certificate of `cert`,
/// stating `from`: the reply's status.
async fn peer_call(
    certs: &Path,
    cert: &str,
    addr: SocketAddr,
    from: &str,
    (method, path, body): (&str, &str, &str),
) -> u32 {
    let id = Identity::load(&CertPaths::in_dir(certs, cert)).expect("identity");
    let ep = endpoint::client(&id, ALPN_PEER, addr).expect("client endpoint");
    let conn = endpoint::connect(&ep, addr, WAIT).await.expect("connect");
    let call = ApiCall {
        method: method.into(),
        path: path.into(),
        body: Bytes::from(body.to_owned()),
        from: from.into(),
        content_type: if body.is_empty() {
            ""
        } else {
            "application/json"
        }
        .into(),
    };
    let reply: ApiReply = frame::request(&conn, &call, 1 << 20, WAIT)
        .await
        .expect("a reply");
    conn.close(0u32.into(), b"done");
    ep.wait_idle().await;
    reply.status
}

fn peer_addr(r: &BrokerHandle) -> SocketAddr {
    r.peers().expect("peer links").local_addr()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_calls_are_limited_to_replicants_and_the_fan_out_routes() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let certs = cluster.replicant_config("x", Vec::new()).cluster.certs_dir;
    let certs = certs.expect("certs dir");
    let a1 = peer_addr(&r1);
    let nodes_r1 = ("GET", "/api/v5/nodes/r1", "");

    // r2, a running replicant, may call a node-local route of the fan-out.
    let ok = wait_until_async(WAIT, || async {
        peer_call(&certs, "r2", a1, "r2", nodes_r1).await == 200
    })
    .await;
    assert!(ok, "r2 calls GET /api/v5/nodes/r1 on r1");

    // ...and nothing else: not the key API, not a cluster-wide route, not another node's.
    let key = r#"{"name":"minted-by-a-peer"}"#;
    for call in [
        ("POST", "/api/v5/api_key", key),
        ("GET", "/api/v5/api_key", ""),
        ("GET", "/api/v5/clients", ""),
        ("GET", "/api/v5/nodes", ""),
        ("POST", "/api/v5/banned", r#"{"as":"clientid","who":"x"}"#),
        ("GET", "/api/v5/nodes/r2/clients", ""),
    ] {
        assert_eq!(
            peer_call(&certs, "r2", a1, "r2", call).await,
            403,
            "{call:?}"
        );
    }
    let (status, keys) = crate::common::api_client::Api::new(r1.http_addr().expect("http"))
        .get("/api/v5/api_key")
        .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(
        keys,
        serde_json::json!([]),
        "no key was minted through the peer API"
    );

    // A CA-signed certificate that is not a running replicant's: a core's, a replicant
    // that never joined; and a replicant's certificate stating another node's name.
    assert_eq!(
        peer_call(&certs, &core_name(1), a1, &core_name(1), nodes_r1).await,
        403
    );
    assert_eq!(peer_call(&certs, "r3", a1, "r3", nodes_r1).await, 403);
    assert_eq!(peer_call(&certs, "r3", a1, "r2", nodes_r1).await, 403);

    r2.shutdown().await;
    r1.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_calls_reuse_one_connection_per_node() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant("r1").await;
    let r2 = cluster.start_replicant("r2").await;
    let ctx = r1.ctx();
    let call = || {
        replicant_node::fanout::call_node(ctx, "r2", Method::GET, "/api/v5/nodes/r2", Bytes::new())
    };
    let first = wait_until_async(WAIT, || async {
        call().await.is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(first, "r1 reaches r2's API through the fan-out");
    let before = r2.peers().expect("peers").stats().connections_accepted;
    for _ in 0..20 {
        let reply = call().await.expect("an answer");
        assert_eq!(reply.status, 200);
    }
    let concurrent = futures_util::future::join_all((0..20).map(|_| call())).await;
    assert!(
        concurrent
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.status == 200))
    );
    let after = r2.peers().expect("peers").stats().connections_accepted;
    assert!(
        after <= before + 1,
        "40 fan-out calls opened {} connections on r2",
        after - before
    );
    r2.shutdown().await;
    r1.shutdown().await;
    cluster.stop().await;
}
