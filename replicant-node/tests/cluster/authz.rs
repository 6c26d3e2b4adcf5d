//! Built-in authorization rules across replicants: a rule written through r1's REST API is
//! enforced on r2 without a restart, even for a decision r2's connection had cached (the
//! rule change moves the cluster's authorization epoch).

use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{QoS, ReasonCode};
use meshmq_shared::config::{AuthzSourceConfig, Config};
use meshmq_shared::tables::AuthzRulesKind;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{http_call, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

fn builtin(c: &mut Config) {
    c.authorization.sources = vec![AuthzSourceConfig::BuiltInDatabase { enable: true }];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_added_through_r1_is_enforced_on_r2() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant_with("r1", builtin).await;
    let r2 = cluster.start_replicant_with("r2", builtin).await;

    let mut connect = connect_packet(V5, "authz-r2");
    connect.username = Some("alice".into());
    let (mut alice, ack) = RawClient::connect_with(r2.mqtt_addr(), connect).await;
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(
        alice.publish("t/1", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success,
        "allowed (and cached) before the rule"
    );

    let body = r#"[{"username": "alice", "rules": [
        {"topic": "t/1", "permission": "deny", "action": "publish"}]}]"#;
    let path = "/api/v5/authorization/sources/built_in_database/rules/users";
    let (status, text) = http_call(r1.http_addr().expect("http"), "POST", path, body, None).await;
    assert_eq!(status, 204, "{text}");
    let replicated = wait_until(WAIT, || {
        r2.core()
            .read(|t| t.authz_rules(AuthzRulesKind::Username, "alice").is_some())
    })
    .await;
    assert!(replicated, "the rule reached r2's replica");
    assert_eq!(
        alice.publish("t/1", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "enforced on r2 at once, the cached allow dropped"
    );
    cluster.stop().await;
}
