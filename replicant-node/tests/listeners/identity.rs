//! Identity from the client certificate (`peer_cert_as_clientid`, `peer_cert_as_username`)
//! replaces what CONNECT says before bans, authentication and authorization: with an HTTP
//! authenticator (which also gets `${cert_common_name}` and `${cert_subject}`, as the HTTP
//! authorization source does), with the built-in database, and alone (a takeover by the
//! certificate's client id, a ban on its username). A certificate that cannot give the
//! identity refuses the client with 0x85 / 0x86 (3.1.1: return codes 2 / 4).

use meshmq_shared::auth::password::{self, Algorithm, SaltPosition};
use meshmq_shared::auth::stored;
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, QoS, ReasonCode};
use meshmq_shared::config::tls::{PeerCertAs, Verify};
use meshmq_shared::config::{
    AuthenticatorConfig, AuthorizationConfig, BuiltInDatabaseConfig, ListenerKind, UserIdType,
};
use serde_json::json;

use super::support::{
    Pki, add_listener, addr, ban, client_config, connect_over_tls, recording_authn,
    recording_service, start_ssl,
};
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{WAIT, wait_until};

const DN_OF: &str = "CN=device-7,O=meshmq dev";

#[tokio::test]
async fn the_certificate_names_the_client_for_http_authentication_and_authorization() {
    let pki = Pki::new("identity-http");
    let (authn, asked) = recording_authn(&[
        ("clientid", "${clientid}"),
        ("username", "${username}"),
        ("password", "${password}"),
        ("cn", "${cert_common_name}"),
        ("subject", "${cert_subject}"),
    ])
    .await;
    let (authz_addr, authz_asked) = recording_service().await;
    let authz: AuthorizationConfig = serde_json::from_value(json!({ "sources": [
        { "type": "http", "url": format!("http://{authz_addr}/"), "body": {
            "clientid": "${clientid}", "topic": "${topic}",
            "cn": "${cert_common_name}", "subject": "${cert_subject}" } }
    ]}))
    .expect("authorization config");
    let b = start_ssl(
        pki.options(Verify::Required),
        |l| {
            l.peer_cert_as_clientid = PeerCertAs::Cn;
            l.peer_cert_as_username = PeerCertAs::Dn;
        },
        |c| {
            c.authentication = vec![authn];
            c.authorization = authz;
        },
    )
    .await;
    let (chain, key) = pki.client("device-7");
    let config = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    let mut connect = connect_packet(V5, "claimed-id");
    connect.username = Some("claimed-user".into());
    connect.password = Some(b"pw".to_vec().into());
    let (mut c, ack) = connect_over_tls(addr(&b, "ssl:default"), config, connect)
        .await
        .expect("connected");
    assert_eq!(ack.code, ReasonCode::Success);
    let seen = asked
        .lock()
        .last()
        .cloned()
        .expect("the authenticator was asked");
    assert_eq!(seen["clientid"], "device-7");
    assert_eq!(seen["username"], DN_OF);
    assert_eq!(seen["password"], "pw", "the password is the client's own");
    assert_eq!(seen["cn"], "device-7");
    assert_eq!(seen["subject"], DN_OF);
    assert_eq!(
        c.publish("id/t", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    let seen = authz_asked
        .lock()
        .last()
        .cloned()
        .expect("authorization asked");
    assert_eq!(seen["clientid"], "device-7");
    assert_eq!(seen["topic"], "id/t");
    assert_eq!(seen["cn"], "device-7");
    assert_eq!(seen["subject"], DN_OF);
    // Over plain TCP the certificate placeholders are empty.
    let (_plain, ack) = RawClient::connect_with(b.mqtt_addr(), connect_packet(V5, "plain")).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let seen = asked.lock().last().cloned().expect("asked again");
    assert_eq!(
        (seen["clientid"].as_str(), seen["cn"].as_str()),
        ("plain", "")
    );
}

#[tokio::test]
async fn the_certificate_names_the_user_of_the_built_in_database() {
    let pki = Pki::new("identity-builtin");
    let b = start_ssl(
        pki.options(Verify::Required),
        |l| l.peer_cert_as_username = PeerCertAs::Cn,
        |c| {
            c.authentication = vec![AuthenticatorConfig::BuiltInDatabase(
                BuiltInDatabaseConfig {
                    user_id_type: UserIdType::Username,
                    password_hash_algorithm: Algorithm::Sha256 {
                        salt_position: SaltPosition::Suffix,
                    },
                    ..BuiltInDatabaseConfig::default()
                },
            )];
        },
    )
    .await;
    let algorithm = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let hash = password::hash(&algorithm, b"pw", [7; 16]).expect("hash");
    let op = meshmq_proto::tables::Op {
        kind: Some(meshmq_proto::tables::op::Kind::AuthUserSet(
            meshmq_proto::tables::AuthUserSet {
                user: Some(meshmq_proto::tables::AuthUser {
                    user_id: "device-9".into(),
                    is_superuser: false,
                    password: Some(stored::to_row(&hash)),
                }),
            },
        )),
    };
    b.core().transact(vec![op]).await.expect("user written");
    assert!(
        wait_until(WAIT, || b
            .core()
            .read(|t| t.auth_user("device-9").is_some()))
        .await
    );
    let (chain, key) = pki.client("device-9");
    let config = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    for (password, expected) in [
        ("pw", ReasonCode::Success),
        ("wrong", ReasonCode::BadUserNameOrPassword),
    ] {
        let mut connect = connect_packet(V5, &format!("builtin-{password}"));
        connect.username = Some("nobody".into());
        connect.password = Some(password.as_bytes().to_vec().into());
        let (_c, ack) = connect_over_tls(addr(&b, "ssl:default"), config.clone(), connect)
            .await
            .expect("an answer");
        assert_eq!(ack.code, expected, "password {password}");
    }
}

#[tokio::test]
async fn alone_the_certificate_sets_the_client_id_and_the_username() {
    let pki = Pki::new("identity-alone");
    let b = start_ssl(
        pki.options(Verify::Required),
        |l| {
            l.peer_cert_as_clientid = PeerCertAs::Cn;
            l.peer_cert_as_username = PeerCertAs::Cn;
        },
        |_| {},
    )
    .await;
    let ssl = addr(&b, "ssl:default");
    let (chain, key) = pki.client("device-8");
    let config = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    // Two CONNECTs naming different client ids are one client: the second takes over.
    let (mut first, ack) = connect_over_tls(ssl, config.clone(), connect_packet(V5, "one"))
        .await
        .expect("first");
    assert_eq!(ack.code, ReasonCode::Success);
    let (_second, ack) = connect_over_tls(ssl, config.clone(), connect_packet(V5, "two"))
        .await
        .expect("second");
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(
        first
            .expect_closed_with(&[ReasonCode::SessionTakenOver])
            .await,
        Some(ReasonCode::SessionTakenOver)
    );
    // A ban on the certificate's name holds whatever username CONNECT claims.
    ban(&b, "username", "device-8").await;
    let mut connect = connect_packet(V5, "three");
    connect.username = Some("innocent".into());
    let (_c, ack) = connect_over_tls(ssl, config, connect)
        .await
        .expect("answered");
    assert_eq!(ack.code, ReasonCode::Banned);
}

#[tokio::test]
async fn a_certificate_that_cannot_give_the_identity_refuses_the_client() {
    let pki = Pki::new("identity-missing");
    let options = pki.options(Verify::Optional);
    let b = super::support::start(|c| {
        add_listener(c, ListenerKind::Ssl, "idc", |l| {
            l.ssl_options = Some(options.clone());
            l.peer_cert_as_clientid = PeerCertAs::Cn;
        });
        add_listener(c, ListenerKind::Ssl, "idu", |l| {
            l.ssl_options = Some(options.clone());
            l.peer_cert_as_username = PeerCertAs::Cn;
        });
    })
    .await;
    let no_cert = client_config(pki.ca.ca_pem(), None, &[]);
    for (listener, v, expected) in [
        ("ssl:idc", V5, ReasonCode::ClientIdentifierNotValid),
        ("ssl:idc", V311, ReasonCode::ClientIdentifierNotValid),
        ("ssl:idu", V5, ReasonCode::BadUserNameOrPassword),
        ("ssl:idu", V311, ReasonCode::BadUserNameOrPassword),
    ] {
        let mut connect = connect_packet(v, "claims");
        connect.username = Some("claims".into());
        let (mut c, ack) = connect_over_tls(addr(&b, listener), no_cert.clone(), connect)
            .await
            .expect("answered");
        assert_eq!(ack.code, expected, "{listener} {v:?}");
        let after = c.wait_closed(WAIT).await;
        assert!(
            after.iter().all(|p| !matches!(p, Packet::ConnAck(_))),
            "{after:?}"
        );
    }
    // With a certificate, both listeners take the client.
    let (chain, key) = pki.client("device-10");
    let with = client_config(pki.ca.ca_pem(), Some((&chain, &key)), &[]);
    for listener in ["ssl:idc", "ssl:idu"] {
        let (_c, ack) = connect_over_tls(addr(&b, listener), with.clone(), connect_packet(V5, "x"))
            .await
            .expect("answered");
        assert_eq!(ack.code, ReasonCode::Success, "{listener}");
    }
}
