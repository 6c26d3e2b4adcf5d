//! The authentication chain with the built-in database: users written to the `auth_users`
//! table (as the API will), checked at CONNECT on every node. Allow, deny (5.0 0x86,
//! 3.1.1 code 4), ignore → refused (0x87 / code 5), each password format users migrate
//! with, and a refused client that cannot take over the session of the client id it names.

use meshmq_proto::tables::{AuthUser, AuthUserSet, Op, op};
use meshmq_shared::auth::{password, password::Algorithm, password::SaltPosition, stored};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Packet, ReasonCode};
use meshmq_shared::config::{AuthenticatorConfig, BuiltInDatabaseConfig, Config, UserIdType};

use crate::common::raw::{RawClient, connect_packet};
use crate::common::{self, TestBroker, WAIT, wait_until};

pub(crate) fn builtin(user_id_type: UserIdType) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.authentication = vec![AuthenticatorConfig::BuiltInDatabase(
            BuiltInDatabaseConfig {
                user_id_type,
                password_hash_algorithm: Algorithm::Sha256 {
                    salt_position: SaltPosition::Suffix,
                },
                ..BuiltInDatabaseConfig::default()
            },
        )];
    }
}

/// Writes a user through the tables and waits until every node has it.
pub(crate) async fn add_user(b: &TestBroker, user_id: &str, secret: &str, algorithm: &Algorithm) {
    let stored = password::hash(algorithm, secret.as_bytes(), [9; 16]).expect("hash");
    let op = Op {
        kind: Some(op::Kind::AuthUserSet(AuthUserSet {
            user: Some(AuthUser {
                user_id: user_id.into(),
                is_superuser: false,
                password: Some(stored::to_row(&stored)),
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
            .all(|n| n.core().read(|t| t.auth_user(user_id).is_some()))
    })
    .await;
    assert!(everywhere, "user {user_id} reached every node");
}

async fn try_connect(
    b: &TestBroker,
    v: meshmq_shared::codec::ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    secret: Option<&str>,
) -> (RawClient, ReasonCode) {
    let mut c = connect_packet(v, client_id);
    c.username = username.map(str::to_owned);
    c.password = secret.map(|p| p.as_bytes().to_vec().into());
    let (client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    (client, ack.code)
}

#[tokio::test]
async fn builtin_database_allows_denies_and_ignores_in_both_versions() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let sha = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let user = common::unique("alice");
    add_user(&b, &user, "s3cret", &sha).await;
    for v in [V5, V311] {
        let id = common::unique("authn");
        let (_ok, code) = try_connect(&b, v, &id, Some(&user), Some("s3cret")).await;
        assert_eq!(code, ReasonCode::Success, "{v:?} right password");
        let (_c, code) = try_connect(&b, v, &id, Some(&user), Some("wrong")).await;
        assert_eq!(
            code,
            ReasonCode::BadUserNameOrPassword,
            "{v:?} wrong password"
        );
        let (_c, code) = try_connect(&b, v, &id, Some("nobody"), Some("s3cret")).await;
        assert_eq!(
            code,
            ReasonCode::NotAuthorized,
            "{v:?} unknown user: all ignore"
        );
        let (_c, code) = try_connect(&b, v, &id, None, None).await;
        assert_eq!(code, ReasonCode::NotAuthorized, "{v:?} anonymous");
        let (_c, code) = try_connect(&b, v, &id, Some(&user), None).await;
        assert_eq!(code, ReasonCode::NotAuthorized, "{v:?} no password");
    }
}

#[tokio::test]
async fn users_keyed_by_client_id() {
    let b = common::start_broker(builtin(UserIdType::Clientid)).await;
    let id = common::unique("device");
    let plain = Algorithm::Plain;
    add_user(&b, &id, "token", &plain).await;
    let (_c, code) = try_connect(&b, V5, &id, Some("any-name"), Some("token")).await;
    assert_eq!(code, ReasonCode::Success);
    let (_c, code) = try_connect(&b, V5, &id, None, Some("nope")).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
}

#[tokio::test]
async fn every_stored_format_authenticates() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let formats = [
        Algorithm::Sha512 {
            salt_position: SaltPosition::Prefix,
        },
        Algorithm::Pbkdf2 {
            mac_fun: password::MacFun::Sha256,
            iterations: 1_000,
            dk_length: None,
        },
        Algorithm::Bcrypt { salt_rounds: 4 },
        Algorithm::Argon2id,
        Algorithm::MosquittoSha512,
        Algorithm::MosquittoPbkdf2,
    ];
    for (i, a) in formats.iter().enumerate() {
        let user = common::unique(&format!("fmt{i}"));
        add_user(&b, &user, "pw", a).await;
        let id = common::unique("fmt");
        let (_c, code) = try_connect(&b, V5, &id, Some(&user), Some("pw")).await;
        assert_eq!(code, ReasonCode::Success, "{a:?}");
        let (_c, code) = try_connect(&b, V5, &id, Some(&user), Some("pW")).await;
        assert_eq!(code, ReasonCode::BadUserNameOrPassword, "{a:?}");
    }
}

/// A refused CONNECT never claims the client id: the connected client keeps its session
/// (no DISCONNECT 0x8E), whatever the refused one sent.
#[tokio::test]
async fn a_refused_client_cannot_take_a_session_over() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let sha = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let user = common::unique("owner");
    add_user(&b, &user, "mine", &sha).await;
    let id = common::unique("victim");
    let (mut owner, code) = try_connect(&b, V5, &id, Some(&user), Some("mine")).await;
    assert_eq!(code, ReasonCode::Success);
    let (_c, code) = try_connect(&b, V5, &id, Some(&user), Some("guess")).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
    let (_c, code) = try_connect(&b, V5, &id, None, None).await;
    assert_eq!(code, ReasonCode::NotAuthorized);
    // Still connected and still the owner: a PINGREQ is answered.
    owner.send(&Packet::PingReq).await;
    match owner.recv().await {
        Ok(Packet::PingResp) => {}
        other => panic!("the owner lost its connection: {other:?}"),
    }
}

/// A user whose stored hash passes the table's format checks but cannot be verified (a
/// truncated bcrypt string) is refused with 0x87 (counted as `error`), never let in.
#[tokio::test]
async fn an_unverifiable_stored_password_refuses_the_user() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let user = common::unique("broken");
    let op = Op {
        kind: Some(op::Kind::AuthUserSet(AuthUserSet {
            user: Some(AuthUser {
                user_id: user.clone(),
                is_superuser: false,
                password: Some(meshmq_proto::tables::PasswordHash {
                    name: "bcrypt".into(),
                    hash: "$2b$10$truncated".into(),
                    ..Default::default()
                }),
            }),
        })),
    };
    let written = b.nodes()[0]
        .core()
        .transact(vec![op])
        .await
        .expect("written");
    assert!(meshmq_shared::tables::rejection(&written.results[0]).is_none());
    let applied = wait_until(WAIT, || {
        b.nodes()
            .iter()
            .all(|n| n.core().read(|t| t.auth_user(&user).is_some()))
    })
    .await;
    assert!(applied);
    let (_c, code) = try_connect(&b, V5, &common::unique("b"), Some(&user), Some("x")).await;
    assert_eq!(code, ReasonCode::NotAuthorized);
}

/// An embedder that builds the broker from a `Config` (no file, so no `load`) gets the
/// secure default too: a non-loopback listener without an authenticator does not start.
#[tokio::test]
async fn an_embedded_broker_with_an_open_listener_does_not_start() {
    let mut config = Config::default();
    config.listeners.mqtt_bind = "0.0.0.0:0".parse().expect("addr");
    let err = replicant_node::broker::start(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("allow_anonymous"), "{err}");
}
