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

/// With a JWT authenticator reading tokens from the User Name, a token sent as the name on
/// a listener without authentication is still a credential: it is never the client's name
/// (nor published in the `$SYS` connected event), while a plain name stays.
#[tokio::test]
async fn a_token_in_the_username_is_not_a_name_on_a_listener_without_authentication() {
    use meshmq_shared::config::{JwtConfig, JwtFrom};
    let b = start(|c| {
        c.authentication = vec![AuthenticatorConfig::Jwt(JwtConfig {
            secret: Some("s3cret-for-this-test".into()),
            from: JwtFrom::Username,
            ..JwtConfig::default()
        })];
        add_listener(c, ListenerKind::Tcp, "internal", |l| {
            l.enable_authn = false;
        });
    })
    .await;
    let internal = addr(&b, "tcp:internal");
    let mut w = RawClient::connect(internal, V5, "sys-watcher").await;
    w.subscribe("$SYS/brokers/+/clients/+/connected", QoS::AtMostOnce)
        .await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "device-1"}),
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret-for-this-test").expect("hmac key"),
    )
    .expect("token");
    for (id, name, shown) in [
        ("with-token", token.as_str(), serde_json::Value::Null),
        ("with-name", "bob", json!("bob")),
    ] {
        let mut c = connect_packet(V5, id);
        c.username = Some(name.into());
        let (_c, ack) = RawClient::connect_with(internal, c).await;
        assert_eq!(ack.code, ReasonCode::Success, "{id}");
        let event = w
            .recv_publish_ending(&format!("/clients/{id}/connected"))
            .await;
        let text = String::from_utf8_lossy(&event.payload).into_owned();
        assert!(!text.contains(&token), "the token leaked: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["username"], shown, "{text}");
    }
}
