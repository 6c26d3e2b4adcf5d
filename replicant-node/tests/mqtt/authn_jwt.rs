//! The JWT authenticator (`mechanism = "jwt"`): tokens signed with HS256/HS512, RS256 and
//! ES256 allow; a wrong key, an expired token or one not yet valid deny (with and without
//! `leeway`); `verify_claims` placeholders; the token taken from the username; no token or
//! a password that is not a JWT is ignored; and keys from a JWKS served by the test on
//! loopback: a rotation is picked up after `refresh_interval`, and the last keys stay when
//! the server fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{ProtocolVersion, QoS, ReasonCode};
use meshmq_shared::config::{AuthenticatorConfig, Config, JwtAlgorithm, JwtConfig, JwtFrom};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::authn_http::serve;
use crate::common::raw::{RawClient, connect_packet, will};
use crate::common::{self, TestBroker, wait_until_async};

/// A 2048-bit RSA key made for these tests only (PKCS#8), and its public half.
const RSA_PRIVATE: &str = include_str!("authn_jwt_rsa.pem");
const RSA_PUBLIC: &str = include_str!("authn_jwt_rsa_pub.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("signed")
}

fn hmac(secret: &str) -> EncodingKey {
    EncodingKey::from_secret(secret.as_bytes()).expect("hmac key")
}

/// A fresh EC P-256 key: (signing key, public PEM, raw public point 04||x||y).
fn ec_key() -> (EncodingKey, String, Vec<u8>) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec key");
    let signing = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("pkcs8");
    (signing, kp.public_key_pem(), kp.public_key_raw().to_vec())
}

fn jwt_entry(tweak: impl FnOnce(&mut JwtConfig)) -> impl FnOnce(&mut Config) {
    let mut entry = JwtConfig {
        secret: Some("s3cret".into()),
        ..JwtConfig::default()
    };
    tweak(&mut entry);
    move |c: &mut Config| c.authentication = vec![AuthenticatorConfig::Jwt(entry)]
}

async fn connect_with(
    b: &TestBroker,
    v: ProtocolVersion,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> ReasonCode {
    let mut c = connect_packet(v, client_id);
    c.username = username.map(str::to_owned);
    c.password = password.map(|p| p.as_bytes().to_vec().into());
    RawClient::connect_with(b.mqtt_addr(), c).await.1.code
}

async fn with_password(b: &TestBroker, token: &str) -> ReasonCode {
    connect_with(b, V5, &common::unique("jwt"), Some("u"), Some(token)).await
}

#[tokio::test]
async fn hmac_tokens_allow_and_a_wrong_secret_denies_in_both_versions() {
    let b = common::start_broker(jwt_entry(|_| {})).await;
    let claims = json!({"exp": now() + 60, "is_superuser": true});
    for v in [V5, V311] {
        for alg in [Algorithm::HS256, Algorithm::HS512] {
            let token = sign(alg, None, &hmac("s3cret"), &claims);
            let code = connect_with(&b, v, &common::unique("jwt"), Some("u"), Some(&token)).await;
            assert_eq!(code, ReasonCode::Success, "{v:?} {alg:?}");
        }
        let forged = sign(Algorithm::HS256, None, &hmac("guess"), &claims);
        let code = connect_with(&b, v, &common::unique("jwt"), Some("u"), Some(&forged)).await;
        assert_eq!(
            code,
            ReasonCode::BadUserNameOrPassword,
            "{v:?} wrong secret"
        );
        // No token, or a password that is not a JWT: not this authenticator's client.
        let code = connect_with(&b, v, &common::unique("jwt"), Some("u"), None).await;
        assert_eq!(code, ReasonCode::NotAuthorized, "{v:?} no token");
        let code = connect_with(&b, v, &common::unique("jwt"), Some("u"), Some("pw")).await;
        assert_eq!(code, ReasonCode::NotAuthorized, "{v:?} not a JWT");
    }
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_and_other_keys_are_denied() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa");
    let (ec, ec_public, _) = ec_key();
    let (other_ec, _, _) = ec_key();
    let claims = json!({"exp": now() + 60});
    let b = common::start_broker(jwt_entry(|j| {
        j.algorithm = JwtAlgorithm::PublicKey;
        j.public_key = Some(RSA_PUBLIC.into());
    }))
    .await;
    let good = sign(Algorithm::RS256, None, &rsa, &claims);
    assert_eq!(with_password(&b, &good).await, ReasonCode::Success);
    let good = sign(Algorithm::RS512, None, &rsa, &claims);
    assert_eq!(with_password(&b, &good).await, ReasonCode::Success);
    // A token for another kind of key, or an HMAC token made with the public key as the
    // secret (the classic algorithm confusion): denied.
    let ec_token = sign(Algorithm::ES256, None, &ec, &claims);
    let code = with_password(&b, &ec_token).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
    let confused = sign(Algorithm::HS256, None, &hmac(RSA_PUBLIC), &claims);
    let code = with_password(&b, &confused).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
    drop(b); // rr-cluster brokers run one at a time

    let b = common::start_broker(jwt_entry(|j| {
        j.algorithm = JwtAlgorithm::PublicKey;
        j.public_key = Some(ec_public);
    }))
    .await;
    assert_eq!(with_password(&b, &ec_token).await, ReasonCode::Success);
    let forged = sign(Algorithm::ES256, None, &other_ec, &claims);
    let code = with_password(&b, &forged).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword);
}

#[tokio::test]
async fn exp_and_nbf_are_checked_with_the_leeway() {
    let key = hmac("s3cret");
    let t = now();
    let expired = sign(Algorithm::HS256, None, &key, &json!({"exp": t - 10}));
    let early = sign(Algorithm::HS256, None, &key, &json!({"nbf": t + 10}));
    let long_expired = sign(Algorithm::HS256, None, &key, &json!({"exp": t - 300}));
    let valid = sign(
        Algorithm::HS256,
        None,
        &key,
        &json!({"nbf": t - 5, "exp": t + 60}),
    );
    let strict = common::start_broker(jwt_entry(|_| {})).await;
    assert_eq!(with_password(&strict, &valid).await, ReasonCode::Success);
    for (what, token) in [("expired", &expired), ("not yet valid", &early)] {
        let code = with_password(&strict, token).await;
        assert_eq!(code, ReasonCode::BadUserNameOrPassword, "{what}");
    }
    drop(strict); // rr-cluster brokers run one at a time
    let lenient = common::start_broker(jwt_entry(|j| j.leeway = 60)).await;
    assert_eq!(with_password(&lenient, &expired).await, ReasonCode::Success);
    assert_eq!(with_password(&lenient, &early).await, ReasonCode::Success);
    let code = with_password(&lenient, &long_expired).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword, "past the leeway");
}

#[tokio::test]
async fn verify_claims_placeholders_and_the_token_in_the_username() {
    let key = hmac("s3cret");
    let b = common::start_broker(jwt_entry(|j| {
        j.verify_claims = BTreeMap::from([
            ("sub".into(), "${clientid}".into()),
            ("user".into(), "u-${username}".into()),
        ]);
    }))
    .await;
    let id = common::unique("claims");
    let token = sign(
        Algorithm::HS256,
        None,
        &key,
        &json!({"sub": id, "user": "u-bob"}),
    );
    let code = connect_with(&b, V5, &id, Some("bob"), Some(&token)).await;
    assert_eq!(code, ReasonCode::Success);
    let code = connect_with(&b, V5, &id, Some("eve"), Some(&token)).await;
    assert_eq!(
        code,
        ReasonCode::BadUserNameOrPassword,
        "username claim mismatch"
    );
    let other = common::unique("claims");
    let code = connect_with(&b, V5, &other, Some("bob"), Some(&token)).await;
    assert_eq!(
        code,
        ReasonCode::BadUserNameOrPassword,
        "clientid claim mismatch"
    );
    let missing = sign(Algorithm::HS256, None, &key, &json!({"sub": id}));
    let code = connect_with(&b, V5, &id, Some("bob"), Some(&missing)).await;
    assert_eq!(code, ReasonCode::BadUserNameOrPassword, "claim missing");
    drop(b); // rr-cluster brokers run one at a time

    let b = common::start_broker(jwt_entry(|j| {
        j.from = JwtFrom::Username;
        j.verify_claims = BTreeMap::from([("sub".into(), "${clientid}".into())]);
    }))
    .await;
    let token = sign(Algorithm::HS256, None, &key, &json!({"sub": id}));
    let code = connect_with(&b, V311, &id, Some(&token), Some("ignored")).await;
    assert_eq!(code, ReasonCode::Success, "token from the username");
    let code = connect_with(&b, V311, &id, Some("u"), Some(&token)).await;
    assert_eq!(code, ReasonCode::NotAuthorized, "the password is not read");
}

/// A token read from the User Name is a credential: the client's name becomes the
/// token's `username` claim (else `sub`), and the token itself is never published in the
/// `$SYS` connected event, where other clients could read and replay it.
#[tokio::test]
async fn a_token_in_the_username_is_never_shown_as_the_name() {
    let key = hmac("s3cret");
    let b = common::start_broker(jwt_entry(|j| j.from = JwtFrom::Username)).await;
    let mut watcher = connect_packet(V5, &common::unique("sys-watch"));
    watcher.username = Some(sign(Algorithm::HS256, None, &key, &json!({"sub": "w"})));
    let (mut w, ack) = RawClient::connect_with(b.mqtt_addr(), watcher).await;
    assert_eq!(ack.code, ReasonCode::Success);
    w.subscribe("$SYS/brokers/+/clients/+/connected", QoS::AtMostOnce)
        .await;
    for (claims, shown) in [
        (
            json!({"username": "alice", "sub": "ignored"}),
            json!("alice"),
        ),
        (json!({"sub": "bob"}), json!("bob")),
        (json!({"username": 7}), Value::Null),
    ] {
        let id = common::unique("jwt-name");
        let token = sign(Algorithm::HS256, None, &key, &claims);
        let code = connect_with(&b, V5, &id, Some(&token), None).await;
        assert_eq!(code, ReasonCode::Success, "{claims}");
        let event = w
            .recv_publish_ending(&format!("/clients/{id}/connected"))
            .await;
        let text = String::from_utf8_lossy(&event.payload).into_owned();
        assert!(!text.contains(&token), "the token leaked: {text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["username"], shown, "{text}");
    }
}

/// The JWKS document of `(kid, raw P-256 point)` keys.
fn jwks(keys: &[(&str, &[u8])]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, point)| {
            json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                   "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65])})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

async fn jwks_errors(b: &TestBroker) -> f64 {
    let text = common::metrics_text(b).await;
    common::metric_sum(
        &text,
        "meshmq_authentication_jwks_refresh_total",
        &[("result", "error")],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn jwks_rotation_is_picked_up_and_the_last_keys_survive_a_failing_server() {
    // None: the server answers 500.
    let document: Arc<Mutex<Option<String>>> = Arc::default();
    let served = document.clone();
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = served.lock().clone();
            async move {
                let r: Response = match body {
                    Some(b) => ([("content-type", "application/json")], b).into_response(),
                    None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                };
                r
            }
        }),
    );
    let addr = serve(router).await;
    let (k1, _, p1) = ec_key();
    let (k2, _, p2) = ec_key();
    *document.lock() = Some(jwks(&[("k1", &p1)]));
    let b = common::start_broker(jwt_entry(|j| {
        j.use_jwks = true;
        j.endpoint = Some(format!("http://{addr}/jwks"));
        j.refresh_interval = 1;
    }))
    .await;
    let claims = json!({"exp": now() + 600});
    let t1 = sign(Algorithm::ES256, Some("k1"), &k1, &claims);
    let t2 = sign(Algorithm::ES256, Some("k2"), &k2, &claims);
    let deadline = common::WAIT * 2;
    let allowed_everywhere = |t: String| {
        let b = &b;
        async move { everywhere(b, &t).await == Some(ReasonCode::Success) }
    };
    let first = wait_until_async(deadline, || allowed_everywhere(t1.clone())).await;
    assert!(first, "k1 from the JWKS");
    // k2 signs with a kid the JWKS does not list yet: denied.
    let unknown = everywhere(&b, &t2).await;
    assert_eq!(
        unknown,
        Some(ReasonCode::BadUserNameOrPassword),
        "unknown kid"
    );

    *document.lock() = Some(jwks(&[("k2", &p2)]));
    let rotated = wait_until_async(deadline, || allowed_everywhere(t2.clone())).await;
    assert!(rotated, "rotated to k2");
    let retired = everywhere(&b, &t1).await;
    assert_eq!(
        retired,
        Some(ReasonCode::BadUserNameOrPassword),
        "k1 retired"
    );

    // Each node fetches every second: twice as many failures as nodes.
    let failures = 2.0 * b.nodes().len() as f64;
    let before = jwks_errors(&b).await;
    *document.lock() = None;
    let b2 = &b;
    let failed = wait_until_async(deadline, || async move {
        jwks_errors(b2).await >= before + failures
    })
    .await;
    assert!(failed, "failed fetches are counted");
    let kept = everywhere(&b, &t2).await;
    assert_eq!(kept, Some(ReasonCode::Success), "last keys kept");
}

/// `token`'s answer from every node: as many connections in a row as there are nodes (one
/// per replicant behind the round-robin proxy); `None` when they disagree.
async fn everywhere(b: &TestBroker, token: &str) -> Option<ReasonCode> {
    let mut seen = None;
    for _ in 0..b.nodes().len() {
        let code = with_password(b, token).await;
        if seen.is_some_and(|s| s != code) {
            return None;
        }
        seen = Some(code);
    }
    seen
}

#[tokio::test]
async fn a_connection_closes_when_its_token_expires_unless_told_otherwise() {
    let key = hmac("s3cret");
    let expiring = |b: &TestBroker, v: ProtocolVersion, will_topic: Option<String>| {
        let token = sign(Algorithm::HS256, None, &key, &json!({"exp": now() + 2}));
        let mut c = connect_packet(v, &common::unique("expiring"));
        c.username = Some("u".into());
        c.password = Some(token.as_bytes().to_vec().into());
        c.will = will_topic.map(|t| will(&t, "gone", QoS::AtMostOnce));
        RawClient::connect_with(b.mqtt_addr(), c)
    };

    // disconnect_after_expire = false: still served after exp.
    let keeping = common::start_broker(jwt_entry(|j| j.disconnect_after_expire = false)).await;
    let (mut kept, ack) = expiring(&keeping, V5, None).await;
    assert_eq!(ack.code, ReasonCode::Success);
    // The window in which the close must not come: past exp (2 s) by a margin.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    kept.ping().await;
    drop(kept);
    drop(keeping); // rr-cluster brokers run one at a time

    let closing = common::start_broker(jwt_entry(|_| {})).await; // EMQX's default: true
    let will_topic = common::unique("will/expired");
    // The watcher needs a token too: a long-lived one.
    let long = sign(Algorithm::HS256, None, &key, &json!({"exp": now() + 600}));
    let mut c = connect_packet(V5, &common::unique("watcher"));
    c.username = Some("u".into());
    c.password = Some(long.as_bytes().to_vec().into());
    let (mut watcher, ack) = RawClient::connect_with(closing.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    watcher.subscribe(&will_topic, QoS::AtMostOnce).await;
    let (mut v5, ack) = expiring(&closing, V5, Some(will_topic.clone())).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let (mut v311, ack) = expiring(&closing, V311, None).await;
    assert_eq!(ack.code, ReasonCode::Success);
    // Closed at exp (within the test's deadline), 5.0 with 0x87; the will goes out.
    let reason = v5.expect_closed_with(&[ReasonCode::NotAuthorized]).await;
    assert_eq!(reason, Some(ReasonCode::NotAuthorized));
    assert_eq!(v311.expect_closed_with(&[]).await, None);
    let will = watcher.recv_publish().await;
    assert_eq!(&will.payload[..], b"gone");
}

/// A token's `acl` claim (EMQX's format) is the client's own rules: with `no_match = deny`
/// the client may subscribe and publish only where its claim allows, with its placeholders
/// expanded; another client's token grants it nothing of the first one's.
#[tokio::test]
async fn the_acl_claim_of_a_token_is_enforced_for_its_client() {
    use meshmq_shared::codec::Properties;
    use meshmq_shared::config::AuthorizationConfig;

    use crate::common::raw::sub_opts;

    let b = common::start_broker(|c: &mut Config| {
        jwt_entry(|_| {})(c);
        c.authorization = serde_json::from_value::<AuthorizationConfig>(json!({
            "no_match": "deny", "sources": []
        }))
        .expect("authorization");
    })
    .await;
    let client_id = common::unique("jwt-acl");
    let token = sign(
        Algorithm::HS256,
        None,
        &hmac("s3cret"),
        &json!({ "exp": now() + 600, "acl": [
            { "permission": "allow", "action": "all", "topic": "dev/${clientid}/#" },
            { "permission": "allow", "action": "subscribe", "topic": "news/#", "qos": [0] },
        ]}),
    );
    let mut c = connect_packet(V5, &client_id);
    c.username = Some("u".into());
    c.password = Some(token.into_bytes().into());
    let (mut client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    let own = format!("dev/{client_id}/#");
    let filters = [
        (own.as_str(), sub_opts(QoS::AtLeastOnce)),
        ("news/#", sub_opts(QoS::AtMostOnce)),
        ("news/x", sub_opts(QoS::AtLeastOnce)),
        ("dev/other/#", sub_opts(QoS::AtMostOnce)),
    ];
    let suback = client.subscribe_many(&filters, Properties::default()).await;
    assert_eq!(
        suback.reasons,
        vec![
            ReasonCode::GrantedQoS1,
            ReasonCode::Success,       // granted QoS 0
            ReasonCode::NotAuthorized, // the claim grants news/ at QoS 0 only
            ReasonCode::NotAuthorized,
        ]
    );
    let mine = format!("dev/{client_id}/t");
    assert_eq!(
        client.publish(&mine, "ok", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    assert_eq!(
        client
            .publish("dev/other/t", "no", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NotAuthorized
    );
}
