//! The topics, publish and retained-message REST API on a standalone broker: routes as
//! EMQX lists them (`/api/v5/topics`), messages published through `/api/v5/publish` (one
//! and bulk, with properties) reaching a real subscriber or answered 202 "no matching
//! subscribers", and the retained store listed, read and deleted through
//! `/api/v5/mqtt/retainer/...`; every route needs the key, and bad input is a 400 with a
//! message.

use base64::Engine;
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::QoS;
use serde_json::{Value, json};

use crate::common::api_client::Api;
use crate::common::raw::RawClient;
use crate::common::{TestBroker, WAIT, http_call, start_broker, unique, wait_until_async};

/// The key the brokers of these tests require.
pub(crate) const KEY: &str = "api-test-key-0123456789";

/// A call with the key; the body parsed as JSON (`null` when empty or not JSON).
pub(crate) async fn call(b: &TestBroker, method: &str, path: &str, body: Value) -> (u16, Value) {
    call_as(b, method, path, body, Some(KEY)).await
}

/// A call with `key` (or none).
pub(crate) async fn call_as(
    b: &TestBroker,
    method: &str,
    path: &str,
    body: Value,
    key: Option<&str>,
) -> (u16, Value) {
    let addr = b.http_addr().expect("http listener");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, text) = http_call(addr, method, path, &body, key).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A broker that requires [`KEY`].
pub(crate) async fn keyed_broker(
    tweak: impl FnOnce(&mut meshmq_shared::config::Config),
) -> TestBroker {
    start_broker(|c| {
        c.listeners.api_key = Some(KEY.into());
        tweak(c);
    })
    .await
}

/// Percent-encodes a path segment.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The node's name, as `/api/v5/status` gives it.
pub(crate) async fn node_name(b: &TestBroker) -> String {
    let (status, v) = call(b, "GET", "/api/v5/status", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    v["node"].as_str().expect("node").to_owned()
}

/// The `topic` of every item of a list answer.
fn data_topics(v: &Value) -> Vec<String> {
    let items = v["data"].as_array().expect("data");
    items
        .iter()
        .map(|i| i["topic"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn every_route_needs_the_key() {
    let b = keyed_broker(|_| {}).await;
    for (method, path) in [
        ("GET", "/api/v5/topics"),
        ("GET", "/api/v5/topics/a"),
        ("POST", "/api/v5/publish"),
        ("POST", "/api/v5/publish/bulk"),
        ("GET", "/api/v5/mqtt/retainer/messages"),
        ("GET", "/api/v5/mqtt/retainer/message/a"),
        ("DELETE", "/api/v5/mqtt/retainer/message/a"),
        ("GET", "/api/v5/clients"),
        ("GET", "/api/v5/clients/c"),
        ("DELETE", "/api/v5/clients/c"),
        ("GET", "/api/v5/clients/c/subscriptions"),
        ("POST", "/api/v5/clients/c/subscribe"),
        ("POST", "/api/v5/clients/c/subscribe/bulk"),
        ("POST", "/api/v5/clients/c/unsubscribe"),
        ("POST", "/api/v5/clients/c/unsubscribe/bulk"),
        ("GET", "/api/v5/subscriptions"),
        ("GET", "/api/v5/nodes/n/clients"),
        ("GET", "/api/v5/nodes/n/subscriptions"),
    ] {
        for key in [None, Some("wrong-key")] {
            let (status, v) = call_as(&b, method, path, json!({"topic": "t"}), key).await;
            assert_eq!(status, 401, "{method} {path} with {key:?}: {v}");
            assert_eq!(v["code"], "UNAUTHORIZED");
        }
    }
    b.shutdown().await;
}

#[tokio::test]
async fn topics_list_the_routes_with_paging_and_filters() {
    let b = keyed_broker(|_| {}).await;
    let node = node_name(&b).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("topics")).await;
    for f in ["b/#", "a/+", "c"] {
        c.subscribe(f, QoS::AtMostOnce).await;
    }
    let (status, v) = call(&b, "GET", "/api/v5/topics", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["count"], 3, "{v}");
    let topics: Vec<&str> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|i| i["topic"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(topics, ["a/+", "b/#", "c"], "sorted");
    assert_eq!(v["data"][0]["node"], node.as_str());
    let (_, v) = call(&b, "GET", "/api/v5/topics?page=2&limit=2", Value::Null).await;
    assert_eq!(
        (
            v["data"][0]["topic"].as_str(),
            v["meta"]["hasnext"].as_bool()
        ),
        (Some("c"), Some(false)),
        "{v}"
    );
    let (_, v) = call(&b, "GET", "/api/v5/topics?page=1&limit=2", Value::Null).await;
    assert_eq!(v["meta"]["hasnext"], true, "{v}");
    let (_, v) = call(
        &b,
        "GET",
        &format!("/api/v5/topics?topic={}", enc("a/+")),
        Value::Null,
    )
    .await;
    assert_eq!(v["meta"]["count"], 1, "{v}");
    let (_, v) = call(&b, "GET", "/api/v5/topics?node=elsewhere", Value::Null).await;
    assert_eq!(v["meta"]["count"], 0, "{v}");
    let (status, v) = call(
        &b,
        "GET",
        &format!("/api/v5/topics/{}", enc("b/#")),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!([{"topic": "b/#", "node": node}]));
    let (status, v) = call(&b, "GET", "/api/v5/topics/nothing", Value::Null).await;
    assert_eq!((status, v["code"].as_str()), (404, Some("TOPIC_NOT_FOUND")));
    for q in ["limit=0", "limit=10001", "page=0", "page=x"] {
        let (status, v) = call(&b, "GET", &format!("/api/v5/topics?{q}"), Value::Null).await;
        assert_eq!(status, 400, "{q}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    c.unsubscribe("c").await;
    let gone = wait_until_async(WAIT, || async {
        call(&b, "GET", "/api/v5/topics/c", Value::Null).await.0 == 404
    })
    .await;
    assert!(gone, "the route leaves with the last subscriber");
    b.shutdown().await;
}

#[tokio::test]
async fn publish_reaches_a_subscriber_with_its_properties() {
    let b = keyed_broker(|_| {}).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("sub")).await;
    c.subscribe("api/pub/#", QoS::AtLeastOnce).await;
    let body = json!({
        "topic": "api/pub/1", "payload": "hello", "qos": 1,
        "properties": {
            "content_type": "text/plain", "response_topic": "api/reply",
            "correlation_data": "corr", "message_expiry_interval": 60,
            "payload_format_indicator": 1,
            "user_properties": {"k": "v"},
        },
    });
    let (status, v) = call(&b, "POST", "/api/v5/publish", body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"].as_str().map(str::len), Some(32), "{v}");
    let p = c.recv_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("api/pub/1", &b"hello"[..], QoS::AtLeastOnce)
    );
    let props = &p.properties;
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("api/reply"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(
        props.user_properties,
        vec![("k".to_owned(), "v".to_owned())]
    );
    assert_eq!(props.payload_format_indicator, Some(1));
    assert!(
        props
            .message_expiry_interval
            .is_some_and(|s| (1..=60).contains(&s))
    );
    c.ack(&p).await;
    // base64 payloads, and nobody subscribed: 202 with EMQX's reason.
    let raw = base64::engine::general_purpose::STANDARD.encode([0u8, 255, 1]);
    let body = json!({"topic": "api/pub/2", "payload": raw, "payload_encoding": "base64"});
    let (status, _) = call(&b, "POST", "/api/v5/publish", body).await;
    assert_eq!(status, 200);
    assert_eq!(&c.recv_publish().await.payload[..], &[0u8, 255, 1][..]);
    let (status, v) = call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "nobody/here", "payload": "x"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        v,
        json!({"message": "no_matching_subscribers", "reason_code": 16})
    );
    b.shutdown().await;
}

#[tokio::test]
async fn publish_refuses_bad_messages_with_a_message() {
    let b = keyed_broker(|c| c.mqtt.max_packet_size = 1024).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("sub")).await;
    c.subscribe("#", QoS::AtMostOnce).await;
    for body in [
        json!({"topic": "a/#", "payload": "x"}),
        json!({"topic": "", "payload": "x"}),
        json!({"topic": "a", "payload": "x", "qos": 3}),
        json!({"topic": "a", "payload": "!!", "payload_encoding": "base64"}),
        json!({"topic": "a", "payload": "x", "payload_encoding": "hex"}),
        json!({"topic": "a", "payload": "x", "properties": {"response_topic": "r/+"}}),
        json!({"topic": "a", "payload": "x", "unknown": 1}),
        json!({"payload": "x"}),
        json!({"topic": "a", "payload": "x".repeat(2000)}),
        json!({"topic": "$SYS/brokers/r1/version", "payload": "forged", "retain": true}),
        json!({"topic": "a", "payload": "x", "clientid": "c".repeat(70_000)}),
    ] {
        let (status, v) = call(&b, "POST", "/api/v5/publish", body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (_, v) = call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "a", "payload": "x".repeat(2000)}),
    )
    .await;
    assert_eq!(v["code"], "PACKET_TOO_LARGE");
    // Not JSON: 415. A bulk request with one bad message publishes none of them.
    let api = Api::new(b.http_addr().expect("http")).with_key(Some(KEY));
    let (status, _) = api
        .raw("POST", "/api/v5/publish", Some("text/plain"), b"{}")
        .await;
    assert_eq!(status, 415);
    let bulk = json!([{"topic": "ok/1", "payload": "1"}, {"topic": "bad/#", "payload": "2"}]);
    let (status, v) = call(&b, "POST", "/api/v5/publish/bulk", bulk).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("message 1:")),
        "{v}"
    );
    let (status, _) = call(&b, "POST", "/api/v5/publish/bulk", json!([])).await;
    assert_eq!(status, 400);
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"topic": "t", "payload": ""}))
        .collect();
    let (status, _) = call(&b, "POST", "/api/v5/publish/bulk", Value::Array(many)).await;
    assert_eq!(status, 400);
    // The marker arrives and nothing before it: the refused messages went nowhere.
    call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "marker", "payload": "m"}),
    )
    .await;
    assert_eq!(c.recv_publish().await.topic, "marker");
    b.shutdown().await;
}

#[tokio::test]
async fn bulk_publish_answers_each_message_in_order() {
    let b = keyed_broker(|_| {}).await;
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("sub")).await;
    c.subscribe("bulk/yes", QoS::AtMostOnce).await;
    let bulk = json!([
        {"topic": "bulk/yes", "payload": "1"},
        {"topic": "bulk/no", "payload": "2"},
        {"topic": "bulk/yes", "payload": "3"},
    ]);
    let (status, v) = call(&b, "POST", "/api/v5/publish/bulk", bulk).await;
    assert_eq!(status, 200, "{v}");
    let items = v.as_array().expect("list");
    assert_eq!(items.len(), 3);
    assert!(
        items[0]["id"].is_string() && items[2]["id"].is_string(),
        "{v}"
    );
    assert_eq!(items[1]["reason_code"], 16, "{v}");
    assert_eq!(&c.recv_publish().await.payload[..], b"1");
    assert_eq!(&c.recv_publish().await.payload[..], b"3");
    b.shutdown().await;
}

#[tokio::test]
async fn retained_messages_are_listed_read_and_deleted() {
    let b = keyed_broker(|_| {}).await;
    for (topic, payload) in [("ret/b", "two"), ("ret/a", "one"), ("other/c", "three")] {
        let body = json!({"topic": topic, "payload": payload, "retain": true, "qos": 1,
                          "properties": {"user_properties": {"u": "p"}}});
        let (status, v) = call(&b, "POST", "/api/v5/publish", body).await;
        assert_eq!(status, 202, "retained, nobody subscribed: {v}");
    }
    // The broker's own `$SYS` messages are listed too (as EMQX lists them); a filter with a
    // wildcard first level leaves them out (MQTT 4.7.2).
    let (status, v) = call(&b, "GET", "/api/v5/mqtt/retainer/messages", Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        data_topics(&v).iter().any(|t| t.starts_with("$SYS/")),
        "{v}"
    );
    let all = format!("/api/v5/mqtt/retainer/messages?topic={}", enc("+/+"));
    let (status, v) = call(&b, "GET", &all, Value::Null).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["meta"]["count"], 3, "{v}");
    assert_eq!(
        data_topics(&v),
        ["other/c", "ret/a", "ret/b"],
        "sorted by topic"
    );
    assert!(
        v["data"][0].get("payload").is_none(),
        "lists carry no payload: {v}"
    );
    assert_eq!(v["data"][0]["qos"], 1);
    let (_, v) = call(
        &b,
        "GET",
        &format!(
            "/api/v5/mqtt/retainer/messages?topic={}&limit=1",
            enc("ret/+")
        ),
        Value::Null,
    )
    .await;
    assert_eq!(
        (v["meta"]["count"].as_u64(), v["meta"]["hasnext"].as_bool()),
        (Some(2), Some(true)),
        "{v}"
    );
    assert_eq!(v["data"][0]["topic"], "ret/a");
    let (status, v) = call(
        &b,
        "GET",
        &format!("/api/v5/mqtt/retainer/message/{}", enc("ret/a")),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(v["payload"].as_str().expect("payload"))
        .expect("base64");
    assert_eq!(payload, b"one");
    assert_eq!(v["properties"]["user_properties"], json!({"u": "p"}), "{v}");
    // A subscriber gets what the store holds.
    let mut c = RawClient::connect(b.mqtt_addr(), V5, &unique("sub")).await;
    c.subscribe("ret/a", QoS::AtMostOnce).await;
    let p = c.recv_publish().await;
    assert!(p.retain && &p.payload[..] == b"one");
    let path = format!("/api/v5/mqtt/retainer/message/{}", enc("ret/a"));
    let (status, _) = call(&b, "DELETE", &path, Value::Null).await;
    assert_eq!(status, 204);
    let (status, v) = call(&b, "GET", &path, Value::Null).await;
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, _) = call(&b, "DELETE", &path, Value::Null).await;
    assert_eq!(status, 404);
    let mut c2 = RawClient::connect(b.mqtt_addr(), V5, &unique("sub")).await;
    c2.subscribe("ret/a", QoS::AtMostOnce).await;
    c2.expect_no_publish(crate::common::QUIET).await;
    for q in ["topic=a/%23/b", "limit=0"] {
        let (status, _) = call(
            &b,
            "GET",
            &format!("/api/v5/mqtt/retainer/messages?{q}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 400, "{q}");
    }
    // RETAIN refused when retained messages are off.
    b.shutdown().await;
    let b = keyed_broker(|c| c.mqtt.retain_available = false).await;
    let (status, v) = call(
        &b,
        "POST",
        "/api/v5/publish",
        json!({"topic": "t", "payload": "x", "retain": true}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    b.shutdown().await;
}
