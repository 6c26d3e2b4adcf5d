//! Authorization by configured rules (`[authorization]`): file rules with the deny codes per
//! version (SUBACK 0x80 / 0x87, PUBACK 0x87, 3.1.1 dropped), `deny_action = "disconnect"`,
//! wills and retained publications checked with their flags, superusers skipping the
//! rules, `no_match = "deny"`, the per-connection cache (hit, TTL expiry, cleared through
//! the API), the built-in database managed through the REST API (401 without the key), and
//! the mosquitto `acl_file` import.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meshmq_proto::tables::{AuthUser, AuthUserSet, Op, op};
use meshmq_shared::auth::{password, password::Algorithm, password::SaltPosition, stored};
use meshmq_shared::codec::ProtocolVersion::{V5, V311};
use meshmq_shared::codec::{Properties, QoS, ReasonCode};
use meshmq_shared::config::{AuthorizationConfig, Config, UserIdType};
use replicant_node::{Authorizer, AuthzAction};
use serde_json::json;

use crate::authn::builtin;
use crate::common::raw::{RawClient, connect_packet, publish_packet, sub_opts, will};
use crate::common::{self, QUIET, TestBroker, WAIT, http_call, metric_sum, wait_until};

/// `[authorization]` from its JSON form (the same shape as the TOML).
fn authz(v: serde_json::Value) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.authorization = serde_json::from_value::<AuthorizationConfig>(v).expect("config");
    }
}

/// File rules: subscribing under `secret/` and publishing to `secret/x` denied; retaining
/// under `r/` denied. The tests' watchers (client ids with `-watch`) may subscribe to
/// anything: a deny rule refuses every filter that could receive its topics (`#`, `+/x`).
fn file_rules() -> serde_json::Value {
    json!({ "sources": [{ "type": "file", "rules": [
        { "permission": "allow", "who": { "clientid_re": "-watch" }, "action": "subscribe",
          "topics": ["#"] },
        { "permission": "deny", "who": "all", "action": "subscribe", "topics": ["secret/#"] },
        { "permission": "deny", "who": "all", "action": "publish", "topics": ["secret/x"] },
        { "permission": "deny", "who": "all",
          "action": { "action": "publish", "retain": true }, "topics": ["r/#"] },
    ]}]})
}

#[tokio::test]
async fn file_rules_give_the_deny_codes_of_each_version() {
    let b = common::start_broker(authz(file_rules())).await;
    for (v, denied) in [
        (V311, ReasonCode::UnspecifiedError),
        (V5, ReasonCode::NotAuthorized),
    ] {
        let mut c = RawClient::connect(b.mqtt_addr(), v, &common::unique("rules-sub")).await;
        let filters = [
            ("secret/+", sub_opts(QoS::AtLeastOnce)),
            ("public/#", sub_opts(QoS::AtLeastOnce)),
        ];
        let ack = c.subscribe_many(&filters, Properties::default()).await;
        assert_eq!(ack.reasons, vec![denied, ReasonCode::GrantedQoS1], "{v:?}");
    }
    let mut watch = RawClient::connect(b.mqtt_addr(), V5, "rules-watch").await;
    watch.subscribe("+/x", QoS::AtLeastOnce).await;
    let mut c5 = RawClient::connect(b.mqtt_addr(), V5, "rules-pub5").await;
    assert_eq!(
        c5.publish("secret/x", "q1", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    let mut c3 = RawClient::connect(b.mqtt_addr(), V311, "rules-pub3").await;
    assert_eq!(
        c3.publish("secret/x", "v3", QoS::AtLeastOnce, false).await,
        ReasonCode::Success,
        "3.1.1 has no failure PUBACK"
    );
    c3.publish("public/x", "marker", QoS::AtLeastOnce, false)
        .await;
    let p = watch.recv_publish().await;
    assert_eq!(p.topic, "public/x", "a denied publish was delivered: {p:?}");
    let text = common::metrics_text(&b).await;
    let denies = metric_sum(
        &text,
        "meshmq_authorization_total",
        &[("source", "file"), ("result", "deny")],
    );
    assert!(denies.is_some_and(|n| n >= 4.0), "{denies:?}");
    let nomatch = metric_sum(
        &text,
        "meshmq_authorization_total",
        &[("source", "file"), ("result", "nomatch")],
    );
    assert!(nomatch.is_some_and(|n| n >= 1.0), "{nomatch:?}");

    // 0x80 for 5.0 too when configured (one broker at a time: a cluster topology holds a
    // process-wide lock for its life).
    b.shutdown().await;
    let mut cfg = file_rules();
    cfg["subscribe_deny_code"] = json!("unspecified_error");
    let b = common::start_broker(authz(cfg)).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "rules-80").await;
    let ack = c
        .subscribe_many(
            &[("secret/a", sub_opts(QoS::AtMostOnce))],
            Properties::default(),
        )
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::UnspecifiedError]);
}

#[tokio::test]
async fn deny_action_disconnect_closes_the_connection() {
    let mut cfg = file_rules();
    cfg["deny_action"] = json!("disconnect");
    let b = common::start_broker(authz(cfg)).await;
    let mut c5 = RawClient::connect(b.mqtt_addr(), V5, "dc-pub5").await;
    c5.send(&meshmq_shared::codec::Packet::Publish(publish_packet(
        "secret/x",
        b"x",
        QoS::AtMostOnce,
        false,
    )))
    .await;
    assert_eq!(
        c5.expect_closed_with(&[ReasonCode::NotAuthorized]).await,
        Some(ReasonCode::NotAuthorized),
        "5.0: DISCONNECT 0x87 then close"
    );
    let mut c3 = RawClient::connect(b.mqtt_addr(), V311, "dc-pub3").await;
    c3.send(&meshmq_shared::codec::Packet::Publish(publish_packet(
        "secret/x",
        b"x",
        QoS::AtMostOnce,
        false,
    )))
    .await;
    c3.expect_closed_with(&[]).await;
    let mut s5 = RawClient::connect(b.mqtt_addr(), V5, "dc-sub5").await;
    let sub = meshmq_shared::codec::Subscribe {
        packet_id: 7,
        filters: vec![("secret/a".into(), sub_opts(QoS::AtMostOnce))],
        properties: Properties::default(),
    };
    s5.send(&meshmq_shared::codec::Packet::Subscribe(sub)).await;
    assert_eq!(
        s5.expect_closed_with(&[ReasonCode::NotAuthorized]).await,
        Some(ReasonCode::NotAuthorized)
    );
    // An allowed client is unaffected.
    let mut ok = RawClient::connect(b.mqtt_addr(), V5, "dc-ok").await;
    assert_eq!(
        ok.publish("public/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
}

#[tokio::test]
async fn wills_and_retained_publications_are_checked_with_their_flags() {
    let b = common::start_broker(authz(file_rules())).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "ret-pub").await;
    assert_eq!(
        c.publish("r/a", "kept?", QoS::AtLeastOnce, true).await,
        ReasonCode::NotAuthorized,
        "retaining under r/ is denied"
    );
    assert_eq!(
        c.publish("r/a", "plain", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    let mut late = RawClient::connect(b.mqtt_addr(), V5, "ret-late").await;
    late.subscribe("r/#", QoS::AtLeastOnce).await;
    late.expect_no_publish(QUIET).await;

    let mut watch = RawClient::connect(b.mqtt_addr(), V5, "will-watch2").await;
    watch.subscribe("#", QoS::AtMostOnce).await;
    for (id, topic, retain) in [
        ("will-secret", "secret/x", false),
        ("will-retained", "r/w", true),
        ("will-ok", "r/w", false),
    ] {
        let mut connect = connect_packet(V5, id);
        let mut w = will(topic, id, QoS::AtMostOnce);
        w.retain = retain;
        connect.will = Some(w);
        let (c, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
        drop(c);
        assert!(wait_until(WAIT, || b.connections() == 3).await);
    }
    let p = watch.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("r/w", &b"will-ok"[..]),
        "only the allowed will was published: {p:?}"
    );
    watch.expect_no_publish(QUIET).await;
}

/// Writes a user with a password and the superuser flag.
async fn add_user(b: &TestBroker, name: &str, superuser: bool) {
    let alg = Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    };
    let stored = password::hash(&alg, b"pw", [1; 16]).expect("hash");
    let op = Op {
        kind: Some(op::Kind::AuthUserSet(AuthUserSet {
            user: Some(AuthUser {
                user_id: name.into(),
                is_superuser: superuser,
                password: Some(stored::to_row(&stored)),
            }),
        })),
    };
    b.nodes()[0]
        .core()
        .transact(vec![op])
        .await
        .expect("user written");
    assert!(
        wait_until(WAIT, || b
            .nodes()
            .iter()
            .all(|n| n.core().read(|t| t.auth_user(name).is_some())))
        .await
    );
}

async fn login(b: &TestBroker, id: &str, user: &str) -> RawClient {
    let mut c = connect_packet(V5, id);
    c.username = Some(user.into());
    c.password = Some(bytes::Bytes::from_static(b"pw"));
    let (client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    client
}

#[tokio::test]
async fn superusers_skip_the_rules_and_no_match_deny_refuses_the_rest() {
    let b = common::start_broker(|c| {
        builtin(UserIdType::Username)(c);
        authz(
            json!({ "no_match": "deny", "sources": [{ "type": "file", "rules": [
                { "permission": "allow", "who": { "username": "bob" }, "action": "all",
                  "topics": ["bob/#"] },
            ]}]}),
        )(c);
    })
    .await;
    add_user(&b, "root", true).await;
    add_user(&b, "bob", false).await;
    let mut bob = login(&b, "c-bob", "bob").await;
    assert_eq!(
        bob.publish("bob/a", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    assert_eq!(
        bob.publish("other", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "no rule matches: no_match = deny"
    );
    let mut root = login(&b, "c-root", "root").await;
    assert_eq!(
        root.publish("other", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success,
        "a superuser skips authorization"
    );
    let ack = root
        .subscribe_many(&[("#", sub_opts(QoS::AtMostOnce))], Properties::default())
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::Success]);
    assert_eq!(
        root.publish("$SYS/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "$SYS still needs an explicit grant"
    );
}

/// Denies publishing to `hook/x` while `deny` is set (a change the cache cannot see).
#[derive(Default)]
struct Toggle {
    deny: AtomicBool,
}

impl Authorizer for Toggle {
    fn check(&self, _: &str, _: Option<&str>, action: AuthzAction, topic: &str) -> bool {
        !(action == AuthzAction::Publish && topic == "hook/x" && self.deny.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn cached_decisions_hit_expire_and_are_cleared_through_the_api() {
    let toggle = Arc::new(Toggle::default());
    let b = common::start_broker_with_authz(|_| {}, toggle.clone()).await;
    let http = b.http_addr().expect("http");
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "cache-1").await;
    assert_eq!(
        c.publish("hook/x", "1", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    toggle.deny.store(true, Ordering::SeqCst);
    assert_eq!(
        c.publish("hook/x", "2", QoS::AtLeastOnce, false).await,
        ReasonCode::Success,
        "the cached allow is used"
    );
    let text = common::metrics_text(&b).await;
    assert!(
        metric_sum(
            &text,
            "meshmq_authorization_cache_total",
            &[("result", "hit")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    let (status, body) = http_call(http, "DELETE", "/api/v5/authorization/cache", "", None).await;
    assert_eq!(status, 204, "{body}");
    settle(&b).await;
    assert_eq!(
        c.publish("hook/x", "3", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "the cache was cleared: decided afresh"
    );

    // A short TTL: the cached allow expires on its own.
    b.shutdown().await;
    let toggle = Arc::new(Toggle::default());
    let b = common::start_broker_with_authz(|c| c.authorization.cache.ttl_ms = 200, toggle.clone())
        .await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, "cache-2").await;
    assert_eq!(
        c.publish("hook/x", "1", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    toggle.deny.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if c.publish("hook/x", "n", QoS::AtLeastOnce, false).await == ReasonCode::NotAuthorized {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cached decision never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

const BASE: &str = "/api/v5/authorization/sources/built_in_database/rules";

/// Waits until every node has applied what the most advanced one has (an API write lands
/// on one node; in a cluster topology the client may be on another).
async fn settle(b: &TestBroker) {
    let target = b
        .nodes()
        .iter()
        .map(|n| n.core().applied_index())
        .max()
        .unwrap_or(0);
    let all = wait_until(WAIT, || {
        b.nodes().iter().all(|n| n.core().applied_index() >= target)
    })
    .await;
    assert!(all, "every node applied index {target}");
}

#[tokio::test]
async fn built_in_rules_through_the_api() {
    const KEY: &str = "authz-test-key-0123456789";
    let b = common::start_broker(|c| {
        c.listeners.api_key = Some(KEY.into());
        authz(json!({ "sources": [{ "type": "built_in_database" }] }))(c);
    })
    .await;
    let http = b.http_addr().expect("http");
    let call = |m: &'static str, path: String, body: serde_json::Value| async move {
        http_call(http, m, &path, &body.to_string(), Some(KEY)).await
    };
    let (status, _) = http_call(http, "GET", &format!("{BASE}/users"), "", None).await;
    assert_eq!(status, 401, "no API key");
    let (status, _) = http_call(
        http,
        "DELETE",
        "/api/v5/authorization/cache",
        "",
        Some("wrong"),
    )
    .await;
    assert_eq!(status, 401, "wrong API key");

    let mut alice = RawClient::connect_with(b.mqtt_addr(), {
        let mut c = connect_packet(V5, "api-alice");
        c.username = Some("alice".into());
        c
    })
    .await
    .0;
    assert_eq!(
        alice.publish("t/1", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );

    let users = json!([{ "username": "alice", "rules": [
        { "topic": "t/1", "permission": "deny", "action": "publish" },
        { "topic": "t/#", "permission": "allow", "action": "all", "qos": [0, 1], "retain": "all" },
    ]}]);
    let (status, body) = call("POST", format!("{BASE}/users"), users).await;
    assert_eq!(status, 204, "{body}");
    settle(&b).await;
    assert_eq!(
        alice.publish("t/1", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized,
        "a new rule is enforced at once (the cached allow was dropped)"
    );
    assert_eq!(
        alice.publish("t/2", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );

    let (status, body) = call("GET", format!("{BASE}/users?page=1&limit=10"), json!(null)).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["meta"],
        json!({ "page": 1, "limit": 10, "count": 1 }),
        "{v}"
    );
    assert_eq!(v["data"][0]["username"], "alice");
    assert_eq!(v["data"][0]["rules"][1]["qos"], json!([0, 1]));

    let (status, body) = call("GET", format!("{BASE}/users/alice"), json!(null)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"t/1\""), "{body}");
    let (status, _) = call(
        "PUT",
        format!("{BASE}/users/alice"),
        json!({ "username": "alice", "rules": [] }),
    )
    .await;
    assert_eq!(status, 204);
    settle(&b).await;
    assert_eq!(
        alice.publish("t/1", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );

    // Client ids and the all list.
    let (status, _) = call(
        "POST",
        format!("{BASE}/clients"),
        json!([{ "clientid": "api-alice", "rules": [
            { "topic": "c/#", "permission": "deny", "action": "subscribe" }]}]),
    )
    .await;
    assert_eq!(status, 204);
    settle(&b).await;
    let ack = alice
        .subscribe_many(&[("c/x", sub_opts(QoS::AtMostOnce))], Properties::default())
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::NotAuthorized]);
    let (status, _) = call(
        "POST",
        format!("{BASE}/all"),
        json!({ "rules": [{ "topic": "all/#", "permission": "deny", "action": "all" }] }),
    )
    .await;
    assert_eq!(status, 204);
    settle(&b).await;
    assert_eq!(
        alice.publish("all/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    let (status, body) = call("GET", format!("{BASE}/all"), json!(null)).await;
    assert_eq!((status, body.contains("all/#")), (200, true), "{body}");
    let (status, _) = call("DELETE", format!("{BASE}/all"), json!(null)).await;
    assert_eq!(status, 204);
    settle(&b).await;
    assert_eq!(
        alice.publish("all/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    let (status, _) = call("DELETE", format!("{BASE}/clients/api-alice"), json!(null)).await;
    assert_eq!(status, 204);
    settle(&b).await;
    let (status, _) = call("GET", format!("{BASE}/clients/api-alice"), json!(null)).await;
    assert_eq!(status, 404);

    // Bad bodies: named faults, nothing written.
    for (path, body) in [
        (
            format!("{BASE}/users"),
            json!([{ "username": "x", "rules": [
            { "topic": "a/#/b", "permission": "deny", "action": "all" }]}]),
        ),
        (
            format!("{BASE}/users"),
            json!([{ "username": "x", "rules": [
            { "topic": "a", "permission": "maybe", "action": "all" }]}]),
        ),
        (format!("{BASE}/users"), json!([{ "rules": [] }])),
        (
            format!("{BASE}/all"),
            json!({ "rules": (0..101).map(|i| json!(
            { "topic": format!("t/{i}"), "permission": "deny", "action": "all" })).collect::<Vec<_>>() }),
        ),
    ] {
        let (status, text) = call("POST", path, body).await;
        assert_eq!(status, 400, "{text}");
    }
    let (_, body) = call("GET", format!("{BASE}/users"), json!(null)).await;
    assert!(body.contains("\"count\":1"), "{body}");
}

#[tokio::test]
async fn mosquitto_acl_file_is_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl");
    std::fs::write(
        &path,
        "user alice\ntopic readwrite alice/#\ntopic deny alice/secret\npattern read in/%c/#\n",
    )
    .expect("write acl");
    let cfg = json!({ "no_match": "deny", "sources": [
        { "type": "file", "path": path, "format": "mosquitto" }] });
    let b = common::start_broker(authz(cfg)).await;
    let mut alice = RawClient::connect_with(b.mqtt_addr(), {
        let mut c = connect_packet(V5, "acl-a");
        c.username = Some("alice".into());
        c
    })
    .await
    .0;
    assert_eq!(
        alice.publish("alice/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    assert_eq!(
        alice
            .publish("alice/secret", "x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        alice.publish("bob/x", "x", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    let ack = alice
        .subscribe_many(
            &[
                ("in/acl-a/#", sub_opts(QoS::AtMostOnce)),
                ("in/other/#", sub_opts(QoS::AtMostOnce)),
            ],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        vec![ReasonCode::Success, ReasonCode::NotAuthorized]
    );

    // A broken file stops the start, naming the line.
    std::fs::write(&path, "user alice\ntopik read a\n").expect("write acl");
    let mut config = common::test_config();
    authz(json!({ "sources": [{ "type": "file", "path": path, "format": "mosquitto" }] }))(
        &mut config,
    );
    let err = replicant_node::Broker::builder(config)
        .start()
        .await
        .err()
        .expect("a broken acl_file is refused");
    assert!(format!("{err:#}").contains("line 2"), "{err:#}");
}
