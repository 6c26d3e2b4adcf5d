//! Client-side metrics: per-listener connection gauges, disconnect reasons, authentication
//! results and authorization decisions.

use meshmq_proto::tables::{AuthUser, AuthUserSet, Op, op};
use meshmq_shared::auth::{password, password::Algorithm, password::SaltPosition, stored};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Disconnect, Packet, QoS, ReasonCode};
use meshmq_shared::config::{AuthenticatorConfig, BuiltInDatabaseConfig, UserIdType};
use meshmq_shared::metrics as m;
use serde_json::json;

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{WAIT, unique, wait_until};
use crate::{Deltas, SERIAL, add_tcp, has_series, metric, start, wait_metric};

/// Waits until `tcp:default` has `default` connections and `tcp:second` has `second`.
async fn wait_listeners(b: &replicant_node::BrokerHandle, default: f64, second: f64) {
    let gauge = m::LISTENER_CONNECTIONS;
    wait_metric(b, gauge, &[("listener", "tcp:default")], default).await;
    wait_metric(b, gauge, &[("listener", "tcp:second")], second).await;
}

#[tokio::test]
async fn listener_gauges_follow_connections_through_every_close() {
    let _turn = SERIAL.lock().await;
    let b = start(|c| add_tcp(c, "second", |l| l.max_connections = Some(10))).await;
    let default = b.mqtt_addr();
    let second = b.listener_addr("tcp:second").expect("tcp:second runs");
    let ids: Vec<String> = (0..3).map(|_| unique("lst-d")).collect();
    let mut on_default = Vec::new();
    for id in &ids {
        on_default.push(RawClient::connect(default, V5, id).await);
    }
    let mut on_second = Vec::new();
    for _ in 0..2 {
        on_second.push(RawClient::connect(second, V311, &unique("lst-s")).await);
    }
    wait_listeners(&b, 3.0, 2.0).await;
    let max = m::LISTENER_MAX_CONNECTIONS;
    assert_eq!(metric(&b, max, &[("listener", "tcp:second")]).await, 10.0);
    assert!(
        !has_series(&b, max, &[("listener", "tcp:default")]).await,
        "a listener without a cap of its own has no max series"
    );

    // DISCONNECT, a dropped socket, and a takeover from the other listener.
    let mut normal = on_default.remove(0);
    normal
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    drop(on_default.remove(0));
    let taker = RawClient::connect(second, V5, &ids[2]).await;
    wait_listeners(&b, 0.0, 3.0).await;
    drop((normal, on_default));
    // A protocol error (a second CONNECT) closes one on the second listener.
    let mut bad = on_second.remove(0);
    bad.send(&Packet::Connect(Box::new(connect_packet(V311, "again"))))
        .await;
    wait_listeners(&b, 0.0, 2.0).await;
    drop((bad, on_second, taker));
    wait_listeners(&b, 0.0, 0.0).await;
    b.shutdown().await;
}

const REASONS: &[&str] = &[
    "normal",
    "sock_closed",
    "takenover",
    "discarded",
    "protocol_error",
    "keepalive_timeout",
    "server_shutdown",
];

#[tokio::test]
async fn every_disconnect_is_counted_once_with_its_reason() {
    let _turn = SERIAL.lock().await;
    let b = start(|_| {}).await;
    let addr = b.mqtt_addr();
    let d = Deltas::read(&b, m::DISCONNECTS_TOTAL, "reason", REASONS).await;

    let mut normal = RawClient::connect(addr, V5, &unique("dr-n")).await;
    normal
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    drop(RawClient::connect(addr, V311, &unique("dr-drop")).await);
    // Resumed (clean start 0) and discarded (clean start 1) by a new connection.
    let resumed = unique("dr-t");
    let _old = RawClient::connect(addr, V5, &resumed).await;
    let mut resume = connect_packet(V5, &resumed);
    resume.clean_start = false;
    let (_new, _) = RawClient::connect_with(addr, resume).await;
    let discarded = unique("dr-c");
    let _old2 = RawClient::connect(addr, V5, &discarded).await;
    let _new2 = RawClient::connect(addr, V5, &discarded).await;
    let mut bad = RawClient::connect(addr, V5, &unique("dr-p")).await;
    bad.send(&Packet::Connect(Box::new(connect_packet(V5, "again"))))
        .await;
    let mut silent = connect_packet(V311, &unique("dr-k"));
    silent.keep_alive = 1;
    let (_silent, _) = RawClient::connect_with(addr, silent).await;
    d.expect(&[
        ("normal", 1.0),
        ("sock_closed", 1.0),
        ("takenover", 1.0),
        ("discarded", 1.0),
        ("protocol_error", 1.0),
        ("keepalive_timeout", 1.0),
    ])
    .await;

    // Shutting down closes what is left (the two new owners): read from the recorder,
    // the broker's endpoint is gone.
    let shutdown = [("reason", "server_shutdown")];
    let text = || replicant_node::http::prometheus_handle().render();
    let before = crate::common::metric_sum(&text(), m::DISCONNECTS_TOTAL, &shutdown);
    b.shutdown().await;
    let after = crate::common::metric_sum(&text(), m::DISCONNECTS_TOTAL, &shutdown);
    assert_eq!(
        after.unwrap_or(0.0) - before.unwrap_or(0.0),
        2.0,
        "the two live connections closed by the shutdown"
    );
}

/// Writes a user of the built-in database (username `user_id`, SHA-256 suffix salt).
async fn add_user(b: &replicant_node::BrokerHandle, user_id: &str, secret: &str) {
    let sha = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let stored = password::hash(&sha, secret.as_bytes(), [9; 16]).expect("hash");
    let user = AuthUser {
        user_id: user_id.into(),
        is_superuser: false,
        password: Some(stored::to_row(&stored)),
    };
    let op = Op {
        kind: Some(op::Kind::AuthUserSet(AuthUserSet { user: Some(user) })),
    };
    b.core().transact(vec![op]).await.expect("user written");
    let there = wait_until(WAIT, || b.core().read(|t| t.auth_user(user_id).is_some())).await;
    assert!(there, "user {user_id} in the replica");
}

async fn connect_as(addr: std::net::SocketAddr, user: &str, secret: &str) -> ReasonCode {
    let mut c = connect_packet(V5, &unique("authn"));
    c.username = Some(user.to_owned());
    c.password = Some(secret.as_bytes().to_vec().into());
    RawClient::connect_with(addr, c).await.1.code
}

#[tokio::test]
async fn authentication_outcomes_are_counted_once_per_connect() {
    let _turn = SERIAL.lock().await;
    let b = start(|c| {
        c.authentication = vec![AuthenticatorConfig::BuiltInDatabase(
            BuiltInDatabaseConfig {
                user_id_type: UserIdType::Username,
                password_hash_algorithm: Algorithm::Sha256 {
                    salt_position: SaltPosition::Suffix,
                },
                ..BuiltInDatabaseConfig::default()
            },
        )];
        add_tcp(c, "open", |l| l.enable_authn = false);
    })
    .await;
    add_user(&b, "alice", "s3cret").await;
    let outcomes = ["success", "success_anonymous", "failure"];
    let d = Deltas::read(&b, m::AUTHN_RESULTS_TOTAL, "result", &outcomes).await;
    let addr = b.mqtt_addr();
    assert_eq!(
        connect_as(addr, "alice", "s3cret").await,
        ReasonCode::Success
    );
    assert_eq!(
        connect_as(addr, "alice", "wrong").await,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        connect_as(addr, "nobody", "x").await,
        ReasonCode::NotAuthorized,
        "every authenticator ignored it"
    );
    let open = b.listener_addr("tcp:open").expect("tcp:open runs");
    let _anonymous = RawClient::connect(open, V5, &unique("anon")).await;
    d.expect(&[
        ("success", 1.0),
        ("failure", 2.0),
        ("success_anonymous", 1.0),
    ])
    .await;
    b.shutdown().await;
}

#[tokio::test]
async fn authorization_decisions_are_counted_once_by_what_decided() {
    let _turn = SERIAL.lock().await;
    let b = start(|c| {
        c.authorization = serde_json::from_value(json!({
            "no_match": "deny",
            "cache": { "enable": true },
            "sources": [{ "type": "file", "rules": [
                { "permission": "allow", "who": "all", "action": "subscribe", "topics": ["az/#"] },
                { "permission": "allow", "who": "all", "action": "publish", "topics": ["az/ok"] },
                { "permission": "deny", "who": "all", "action": "publish", "topics": ["az/no"] }
            ]}]
        }))
        .expect("authorization config");
    })
    .await;
    let labels = ["allow", "deny"];
    let allow_file = [("result", "allow"), ("source", "file")];
    let name = m::AUTHZ_DECISIONS_TOTAL;
    let before = [
        metric(&b, name, &allow_file).await,
        metric(&b, name, &[("result", "allow"), ("source", "cache")]).await,
        metric(&b, name, &[("result", "deny"), ("source", "file")]).await,
        metric(&b, name, &[("result", "deny"), ("source", "no_match")]).await,
    ];
    let d = Deltas::read(&b, name, "result", &labels).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("authz")).await;
    c.subscribe("az/#", QoS::AtMostOnce).await;
    for (topic, code) in [
        ("az/ok", ReasonCode::Success),
        ("az/ok", ReasonCode::Success),
        ("az/no", ReasonCode::NotAuthorized),
        ("elsewhere", ReasonCode::NotAuthorized),
    ] {
        let got = c.publish(topic, "x", QoS::AtLeastOnce, false).await;
        assert_eq!(got, code, "PUBACK for {topic}");
    }
    // The subscription and the first publish by the file's rules, the second from the
    // connection's cache; the denials by the file and by no_match.
    d.expect(&[("allow", 3.0), ("deny", 2.0)]).await;
    let after = [
        metric(&b, name, &allow_file).await,
        metric(&b, name, &[("result", "allow"), ("source", "cache")]).await,
        metric(&b, name, &[("result", "deny"), ("source", "file")]).await,
        metric(&b, name, &[("result", "deny"), ("source", "no_match")]).await,
    ];
    let grown: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(grown, [2.0, 1.0, 1.0, 1.0], "file, cache, file, no_match");
    b.shutdown().await;
}
