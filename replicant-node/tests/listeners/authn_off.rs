//! `enable_authn = false`: on that listener the authentication chain is skipped (a client
//! without credentials gets in, while the node's other listeners still refuse it), a
//! client asking for enhanced authentication gets 0x8C even though the node has a SCRAM
//! authenticator, and bans and authorization still apply.

use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{QoS, ReasonCode};
use meshmq_shared::config::{
    AuthenticatorConfig, AuthorizationConfig, BuiltInDatabaseConfig, ListenerKind, ScramConfig,
};
use serde_json::json;

use super::support::{add_listener, addr, ban, start};
use crate::common::raw::{RawClient, connect_packet};

#[tokio::test]
async fn a_listener_without_authentication_skips_the_chain_only_there() {
    let authz: AuthorizationConfig = serde_json::from_value(json!({ "sources": [
        { "type": "file", "rules": [
            { "permission": "deny", "who": "all", "action": "publish", "topics": ["secret/#"] }
        ] }
    ]}))
    .expect("authorization");
    let b = start(|c| {
        c.authentication = vec![
            AuthenticatorConfig::BuiltInDatabase(BuiltInDatabaseConfig::default()),
            AuthenticatorConfig::Scram(ScramConfig::default()),
        ];
        c.authorization = authz;
        add_listener(c, ListenerKind::Tcp, "internal", |l| {
            l.enable_authn = false;
        });
    })
    .await;
    let internal = addr(&b, "tcp:internal");
    for v in [V311, V5] {
        let (_c, ack) = RawClient::connect_with(b.mqtt_addr(), connect_packet(v, "anon")).await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "tcp:default {v:?}");
        let (_c, ack) = RawClient::connect_with(internal, connect_packet(v, "anon")).await;
        assert_eq!(ack.code, ReasonCode::Success, "tcp:internal {v:?}");
    }
    // Enhanced authentication: a method is answered on tcp:default (the exchange starts),
    // refused on tcp:internal.
    let mut scram = connect_packet(V5, "scram-client");
    scram.properties.authentication_method = Some("SCRAM-SHA-256".into());
    scram.properties.authentication_data = Some(b"n,,n=user,r=abcdefgh".to_vec().into());
    let (_c, ack) = RawClient::connect_with(internal, scram.clone()).await;
    assert_eq!(ack.code, ReasonCode::BadAuthenticationMethod);
    let mut on_default = RawClient::open(b.mqtt_addr()).await;
    on_default.version = V5;
    on_default
        .send(&meshmq_shared::codec::Packet::Connect(Box::new(scram)))
        .await;
    let answer = on_default.recv().await;
    assert!(
        matches!(answer, Ok(meshmq_shared::codec::Packet::Auth(_))),
        "tcp:default runs the exchange: {answer:?}"
    );
    // Authorization still applies there.
    let mut c = RawClient::connect(internal, V5, "internal-pub").await;
    assert_eq!(
        c.publish("secret/x", "no", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        c.publish("open/x", "yes", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    // And bans.
    ban(&b, "clientid", "internal-banned").await;
    let (_c, ack) = RawClient::connect_with(internal, connect_packet(V5, "internal-banned")).await;
    assert_eq!(ack.code, ReasonCode::Banned);
}
