//! The inter-node protocol version at a real core (port 0, raw frames from a client with a
//! certificate of the cluster CA): a request of another major, or without a version, is
//! refused with an error naming both versions and counted; a Follow of another major gets a
//! `refused` frame; another minor of the same major is served; every answer carries the
//! core's version; `GET /api/v5/cluster` shows it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::time::Duration;

use core_node::http::{self, HttpConfig};
use meshmq_proto::core::{
    FollowFrame, FollowRequest, Request, Response, StatusRequest, follow_frame, request, response,
};
use meshmq_shared::quic::{ALPN_CORE, certs, endpoint, frame, tls::Identity};
use meshmq_shared::wire_version::WireVersion;

#[path = "common/admin.rs"]
mod admin;
use admin::{counter, single_core};

const ASK: Duration = Duration::from_secs(5);

fn status(wire: Option<WireVersion>) -> Request {
    Request {
        kind: Some(request::Kind::Status(StatusRequest {})),
        wire: wire.map(WireVersion::to_proto),
    }
}

fn refused_by_core(peer: &str) -> u64 {
    counter(&format!(
        "meshmq_wire_protocol_refused_total{{peer=\"{peer}\"}}"
    ))
}

async fn ask(conn: &quinn::Connection, req: &Request) -> Response {
    frame::request(conn, req, frame::MAX_FRAME, ASK)
        .await
        .expect("an answer")
}

fn error_text(resp: &Response) -> String {
    match &resp.kind {
        Some(response::Kind::Error(e)) => e.message.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_major_is_refused_naming_both_versions_same_major_is_served() {
    let _ = core_node::prometheus::prometheus_handle();
    let dir = tempfile::tempdir().unwrap();
    let core = single_core(dir.path(), &["core-1", "r1"]).await;
    let id = Identity::load(&certs::CertPaths::in_dir(&dir.path().join("certs"), "r1")).unwrap();
    let addr = core.addr.parse().unwrap();
    let ep = endpoint::client(&id, ALPN_CORE, addr).unwrap();
    let conn = endpoint::connect(&ep, addr, ASK).await.unwrap();
    let ours = WireVersion::CURRENT;
    let next_major = WireVersion::new(ours.major + 1, 0);
    let before = refused_by_core("replicant");

    // Another major: an error naming both versions, with the core's own version.
    let resp = ask(&conn, &status(Some(next_major))).await;
    assert_eq!(
        error_text(&resp),
        format!(
            "replicant r1 speaks meshmq inter-node protocol {next_major}; this core speaks {}.x",
            ours.major
        )
    );
    assert_eq!(WireVersion::from_proto(resp.wire.as_ref()), ours);
    // No version at all: refused as unknown, never guessed.
    let resp = ask(&conn, &status(None)).await;
    assert!(
        error_text(&resp).starts_with("replicant r1 sent no meshmq inter-node protocol version"),
        "{resp:?}"
    );
    assert_eq!(refused_by_core("replicant"), before + 2);

    // A newer minor of the same major: served, and the answer says the core's version.
    let newer_minor = WireVersion::new(ours.major, ours.minor + 1);
    let resp = ask(&conn, &status(Some(newer_minor))).await;
    assert!(
        matches!(resp.kind, Some(response::Kind::Status(_))),
        "{resp:?}"
    );
    assert_eq!(WireVersion::from_proto(resp.wire.as_ref()), ours);

    // A Follow of another major: one `refused` frame, then the stream ends.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let follow = Request {
        kind: Some(request::Kind::Follow(FollowRequest {
            from_index: 1,
            node: "r1".into(),
            projected: false,
        })),
        wire: Some(next_major.to_proto()),
    };
    frame::write_msg(&mut send, &follow).await.unwrap();
    let first: FollowFrame = tokio::time::timeout(ASK, frame::read_msg(&mut recv, 1 << 20))
        .await
        .unwrap()
        .unwrap()
        .expect("a frame");
    match &first.kind {
        Some(follow_frame::Kind::Refused(e)) => {
            assert!(
                e.message.contains("speaks meshmq inter-node protocol"),
                "{e:?}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(WireVersion::from_proto(first.wire.as_ref()), ours);
    let end = tokio::time::timeout(ASK, frame::read_msg::<FollowFrame>(&mut recv, 1 << 20))
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "the stream ends: {end:?}");

    // A Follow of the same major: the first frame carries the core's version.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let follow = Request {
        wire: Some(newer_minor.to_proto()),
        ..follow
    };
    frame::write_msg(&mut send, &follow).await.unwrap();
    let first: FollowFrame = tokio::time::timeout(ASK, frame::read_msg(&mut recv, 1 << 20))
        .await
        .unwrap()
        .unwrap()
        .expect("a frame");
    assert!(
        matches!(first.kind, Some(follow_frame::Kind::Heartbeat(_))),
        "{first:?}"
    );
    assert_eq!(WireVersion::from_proto(first.wire.as_ref()), ours);
    drop((send, recv));

    // A core switched (by a test) to another major refuses this build's version.
    core.wire.set_version(next_major);
    let resp = ask(&conn, &status(Some(ours))).await;
    assert!(
        error_text(&resp).contains(&format!("this core speaks {}.x", next_major.major)),
        "{resp:?}"
    );
    assert_eq!(WireVersion::from_proto(resp.wire.as_ref()), next_major);
    core.wire.set_version(ours);

    // The admin API shows the version, per core.
    let api = http::serve(
        core.clone(),
        HttpConfig::plain("127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let (code, body) = admin::http(api, "GET", "/api/v5/cluster", &[], "").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["wire_protocol"], ours.to_string(), "{body}");
    assert_eq!(v["members"][0]["wire_protocol"], ours.to_string(), "{body}");
    assert!(
        admin::metrics_text().contains("# HELP meshmq_wire_protocol_refused_total"),
        "described"
    );
    core.shutdown().await;
}
