//! The HTTP authorization source (`type = "http"`) against a real HTTP service started by
//! the test on loopback (axum): the service's `result` decides (allow, deny, ignore → the
//! next source, then `no_match`), 204 allows; a 500, a bad body and a timeout are no match
//! (the next source decides) and counted as `result="error"`; the request carries every
//! placeholder; the cache spares a second request (but a failed one is asked again); a
//! slow service does not hold up another client; a will is asked about too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{Properties, QoS, ReasonCode};
use meshmq_shared::config::{AuthorizationConfig, Config};
use parking_lot::Mutex;
use serde_json::json;

use crate::authn_http::serve;
use crate::common::raw::{RawClient, connect_packet, sub_opts, will};
use crate::common::{self, TestBroker};

/// Every request the service received (its JSON fields), in order.
type Seen = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

/// The service: answers by the first level of the `topic` field.
async fn authz_service() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let handler = |State(seen): State<Seen>, body: String| async move {
        let fields: BTreeMap<String, String> = serde_json::from_str(&body).unwrap_or_default();
        let topic = fields.get("topic").cloned().unwrap_or_default();
        seen.lock().push(fields);
        answer(&topic).await
    };
    let router = axum::Router::new()
        .route("/authz", axum::routing::post(handler))
        .with_state(seen.clone());
    (serve(router).await, seen)
}

async fn answer(topic: &str) -> Response {
    let json = |v: serde_json::Value| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            v.to_string(),
        )
            .into_response()
    };
    match topic.split('/').next().unwrap_or("") {
        "allow" => json(json!({"result": "allow"})),
        "deny" => json(json!({"result": "deny"})),
        "ignore" => json(json!({"result": "ignore"})),
        "nocontent" => StatusCode::NO_CONTENT.into_response(),
        "garbage" => (StatusCode::OK, "not json").into_response(),
        "unknown" => json(json!({"result": "maybe"})),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(json!({"result": "allow"}))
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The HTTP source first (every placeholder in its body, 1 s timeout), then a file source
/// denying publications under `*/file`.
fn config(addr: SocketAddr, no_match: &str) -> impl FnOnce(&mut Config) {
    let v = json!({ "no_match": no_match, "sources": [
        { "type": "http", "url": format!("http://{addr}/authz"), "request_timeout": 1,
          "pool_size": 4, "body": {
            "clientid": "${clientid}", "username": "${username}", "peerhost": "${peerhost}",
            "topic": "${topic}", "action": "${action}", "qos": "${qos}",
            "retain": "${retain}", "tag": "t=${topic}!" } },
        { "type": "file", "rules": [
            { "permission": "deny", "who": "all", "action": "publish", "topics": ["+/file"] }] }
    ]});
    move |c: &mut Config| {
        c.authorization = serde_json::from_value::<AuthorizationConfig>(v).expect("config");
    }
}

async fn client(b: &TestBroker, user: &str) -> RawClient {
    let mut c = connect_packet(V5, &common::unique("authz-http"));
    c.username = Some(user.to_owned());
    let (client, ack) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(ack.code, ReasonCode::Success);
    client
}

async fn http_errors(b: &TestBroker) -> f64 {
    let text = common::metrics_text(b).await;
    common::metric_sum(
        &text,
        "meshmq_authorization_total",
        &[("source", "http"), ("result", "error")],
    )
    .unwrap_or(0.0)
}

fn calls(seen: &Seen, topic: &str) -> usize {
    seen.lock()
        .iter()
        .filter(|f| f.get("topic").map(String::as_str) == Some(topic))
        .count()
}

#[tokio::test]
async fn the_services_answer_decides_and_ignore_goes_to_the_next_source() {
    let (addr, seen) = authz_service().await;
    let b = common::start_broker(config(addr, "allow")).await;
    let mut c = client(&b, "u1").await;
    for (topic, expected) in [
        ("allow/x", ReasonCode::Success),
        ("deny/x", ReasonCode::NotAuthorized),
        ("nocontent/x", ReasonCode::Success),
        // ignore: the file source decides, or no_match (allow) when it has no rule.
        ("ignore/file", ReasonCode::NotAuthorized),
        ("ignore/x", ReasonCode::Success),
        // The service's allow comes first: the file rule is not reached.
        ("allow/file", ReasonCode::Success),
    ] {
        let code = c.publish(topic, "p", QoS::AtLeastOnce, false).await;
        assert_eq!(code, expected, "{topic}");
        assert_eq!(calls(&seen, topic), 1, "{topic}: one request");
    }
    let ack = c
        .subscribe_many(
            &[
                ("deny/#", sub_opts(QoS::AtLeastOnce)),
                ("allow/#", sub_opts(QoS::ExactlyOnce)),
            ],
            Properties::default(),
        )
        .await;
    assert_eq!(
        ack.reasons,
        vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQoS2]
    );

    // no_match = deny: an ignore with no other rule is refused.
    let (addr, _) = authz_service().await;
    let strict = common::start_broker(config(addr, "deny")).await;
    let mut c = client(&strict, "u1").await;
    assert_eq!(
        c.publish("ignore/x", "p", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        c.publish("allow/x", "p", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
}

#[tokio::test]
async fn the_request_carries_every_placeholder() {
    let (addr, seen) = authz_service().await;
    let b = common::start_broker(config(addr, "allow")).await;
    let mut c = connect_packet(V5, "authz-http-ph");
    c.username = Some("alice".into());
    let (mut c, _) = RawClient::connect_with(b.mqtt_addr(), c).await;
    assert_eq!(
        c.publish("allow/p", "p", QoS::AtLeastOnce, true).await,
        ReasonCode::Success
    );
    c.subscribe("allow/s/+", QoS::AtMostOnce).await;
    let got = seen.lock().clone();
    let expect = |topic: &str, action: &str, qos: &str, retain: &str| {
        BTreeMap::from(
            [
                ("clientid", "authz-http-ph"),
                ("username", "alice"),
                ("peerhost", "127.0.0.1"),
                ("topic", topic),
                ("action", action),
                ("qos", qos),
                ("retain", retain),
                ("tag", &*format!("t={topic}!")),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
    };
    assert_eq!(
        got,
        vec![
            expect("allow/p", "publish", "1", "true"),
            expect("allow/s/+", "subscribe", "0", "false"),
        ]
    );
}

#[tokio::test]
async fn errors_and_timeouts_are_no_match_counted_and_not_cached() {
    let (addr, seen) = authz_service().await;
    let b = common::start_broker(config(addr, "allow")).await;
    let mut c = client(&b, "u1").await;
    for topic in ["fail/file", "garbage/file", "unknown/file", "slow/file"] {
        let before = http_errors(&b).await;
        let started = Instant::now();
        let code = c.publish(topic, "p", QoS::AtLeastOnce, false).await;
        assert_eq!(
            code,
            ReasonCode::NotAuthorized,
            "{topic}: the file source decided"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "{topic}: bounded by request_timeout, took {:?}",
            started.elapsed()
        );
        // At least: the registry is the process's, and the slow-service test may time out
        // meanwhile.
        let after = http_errors(&b).await;
        assert!(
            after >= before + 1.0,
            "{topic} counted: {before} -> {after}"
        );
    }
    // No rule after the failure: no_match (allow) decides.
    assert_eq!(
        c.publish("fail/x", "p", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    // A failed decision is not cached: asked again.
    assert_eq!(
        c.publish("fail/file", "p", QoS::AtLeastOnce, false).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(calls(&seen, "fail/file"), 2);
}

#[tokio::test]
async fn the_cache_spares_a_second_request() {
    let (addr, seen) = authz_service().await;
    let b = common::start_broker(config(addr, "allow")).await;
    let mut c = client(&b, "u1").await;
    for _ in 0..3 {
        assert_eq!(
            c.publish("allow/cached", "p", QoS::AtLeastOnce, false)
                .await,
            ReasonCode::Success
        );
        assert_eq!(
            c.publish("deny/cached", "p", QoS::AtLeastOnce, false).await,
            ReasonCode::NotAuthorized
        );
    }
    assert_eq!(calls(&seen, "allow/cached"), 1);
    assert_eq!(calls(&seen, "deny/cached"), 1);
    // Another connection has its own cache.
    let mut other = client(&b, "u2").await;
    assert_eq!(
        other
            .publish("allow/cached", "p", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success
    );
    assert_eq!(calls(&seen, "allow/cached"), 2);
}

#[tokio::test]
async fn a_slow_service_does_not_hold_up_another_client() {
    let (addr, seen) = authz_service().await;
    let b = common::start_broker(config(addr, "allow")).await;
    let mut slow = client(&b, "u1").await;
    let mut fast = client(&b, "u2").await;
    let waiting = tokio::spawn(async move {
        let code = slow.publish("slow/x", "p", QoS::AtLeastOnce, false).await;
        (code, slow)
    });
    // Wait until the slow request is in flight (the service saw it).
    let asked = common::wait_until(common::WAIT, || calls(&seen, "slow/x") == 1).await;
    assert!(asked, "the slow request reached the service");
    let started = Instant::now();
    assert_eq!(
        fast.publish("allow/x", "p", QoS::AtLeastOnce, false).await,
        ReasonCode::Success
    );
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "the other client waited {:?}",
        started.elapsed()
    );
    let (code, _) = waiting.await.expect("task");
    // Timed out after 1 s: no match, no_match = allow.
    assert_eq!(code, ReasonCode::Success);
}

#[tokio::test]
async fn a_will_is_asked_with_the_publishers_rights() {
    let (addr, seen) = authz_service().await;
    let b = common::start_broker(config(addr, "allow")).await;
    let mut sub = client(&b, "watcher").await;
    sub.subscribe("+/will", QoS::AtMostOnce).await;
    for (id, topic) in [
        ("http-denied-will", "deny/will"),
        ("http-allowed-will", "allow/will"),
    ] {
        let mut connect = connect_packet(V5, id);
        connect.username = Some("w".into());
        connect.will = Some(will(topic, id, QoS::AtMostOnce));
        let (c, _) = RawClient::connect_with(b.mqtt_addr(), connect).await;
        drop(c);
        // Settle each will before the next (the broker stops counting a connection after it).
        assert!(common::wait_until(common::WAIT, || b.connections() == 1).await);
        let asked = common::wait_until(common::WAIT, || calls(&seen, topic) == 1).await;
        assert!(asked, "{topic}: the service was asked");
    }
    let p = sub.recv_publish().await;
    assert_eq!(
        p.topic, "allow/will",
        "a will the service denied was published: {p:?}"
    );
}
