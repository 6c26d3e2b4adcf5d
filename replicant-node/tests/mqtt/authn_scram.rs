//! MQTT 5.0 enhanced authentication with SCRAM-SHA-256 / SCRAM-SHA-512 (section 4.12,
//! RFC 5802 / 7677), users in the `auth_users` table: the server side against the RFC 7677
//! test vector, then real exchanges with the client of `authn_scram_client` over raw MQTT:
//! success with the server's signature checked, every refusal (wrong password, unknown user,
//! wrong method, malformed or tampered messages, a client that stops), re-authentication.

use std::time::Duration;

use bytes::Bytes;
use meshmq_proto::tables::{AuthUser, AuthUserSet, Op, op};
use meshmq_shared::auth::scram::{self, ScramAlgorithm};
use meshmq_shared::auth::scram_exchange::{self as exchange, ScramError};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Auth, Packet, Properties, ReasonCode};
use meshmq_shared::config::{AuthenticatorConfig, BuiltInDatabaseConfig, Config, ScramConfig};
use serde_json::json;

use super::authn_scram_client::{Hash, ScramClient};
use crate::common::api_client::Api;
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{self, TestBroker, WAIT, metric_sum, metrics_text, wait_until};

// RFC 7677 section 3.
const RFC_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                         p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_credentials() -> scram::Credentials {
    use base64::Engine as _;
    let salt = base64::engine::general_purpose::STANDARD
        .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
        .expect("salt");
    scram::credentials(ScramAlgorithm::Sha256, b"pencil", &salt, 4096).expect("credentials")
}

#[test]
fn the_server_side_replays_the_rfc7677_exchange() {
    let first = exchange::parse_client_first(RFC_FIRST.as_bytes()).expect("client-first");
    assert_eq!(first.username, "user");
    let (state, server_first) =
        exchange::server_first(first.clone(), rfc_credentials(), true, RFC_SERVER_NONCE);
    assert_eq!(server_first, RFC_SERVER_FIRST);
    assert_eq!(
        state.client_final(RFC_FINAL.as_bytes()).as_deref(),
        Ok(RFC_SERVER_FINAL)
    );
    // A flipped proof bit, another nonce, another binding: refused.
    let tampered = RFC_FINAL.replace("p=dHzb", "p=dHzc");
    assert_eq!(
        state.client_final(tampered.as_bytes()),
        Err(ScramError::InvalidProof)
    );
    let other_nonce = RFC_FINAL.replace("k0,p=", "k1,p=");
    assert_eq!(
        state.client_final(other_nonce.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
    let y_binding = RFC_FINAL.replace("c=biws", "c=eSws");
    assert_eq!(
        state.client_final(y_binding.as_bytes()),
        Err(ScramError::BindingMismatch)
    );
    assert!(matches!(
        state.client_final(b"c=biws,r=x"),
        Err(ScramError::Malformed(_))
    ));
    // Unknown user: even the right proof fails.
    let (ghost, _) = exchange::server_first(first, rfc_credentials(), false, RFC_SERVER_NONCE);
    assert_eq!(
        ghost.client_final(RFC_FINAL.as_bytes()),
        Err(ScramError::InvalidProof)
    );
}

#[test]
fn the_test_client_replays_the_rfc7677_exchange() {
    let mut c = ScramClient::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    assert_eq!(c.client_first(), RFC_FIRST);
    assert_eq!(c.client_final(RFC_SERVER_FIRST), RFC_FINAL);
    assert!(c.verifies(RFC_SERVER_FINAL.as_bytes()));
    assert!(!c.verifies(b"v=AAAA"));
}

/// SCRAM-SHA-256 and SCRAM-SHA-512 authenticators, then the password chain.
pub(crate) fn scram_chain(c: &mut Config) {
    c.authentication = vec![
        AuthenticatorConfig::Scram(ScramConfig::default()),
        AuthenticatorConfig::Scram(ScramConfig {
            algorithm: ScramAlgorithm::Sha512,
            ..ScramConfig::default()
        }),
        AuthenticatorConfig::BuiltInDatabase(BuiltInDatabaseConfig::default()),
    ];
}

/// Writes a SCRAM user (credentials made from the password, as the users API does) and
/// waits until every node has it.
pub(crate) async fn add_scram_user(
    b: &TestBroker,
    user: &str,
    password: &str,
    alg: ScramAlgorithm,
) {
    let salt: [u8; 16] = rand::random();
    let creds = scram::credentials(alg, password.as_bytes(), &salt, 4096).expect("made");
    let op = Op {
        kind: Some(op::Kind::AuthUserSet(AuthUserSet {
            user: Some(AuthUser {
                user_id: user.into(),
                is_superuser: false,
                password: Some(scram::to_row(&creds)),
            }),
        })),
    };
    b.nodes()[0]
        .core()
        .transact(vec![op])
        .await
        .expect("user written");
    let everywhere = wait_until(WAIT, || {
        b.nodes()
            .iter()
            .all(|n| n.core().read(|t| t.auth_user(user).is_some()))
    })
    .await;
    assert!(everywhere, "user {user} reached every node");
}

/// Sends a 5.0 CONNECT with `method` and `data`; nothing read yet.
async fn open_with(
    b: &TestBroker,
    method: &str,
    data: Option<&str>,
    username: Option<&str>,
) -> RawClient {
    open_at(b.mqtt_addr(), method, data, username).await
}

/// [`open_with`] to a given address (one node, whatever the topology).
async fn open_at(
    addr: std::net::SocketAddr,
    method: &str,
    data: Option<&str>,
    username: Option<&str>,
) -> RawClient {
    let mut c = connect_packet(V5, &common::unique("scram"));
    c.username = username.map(str::to_owned);
    c.properties.authentication_method = Some(method.to_owned());
    c.properties.authentication_data = data.map(|d| Bytes::from(d.to_owned()));
    let mut client = RawClient::open(addr).await;
    client.version = V5;
    client.send(&Packet::Connect(Box::new(c))).await;
    client
}

fn auth(reason: ReasonCode, method: &str, data: &str) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: Properties {
            authentication_method: Some(method.to_owned()),
            authentication_data: Some(Bytes::from(data.to_owned())),
            ..Properties::default()
        },
    })
}

/// The server-first of an AUTH 0x18 (panics on anything else).
async fn expect_continue(client: &mut RawClient, method: &str) -> String {
    match client.recv().await {
        Ok(Packet::Auth(a)) => {
            assert_eq!(a.reason, ReasonCode::ContinueAuthentication);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(method));
            let data = a.properties.authentication_data.expect("server-first");
            String::from_utf8(data.to_vec()).expect("UTF-8 server-first")
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// A whole exchange at CONNECT; returns the client, the CONNACK and whether its
/// server-final proved the server knows the credentials.
pub(crate) async fn scram_connect(
    b: &TestBroker,
    hash: Hash,
    user: &str,
    password: &str,
) -> (RawClient, meshmq_shared::codec::ConnAck, bool) {
    let mut sc = ScramClient::new(hash, user, password, &common::unique("nonce"));
    let mut client = open_with(b, hash.method(), Some(&sc.client_first()), None).await;
    let server_first = expect_continue(&mut client, hash.method()).await;
    let client_final = sc.client_final(&server_first);
    let cont = ReasonCode::ContinueAuthentication;
    client.send(&auth(cont, hash.method(), &client_final)).await;
    let ack = match client.recv().await {
        Ok(Packet::ConnAck(ack)) => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    };
    let data = ack
        .properties
        .authentication_data
        .clone()
        .unwrap_or_default();
    let verified = sc.verifies(&data);
    (client, ack, verified)
}

#[tokio::test]
async fn sha256_and_sha512_clients_connect_and_verify_the_server_signature() {
    let b = common::start_broker(scram_chain).await;
    for (hash, alg) in [
        (Hash::Sha256, ScramAlgorithm::Sha256),
        (Hash::Sha512, ScramAlgorithm::Sha512),
    ] {
        let user = common::unique("scram-user");
        add_scram_user(&b, &user, "pencil", alg).await;
        let (mut client, ack, verified) = scram_connect(&b, hash, &user, "pencil").await;
        assert_eq!(ack.code, ReasonCode::Success, "{hash:?}");
        assert_eq!(
            ack.properties.authentication_method.as_deref(),
            Some(hash.method())
        );
        assert!(
            verified,
            "{hash:?}: server-final carries the server signature"
        );
        client.ping().await;
    }
    let text = metrics_text(&b).await;
    let allowed = metric_sum(
        &text,
        "meshmq_authentication_total",
        &[
            ("authenticator", "scram:built_in_database"),
            ("result", "allow"),
        ],
    );
    assert!(allowed.is_some_and(|n| n >= 2.0), "{allowed:?}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_are_refused_alike() {
    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let ghost = common::unique("ghost");
    let mut salts = Vec::new();
    let failures = |text: &str, reason| {
        metric_sum(
            text,
            "meshmq_authentication_scram_failures_total",
            &[("reason", reason)],
        )
    };
    let before = failures(&metrics_text(&b).await, "invalid_proof").unwrap_or(0.0);
    // One node: an unknown user's fake salt is derived from a per-node secret (docs/scram.md,
    // "Unknown users"), so it is stable per node, not across nodes.
    let node = b.nodes()[0].mqtt_addr();
    for (name, password) in [(&user, "crayon"), (&ghost, "pencil"), (&ghost, "pencil")] {
        // Both get a server-first with a salt and the iteration count, then the same
        // refusal: the exchange does not tell whether the user exists.
        let mut sc = ScramClient::new(Hash::Sha256, name, password, "abcdefgh");
        let mut client = open_at(node, "SCRAM-SHA-256", Some(&sc.client_first()), None).await;
        let server_first = expect_continue(&mut client, "SCRAM-SHA-256").await;
        let (salt, iterations) = ScramClient::offer(&server_first);
        assert_eq!((salt.len(), iterations), (16, 4096), "{name}");
        salts.push(salt);
        let client_final = sc.client_final(&server_first);
        let cont = ReasonCode::ContinueAuthentication;
        client
            .send(&auth(cont, "SCRAM-SHA-256", &client_final))
            .await;
        let seen = client.wait_closed(WAIT).await;
        assert!(
            matches!(&seen[..], [Packet::ConnAck(a)] if a.code == ReasonCode::NotAuthorized
                && a.properties.authentication_data.is_none()),
            "{name}: {seen:?}"
        );
    }
    assert_eq!(salts[1], salts[2], "an unknown user's salt is stable");
    assert_ne!(salts[0], salts[1]);
    // The unauthenticated metrics endpoint does not tell them apart either: the wrong
    // password and both unknown-user attempts count as `invalid_proof`, and no sample
    // says `unknown_user`.
    let text = metrics_text(&b).await;
    let after = failures(&text, "invalid_proof").unwrap_or(0.0);
    assert!(after - before >= 3.0, "{before} -> {after}");
    assert_eq!(failures(&text, "unknown_user"), None, "{text}");
}

#[tokio::test]
async fn a_method_no_authenticator_answers_is_refused_bad_authentication_method() {
    let b = common::start_broker(|c| {
        c.authentication = vec![AuthenticatorConfig::Scram(ScramConfig::default())];
    })
    .await;
    for method in ["SCRAM-SHA-512", "SCRAM-SHA-1", "PLAIN"] {
        let mut client = open_with(&b, method, Some("n,,n=user,r=abc"), None).await;
        let seen = client.wait_closed(WAIT).await;
        assert!(
            matches!(&seen[..], [Packet::ConnAck(a)]
                if a.code == ReasonCode::BadAuthenticationMethod),
            "{method}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn malformed_client_first_messages_are_refused_without_an_exchange() {
    let b = common::start_broker(scram_chain).await;
    for data in [
        None,
        Some("garbage"),
        Some("p=tls-server-end-point,,n=user,r=abc"),
        Some("n,a=admin,n=user,r=abc"),
        Some("n,,n=user"),
        Some("n,,n=us=er,r=abc"),
    ] {
        let mut client = open_with(&b, "SCRAM-SHA-256", data, None).await;
        let seen = client.wait_closed(WAIT).await;
        assert!(
            matches!(&seen[..], [Packet::ConnAck(a)] if a.code == ReasonCode::NotAuthorized),
            "{data:?}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn tampered_client_finals_and_out_of_turn_packets_are_refused() {
    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let m = "SCRAM-SHA-256";
    let cont = ReasonCode::ContinueAuthentication;
    // (nonce suffix, binding) → refused 0x87; then AUTH with another method → 0x82.
    for (bad_nonce, binding) in [(true, "biws"), (false, "eSws")] {
        let mut sc = ScramClient::new(Hash::Sha256, &user, "pencil", "nonce123");
        let mut client = open_with(&b, m, Some(&sc.client_first()), None).await;
        let server_first = expect_continue(&mut client, m).await;
        let nonce = server_first
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .expect("nonce")
            .to_owned();
        let nonce = if bad_nonce {
            format!("{nonce}x")
        } else {
            nonce
        };
        let client_final = sc.client_final_with(&server_first, &nonce, binding);
        client.send(&auth(cont, m, &client_final)).await;
        let seen = client.wait_closed(WAIT).await;
        assert!(
            matches!(&seen[..], [Packet::ConnAck(a)] if a.code == ReasonCode::NotAuthorized),
            "nonce changed {bad_nonce}, binding {binding}: {seen:?}"
        );
    }
    let sc = ScramClient::new(Hash::Sha256, &user, "pencil", "nonce123");
    let mut client = open_with(&b, m, Some(&sc.client_first()), None).await;
    expect_continue(&mut client, m).await;
    client.send(&auth(cont, "SCRAM-SHA-512", "c=biws")).await;
    let seen = client.wait_closed(WAIT).await;
    assert!(
        matches!(&seen[..], [Packet::ConnAck(a)] if a.code == ReasonCode::ProtocolError),
        "another method mid-exchange: {seen:?}"
    );
}

#[tokio::test]
async fn a_connect_user_name_other_than_the_scram_user_is_refused() {
    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let m = "SCRAM-SHA-256";
    let mut sc = ScramClient::new(Hash::Sha256, &user, "pencil", "nonce123");
    let mut client = open_with(&b, m, Some(&sc.client_first()), Some("admin")).await;
    let server_first = expect_continue(&mut client, m).await;
    let client_final = sc.client_final(&server_first);
    client
        .send(&auth(ReasonCode::ContinueAuthentication, m, &client_final))
        .await;
    let seen = client.wait_closed(WAIT).await;
    assert!(
        matches!(&seen[..], [Packet::ConnAck(a)] if a.code == ReasonCode::NotAuthorized),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_scram_user_can_also_log_in_with_its_password_in_both_versions() {
    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha512).await;
    for v in [V5, V311] {
        for (password, code) in [
            ("pencil", ReasonCode::Success),
            ("crayon", ReasonCode::BadUserNameOrPassword),
        ] {
            let mut c = connect_packet(v, &common::unique("pw"));
            c.username = Some(user.clone());
            c.password = Some(Bytes::from(password));
            let (_client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
            assert_eq!(ack.code, code, "{v:?} {password}");
        }
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_exchange_is_dropped_within_connect_timeout() {
    let b = common::start_broker(|c| {
        scram_chain(c);
        c.mqtt.connect_timeout = 1;
    })
    .await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let sc = ScramClient::new(Hash::Sha256, &user, "pencil", "nonce123");
    let mut client = open_with(&b, "SCRAM-SHA-256", Some(&sc.client_first()), None).await;
    expect_continue(&mut client, "SCRAM-SHA-256").await;
    // Never sends client-final: closed, without a CONNACK, within the bound.
    let seen = client.wait_closed(Duration::from_secs(4)).await;
    assert!(seen.is_empty(), "{seen:?}");
}

/// Starts a re-authentication on `client` and returns its server-first.
async fn reauth_start(client: &mut RawClient, sc: &ScramClient, method: &str) -> String {
    let first = sc.client_first();
    client
        .send(&auth(ReasonCode::ReAuthenticate, method, &first))
        .await;
    expect_continue(client, method).await
}

#[tokio::test]
async fn re_authentication_succeeds_on_the_live_connection() {
    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha512).await;
    let (mut client, ack, _) = scram_connect(&b, Hash::Sha512, &user, "pencil").await;
    assert_eq!(ack.code, ReasonCode::Success);
    for _ in 0..2 {
        let m = "SCRAM-SHA-512";
        let mut sc = ScramClient::new(Hash::Sha512, &user, "pencil", &common::unique("n"));
        let server_first = reauth_start(&mut client, &sc, m).await;
        let client_final = sc.client_final(&server_first);
        client
            .send(&auth(ReasonCode::ContinueAuthentication, m, &client_final))
            .await;
        match client.recv().await {
            Ok(Packet::Auth(a)) => {
                assert_eq!(a.reason, ReasonCode::Success);
                let data = a.properties.authentication_data.unwrap_or_default();
                assert!(sc.verifies(&data), "server-final verified");
            }
            other => panic!("expected AUTH Success, got {other:?}"),
        }
        client.ping().await;
    }
}

#[tokio::test]
async fn a_failed_or_abandoned_re_authentication_disconnects_not_authorized() {
    let b = common::start_broker(|c| {
        scram_chain(c);
        c.mqtt.connect_timeout = 1;
    })
    .await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let m = "SCRAM-SHA-256";
    // Wrong password.
    let (mut client, _, _) = scram_connect(&b, Hash::Sha256, &user, "pencil").await;
    let mut sc = ScramClient::new(Hash::Sha256, &user, "crayon", "nonce1");
    let server_first = reauth_start(&mut client, &sc, m).await;
    let client_final = sc.client_final(&server_first);
    client
        .send(&auth(ReasonCode::ContinueAuthentication, m, &client_final))
        .await;
    let reason = client
        .expect_closed_with(&[ReasonCode::NotAuthorized])
        .await;
    assert_eq!(reason, Some(ReasonCode::NotAuthorized));
    // Another user: the connection's identity cannot change.
    let other = common::unique("scram-other");
    add_scram_user(&b, &other, "pencil", ScramAlgorithm::Sha256).await;
    let (mut client, _, _) = scram_connect(&b, Hash::Sha256, &user, "pencil").await;
    let mut sc = ScramClient::new(Hash::Sha256, &other, "pencil", "nonce2");
    let server_first = reauth_start(&mut client, &sc, m).await;
    let client_final = sc.client_final(&server_first);
    client
        .send(&auth(ReasonCode::ContinueAuthentication, m, &client_final))
        .await;
    let reason = client
        .expect_closed_with(&[ReasonCode::NotAuthorized])
        .await;
    assert_eq!(reason, Some(ReasonCode::NotAuthorized));
    // Started, never finished: ended at the bound (connect_timeout 1 s).
    let (mut client, _, _) = scram_connect(&b, Hash::Sha256, &user, "pencil").await;
    let sc = ScramClient::new(Hash::Sha256, &user, "pencil", "nonce3");
    reauth_start(&mut client, &sc, m).await;
    let reason = client
        .expect_closed_with(&[ReasonCode::NotAuthorized])
        .await;
    assert_eq!(reason, Some(ReasonCode::NotAuthorized));
}

#[tokio::test]
async fn re_authentication_with_another_method_or_without_one_is_a_protocol_error() {
    let b = common::start_broker(scram_chain).await;
    let user = common::unique("scram-user");
    add_scram_user(&b, &user, "pencil", ScramAlgorithm::Sha256).await;
    let (mut client, _, _) = scram_connect(&b, Hash::Sha256, &user, "pencil").await;
    let sc = ScramClient::new(Hash::Sha256, &user, "pencil", "nonce1");
    let first = sc.client_first();
    let reauth = ReasonCode::ReAuthenticate;
    client.send(&auth(reauth, "SCRAM-SHA-512", &first)).await;
    let reason = client
        .expect_closed_with(&[ReasonCode::ProtocolError])
        .await;
    assert_eq!(reason, Some(ReasonCode::ProtocolError));
    // Connected by password (no method): AUTH is a protocol error.
    let mut c = connect_packet(V5, &common::unique("pw"));
    c.username = Some(user.clone());
    c.password = Some(Bytes::from("pencil"));
    let (mut client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    client.send(&auth(reauth, "SCRAM-SHA-256", &first)).await;
    let reason = client
        .expect_closed_with(&[ReasonCode::ProtocolError])
        .await;
    assert_eq!(reason, Some(ReasonCode::ProtocolError));
}

/// Users created and imported in clear through the users API of the SCRAM authenticator get
/// SCRAM credentials (of its algorithm), so they complete the exchange; a hash import is
/// refused (a SCRAM authenticator has no hash algorithm to name imported hashes by).
#[tokio::test]
async fn users_made_through_the_scram_authenticators_api_complete_the_exchange() {
    let b = common::start_broker(scram_chain).await;
    let api = Api::new(b.http_addr().expect("http listener"));
    let base = "/api/v5/authentication/scram:built_in_database";
    let (status, list) = api.get("/api/v5/authentication").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["mechanism"], "scram", "{list}");
    assert_eq!(list[0]["iteration_count"], 4096, "{list}");

    let created = common::unique("api-scram");
    let (status, body) = api
        .json(
            "POST",
            &format!("{base}/users"),
            &json!({ "user_id": created, "password": "pencil" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let imported = common::unique("csv-scram");
    let csv = format!("user_id,password,is_superuser\n{imported},ink,false\n");
    let (status, body) = api
        .call(
            "POST",
            &format!("{base}/import_users?type=plain"),
            Some("text/csv"),
            csv.as_bytes(),
        )
        .await;
    assert_eq!((status, body["success"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = api
        .call(
            "POST",
            &format!("{base}/import_users?type=hash"),
            Some("text/csv"),
            b"user_id,password_hash,salt,is_superuser\nx,00,00,false\n",
        )
        .await;
    assert_eq!(status, 400, "{body}");

    for (user, password) in [(&created, "pencil"), (&imported, "ink")] {
        let ok = wait_until(WAIT, || {
            b.nodes()
                .iter()
                .all(|n| n.core().read(|t| t.auth_user(user).is_some()))
        })
        .await;
        assert!(ok, "{user} reached every node");
        // The first authenticator is SCRAM-SHA-256: its users answer that method.
        let (_client, ack, verified) = scram_connect(&b, Hash::Sha256, user, password).await;
        assert_eq!(ack.code, ReasonCode::Success, "{user}");
        assert!(verified, "{user}: server signature");
        let (_client, ack, _) = scram_connect(&b, Hash::Sha256, user, "wrong").await;
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{user}");
    }
}
